"""`smolvla_eval_rtc` (make eval-rtc): real-time chunking against blending and replacing, on the learned policy.

The graph of `smolvla_eval_policy` (simulated SO-101, SmolVLA policy node with the shipped checkpoint or
--checkpoint, executor async) is started once per added policy latency (--latencies, default 0.1 0.3 0.6 s). For
each executor aggregation (--aggregations: rtc, weighted_average, latest_only; set while the graph runs, as `ros2
param set` would) the same held-out seeds are played as in `smolvla_eval_policy`, and the executor's tick log
(/smolvla/executor_ticks) and status give, per aggregation and latency (smolvla.async_inference.smoothness): success
rate and completion time, the mean and maximum seam jump (how far each arriving chunk moved the next command, before
the command limits), the RMS jerk of the commanded trajectory (arm joints; the gripper on its own), chunks, late rtc
chunks and the median chunk latency. Printed: a line per episode, a table, one JSON line at the end; --plot writes
the commanded trajectories around seams for each aggregation and latency (PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smolvla.async_inference.smoothness import StatusPoint, rms_jerk, seam_jumps, seam_ticks, seam_windows
from smolvla.sim.task import FIRST_HELD_OUT_SEED
from smolvla_ros.eval_policy import (
    Episode,
    chunk_latencies,
    describe,
    load_figures,
    policy_graph,
    run_episode,
)
from smolvla_ros.launcher import Launcher, graph_nodes
from smolvla_ros.shipped import shipped_checkpoint
from smolvla_ros.sim_session import SimSession, StatusSample, TickCommand

AGGREGATIONS = ("rtc", "weighted_average", "latest_only")
GRIPPER = "gripper"
#: Ticks shown before and after each seam in the plot, and seams shown per panel.
PLOT_BEFORE, PLOT_AFTER, PLOT_SEAMS = 10, 20, 8


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smolvla_eval_rtc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint directory; default: the shipped one")
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.1, 0.3, 0.6], help="added seconds")
    parser.add_argument("--aggregations", nargs="+", choices=AGGREGATIONS, default=list(AGGREGATIONS))
    parser.add_argument("--seeds", type=int, default=2, help="episodes per aggregation and latency")
    parser.add_argument("--first-seed", type=int, default=FIRST_HELD_OUT_SEED, help="scene seed of the first episode")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per episode before it counts as failed")
    parser.add_argument("--mode", choices=("async", "continuous", "auto"), default="async")
    parser.add_argument("--g", type=float, help="queue threshold of the async mode (default: the executor's)")
    parser.add_argument("--lockstep", action="store_true", help="lock-step simulation (see smolvla_eval_policy)")
    parser.add_argument("--plot", type=Path, help="PNG of the commanded trajectories around seams")
    parser.add_argument("--log", type=Path, default=Path("outputs/eval_rtc_nodes.log"))
    return parser


@dataclass
class Trial:
    """One aggregation at one added latency: its episodes, and the executor's tick log and status during each."""

    aggregation: str
    latency: float
    episodes: list[Episode] = field(default_factory=list)
    segments: list[np.ndarray] = field(default_factory=list)  # commands per episode (ticks, joints)
    seams: list[list[int]] = field(default_factory=list)  # seam ticks per episode, indices into its segment
    statuses: list[list[StatusSample]] = field(default_factory=list)  # per episode, from the one before its start
    joint_names: tuple[str, ...] = ()  # of the tick log's commands

    @property
    def arm_joints(self) -> list[int]:
        """Columns of the arm joints: all but the gripper, whose open/close command may move 3x faster."""
        return [i for i, name in enumerate(self.joint_names) if name != GRIPPER]

    def record(self, episode: Episode, ticks: list[TickCommand], statuses: list[StatusSample]) -> None:
        """Keep what the executor logged while the episode ran."""
        inside = [t for t in ticks if episode.wall_start <= t.stamp <= episode.wall_end]
        window = [s for s in statuses if s.stamp <= episode.wall_end]
        first = next((i for i, s in enumerate(window) if s.stamp >= episode.wall_start), len(window))
        window = window[max(0, first - 1) :]
        self.episodes.append(episode)
        self.joint_names = inside[0].names if inside else self.joint_names
        self.segments.append(np.array([t.positions for t in inside]).reshape(len(inside), -1))
        self.seams.append(seam_ticks([t.stamp for t in inside], [_point(s) for s in window]))
        self.statuses.append(window)

    def summary(self, period: float) -> dict:
        """The trial's figures (see the module docstring)."""
        successes = [e.time_s for e in self.episodes if e.success]
        per_episode = [seam_jumps([_point(s) for s in window]) for window in self.statuses]
        seams = sum(j.count for j in per_episode)
        jump_mean = sum(j.mean * j.count for j in per_episode) / seams if seams else 0.0
        latencies = [x for window in self.statuses for x in chunk_latencies(window)]
        return {
            "aggregation": self.aggregation,
            "added_latency_s": self.latency,
            "episodes": len(self.episodes),
            "success_rate": len(successes) / len(self.episodes) if self.episodes else 0.0,
            "mean_time_s": round(statistics.mean(successes), 2) if successes else None,
            "seams": seams,
            "seam_jump_mean_rad": round(jump_mean, 4),
            "seam_jump_max_rad": round(max((j.max for j in per_episode), default=0.0), 4),
            "rms_jerk_arm_rad_s3": round(rms_jerk(self.segments, period, self.arm_joints), 1),
            "rms_jerk_gripper_rad_s3": round(rms_jerk(self.segments, period, [self.joint_names.index(GRIPPER)]), 1)
            if GRIPPER in self.joint_names
            else None,
            "chunks": sum(_increase(w, "chunks_received") for w in self.statuses),
            "chunks_late": sum(_increase(w, "chunks_late") for w in self.statuses),
            "median_chunk_latency_s": round(statistics.median(latencies), 3) if latencies else None,
            "idle_ticks": sum(e.idle_ticks for e in self.episodes),
            "per_episode": [e.summary() for e in self.episodes],
        }


