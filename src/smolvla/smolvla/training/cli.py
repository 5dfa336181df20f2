"""`smolvla-train`: train SmolVLA on rosbag2 episodes recorded from the running system or on a LeRobotDataset v3,
fine-tuning a checkpoint or from scratch (a compact SmolVLA-architecture model, `smolvla.policy.scratch`).

    smolvla-train BAG [BAG ...] --checkpoint lerobot/smolvla_base --output runs/cube --task "pick up the cube"
    smolvla-train episodes/ --from-scratch --output runs/cube --steps 6000 --augment --val-episodes 4
    smolvla-train someone/so100_cube --checkpoint lerobot/smolvla_base --output runs/hub --joint-units lerobot_degrees
    torchrun --nproc_per_node 4 -m smolvla.training.cli episodes/ --checkpoint ... --device cuda   # 4 GPUs
    smolvla-train episodes/ --resume runs/cube/step_005000 --steps 20000 ...   # continue a run

Each BAG is one episode (a `ros2 bag record` directory) or a directory whose sub-directories are episodes; a
directory holding meta/info.json, or a hub dataset id, is a LeRobotDataset (`smolvla.training.sources`).
See docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..policy import SmolVLAPolicy
from ..policy.scratch import COMPACT_SIZES, compact_config, compact_policy
from ..robot_interface import UNIT_PRESETS, RobotInterface
from .bags import DEFAULT_ACTION_TOPIC, DEFAULT_JOINT_NAMES, DEFAULT_JOINT_STATE_TOPIC, BagError
from .dataset import DEFAULT_FPS, DEFAULT_MAX_AGE, Episode, EpisodeDataset, dataset_statistics, write_statistics
from .distributed import Distributed
from .lerobot_dataset import DatasetError
from .resume import FILES, STATE_DIR
from .sources import DataOptions, find_sources, load_training_data
from .trainer import TrainConfig, check_batch_split, check_policy_matches, train

log = logging.getLogger("smolvla-train")

STATISTICS_FILE = "dataset_stats.json"
RUN_FILE = "train_config.json"
#: The resized frames of the run (`EpisodeDataset`'s frame cache), inside the output while training, then removed.
FRAME_CACHE = "frame_cache"


def _one_then_rest(first: list[Episode], rest: Iterator[Episode]) -> Iterator[Episode]:
    """first[0], then rest; the list gives its episode up, so that nothing keeps its images once it is stored."""
    yield first.pop()
    yield from rest


def _remove_cache(output: Path, created: bool) -> None:
    shutil.rmtree(output / FRAME_CACHE, ignore_errors=True)
    if created and not any(output.iterdir()):
        output.rmdir()


def _check_output(output: Path, sources: Sequence[Path], resume: Path | None) -> None:
    resuming_here = resume is not None and output.resolve() == resume.resolve().parent
    if not resuming_here and output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"output {output} exists and is not an empty directory; choose a new one")
    target = output.resolve()
    for source in sources:
        if target == source.resolve() or source.resolve() in target.parents:
            raise ValueError(f"output {output} is inside {source}; bags and datasets are never written to")


def build_parser() -> argparse.ArgumentParser:
    """The command line of smolvla-train."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="smolvla-train",
        description="Fine-tune SmolVLA on rosbag2 episodes (one bag per episode) or LeRobotDatasets v3. See "
        "docs/training.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "sources",
        nargs="+",
        help="bag directories, directories holding bag directories, or LeRobotDatasets v3 (directory or hub id)",
    )
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--checkpoint", help="checkpoint to start from: hub id or local directory")
    start.add_argument(
        "--from-scratch",
        action="store_true",
        help="a freshly initialised compact SmolVLA-architecture model (every parameter trains)",
    )
    start.add_argument(
        "--resume",
        type=Path,
        metavar="STEP_DIR",
        help="continue a run from one of its step directories (OUTPUT/step_NNNNNN or OUTPUT/last): weights, "
        "optimizer, schedule, step and generators; same data, --seed and --batch-size, training up to --steps",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="new directory for checkpoints and statistics (required, except with --resume: the run's own)",
    )
    parser.add_argument("--task", help="task text of every bag without a task.txt of its own")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--cameras",
        nargs="+",
        metavar="NAME=TOPIC",
        help="the checkpoint's cameras by name (front=/camera/front/image_raw, NAME=none to mask one), or topics in "
        "order for checkpoints with numbered cameras (observation.image, ...); the policy node's camera_topics. For "
        "a LeRobotDataset, NAME=DATASET_CAMERA (front=laptop). Default: the workspace's two camera topics; for a "
        "dataset, its cameras by the checkpoint's names, or in order",
    )
    data.add_argument("--joint-state-topic", default=DEFAULT_JOINT_STATE_TOPIC, help="sensor_msgs/JointState")
    data.add_argument(
        "--action-topic",
        default=DEFAULT_ACTION_TOPIC,
        help="std_msgs/Float64MultiArray in joint order, or trajectory_msgs/JointTrajectory",
    )
    data.add_argument("--joint-names", nargs="+", default=list(DEFAULT_JOINT_NAMES), help="state and action order")
    data.add_argument(
        "--fps", type=float, help=f"frame rate of the samples (control rate); default {DEFAULT_FPS:g}, a dataset's own"
    )
    data.add_argument(
        "--joint-units",
        help=f"units of a LeRobotDataset's joints when it does not say ({', '.join(UNIT_PRESETS)}, or one per joint)",
    )
    data.add_argument(
        "--max-age", type=float, default=DEFAULT_MAX_AGE, help="oldest input (s) a frame may use; older is an error"
    )
    data.add_argument(
        "--skip-unusable",
        action="store_true",
        help="leave out (and log) bags or dataset episodes that cannot be used instead of stopping",
    )
    scratch = parser.add_argument_group("from scratch")
    scratch.add_argument("--image-size", type=int, default=64, help="square input of the vision tower (pixels)")
    scratch.add_argument("--chunk-size", type=int, default=50, help="actions per chunk (the executor's chunk_size)")
    scratch.add_argument(
        "--model-size",
        choices=list(COMPACT_SIZES),
        default="small",
        help="widths and depths (smolvla.policy.scratch.COMPACT_SIZES): small 0.43 M parameters, medium 1.5 M",
    )
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps")
    opt.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="frames per step, over all processes together"
    )
    opt.add_argument(
        "--grad-accum",
        type=int,
        default=defaults.grad_accum,
        help="micro-batches per step (gradient accumulation): each process computes batch-size / (processes x N) "
        "frames at a time",
    )
    opt.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    opt.add_argument("--warmup-steps", type=int, help="linear warm-up steps; None: 1000 x steps / 30000, at most 1000")
    opt.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps; under torchrun cpu or cuda")
    opt.add_argument("--seed", type=int, default=defaults.seed, help="shuffling and flow-matching draws")
    opt.add_argument("--save-every", type=int, default=defaults.save_every, help="0: only at the end")
    opt.add_argument("--log-every", type=int, default=defaults.log_every, help="steps per loss line")
    opt.add_argument("--num-workers", type=int, default=defaults.num_workers, help="data loader processes")
    opt.add_argument(
        "--val-episodes", type=int, default=0, help="episodes held out for the validation loss (the last ones)"
    )
    opt.add_argument("--val-every", type=int, default=defaults.val_every, help="steps between validation losses")
    opt.add_argument("--augment", action="store_true", help="random shifts and colour jitter of the images")
    opt.add_argument(
        "--state-noise",
        type=float,
        default=defaults.state_noise,
        help="standard deviation of Gaussian noise on the training samples' joint state (radians), so the policy "
        "must use the images",
    )
    opt.add_argument("--bf16", action="store_true", help="bfloat16 autocast (measure: not faster on every CPU)")
    opt.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    opt.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for unusable input, with the reason on stderr).

    Under torchrun every process runs this: rank 0 reads the data into the frame cache and writes everything,
    the others open that cache once rank 0 has written it (`Distributed`).
    """
    import torch

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output is None:
        if args.resume is None:
            parser.error("--output is required (except with --resume)")
        args.output = args.resume.resolve().parent
    try:
        distributed = Distributed.from_environment()
        device = distributed.device(args.device)
        check_batch_split(args.batch_size, distributed.world_size, args.grad_accum)
    except ValueError as error:
        print(f"smolvla-train: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if distributed.is_main else logging.WARNING, format="%(asctime)s %(message)s"
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    distributed.start(device)
    try:
        return _run(args, argv, distributed, device)
    finally:
        distributed.stop()


def _run(args: argparse.Namespace, argv: list[str], distributed: Distributed, device) -> int:
    import torch

    main_process = distributed.is_main
    prepared = None
    if main_process:
        try:
            prepared = _prepare(args, argv, device)
        except (BagError, DatasetError, ValueError, FileNotFoundError) as error:
            print(f"smolvla-train: error: {error}", file=sys.stderr)
    if not distributed.all_agree(prepared is not None or not main_process):
        return 2
    try:
        if main_process:
            policy, everything, split = prepared
        else:
            everything = EpisodeDataset.open_cache(args.output / FRAME_CACHE)
            split = len(everything.episodes) - args.val_episodes
            policy = _load_policy(args, device, everything)
            policy.normalizer = dataset_statistics(everything.episodes[:split])
        error = None
    except (ValueError, FileNotFoundError) as problem:
        error = problem
        print(f"smolvla-train: error (rank {distributed.rank}): {problem}", file=sys.stderr)
    if not distributed.all_agree(error is None):
        if main_process:
            _remove_cache(args.output, created=False)
        return 2
    dataset = everything.subset(range(split))
    validation = everything.subset(range(split, len(everything.episodes))) if args.val_episodes else None
    config = _train_config(args)
    try:
        last = train(
            policy,
            dataset,
            config,
            args.output,
            validation,
            progress=not args.no_progress,
            distributed=distributed,
            resume=args.resume,
        )
        distributed.all_agree(True)  # every process is done with the frame cache
    except ValueError as problem:  # a training state that cannot continue this run: the same on every rank
        if main_process:
            print(f"smolvla-train: error: {problem}", file=sys.stderr)
        return 2
    finally:
        if main_process:
            _remove_cache(args.output, created=False)
    if main_process:
        log.info("done: run it with checkpoint:=%s (%d threads per process)", last.absolute(), torch.get_num_threads())
    return 0


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        save_every=args.save_every,
        log_every=args.log_every,
        num_workers=args.num_workers,
        val_every=args.val_every,
        augment=args.augment,
        state_noise=args.state_noise,
        bf16=args.bf16,
        grad_accum=args.grad_accum,
    )


def _load_policy(args: argparse.Namespace, device, everything: EpisodeDataset | None = None) -> SmolVLAPolicy:
    """The starting policy of a process other than rank 0: the checkpoint or resumed step, or the compact model for
    the cached data's cameras (rank 0's weights replace its own when training starts)."""
    start = args.resume or args.checkpoint
    if start is not None:
        return SmolVLAPolicy.from_pretrained(start, device=device)
    return _scratch_policy(args, everything.camera_shapes, everything.episodes[0].state.shape[1], device)


def _scratch_policy(args: argparse.Namespace, camera_shapes, n_joints: int, device) -> SmolVLAPolicy:
    """The freshly initialised compact model of `--from-scratch` for these cameras' (3, H, W) and joints."""
    scratch = compact_config(
        tuple(camera_shapes),
        state_dim=n_joints,
        action_dim=n_joints,
        chunk_size=args.chunk_size,
        image_size=args.image_size,
        size=args.model_size,
    )
    return compact_policy(scratch, device=device, seed=args.seed)


