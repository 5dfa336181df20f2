"""`smolvla_eval_policy` (make eval-policy): a SmolVLA checkpoint on held-out seeded scenes through the whole graph.

The simulated SO-101, the SmolVLA policy node with the checkpoint (default: the one shipped with the package,
trained from scratch in simulation) and the executor run as in `smolvla_launch --sim`, async by default. Each seed
is one episode: the executor holds, the arm is reset to the seeded scene (seeds from 1000 by default, which the
shipped checkpoint's demonstrations never used), the executor goes on, and the episode succeeds when the cube is
placed within --timeout seconds. Printed per episode: success and time; at the end one JSON line with
success_rate, episodes, mean_time_s (over successful episodes), the policy's median chunk latency (request to chunk
at the executor) and the executor's idle ticks (ticks with an empty queue), plus every episode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from smolvla.async_inference.config import AGGREGATION_NAMES
from smolvla.sim.task import FIRST_HELD_OUT_SEED
from smolvla_ros.launcher import GraphOptions, Launcher, graph_nodes
from smolvla_ros.shipped import shipped_checkpoint
from smolvla_ros.sim_session import SimSession


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smolvla_eval_policy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint directory; default: the shipped one")
    parser.add_argument("--seeds", type=int, default=20, help="number of episodes (seeds first-seed, +1, ...)")
    parser.add_argument("--first-seed", type=int, default=FIRST_HELD_OUT_SEED, help="scene seed of the first episode")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per episode before it counts as failed")
    parser.add_argument("--mode", choices=("sync", "async", "continuous", "auto"), default="async")
    parser.add_argument("--g", type=float, help="queue threshold of the async mode (default: the executor's)")
    parser.add_argument(
        "--aggregation", choices=AGGREGATION_NAMES, help="how a chunk joins the queue (default: the executor's)"
    )
    parser.add_argument("--added-latency", type=float, default=0.0, help="seconds added to every chunk computation")
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="lock-step simulation (one control period per command): a loaded machine cannot slow the physics",
    )
    parser.add_argument("--log", type=Path, default=Path("outputs/eval_policy_nodes.log"))
    return parser


@dataclass(frozen=True)
class Episode:
    """One evaluated episode: its seed, seconds to the placement (None: not placed within the timeout), idle ticks
    (empty queue), the scene text, and when it ran on the wall clock (time.time(), the executor's clock in
    simulation) from the executor's activation to the placement or the timeout."""

    seed: int
    time_s: float | None
    idle_ticks: int
    scene: str
    wall_start: float
    wall_end: float

    @property
    def success(self) -> bool:
        """The cube was placed within the timeout."""
        return self.time_s is not None

    def summary(self) -> dict:
        """The episode's entry in the JSON line."""
        took = None if self.time_s is None else round(self.time_s, 2)
        return {"seed": self.seed, "success": self.success, "time_s": took, "idle_ticks": self.idle_ticks}


def policy_graph(
    args: argparse.Namespace, checkpoint: str, added_latency: float, aggregation: str | None = None
) -> GraphOptions:
    """The simulated graph with the SmolVLA policy node (args: mode, g, first_seed, lockstep); aggregation None:
    the executor's."""
    return GraphOptions(
        sim=True,
        policy="smolvla",
        checkpoint=checkpoint,
        mode=args.mode,
        g=args.g,
        extra={
            "robot": {"seed": args.first_seed, "respawn_delay": -1.0, **({"lockstep": True} if args.lockstep else {})},
            **({"policy": {"added_latency": added_latency}} if added_latency else {}),
            **({"executor": {"aggregation": aggregation}} if aggregation else {}),
        },
    )


def run_episode(session: SimSession, seed: int, timeout: float) -> Episode:
    """Reset to the seed's scene, let the graph run until the cube is placed or timeout seconds passed."""
    before = session.status_snapshot()
    idle_before = before[-1].idle_ticks if before else 0
    start, scene = session.start_episode(seed=seed)
    wall_start = time.time()
    took = session.wait_placement(start, timeout)
    wall_end = time.time()
    after = session.status_snapshot()
    idle = (after[-1].idle_ticks if after else 0) - idle_before
    return Episode(seed, took, max(0, idle), scene, wall_start, wall_end)


def describe(episode: Episode, timeout: float) -> str:
    """One line for the episode's outcome."""
    took = episode.time_s
    result = f"success in {took:.1f} s" if took is not None else f"FAILED (nothing placed in {timeout:.0f} s)"
    return f"seed {episode.seed}: {result}, {episode.idle_ticks} idle ticks; {episode.scene}"


def chunk_latencies(samples) -> list[float]:
    """Chunk latencies as the executor measured them: each new value of last_latency is one chunk."""
    values, previous = [], None
    for sample in samples:
        if sample.last_latency > 0 and sample.last_latency != previous:
            values.append(sample.last_latency)
        previous = sample.last_latency
    return values


def run(args: argparse.Namespace) -> dict:
    """Run the episodes; print one line per episode; return the JSON summary."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    checkpoint = args.checkpoint or str(shipped_checkpoint())
    load_before = os.getloadavg()
    print(
        f"policy side: SmolVLA policy node with checkpoint {checkpoint}; executor {args.mode}"
        f"{'' if args.g is None else f' g = {args.g:.2f}'}"
        f"{'' if args.aggregation is None else f', aggregation {args.aggregation}'}, "
        f"added latency {args.added_latency:.2f} s, "
        f"{'lock-step' if args.lockstep else 'real-time'} simulation; seeds {args.first_seed}.."
        f"{args.first_seed + args.seeds - 1}; load average {load_before[0]:.2f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    args.log.parent.mkdir(parents=True, exist_ok=True)
    graph = policy_graph(args, checkpoint, args.added_latency, args.aggregation)
    episodes = []
    with (
        open(args.log, "w") as log,
        Launcher(graph_nodes(graph), output=log) as launcher,
        SimSession() as session,
    ):
        session.wait_ready(timeout=300.0)
        for index in range(args.seeds):
            episode = run_episode(session, args.first_seed + index, args.timeout)
            episodes.append(episode.summary())
            print(f"episode {index + 1}/{args.seeds} {describe(episode, args.timeout)}", flush=True)
            if not launcher.running():
                raise RuntimeError(f"a node exited; see {args.log}")
        latencies = chunk_latencies(session.status_snapshot())
    successes = [e for e in episodes if e["success"]]
    load_after = os.getloadavg()
    return {
        "checkpoint": checkpoint,
        "success_rate": len(successes) / len(episodes) if episodes else 0.0,
        "episodes": len(episodes),
        "mean_time_s": round(statistics.mean(e["time_s"] for e in successes), 2) if successes else None,
        "median_chunk_latency_s": round(statistics.median(latencies), 3) if latencies else None,
        "idle_ticks": sum(e["idle_ticks"] for e in episodes),
        "mode": args.mode,
        "g": args.g,
        "aggregation": args.aggregation,
        "added_latency_s": args.added_latency,
        "lockstep": args.lockstep,
        "timeout_s": args.timeout,
        **load_figures(load_before, load_after),
        "per_episode": episodes,
    }


def load_figures(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> dict[str, float | int | None]:
    """The machine's load around an evaluation, for its JSON line: 1-minute load averages (os.getloadavg()) before
    and after, and the CPU count."""
    return {"load_before": round(load_before[0], 2), "load_after": round(load_after[0], 2), "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> None:
    """Entry point of `smolvla_eval_policy`."""
    print(json.dumps(run(_parser().parse_args(argv))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
