"""`smolvla-train`: fine-tune a SmolVLA checkpoint on rosbag2 episodes recorded from the running system.

    smolvla-train BAG [BAG ...] --checkpoint lerobot/smolvla_base --output runs/cube --task "pick up the cube"

Each BAG is one episode (a `ros2 bag record` directory) or a directory whose sub-directories are episodes.
See docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..camera_mapping import map_cameras
from ..policy import SmolVLAPolicy
from ..robot_interface import RobotInterface
from .bags import (
    DEFAULT_ACTION_TOPIC,
    DEFAULT_CAMERA_TOPICS,
    DEFAULT_JOINT_NAMES,
    DEFAULT_JOINT_STATE_TOPIC,
    BagError,
    Topics,
)
from .dataset import DEFAULT_FPS, DEFAULT_MAX_AGE, EpisodeDataset, dataset_statistics, load_episode, write_statistics
from .trainer import TrainConfig, check_policy_matches, train

log = logging.getLogger("smolvla-train")

STATISTICS_FILE = "dataset_stats.json"
RUN_FILE = "train_config.json"


def find_bags(paths: Sequence[str | Path]) -> list[Path]:
    """Bag directories from the command line: a directory with metadata.yaml is a bag, otherwise its immediate
    sub-directories that are bags are taken in name order. A path that yields no bag is an error."""
    bags: list[Path] = []
    for path in map(Path, paths):
        if (path / "metadata.yaml").is_file():
            bags.append(path)
            continue
        if not path.is_dir():
            raise BagError(f"{path}: no such bag directory")
        found = sorted(child for child in path.iterdir() if (child / "metadata.yaml").is_file())
        if not found:
            raise BagError(f"{path}: neither a rosbag2 bag (no metadata.yaml) nor a directory of bags")
        bags.extend(found)
    resolved = [bag.resolve() for bag in bags]
    if len(set(resolved)) != len(resolved):
        raise BagError("a bag is given more than once")
    return bags


def _check_output(output: Path, bags: Sequence[Path]) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"output {output} exists and is not an empty directory; choose a new one")
    target = output.resolve()
    for bag in bags:
        if target == bag.resolve() or bag.resolve() in target.parents:
            raise ValueError(f"output {output} is inside the bag {bag}; bags are never written to")


def build_parser() -> argparse.ArgumentParser:
    """The command line of smolvla-train."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="smolvla-train",
        description="Fine-tune SmolVLA on rosbag2 episodes (one bag per episode). See docs/training.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bags", nargs="+", help="bag directories, or directories holding bag directories")
    parser.add_argument("--checkpoint", required=True, help="checkpoint to start from: hub id or local directory")
    parser.add_argument("--output", required=True, type=Path, help="new directory for checkpoints and statistics")
    parser.add_argument("--task", help="task text of every bag without a task.txt of its own")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--cameras",
        nargs="+",
        default=list(DEFAULT_CAMERA_TOPICS),
        metavar="NAME=TOPIC",
        help="the checkpoint's cameras by name (front=/camera/front/image_raw, NAME=none to mask one), or topics in "
        "order for checkpoints with numbered cameras (observation.image, ...); the policy node's camera_topics",
    )
    data.add_argument("--joint-state-topic", default=DEFAULT_JOINT_STATE_TOPIC, help="sensor_msgs/JointState")
    data.add_argument(
        "--action-topic",
        default=DEFAULT_ACTION_TOPIC,
        help="std_msgs/Float64MultiArray in joint order, or trajectory_msgs/JointTrajectory",
    )
    data.add_argument("--joint-names", nargs="+", default=list(DEFAULT_JOINT_NAMES), help="state and action order")
    data.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frame rate of the samples (control rate)")
    data.add_argument(
        "--max-age", type=float, default=DEFAULT_MAX_AGE, help="oldest input (s) a frame may use; older is an error"
    )
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps")
    opt.add_argument("--batch-size", type=int, default=defaults.batch_size, help="frames per step")
    opt.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    opt.add_argument("--warmup-steps", type=int, help="linear warm-up steps; None: 1000 x steps / 30000, at most 1000")
    opt.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    opt.add_argument("--seed", type=int, default=defaults.seed, help="shuffling and flow-matching draws")
    opt.add_argument("--save-every", type=int, default=defaults.save_every, help="0: only at the end")
    opt.add_argument("--log-every", type=int, default=defaults.log_every, help="steps per loss line")
    opt.add_argument("--num-workers", type=int, default=defaults.num_workers, help="data loader processes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for unusable input, with the reason on stderr)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        config = TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=args.warmup_steps,
            seed=args.seed,
            save_every=args.save_every,
            log_every=args.log_every,
            num_workers=args.num_workers,
        )
        bags = find_bags(args.bags)
        _check_output(args.output, bags)
        log.info("loading %s on %s", args.checkpoint, args.device)
        policy = SmolVLAPolicy.from_pretrained(args.checkpoint, device=args.device)
        # Before reading the bags: a mismatch is found in seconds, not after decoding every image.
        cameras = map_cameras(args.cameras, policy.camera_names)
        log.info("cameras: %s", cameras.describe())
        topics = Topics(cameras.streams, args.joint_state_topic, args.action_topic, tuple(args.joint_names))
        check_policy_matches(policy, len(topics.cameras), len(topics.joint_names), len(topics.joint_names))
        episodes = []
        for bag in bags:
            episode = load_episode(bag, topics, task=args.task, fps=args.fps, max_age=args.max_age)
            log.info("%s: %d frames (%.1f s), task %r", bag, len(episode), len(episode) / args.fps, episode.task)
            episodes.append(episode)
        dataset = EpisodeDataset(
            episodes,
            chunk_size=policy.chunk_size,
            n_slots=len(policy.camera_names),
            image_size=policy.config.resize_imgs_with_padding,
            camera_slots=cameras.slots,
        )
        if len(dataset) < config.batch_size:
            raise ValueError(f"{len(dataset)} frames in all, fewer than one batch of {config.batch_size}")
        # What the new checkpoint expects, whatever the one it starts from did: the bags hold this workspace's
        # radians at the frames sampled here.
        interface = RobotInterface(
            joint_names=topics.joint_names,
            joint_units=("radians",) * len(topics.joint_names),
            fps=args.fps,
            cameras=policy.camera_names,
        )
    except (BagError, ValueError, FileNotFoundError) as error:
        print(f"smolvla-train: error: {error}", file=sys.stderr)
        return 2
    policy.robot_interface = interface
    # The model predicts in the statistics' normalised space: they must be this data's, not the checkpoint's.
    policy.normalizer = dataset_statistics(episodes)
    args.output.mkdir(parents=True, exist_ok=True)
    write_statistics(args.output / STATISTICS_FILE, policy.normalizer, episodes, topics.joint_names)
    run = {
        "command": ["smolvla-train", *argv],
        "checkpoint": args.checkpoint,
        "bags": [str(bag) for bag in bags],
        "topics": {
            "cameras": dict(zip(cameras.features, cameras.topics, strict=True)),
            "joint_state": topics.joint_state,
            "action": topics.action,
        },
        "joint_names": list(topics.joint_names),
        "fps": args.fps,
        "max_age": args.max_age,
        "device": args.device,
        "train": {**vars(config), "betas": list(config.betas), "warmup_used": config.warmup},
    }
    (args.output / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
    last = train(policy, dataset, config, args.output)
    log.info("done: run it with checkpoint:=%s", last.absolute())
    return 0


if __name__ == "__main__":
    sys.exit(main())
