"""`smolvla_eval_async` (make eval-async): the paper's Figure-5 experiment on the simulated SO-101.

For each executor mode (sync: g = 0, async: g = --threshold, continuous: g = 1) the whole graph is started through
smolvla_ros.launcher. The policy side is by default the SmolVLA policy node with the checkpoint shipped with the
package (trained from scratch in simulation), at its 30 Hz, with --latency seconds added to every chunk computation
(default 1.0 s: most of a 50-action chunk, so sync waits for every chunk; at g = 0.7 async has only 35 actions
left when it asks, see docs/simulation.md for what that does). With --policy expert it is the
scripted expert answering with an artificial latency (default 1.5 s, about smolvla_base's chunk latency on this
2-core CPU), at 10 Hz by default: at 30 Hz such a latency is 90 % of a 50-action chunk, so every mode starves alike
(see docs/async-inference.md). Each seed is a run (held-out seeds from 1000 by default, which no demonstration
used): the arm starts at home in the seeded scene, a new cube and target appear one second after every placement,
and the run lasts --duration seconds. Reported per mode: success rate (first cube placed within --success-limit s),
mean task completion time (time to that first placement) and cubes placed in 60 s. The last line is one JSON object
with everything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from smolvla.sim.evaluation import RunResult, summarize
from smolvla.sim.task import FIRST_HELD_OUT_SEED
from smolvla_ros.eval_policy import load_figures
from smolvla_ros.launcher import GraphOptions, Launcher, graph_nodes
from smolvla_ros.shipped import shipped_checkpoint
from smolvla_ros.sim_session import SimSession

MODES = {"sync": 0.0, "async": None, "continuous": 1.0}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smolvla_eval_async", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", choices=("smolvla", "expert"), default="smolvla", help="the policy side")
    parser.add_argument("--checkpoint", help="SmolVLA checkpoint (--policy smolvla); default: the shipped one")
    parser.add_argument(
        "--latency",
        type=float,
        help="seconds: added to every SmolVLA chunk (default 1.0), or the expert's whole latency (default 1.5)",
    )
    parser.add_argument("--threshold", type=float, default=0.7, help="g of the async mode")
    parser.add_argument(
        "--control-rate",
        type=float,
        help="Hz (executor, policy, arm); default: 30 for SmolVLA (its training rate), 10 for the expert (at 30 Hz "
        "a 1.5 s latency is 90%% of a 50-action chunk and every mode starves)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="runs per mode (seeds first-seed, +1, ...)")
    parser.add_argument(
        "--first-seed", type=int, default=FIRST_HELD_OUT_SEED, help="scene seed of the first run (default: held out)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--success-limit", type=float, default=30.0, help="first cube within this many seconds")
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES), default=list(MODES))
    parser.add_argument(
        "--tick-clock",
        choices=("wall", "action"),
        default="action",
        help="executor tick clock; action: a chunk continues after the last executed action (the paper's sync)",
    )
    parser.add_argument("--cameras", action="store_true", help="render the cameras (the expert does not use them)")
    parser.add_argument("--log", type=Path, default=Path("outputs/eval_async_nodes.log"))
    return parser


def _run_mode(args: argparse.Namespace, mode: str, log) -> list[RunResult]:
    g = MODES[mode] if MODES[mode] is not None else args.threshold
    expert = args.policy == "expert"
    if expert:
        # The expert fills the ticks the wall clock drops; with the action clock nothing is dropped.
        policy = {"latency": args.latency, "latency_compensation": args.tick_clock == "wall"}
    else:
        policy = {"added_latency": args.latency}
    options = GraphOptions(
        sim=True,
        policy=args.policy,
        checkpoint=None if expert else args.checkpoint,
        mode="async",
        g=g,
        control_rate=args.control_rate,
        extra={
            # The same 3 rad/s velocity limit whatever the rate.
            "executor": {"max_velocity": 3.0, "tick_clock": args.tick_clock},
            "robot": {
                "seed": args.first_seed,
                "respawn_delay": 1.0,
                **({} if args.cameras or not expert else {"camera_rate": 0.0}),
            },
            "policy": policy,
        },
    )
    results = []
    with Launcher(graph_nodes(options), output=log) as launcher, SimSession() as session:
        session.wait_ready(timeout=120.0)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            start, scene = session.start_episode(seed=seed)
            idle_before = session.status_snapshot()[-1].idle_ticks
            time.sleep(args.duration)
            placed = tuple(t for t in session.placements_since(start) if t <= args.duration)
            idle = session.status_snapshot()[-1].idle_ticks - idle_before
            results.append(RunResult(mode, seed, args.duration, placed))
            first = f"{placed[0]:.1f} s" if placed else "none"
            print(
                f"{mode:>10} (g = {g:.2f}) seed {seed}: {len(placed)} cubes, first at {first}, "
                f"{idle} idle ticks; {scene}",
                flush=True,
            )
            if not launcher.running():
                raise RuntimeError(f"a node exited during the {mode} run; see {args.log}")
    return results


def run(args: argparse.Namespace) -> dict:
    """Run every mode and seed; print the table; return the JSON summary."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    expert = args.policy == "expert"
    if args.latency is None:
        args.latency = 1.5 if expert else 1.0
    if args.control_rate is None:
        args.control_rate = 10.0 if expert else 30.0
    if not expert and args.checkpoint is None:
        args.checkpoint = str(shipped_checkpoint())
    load_before = os.getloadavg()
    side = (
        f"scripted expert with {args.latency:.2f} s artificial latency (stands in for SmolVLA)"
        if expert
        else f"SmolVLA policy node with {args.checkpoint} and {args.latency:.2f} s added to every chunk"
    )
    print(
        f"policy side: {side}, "
        f"{args.control_rate:g} Hz, n = 50, tick clock {args.tick_clock}, {args.seeds} seeds x {args.duration:.0f} s "
        "per mode; "
        f"load average {load_before[0]:.2f}",
        flush=True,
    )
    args.log.parent.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    with open(args.log, "w") as log:
        for mode in args.modes:
            results += _run_mode(args, mode, log)
    summaries = summarize(results, args.success_limit)
    load_after = os.getloadavg()
    print("\n| mode | g | success | completion time (s) | cubes in 60 s |\n|---|---|---|---|---|")
    for s in summaries:
        g = MODES[s.mode] if MODES[s.mode] is not None else args.threshold
        time_text = "-" if math.isnan(s.completion_time) else f"{s.completion_time:.1f}"
        print(f"| {s.mode} | {g:.2f} | {s.success_rate:.0%} | {time_text} | {s.cubes_in_60s:.1f} |")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; {os.cpu_count()} CPUs")
    return {
        "policy": args.policy if expert else args.checkpoint,
        "latency": args.latency,
        "control_rate": args.control_rate,
        "tick_clock": args.tick_clock,
        "threshold": args.threshold,
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "duration": args.duration,
        "success_limit": args.success_limit,
        **load_figures(load_before, load_after),
        "modes": {
            s.mode: {
                "success_rate": s.success_rate,
                "completion_time": None if math.isnan(s.completion_time) else round(s.completion_time, 2),
                "cubes_in_60s": s.cubes_in_60s,
            }
            for s in summaries
        },
        "runs": [
            {"mode": r.mode, "seed": r.seed, "placements": [round(t, 2) for t in r.placement_times]} for r in results
        ],
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point of `smolvla_eval_async`."""
    print(json.dumps(run(_parser().parse_args(argv))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