def _check_resume(resume: Path) -> None:
    if not (resume / "config.json").is_file():
        raise ValueError(f"--resume {resume}: not a checkpoint directory (no config.json)")
    if not (resume / STATE_DIR).is_dir():
        raise ValueError(
            f"--resume {resume}: no {STATE_DIR}/ in it; only the step directories smolvla-train writes can be resumed"
        )
    missing = [name for name in FILES if not (resume / STATE_DIR / name).is_file()]
    if missing:
        raise ValueError(f"--resume {resume}: {resume / STATE_DIR} lacks {', '.join(missing)}")


def _prepare(args: argparse.Namespace, argv: list[str], device) -> tuple[SmolVLAPolicy, EpisodeDataset, int]:
    """Rank 0's part before training: read the data into the frame cache, the starting policy with this data's
    statistics and robot interface, the run's files. Returns the policy, every episode and the split index."""
    import torch

    config = _train_config(args)
    bags, datasets = find_sources(args.sources)
    _check_output(args.output, [*bags, *(dataset.root for dataset in datasets)], args.resume)
    policy = None
    if args.resume:
        _check_resume(args.resume)
        log.info("resuming %s on %s", args.resume, device)
        policy = SmolVLAPolicy.from_pretrained(args.resume, device=device)
        _remove_cache(args.output, created=False)  # a run killed without cleaning up leaves its frame cache
    elif args.checkpoint:
        log.info("loading %s on %s", args.checkpoint, device)
        policy = SmolVLAPolicy.from_pretrained(args.checkpoint, device=device)

    def check(n_cameras: int, n_joints: int) -> None:
        if policy is not None:
            check_policy_matches(policy, n_cameras, n_joints, n_joints)

    options = DataOptions(
        joint_names=tuple(args.joint_names),
        cameras=tuple(args.cameras) if args.cameras else None,
        joint_state_topic=args.joint_state_topic,
        action_topic=args.action_topic,
        joint_units=args.joint_units,
        fps=args.fps,
        max_age=args.max_age,
        task=args.task,
        skip_unusable=args.skip_unusable,
    )
    data = load_training_data(bags, datasets, options, policy.camera_names if policy else None, check)
    log.info("cameras: %s", data.cameras.describe())
    episodes = data.episodes
    # Held in a list that gives it up when the dataset takes it: one episode's images in memory at a time.
    first = [next(episodes, None)]
    if first[0] is None:
        raise ValueError("no usable episode")
    if policy is None:
        shapes = [(3, *frames.shape[1:3]) for frames in first[0].images]
        policy = _scratch_policy(args, shapes, len(data.joint_names), device)
        log.info("from scratch: compact SmolVLA, %d parameters", sum(p.numel() for p in policy.model.parameters()))
    created = not args.output.exists()
    args.output.mkdir(parents=True, exist_ok=True)
    try:
        everything = EpisodeDataset(
            _one_then_rest(first, episodes),
            chunk_size=policy.chunk_size,
            n_slots=len(policy.camera_names),
            image_size=policy.config.resize_imgs_with_padding,
            camera_slots=data.cameras.slots,
            frame_cache=args.output / FRAME_CACHE,
        )
        count = len(everything.episodes)
        if not 0 <= args.val_episodes < count:
            raise ValueError(f"--val-episodes must leave at least one of the {count} usable episodes for training")
        split = count - args.val_episodes
        frames = sum(len(episode) for episode in everything.episodes[:split])
        if frames < config.batch_size:
            raise ValueError(f"{frames} training frames in all, fewer than one batch of {config.batch_size}")
        # What the new checkpoint expects, whatever the one it starts from did: the data's joints and units at the
        # frames sampled here.
        interface = RobotInterface(
            joint_names=data.joint_names, joint_units=data.joint_units, fps=data.fps, cameras=policy.camera_names
        )
        statistics = dataset_statistics(everything.episodes[:split])
        if args.resume and not _same_statistics(policy.normalizer, statistics):
            raise ValueError(
                f"--resume {args.resume}: its normalisation statistics are not those of this data; resume with the "
                "data of the run"
            )
    except BaseException:
        _remove_cache(args.output, created)
        raise
    policy.robot_interface = interface
    # The model predicts in the statistics' normalised space: they must be this data's, not the checkpoint's.
    policy.normalizer = statistics
    write_statistics(args.output / STATISTICS_FILE, policy.normalizer, everything.episodes[:split], data.joint_names)
    run = {
        "command": ["smolvla-train", *argv],
        "checkpoint": str(args.resume or args.checkpoint or "from scratch (smolvla.policy.scratch.compact_config)"),
        "episodes": data.labels[:split],
        "validation_episodes": data.labels[split:],
        **data.inputs,
        "joint_names": list(data.joint_names),
        "joint_units": list(data.joint_units),
        "fps": data.fps,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "train": {**vars(config), "betas": list(config.betas), "warmup_used": config.warmup},
    }
    if args.resume:
        # The first run's settings stay in its file; each resumption gets its own.
        step = args.resume.resolve().name
        (args.output / f"train_config.resume_{step}.json").write_text(json.dumps(run, indent=2) + "\n")
    else:
        (args.output / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
    return policy, everything, split


def _same_statistics(a, b) -> bool:
    import torch

    names = ("state_mean", "state_std", "action_mean", "action_std")
    return all(
        getattr(a, name).shape == getattr(b, name).shape
        and torch.allclose(getattr(a, name).float(), getattr(b, name).float(), rtol=1e-4, atol=1e-6)
        for name in names
    )


if __name__ == "__main__":
    sys.exit(main())
