"""Command safety for the executor: chunk validation, joint limits, velocity and acceleration limits, braking hold."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class InvalidChunkError(ValueError):
    """A chunk that must not reach the queue; the message says why."""


@dataclass(frozen=True)
class SafeCommand:
    """The command to send this tick.

    clamped: a joint limit, the velocity or the acceleration limit changed the requested action.
    held: there was no action for this tick; the command brakes to a stop (at the acceleration limit) and stays.
    first: the first command since reset(); it equals the measured joint state (clipped into the limits when it
        lies within the tolerance outside them).
    """

    positions: np.ndarray
    clamped: bool
    held: bool
    first: bool


class CommandSafety:
    """Turns queued actions into commands a position controller may receive.

    Every command it returns, on every path (first command, resume after an outage, re-activation), lies within
    [lower, upper], differs from the previous command by at most max_velocity * dt per joint, and that difference
    changes from one tick to the next by at most max_acceleration * dt^2 per joint. The motion toward a target
    is planned so that it can always stop on the target (it brakes in time), so a target at a joint limit is
    reached without passing it. The acceleration limit yields only to the velocity limit, and that only right
    after a live reduction of max_velocity.

    - The first command after reset() is the measured state, at rest, so activation never jumps. A measured state
      outside the limits by more than `limit_tolerance` is a fault (state_fault() says why) and must not be
      commanded: command() refuses it.
    - Without an action the command brakes to a stop and stays there: never zeros, never a jump.
    Thread-safe (one lock), though the executor calls command() from its control thread only.
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        lower: Sequence[float],
        upper: Sequence[float],
        max_velocity: Sequence[float],
        max_acceleration: Sequence[float],
        control_period: float,
        limit_tolerance: float = 0.05,
    ) -> None:
        names = [str(name) for name in joint_names]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"joint_names must be non-empty and unique, got {names}")
        self.joint_names = tuple(names)
        self.lower = _per_joint("lower limits", lower, len(names))
        self.upper = _per_joint("upper limits", upper, len(names))
        finite = np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper))
        if not (finite and np.all(self.lower < self.upper)):
            raise ValueError(f"joint limits must be finite with lower < upper, got {self.lower} and {self.upper}")
        if not (_finite_number(control_period) and control_period > 0):
            raise ValueError(f"control period must be > 0 seconds, got {control_period!r}")
        if not (_finite_number(limit_tolerance) and limit_tolerance >= 0):
            raise ValueError(f"joint limit tolerance must be >= 0 radians, got {limit_tolerance!r}")
        self.control_period = float(control_period)
        self.limit_tolerance = float(limit_tolerance)
        self._index = {name: i for i, name in enumerate(names)}
        self._lock = threading.Lock()
        self.set_limits(max_velocity, max_acceleration)
        self._last: np.ndarray | None = None
        self._step = np.zeros(len(names))
        self.commands_clamped = 0
        self.commands_held = 0

    def set_limits(self, max_velocity: Sequence[float], max_acceleration: Sequence[float]) -> None:
        """Set the velocity (rad/s) and acceleration (rad/s^2) limits per joint; may change while commanding.

        Raises ValueError (and changes nothing) unless both have one finite number > 0 per joint.
        """
        n = len(self.joint_names)
        velocity = _per_joint("max_velocity", max_velocity, n)
        acceleration = _per_joint("max_acceleration", max_acceleration, n)
        for label, values in (("max_velocity", velocity), ("max_acceleration", acceleration)):
            if not (np.all(np.isfinite(values)) and np.all(values > 0)):
                raise ValueError(f"{label} must be finite and > 0 for every joint, got {values}")
        dt = self.control_period
        with self._lock:
            self.max_velocity, self.max_acceleration = velocity, acceleration
            self.max_step = velocity * dt  # radians per tick
            self._max_step_change = acceleration * dt * dt  # change of the per-tick step, radians per tick^2

    @property
    def ranges(self) -> np.ndarray:
        """upper - lower per joint: the natural scale of the similarity filter."""
        return self.upper - self.lower

    def order(self, names: Sequence[str], values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
        """Values given for `names` (any order, possibly with extra joints) -> an array in joint_names order.

        Raises ValueError naming the problem when a joint is missing, a name repeats, the lengths differ or a
        value is NaN/infinite. `what` names the input in the message (e.g. "joint state").
        """
        names = list(names)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(names) != values.size:
            raise ValueError(f"{what}: {len(names)} joint names but {values.size} values")
        if len(set(names)) != len(names):
            raise ValueError(f"{what}: repeated joint names {names}")
        missing = [name for name in self.joint_names if name not in names]
        if missing:
            raise ValueError(f"{what}: missing joints {missing}")
        ordered = values[[names.index(name) for name in self.joint_names]]
        if not np.all(np.isfinite(ordered)):
            raise ValueError(f"{what}: NaN or infinite value for {self._bad(ordered)}")
        return ordered

    def validate_chunk(self, names: Sequence[str], actions: np.ndarray) -> np.ndarray:
        """Check a chunk's joints and values; returns its actions in joint_names order, (m, n_joints).

        Rejected (InvalidChunkError with the reason): no actions, a row length that differs from the joint names,
        joints this executor does not command (unknown), joints it commands that are absent, repeated names,
        NaN or infinite values.
        """
        names = [str(name) for name in names]
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise InvalidChunkError(f"chunk must hold at least one action row, got shape {actions.shape}")
        if actions.shape[1] != len(names):
            raise InvalidChunkError(f"chunk has {len(names)} joint names but {actions.shape[1]} values per action")
        unknown = [name for name in names if name not in self._index]
        if unknown:
            commanded = list(self.joint_names)
            raise InvalidChunkError(f"chunk has unknown joints {unknown} (this executor commands {commanded})")
        if len(set(names)) != len(names):
            raise InvalidChunkError(f"chunk repeats joint names {names}")
        missing = [name for name in self.joint_names if name not in names]
        if missing:
            raise InvalidChunkError(f"chunk lacks joints {missing}")
        ordered = actions[:, [names.index(name) for name in self.joint_names]]
        finite = np.isfinite(ordered)
        if not np.all(finite):
            rows, cols = np.nonzero(~finite)
            raise InvalidChunkError(
                f"chunk has {rows.size} NaN or infinite values, first at action {rows[0]} joint "
                f"{self.joint_names[cols[0]]}"
            )
        return ordered

    def joints_outside(self, measured: np.ndarray) -> list[int]:
        """Indices of the joints of a measured state outside their limits by more than the tolerance."""
        measured = np.asarray(measured, dtype=np.float64)
        outside = (measured < self.lower - self.limit_tolerance) | (measured > self.upper + self.limit_tolerance)
        return [int(i) for i in np.flatnonzero(outside)]

    def state_fault(self, measured: np.ndarray) -> str:
        """Why the measured joint state must not be acted on ("" when it may): a joint outside its limits by more
        than the tolerance (a spoofed or corrupt state, a wrong calibration, or limits that do not fit the arm)."""
        measured = np.asarray(measured, dtype=np.float64)
        outside = self.joints_outside(measured)
        if not outside:
            return ""
        joints = ", ".join(
            f"{self.joint_names[i]} {measured[i]:.3f} not in [{self.lower[i]:.3f}, {self.upper[i]:.3f}]"
            for i in outside
        )
        return f"joint state outside the joint limits (tolerance {self.limit_tolerance:g} rad): {joints}"

    def command(self, action: np.ndarray | None, measured: np.ndarray) -> SafeCommand:
        """The safe command for this tick from the queued action (None on starvation) and the measured state.

        Raises ValueError when this is the first command and the measured state is a fault (see state_fault()).
        """
        measured = np.asarray(measured, dtype=np.float64)
        with self._lock:
            if self._last is None:
                fault = self.state_fault(measured)
                if fault:
                    raise ValueError(f"not commanding: {fault}")
                self._last = np.clip(measured, self.lower, self.upper)
                self._step = np.zeros_like(self._last)
                return SafeCommand(self._last.copy(), clamped=False, held=action is None, first=True)
            if action is None:
                self.commands_held += 1
                return SafeCommand(self._advance(None), clamped=False, held=True, first=False)
            positions = self._advance(np.asarray(action, dtype=np.float64))
            clamped = not np.allclose(positions, action, rtol=0.0, atol=1e-12)
            if clamped:
                self.commands_clamped += 1
            return SafeCommand(positions, clamped=clamped, held=False, first=False)

    def preview(self, actions: np.ndarray) -> np.ndarray:
        """The commands command() would return for `actions` on the next ticks, (m, n_joints): what a trajectory
        controller may be sent ahead of time. Changes nothing. Raises ValueError before the first command."""
        actions = np.asarray(actions, dtype=np.float64).reshape(-1, len(self.joint_names))
        with self._lock:
            if self._last is None:
                raise ValueError("no command yet: nothing to plan from")
            last, step = self._last, self._step
            try:
                points = [self._advance(action) for action in actions]
            finally:
                self._last, self._step = last, step
        return np.array(points).reshape(len(actions), len(self.joint_names))

    def brake(self) -> np.ndarray | None:
        """The command for a tick without a usable joint state: brake to a stop as on starvation, uncounted.
        None before the first command (nothing may be sent without a state to start from)."""
        with self._lock:
            return None if self._last is None else self._advance(None)

    def stop(self, max_ticks: int) -> np.ndarray:
        """The commands that bring the arm to rest within the acceleration limit, one per tick (m, n_joints), for a
        deliberate stop (deactivation, shutdown). The last one repeats the one before it (at rest), unless braking
        needs more than max_ticks ticks: then the motion ends where the max_ticks-th command left it. Empty before
        the first command; the last command again when already at rest."""
        with self._lock:
            if self._last is None:
                return np.empty((0, len(self.joint_names)))
            points = [self._advance(None)]
            while np.any(self._step != 0.0) and len(points) < max_ticks:
                points.append(self._advance(None))
            self._step = np.zeros_like(self._step)
            return np.array(points)

    def _advance(self, action: np.ndarray | None) -> np.ndarray:
        # Per joint: the step this tick lies within the velocity limit, within the acceleration limit of the
        # previous step, and (toward the target) below the speed from which braking at the acceleration limit
        # still stops on the target. Without a target, brake. Called under the lock with self._last set.
        velocity, change, previous = self.max_step, self._max_step_change, self._step
        lo = np.maximum(-velocity, previous - change)
        hi = np.minimum(velocity, previous + change)
        if action is None:
            step = np.clip(np.zeros_like(previous), lo, hi)
        else:
            error = np.clip(action, self.lower, self.upper) - self._last
            distance = np.abs(error)
            # Braking from step s at `change` per tick covers at most s^2 / (2 change) + s / 2 + change / 8 more;
            # a step of at most min(distance, change) can always stop on the target next tick.
            stoppable = np.maximum(np.sqrt(2.0 * change * distance) - change / 2.0, np.minimum(distance, change))
            hi = np.where(error >= 0, np.minimum(hi, stoppable), hi)
            lo = np.where(error < 0, np.maximum(lo, -stoppable), lo)
            # An empty window means moving too fast toward the target: decelerate as hard as allowed.
            step = np.where(lo <= hi, np.clip(error, lo, np.maximum(lo, hi)), np.where(error >= 0, lo, hi))
        step = np.clip(step, -velocity, velocity)  # only after max_velocity was lowered while moving
        positions = np.clip(self._last + step, self.lower, self.upper)
        self._step = positions - self._last
        self._last = positions
        return positions.copy()

    @property
    def last_command(self) -> np.ndarray | None:
        """The previous command, None before the first one."""
        with self._lock:
            return None if self._last is None else self._last.copy()

    def reset(self) -> None:
        """Start over: the next command is the measured state again, at rest (on activation)."""
        with self._lock:
            self._last = None
            self._step = np.zeros(len(self.joint_names))

    def _bad(self, values: np.ndarray) -> list[str]:
        return [name for name, value in zip(self.joint_names, values, strict=True) if not np.isfinite(value)]


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _per_joint(label: str, values: object, n: int) -> np.ndarray:
    """One float per joint from a sequence of n numbers or one number for all; ValueError naming `label`."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.full(0, np.nan)  # reported just below
    if array.ndim == 0:
        array = np.full(n, float(array))
    if array.shape != (n,) or np.any(np.isnan(array)):
        raise ValueError(f"{label} must have {n} numbers (one per joint) or one for all, got {values!r}")
    return array
