"""The executor's parameters as plain values: their bounds, which of them may change while it runs, and the
control loop built from them. The executor node declares them and passes their values here."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from smolvla.async_inference.config import QueueConfig
from smolvla.async_inference.control import ControlLoop
from smolvla.async_inference.core import AsyncActionQueue
from smolvla.async_inference.gate import ChunkGate
from smolvla.async_inference.safety import CommandSafety
from smolvla.parameters import Check, problems, within

#: Checks of the numeric parameters, inclusive bounds (a rate of 1e-300 Hz would make a timer period overflow; a
#: chunk of millions of actions would stall the control thread). status_rate 0 means "every control tick".
CHECKS: dict[str, Check] = {
    "control_rate": within(1.0, 1000.0),
    "diagnostics_rate": within(0.01, 100.0),
    "status_rate": within(0.0, 1000.0),
    "chunk_size": within(1, 1000),
    "joint_state_timeout": within(0.001, 60.0),
    "request_timeout": within(0.01, 3600.0),
    "failure_backoff": within(0.0, 60.0),
    "joint_limit_tolerance": within(0.0, 0.5),
    "resume_tolerance": within(0.001, 3.2),
}

#: Parameters the running executor applies at once when they are set; every other one is read-only after start.
LIVE = frozenset(
    {
        "mode",
        "threshold",
        "auto_margin",
        "aggregation",
        "similarity_epsilon",
        "max_velocity",
        "max_acceleration",
        "gate_max_jump",
        "gate_limit_margin",
        "gate_outside_fraction",
    }
)


def build_control_loop(p: Mapping[str, object]) -> ControlLoop:
    """The executor's control loop (queue, safety, gate) from its parameter values.

    Raises ValueError naming every problem found in the bounds, or the first one the parts refuse.
    """
    found = problems(CHECKS, {name: p[name] for name in CHECKS})
    if CHECKS["status_rate"](p["status_rate"]) is None and 0 < p["status_rate"] < 0.01:
        found.append(f"status_rate must be 0 (every tick) or at least 0.01 Hz, got {p['status_rate']!r}")
    if found:
        raise ValueError("; ".join(found))
    period = 1.0 / p["control_rate"]
    joints = list(p["joint_names"])
    safety = CommandSafety(
        joints,
        p["joint_lower_limits"],
        p["joint_upper_limits"],
        p["max_velocity"],
        p["max_acceleration"],
        period,
        limit_tolerance=p["joint_limit_tolerance"],
    )
    config = QueueConfig(
        chunk_size=p["chunk_size"],
        control_period=period,
        mode=p["mode"],
        threshold=p["threshold"],
        auto_margin=p["auto_margin"],
        aggregation=p["aggregation"],
        similarity_epsilon=p["similarity_epsilon"],
        max_in_flight=p["max_in_flight"],
        request_timeout=p["request_timeout"],
        failure_backoff=p["failure_backoff"],
        tick_clock=p["tick_clock"],
    )
    queue = AsyncActionQueue(config, safety.ranges)
    if not isinstance(p["resample_chunks"], bool):
        raise ValueError(f"resample_chunks must be true or false, got {p['resample_chunks']!r}")
    return ControlLoop(
        queue, safety, p["joint_state_timeout"], _gate(safety, p), p["resume_tolerance"], p["resample_chunks"]
    )


def apply_live(loop: ControlLoop, p: Mapping[str, object]) -> None:
    """Apply the LIVE parameters' values to a running loop. Validate first (build_control_loop): a ValueError
    here may leave part of the change applied."""
    queue = loop.queue
    queue.reconfigure(
        dataclasses.replace(
            queue.config,
            mode=p["mode"],
            threshold=p["threshold"],
            auto_margin=p["auto_margin"],
            aggregation=p["aggregation"],
            similarity_epsilon=p["similarity_epsilon"],
        )
    )
    loop.safety.set_limits(p["max_velocity"], p["max_acceleration"])
    loop.gate = _gate(loop.safety, p)


def _gate(safety: CommandSafety, p: Mapping[str, object]) -> ChunkGate:
    return ChunkGate(
        safety.joint_names,
        safety.lower,
        safety.upper,
        p["gate_max_jump"],
        limit_margin=p["gate_limit_margin"],
        max_outside_fraction=p["gate_outside_fraction"],
    )
