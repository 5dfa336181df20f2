"""`smolvla-eval-sim`: a checkpoint closes the loop on the simulated SO-101 in one process, without ROS.

Each seeded scene runs the executor's own control loop (`build_control_loop` on config/executor.yaml: the queue with
its threshold g, aggregation and similarity filter, the chunk gate, the velocity and acceleration limits) at the
control rate against MuJoCo. A request is answered from the rendered cameras and joint positions of the tick that
sent it, and its chunk joins the queue a fixed number of ticks later (--latency-ticks), so the policy's latency is
a parameter instead of whatever the machine gives. What the graph adds and this leaves out: DDS, real-time
scheduling, image transport and the model's real latency. The policy's noise is seeded per scene, so an episode is
deterministic on a given machine; about 3-5 s of CPU per episode with the shipped checkpoint. For comparing executor
settings and checkpoints on many held-out seeds; `smolvla_eval_policy` (make eval-policy) is the figure through the
real graph.

Only for checkpoints that fit the simulation as they are: joints in radians with the simulated arm's names, the
executor's control rate, cameras numbered in the order front, wrist or named front and wrist.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from smolvla.async_inference.config import AGGREGATION_NAMES, MODES
from smolvla.async_inference.control import ControlLoop
from smolvla.async_inference.core import RequestSpec
from smolvla.async_inference.parameters import build_control_loop
from smolvla.camera_mapping import are_numbered, map_cameras
from smolvla.sim.arm import SimArm
from smolvla.sim.scene import CAMERA_NAMES, JOINT_NAMES
from smolvla.sim.task import FIRST_HELD_OUT_SEED

#: The executor's parameter file in this repository (the one `ros2 launch smolvla_ros so100_async.launch.py` uses).
EXECUTOR_PARAMS = Path(__file__).resolve().parents[4] / "config" / "executor.yaml"

#: answer(images in CAMERA_NAMES order, joint positions, request) -> (m, joints) actions in radians for the ticks
#: request.observation_tick + 1, ... (a request of aggregation "rtc" carries previous_actions and delay_ticks).
ChunkSource = Callable[[list[np.ndarray], np.ndarray, RequestSpec], np.ndarray]


@dataclass(frozen=True)
class EpisodeResult:
    """One seeded scene: seconds of simulated time to the placement (None: not placed before the timeout), chunks
    the queue accepted, chunks the gate refused, requests the similarity filter skipped and idle ticks."""

    seed: int
    time_s: float | None
    chunks: int
    gated: int
    skipped: int
    idle_ticks: int

    @property
    def success(self) -> bool:
        """The cube was placed before the timeout."""
        return self.time_s is not None

    def summary(self) -> dict:
        """The episode's entry in the JSON line."""
        took = None if self.time_s is None else round(self.time_s, 2)
        return {"seed": self.seed, "success": self.success, "time_s": took, "chunks": self.chunks, "gated": self.gated}