def _point(sample: StatusSample) -> StatusPoint:
    return StatusPoint(sample.stamp, sample.chunks_received, sample.seams, sample.seam_jump_last, sample.seam_jump_mean)


def _increase(window: list[StatusSample], counter: str) -> int:
    return getattr(window[-1], counter) - getattr(window[0], counter) if window else 0


def _run_latency(args: argparse.Namespace, checkpoint: str, latency: float, log) -> list[Trial]:
    trials = []
    with (
        Launcher(graph_nodes(policy_graph(args, checkpoint, latency)), output=log) as launcher,
        SimSession() as session,
    ):
        session.wait_ready(timeout=300.0)
        for aggregation in args.aggregations:
            session.set_parameters("/smolvla_executor", {"aggregation": aggregation})
            trial = Trial(aggregation, latency)
            for index in range(args.seeds):
                episode = run_episode(session, args.first_seed + index, args.timeout)
                trial.record(episode, session.ticks_snapshot(), session.status_snapshot())
                print(f"{aggregation:>16}, +{latency:.2f} s: {describe(episode, args.timeout)}", flush=True)
                if not launcher.running():
                    raise RuntimeError(f"a node exited; see {args.log}")
            trials.append(trial)
    return trials


def _plot(trials: list[Trial], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latencies = sorted({t.latency for t in trials})
    aggregations = list(dict.fromkeys(t.aggregation for t in trials))
    fig, axes = plt.subplots(
        len(latencies), len(aggregations), figsize=(4.2 * len(aggregations), 3.0 * len(latencies)), squeeze=False
    )
    x = np.arange(-PLOT_BEFORE, PLOT_AFTER + 1)
    for trial in trials:
        ax = axes[latencies.index(trial.latency)][aggregations.index(trial.aggregation)]
        arm = trial.arm_joints
        windows = [
            w
            for segment, seams in zip(trial.segments, trial.seams, strict=True)
            for w in seam_windows(segment, seams, PLOT_BEFORE, PLOT_AFTER)
        ][:PLOT_SEAMS]
        for window in windows:
            # The arm joint whose command changed most over the seam's first 3 ticks.
            joint = arm[int(np.argmax(np.abs(window[PLOT_BEFORE + 2, arm])))]
            ax.plot(x, window[:, joint], lw=1.0)
            ax.annotate(trial.joint_names[joint], (x[-1], window[-1, joint]), fontsize=5)
        ax.axvline(0, color="k", lw=0.6, ls=":")
        ax.set_title(f"{trial.aggregation}, +{trial.latency:.1f} s ({len(windows)} seams)", fontsize=9)
        ax.set_xlabel("ticks from the seam (first command of the new chunk)", fontsize=7)
        ax.set_ylabel("command - command before seam (rad)", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle("Commanded arm joint (the one that moved most over the seam) around chunk seams", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict]) -> str:
    lines = [
        "| added latency s | aggregation | success | completion s | seams | seam jump mean / max rad "
        "| RMS jerk arm / gripper rad/s^3 | chunks (late) | median latency s | idle ticks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        done = "-" if r["mean_time_s"] is None else f"{r['mean_time_s']:.1f}"
        latency = "-" if r["median_chunk_latency_s"] is None else f"{r['median_chunk_latency_s']:.2f}"
        lines.append(
            f"| {r['added_latency_s']:.1f} | {r['aggregation']} | {r['success_rate']:.0%} of {r['episodes']} | {done} "
            f"| {r['seams']} | {r['seam_jump_mean_rad']:.3f} / {r['seam_jump_max_rad']:.3f} "
            f"| {r['rms_jerk_arm_rad_s3']:.0f} / {r['rms_jerk_gripper_rad_s3'] or float('nan'):.0f} "
            f"| {r['chunks']} ({r['chunks_late']}) | {latency} | {r['idle_ticks']} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    """Run every latency, aggregation and seed; print the table; return the JSON summary."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    checkpoint = args.checkpoint or str(shipped_checkpoint())
    load_before = os.getloadavg()
    print(
        f"SmolVLA policy node with checkpoint {checkpoint}; executor {args.mode}, aggregations "
        f"{', '.join(args.aggregations)}; added latencies {', '.join(f'{x:g}' for x in args.latencies)} s; "
        f"{'lock-step' if args.lockstep else 'real-time'} simulation; seeds {args.first_seed}.."
        f"{args.first_seed + args.seeds - 1}; load average {load_before[0]:.2f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    args.log.parent.mkdir(parents=True, exist_ok=True)
    trials: list[Trial] = []
    with open(args.log, "w") as log:
        for latency in args.latencies:
            trials += _run_latency(args, checkpoint, latency, log)
    from smolvla.robot_interface import RobotInterface

    interface = RobotInterface.load(Path(checkpoint))
    rows = [trial.summary(interface.period) for trial in trials]
    load_after = os.getloadavg()
    print()
    print(_table(rows))
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; {os.cpu_count()} CPUs")
    if args.plot:
        _plot(trials, args.plot)
        print(f"plot: {args.plot}")
    return {
        "checkpoint": checkpoint,
        "mode": args.mode,
        "g": args.g,
        "lockstep": args.lockstep,
        "timeout_s": args.timeout,
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        **load_figures(load_before, load_after),
        "results": rows,
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point of `smolvla_eval_rtc`."""
    print(json.dumps(run(_parser().parse_args(argv))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
