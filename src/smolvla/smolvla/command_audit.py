"""Judge a stream of published joint commands, and summarise a fault-injection run.

CommandAudit sees every command the executor publishes and counts the unsafe ones: a value that is not finite, a
position outside the joint limits, a step from the previous command above the velocity limit, or a change of that
step above the acceleration limit (all per control tick, with a small tolerance for float rounding). The fault
suite (smolvla_ros.chaos) feeds it and reports, per injected case, whether the graph recovered in time.
Plain Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Absolute slack for float rounding when comparing with a limit (radians).
TOLERANCE = 1e-6


@dataclass(frozen=True)
class CommandLimits:
    """Per joint: position limits (rad), the largest step per tick (rad) and the largest change of that step from
    one tick to the next (rad per tick^2; None: not checked)."""

    lower: np.ndarray
    upper: np.ndarray
    max_step: np.ndarray
    max_step_change: np.ndarray | None = None

    @classmethod
    def from_rates(
        cls,
        lower: Sequence[float],
        upper: Sequence[float],
        max_velocity: Sequence[float],
        max_acceleration: Sequence[float] | None,
        control_rate: float,
    ) -> CommandLimits:
        """Limits from velocities (rad/s) and accelerations (rad/s^2) at a control rate (Hz)."""
        dt = 1.0 / control_rate
        acceleration = None if max_acceleration is None else np.asarray(max_acceleration, float) * dt * dt
        return cls(
            np.asarray(lower, float), np.asarray(upper, float), np.asarray(max_velocity, float) * dt, acceleration
        )


@dataclass
class CommandAudit:
    """Counts unsafe commands; see the module docstring. restart() after a deliberate gap in the stream (a restarted
    executor), so that its first command is not compared with the last one before the gap."""

    limits: CommandLimits
    commands: int = 0
    unsafe: int = 0
    by_kind: dict[str, int] = field(
        default_factory=lambda: {"not finite": 0, "outside limits": 0, "step": 0, "acceleration": 0}
    )
    examples: list[str] = field(default_factory=list)
    _previous: np.ndarray | None = None
    _previous_step: np.ndarray | None = None

    def restart(self) -> None:
        self._previous = self._previous_step = None

    def observe(self, command: Sequence[float], label: str = "") -> list[str]:
        """Check one command; returns its problems (empty when safe) and counts them."""
        values = np.asarray(command, dtype=float)
        self.commands += 1
        problems: list[tuple[str, str]] = []
        if values.shape != self.limits.lower.shape:
            problems.append(("not finite", f"{values.size} values for {self.limits.lower.size} joints"))
        elif not np.all(np.isfinite(values)):
            problems.append(("not finite", f"non-finite values {values.tolist()}"))
        else:
            outside = (values < self.limits.lower - TOLERANCE) | (values > self.limits.upper + TOLERANCE)
            if np.any(outside):
                problems.append(
                    (
                        "outside limits",
                        f"joints {np.flatnonzero(outside).tolist()} at {values[outside].round(4).tolist()}",
                    )
                )
            if self._previous is not None:
                step = values - self._previous
                too_fast = np.abs(step) > self.limits.max_step + TOLERANCE
                if np.any(too_fast):
                    problems.append(
                        (
                            "step",
                            f"step {np.abs(step)[too_fast].round(4).tolist()} above "
                            f"{self.limits.max_step[too_fast].round(4).tolist()}",
                        )
                    )
                if self.limits.max_step_change is not None and self._previous_step is not None:
                    change = np.abs(step - self._previous_step)
                    jerky = change > self.limits.max_step_change + TOLERANCE
                    if np.any(jerky):
                        problems.append(
                            (
                                "acceleration",
                                f"step change {change[jerky].round(4).tolist()} above "
                                f"{self.limits.max_step_change[jerky].round(4).tolist()}",
                            )
                        )
                self._previous_step = step
            self._previous = values
        if problems:
            self.unsafe += 1
            for kind, _ in problems:
                self.by_kind[kind] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{label}: " + "; ".join(f"{kind}: {text}" for kind, text in problems))
        return [f"{kind}: {text}" for kind, text in problems]


@dataclass
class CaseResult:
    """One injected fault: what was sent, and how the graph came through it."""

    name: str
    bad_inputs: int
    deadline: float  # seconds after the fault ended within which the graph must recover
    recovered_after: float | None = None  # seconds; None: not within the deadline
    crashes: list[str] = field(default_factory=list)  # processes that died unasked
    unsafe: int = 0  # unsafe commands while the case ran
    findings: list[str] = field(default_factory=list)  # other wrong behaviour (an accepted invalid parameter, ...)
    notes: list[str] = field(default_factory=list)  # facts that do not fail the case (when it recovered after all)
    ticks: int = 0  # executor control ticks while the fault was injected
    expected_ticks: float = 0.0  # the fault's duration times the control rate
    max_tick_gap: float | None = None  # seconds: the longest gap between two of those ticks

    @property
    def passed(self) -> bool:
        return self.recovered_after is not None and not self.crashes and not self.unsafe and not self.findings


def summary(cases: Sequence[CaseResult], audits: Sequence[CommandAudit]) -> dict[str, object]:
    """The run's figures as one JSON-serialisable dict (audits: one per graph the cases ran in)."""
    by_kind: dict[str, int] = {}
    for audit in audits:
        for kind, count in audit.by_kind.items():
            by_kind[kind] = by_kind.get(kind, 0) + count
    return {
        "cases": len(cases),
        "passed": sum(case.passed for case in cases),
        "bad_inputs": sum(case.bad_inputs for case in cases),
        "crashes": sum(len(case.crashes) for case in cases),
        "commands": sum(audit.commands for audit in audits),
        "unsafe_commands": sum(audit.unsafe for audit in audits),
        "unsafe_by_kind": by_kind,
        "not_recovered": [case.name for case in cases if case.recovered_after is None],
        "findings": sum(len(case.findings) for case in cases),
        "failed": [case.name for case in cases if not case.passed],
        "worst_recovery_s": max((c.recovered_after for c in cases if c.recovered_after is not None), default=None),
        "worst_tick_gap_s": max((c.max_tick_gap for c in cases if c.max_tick_gap is not None), default=None),
    }