def load_executor_params(path: str | Path = EXECUTOR_PARAMS, overrides: Mapping[str, object] | None = None) -> dict:
    """The executor's parameters from its ROS parameter file (node smolvla_executor), with overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"executor parameter file {path} not found (--executor-params)")
    params = dict(yaml.safe_load(path.read_text())["smolvla_executor"]["ros__parameters"])
    return params | dict(overrides or {})


def run_episode(
    loop: ControlLoop, arm: SimArm, answer: ChunkSource, latency_ticks: int, timeout: float, seed: int
) -> EpisodeResult:
    """Drive `arm` (already reset to `seed`'s scene) with `loop` until the cube is placed or `timeout` simulated
    seconds passed. Every chunk reaches the queue `latency_ticks` control ticks after its request."""
    if latency_ticks < 0:
        raise ValueError(f"latency_ticks must be >= 0, got {latency_ticks}")
    period = loop.queue.config.control_period
    in_flight: list[tuple[int, RequestSpec, np.ndarray]] = []  # (arrival tick, request, actions)
    gated = tick = 0
    start = arm.time
    placed_at = None
    while placed_at is None and arm.time - start < timeout:
        now = tick * period
        for arrival in [entry for entry in in_flight if entry[0] <= tick]:
            in_flight.remove(arrival)
            _, request, actions = arrival
            outcome = loop.offer_chunk(request.request_id, request.observation_tick + 1, actions, period, now)
            gated += outcome.kind == "gated"
        state = arm.joint_positions()
        loop.update_joint_state(state, now)
        control = loop.step(now)
        if control.request is not None:
            images = [arm.render(camera) for camera in CAMERA_NAMES]
            actions = np.asarray(answer(images, state, control.request), dtype=np.float64)
            in_flight.append((tick + latency_ticks, control.request, actions))
        if control.command is not None:
            arm.set_command(control.command)
        if arm.step(period):
            placed_at = arm.time - start
        tick += 1
    status = loop.queue.status()
    return EpisodeResult(seed, placed_at, status.chunks_received, gated, status.requests_skipped, status.idle_ticks)


def policy_source(checkpoint: str, instruction: str, control_period: float) -> ChunkSource:
    """A ChunkSource answering with the SmolVLA checkpoint (local directory or hub id), after checking that it
    fits the simulation as it is (see the module docstring)."""
    from smolvla.policy import SmolVLAPolicy

    policy = SmolVLAPolicy.from_pretrained(checkpoint, dtype="auto")
    interface = policy.robot_interface
    problems = []
    if interface is None:
        problems.append("it has no robot_interface.json to say its joint units and rate")
    elif not interface.in_radians or tuple(interface.joint_names) != tuple(JOINT_NAMES):
        problems.append(f"joints {interface.describe_units()} {list(interface.joint_names)}, not radians {JOINT_NAMES}")
    elif abs(interface.period - control_period) > 1e-9:
        problems.append(f"its actions are {interface.period:.4f} s apart, the control period is {control_period:.4f}")
    if problems:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit the simulation as it is ({'; '.join(problems)}); "
            "evaluate it through the graph (smolvla_eval_policy), which converts units and maps cameras"
        )
    features = policy.config.camera_names
    entries = list(CAMERA_NAMES) if are_numbered(features) else [f"{name}={name}" for name in CAMERA_NAMES]
    slots = map_cameras(entries, features).topics

    def answer(images: list[np.ndarray], state: np.ndarray, request: RequestSpec) -> np.ndarray:
        by_camera = dict(zip(CAMERA_NAMES, images, strict=True))
        inputs = [None if camera is None else by_camera[camera] for camera in slots]
        guidance = {}
        if request.previous_actions is not None and len(request.previous_actions):
            guidance = {"previous_actions": request.previous_actions, "delay": request.delay_ticks}
        return policy.predict_chunk(inputs, state, instruction, **guidance)

    return answer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smolvla-eval-sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint directory or hub id")
    parser.add_argument("--seeds", type=int, default=40, help="number of episodes (seeds first-seed, +1, ...)")
    parser.add_argument("--first-seed", type=int, default=FIRST_HELD_OUT_SEED, help="scene seed of the first episode")
    parser.add_argument("--timeout", type=float, default=30.0, help="simulated seconds per episode")
    parser.add_argument("--latency-ticks", type=int, default=3, help="control ticks from request to chunk (3)")
    parser.add_argument("--mode", choices=MODES, help="executor mode (default: the parameter file's)")
    parser.add_argument("--g", type=float, help="queue threshold of the async mode (default: the parameter file's)")
    parser.add_argument("--aggregation", choices=AGGREGATION_NAMES, help="default: the parameter file's")
    parser.add_argument("--executor-params", type=Path, default=EXECUTOR_PARAMS, help="executor parameter file")
    parser.add_argument("--task", default="pick up the cube and place it on the green target", help="instruction")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `smolvla-eval-sim`: one line per episode, then one JSON line."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"mode": args.mode, "threshold": args.g, "aggregation": args.aggregation}
    params = load_executor_params(args.executor_params, {k: v for k, v in overrides.items() if v is not None})
    answer = policy_source(args.checkpoint, args.task, 1.0 / params["control_rate"])
    load_before, started = os.getloadavg()[0], time.monotonic()
    print(
        f"{args.checkpoint}: executor {params['mode']} g = {params['threshold']}, aggregation "
        f"{params['aggregation']}, chunks {args.latency_ticks} ticks after their request; seeds {args.first_seed}.."
        f"{args.first_seed + args.seeds - 1}",
        flush=True,
    )
    episodes = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        torch.manual_seed(seed)  # the policy's noise draws: an episode does not depend on the ones before it
        with SimArm(seed=seed) as arm:
            episode = run_episode(build_control_loop(params), arm, answer, args.latency_ticks, args.timeout, seed)
        episodes.append(episode)
        result = f"placed in {episode.time_s:.1f} s" if episode.success else f"FAILED in {args.timeout:.0f} s"
        print(
            f"seed {seed}: {result}; {episode.chunks} chunks, {episode.gated} gated, {episode.skipped} requests "
            f"skipped, {episode.idle_ticks} idle ticks",
            flush=True,
        )
    placed = [e.time_s for e in episodes if e.time_s is not None]
    summary = {
        "checkpoint": args.checkpoint,
        "success_rate": len(placed) / len(episodes),
        "episodes": len(episodes),
        "mean_time_s": round(statistics.mean(placed), 2) if placed else None,
        "mode": params["mode"],
        "g": params["threshold"],
        "aggregation": params["aggregation"],
        "latency_ticks": args.latency_ticks,
        "wall_s": round(time.monotonic() - started, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "per_episode": [e.summary() for e in episodes],
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
