"""Queue simulator (`smolvla-queue-sim`): the real AsyncActionQueue driven by a simulated clock and policy.

The simulated policy serves one request at a time (like the policy node's worker) with a latency drawn from a
log-normal distribution (optionally a slower first request, the warm-up) and answers with a chunk of a smooth
joint trajectory for ticks k + 1 ... k + n. For each threshold g it prints the idle-tick fraction, idle ticks per
chunk, requests and chunks per second and the mean queue length, writes a PNG of queue size over time (like the
paper's figure) and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from smolvla.async_inference.aggregation import AGGREGATIONS
from smolvla.async_inference.config import TICK_CLOCKS, QueueConfig
from smolvla.async_inference.core import AsyncActionQueue
from smolvla.async_inference.latency import threshold_bound

DEFAULT_THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0)
_N_JOINTS = 6


@dataclass
class SimResult:
    """Figures of one simulated run (one control rate, one threshold or the automatic one)."""

    rate: float
    mode: str
    threshold: float  # g in effect at the end of the run
    idle_fraction: float  # idle ticks / ticks after the first action
    idle_ticks_per_chunk: float
    actions_per_chunk: float  # actions of each chunk that were executed (the rest dropped late or blended)
    requests_per_second: float
    chunks_per_second: float
    mean_queue_length: float
    starvation_episodes: int
    actions_dropped_late: int
    queue_trace: list[int] = field(repr=False, default_factory=list)


def latency_sampler(mean: float, cv: float, warmup: float | None, rng: np.random.Generator):
    """Log-normal latencies with the given mean and coefficient of variation; the first one is `warmup` if given."""
    sigma = math.sqrt(math.log1p(cv * cv))
    mu = math.log(mean) - sigma * sigma / 2
    first = [warmup] if warmup else []

    def sample() -> float:
        return first.pop() if first else float(rng.lognormal(mu, sigma))

    return sample


def _trajectory(ticks: np.ndarray, dt: float) -> np.ndarray:
    # A slow smooth motion of every joint (period 4 s, amplitude 0.5 rad), so the similarity filter sees motion.
    phase = np.arange(_N_JOINTS) * 0.7
    return 0.5 * np.sin(2 * np.pi * ticks[:, None] * dt / 4.0 + phase[None, :])


def simulate(
    *,
    rate: float,
    mode: str,
    threshold: float,
    chunk_size: int,
    duration: float,
    latency_mean: float,
    latency_cv: float,
    warmup: float | None,
    seed: int,
    aggregation: str = QueueConfig.aggregation,
    similarity_epsilon: float = 0.01,
    tick_clock: str = "action",
) -> SimResult:
    """Run the queue for `duration` simulated seconds and return its figures."""
    dt = 1.0 / rate
    config = QueueConfig(
        chunk_size=chunk_size,
        control_period=dt,
        mode=mode,
        threshold=threshold,
        aggregation=aggregation,
        similarity_epsilon=similarity_epsilon,
        tick_clock=tick_clock,
    )
    queue = AsyncActionQueue(config, np.full(_N_JOINTS, 2 * math.pi))
    sample = latency_sampler(latency_mean, latency_cv, warmup, np.random.default_rng(seed))
    arrivals: list[tuple[float, int, int]] = []  # (arrival time, request id, observation tick), a heap
    worker_free = 0.0
    state = _trajectory(np.array([0]), dt)[0]
    trace = []
    for tick in range(round(duration * rate)):
        now = tick * dt
        # A chunk arriving exactly at a tick's time is merged before that tick's pop.
        while arrivals and arrivals[0][0] <= now:
            arrival, request_id, observation_tick = heapq.heappop(arrivals)
            actions = _trajectory(np.arange(observation_tick + 1, observation_tick + 1 + chunk_size), dt)
            queue.add_chunk(request_id, observation_tick + 1, actions, arrival)
        result = queue.tick(now, state)
        if result.action is not None:
            state = result.action
        if result.request is not None:
            start = max(now, worker_free)
            worker_free = start + sample()
            heapq.heappush(arrivals, (worker_free, result.request.request_id, result.request.observation_tick))
        trace.append(result.queue_length)
    status = queue.status()
    running = max(1, len(trace) - status.startup_ticks)  # control ticks after the first action (one per loop)
    return SimResult(
        rate=rate,
        mode=mode,
        threshold=status.threshold,
        idle_fraction=status.idle_ticks / running,
        idle_ticks_per_chunk=status.idle_ticks / max(1, status.chunks_received),
        actions_per_chunk=status.actions_executed / max(1, status.chunks_received),
        requests_per_second=status.requests_sent / duration,
        chunks_per_second=status.chunks_received / duration,
        mean_queue_length=float(np.mean(trace)),
        starvation_episodes=status.starvation_episodes,
        actions_dropped_late=status.actions_dropped_late,
        queue_trace=trace,
    )


def format_table(results: list[SimResult], latency_mean: float, chunk_size: int, tick_clock: str) -> str:
    """A Markdown table of the runs of one control rate."""
    rate = results[0].rate
    bound = threshold_bound(latency_mean, 1.0 / rate, chunk_size)
    lines = [
        f"control rate {rate:g} Hz, n = {chunk_size}, E[latency] = {latency_mean:g} s, {tick_clock} tick clock: "
        f"g_min = E[latency]/(dt*n) = {bound:.2f}, latency/(n*dt) must also be <= 0.5 to never idle",
        "",
        "| g | idle ticks | idle ticks per chunk | actions executed per chunk | requests/s | chunks/s | mean queue "
        "| starvation episodes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        label = f"auto ({r.threshold:.2f})" if r.mode == "auto" else f"{r.threshold:g}"
        lines.append(
            f"| {label} | {100 * r.idle_fraction:.1f} % | {r.idle_ticks_per_chunk:.1f} | {r.actions_per_chunk:.1f} "
            f"| {r.requests_per_second:.2f} "
            f"| {r.chunks_per_second:.2f} | {r.mean_queue_length:.1f} | {r.starvation_episodes} |"
        )
    return "\n".join(lines)


def write_plot(path: Path, runs: dict[float, list[SimResult]], seconds: float, latency_mean: float) -> None:
    """Queue size over the first `seconds` for g = 0, 0.7, 1 and auto, one panel per control rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(7, 2.2 * len(runs)), squeeze=False, sharex=True)
    for ax, (rate, results) in zip(axes[:, 0], runs.items(), strict=True):
        shown = [r for r in results if r.mode == "auto" or r.threshold in (0.0, 0.7, 1.0)]
        ticks = round(seconds * rate)
        for r in shown:
            label = f"auto g={r.threshold:.2f}" if r.mode == "auto" else f"g={r.threshold:g}"
            ax.plot(np.arange(ticks) / rate, r.queue_trace[:ticks], label=label, linewidth=1)
        ax.set_ylabel("queue size")
        ax.set_title(f"{rate:g} Hz, latency {latency_mean:g} s", fontsize=9)
        ax.legend(fontsize=7, loc="upper right", ncol=len(shown))
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smolvla-queue-sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=1.5, help="mean inference latency in seconds (1.5)")
    parser.add_argument("--latency-cv", type=float, default=0.1, help="coefficient of variation of the latency")
    parser.add_argument("--warmup", type=float, default=4.0, help="latency of the first request in seconds (0: none)")
    parser.add_argument("--rate", type=float, nargs="+", default=[30.0, 10.0], help="control rates in Hz (30 10)")
    parser.add_argument("--chunk-size", type=int, default=50, help="actions per chunk n (50)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS))
    parser.add_argument("--duration", type=float, default=120.0, help="simulated seconds per run (120)")
    parser.add_argument("--aggregation", default=QueueConfig.aggregation, choices=sorted(AGGREGATIONS))
    parser.add_argument("--epsilon", type=float, default=0.01, help="similarity filter epsilon (normalised)")
    parser.add_argument("--tick-clock", default="action", choices=TICK_CLOCKS, help="which ticks advance (action)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plot", default="outputs/queue_sim.png", help="PNG to write (outputs/queue_sim.png; '' for none)"
    )
    parser.add_argument("--plot-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.latency <= 0 or args.latency_cv < 0 or args.duration <= 0 or any(r <= 0 for r in args.rate):
        parser.error("latency, duration and rates must be > 0, latency-cv >= 0")
    if args.chunk_size < 1 or args.epsilon < 0:
        parser.error("chunk-size must be >= 1 and epsilon >= 0")
    if any(not 0 <= g <= 1 for g in args.thresholds):
        parser.error("thresholds must be in [0, 1]")

    runs: dict[float, list[SimResult]] = {}
    common = dict(
        chunk_size=args.chunk_size,
        duration=args.duration,
        latency_mean=args.latency,
        latency_cv=args.latency_cv,
        warmup=args.warmup or None,
        seed=args.seed,
        aggregation=args.aggregation,
        similarity_epsilon=args.epsilon,
        tick_clock=args.tick_clock,
    )
    for rate in args.rate:
        results = [simulate(rate=rate, mode="async", threshold=g, **common) for g in args.thresholds]
        results.append(simulate(rate=rate, mode="auto", threshold=0.7, **common))
        runs[rate] = results
        print(format_table(results, args.latency, args.chunk_size, args.tick_clock))
        print()
    if args.plot:
        plot = Path(args.plot)
        plot.parent.mkdir(parents=True, exist_ok=True)
        write_plot(plot, runs, args.plot_seconds, args.latency)
        print(f"queue size plot: {args.plot}")
    summary = {
        "latency_mean": args.latency,
        "latency_cv": args.latency_cv,
        "warmup": args.warmup,
        "chunk_size": args.chunk_size,
        "duration": args.duration,
        "tick_clock": args.tick_clock,
        "loadavg": os.getloadavg(),
        "results": [
            {k: v for k, v in asdict(r).items() if k != "queue_trace"} for results in runs.values() for r in results
        ],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
