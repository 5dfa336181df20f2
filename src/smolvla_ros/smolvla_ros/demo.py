"""`smolvla_demo` (make demo): the whole graph headless on the simulated SO-101.

Starts the simulated arm, the policy side and the executor through smolvla_ros.launcher, sends the instruction,
runs a few seeded episodes, prints per-episode success and duration, and writes into outputs/:
  demo_cameras.png        front (top row) and wrist (bottom row) camera frames of the first episode
  demo_queue_latency.png  executor queue length and chunk latency over time, episodes shaded
The policy side is by default the SmolVLA policy node with the checkpoint shipped with the package (trained from
scratch in simulation by this workspace's pipeline, `make train-demo`; its measured held-out success rate is
printed), on held-out scenes (seeds from 1000, which no demonstration used); --checkpoint runs another one, and
--policy expert the scripted planner behind the same chunk interface. The output says which it is.

With --record DIR the graph also runs the episode recorder, and every successful episode becomes one training bag
DIR/episode_NNNN (from its seeded reset to the placement, task.txt = the instruction): demonstrations for
smolvla-train (`--action-topic /smolvla/executor_ticks`: the executor's tick log, each tick's command stamped with
the tick's capture time). A failed episode (timeout) is discarded by the
recorder, so DIR holds successful ones only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from smolvla.sim.task import FIRST_HELD_OUT_SEED
from smolvla_ros.launcher import GraphOptions, Launcher, graph_nodes
from smolvla_ros.recorder_node import NODE_NAME as RECORDER_NODE
from smolvla_ros.shipped import shipped_checkpoint, shipped_summary
from smolvla_ros.sim_session import CAMERA_TOPICS, SimSession, StatusSample

DEFAULT_INSTRUCTION = "pick up the cube and place it on the green target"
#: The executor's tick log (`tick_topic` in config/executor.yaml): the demonstrations' actions.
TICK_TOPIC = "/smolvla/executor_ticks"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smolvla_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per episode before it counts as failed")
    parser.add_argument(
        "--seed",
        type=int,
        default=FIRST_HELD_OUT_SEED,
        help="scene seed of the first episode (then +1 each); the default is the first held-out one",
    )
    parser.add_argument(
        "--policy",
        choices=("smolvla", "expert"),
        default="smolvla",
        help="smolvla: the SmolVLA policy node (default: with the shipped checkpoint); expert: the scripted planner "
        "behind the policy node's chunk interface",
    )
    parser.add_argument("--checkpoint", help="SmolVLA checkpoint for the policy node; default: the shipped one")
    parser.add_argument("--latency", type=float, default=0.5, help="the expert's artificial latency (s)")
    parser.add_argument("--mode", choices=("sync", "async", "continuous", "auto"), help="executor mode")
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="lock-step simulation: one control period simulated per command (a loaded machine cannot slow it)",
    )
    parser.add_argument(
        "--disturbance",
        type=float,
        default=0.0,
        metavar="RAD",
        help="the simulated arm adds a smooth random offset of this standard deviation (radians) to each arm joint's "
        "command; recorded actions stay the commands, so the demonstrations show corrections (DART)",
    )
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs"))
    parser.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="record each successful episode as a bag DIR/episode_NNNN for smolvla-train (failed ones are discarded)",
    )
    return parser


def _write_strip(frames: dict[str, list[tuple[float, np.ndarray]]], start: float, end: float, path: Path) -> int:
    """Up to 8 evenly spaced frames per camera between start and end, one row per camera; returns the columns."""
    from PIL import Image

    rows = []
    for topic in CAMERA_TOPICS:
        chosen = [image for t, image in frames[topic] if start <= t <= end]
        if chosen:
            picks = np.linspace(0, len(chosen) - 1, min(8, len(chosen))).round().astype(int)
            rows.append([chosen[i] for i in picks])
    if not rows:
        return 0
    columns = min(len(row) for row in rows)
    grid = np.concatenate([np.concatenate(row[:columns], axis=1) for row in rows], axis=0)
    Image.fromarray(grid).save(path)
    return columns


def _write_plot(status: list[StatusSample], episodes: list[tuple[float, float]], origin: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = np.array([s.time - origin for s in status])
    fig, (ax_queue, ax_latency) = plt.subplots(2, 1, sharex=True, figsize=(9, 5))
    ax_queue.plot(times, [s.queue_length for s in status], lw=0.8)
    ax_queue.set_ylabel("queue length (actions)")
    ax_latency.plot(times, [s.last_latency for s in status], lw=0.8, color="tab:orange")
    ax_latency.set_ylabel("chunk latency (s)")
    ax_latency.set_xlabel("time (s)")
    for start, end in episodes:
        for ax in (ax_queue, ax_latency):
            ax.axvspan(start - origin, end - origin, color="tab:green", alpha=0.08)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> tuple[int, bool]:
    """Start the graph, run the episodes, write the outputs; returns the number of episodes that placed the cube and
    whether the graph held up (no node exited, so every episode ran)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    expert = args.policy == "expert"
    if expert:
        side = (
            "SCRIPTED EXPERT behind the chunk interface (the arm is driven by a hand-written planner with "
            f"{args.latency:.2f} s artificial latency, not by a learned policy)"
        )
    elif args.checkpoint:
        side = f"SmolVLA policy node with checkpoint {args.checkpoint}"
    else:
        args.checkpoint = str(shipped_checkpoint())
        side = f"SmolVLA policy node with the shipped checkpoint {args.checkpoint}: {shipped_summary()}"
    print(f"policy side: {side}", flush=True)
    options = GraphOptions(
        sim=True,
        policy="expert" if expert else "smolvla",
        checkpoint=None if expert else args.checkpoint,
        mode=args.mode,
        record_dir=args.record,
        task=args.instruction if args.record else None,
        extra={
            "robot": {
                "seed": args.seed,
                "respawn_delay": -1.0,
                **({"lockstep": True} if args.lockstep else {}),
                **({"command_disturbance": args.disturbance} if args.disturbance else {}),
            },
            **({"policy": {"latency": args.latency}} if expert else {}),
            # The session opens each episode after its reset: nothing before the first one is recorded. The actions
            # are the executor's tick log: each tick's command stamped with its capture time, so training knows
            # which observation each tick saw (smolvla.training.dataset).
            **(
                {"recorder": {"autostart": False, "action_topic": TICK_TOPIC, "action_type": "joint_state"}}
                if args.record
                else {}
            ),
        },
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    log_path = args.output_dir / "demo_nodes.log"
    succeeded = 0
    intact = True
    with (
        open(log_path, "w") as log,
        Launcher(graph_nodes(options), output=log) as launcher,
        SimSession(record_images_every=0.25, recorder=f"/{RECORDER_NODE}" if args.record else None) as session,
    ):
        session.wait_ready(timeout=120.0)
        print(session.set_instruction(args.instruction), flush=True)
        origin = time.monotonic()
        episodes = []
        for episode in range(args.episodes):
            start, scene = session.start_episode()
            took = None
            try:
                took = session.wait_placement(start, args.timeout)
            finally:
                # Also on Ctrl-C: the recorder would keep an open episode when the graph stops, and an unfinished
                # demonstration must not end up among the training episodes.
                saved = session.end_recording(keep=took is not None) if args.record else None
            end = time.monotonic()
            episodes.append((start, end))
            succeeded += took is not None
            result = f"FAILED (nothing placed in {args.timeout:.0f} s)" if took is None else f"success in {took:.1f} s"
            print(f"episode {episode + 1}/{args.episodes} ({scene}): {result}", flush=True)
            if saved is not None:
                kept = "" if took is not None else " (failed episodes are not kept)"
                print(f"  recorder: {saved}{kept}", flush=True)
            if not launcher.running():
                print("a node exited; see " + str(log_path), flush=True)
                intact = False
                break
        strip = args.output_dir / "demo_cameras.png"
        columns = _write_strip(session.frames_snapshot(), *episodes[0], strip) if episodes else 0
        plot = args.output_dir / "demo_queue_latency.png"
        _write_plot(session.status_snapshot(), episodes, origin, plot)
    print(f"{succeeded}/{args.episodes} episodes succeeded", flush=True)
    print(f"wrote {strip} ({columns} frames per camera: front on top, wrist below)" if columns else "no camera frames")
    print(f"wrote {plot} (executor queue length and chunk latency over time)")
    print(f"node logs: {log_path}")
    return succeeded, intact


def main(argv: list[str] | None = None) -> None:
    """Entry point of `smolvla_demo`: exit status 0 when no node exited and, when recording, at least one
    demonstration was kept. A scene the policy fails is a result, printed, not an error: a learned policy fails some
    scenes, and failed demonstrations are discarded."""
    args = _parser().parse_args(argv)
    succeeded, intact = run(args)
    sys.exit(0 if intact and (succeeded > 0 or not args.record) else 1)


if __name__ == "__main__":
    main()
