"""Command safety for the executor: chunk validation, joint limits, a maximum step per tick, hold on starvation."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class InvalidChunkError(ValueError):
    """A chunk that must not reach the queue; the message says why."""


@dataclass(frozen=True)
class SafeCommand:
    """The command to send this tick.

    clamped: a joint limit or the maximum step changed the requested action.
    held: there was no action for this tick; the last command is repeated.
    first: the first command since reset(); it equals the measured joint state.
    """

    positions: np.ndarray
    clamped: bool
    held: bool
    first: bool


class CommandSafety:
    """Turns queued actions into commands a position controller may receive.

    - The first command after reset() is the measured joint state, so activation never jumps.
    - Each command is clipped to [lower, upper] and moves at most max_step per joint from the previous command
      (clamped commands are counted); a command outside the limits (the first one, when the arm rests outside)
      walks back into them at max_step per tick instead of jumping.
    - Without an action the previous command is held: never zeros, never a jump.
    Thread-safe (one lock), though the executor calls command() from its control thread only.
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        lower: Sequence[float],
        upper: Sequence[float],
        max_step: Sequence[float],
    ) -> None:
        names = [str(name) for name in joint_names]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"joint_names must be non-empty and unique, got {names}")
        arrays = {}
        for label, values in (("lower limits", lower), ("upper limits", upper), ("max step", max_step)):
            try:
                array = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError):
                array = np.full(0, np.nan)  # reported just below, naming the input
            if array.shape != (len(names),) or np.any(np.isnan(array)):
                raise ValueError(f"{label} must have {len(names)} numbers (one per joint), got {values!r}")
            arrays[label] = array
        self.lower, self.upper, self.max_step = arrays["lower limits"], arrays["upper limits"], arrays["max step"]
        if not (
            np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper)) and np.all(self.lower < self.upper)
        ):
            raise ValueError(f"joint limits must be finite with lower < upper, got {self.lower} and {self.upper}")
        if np.any(self.max_step <= 0):
            raise ValueError(f"max step must be > 0 for every joint, got {self.max_step}")
        self.joint_names = tuple(names)
        self._index = {name: i for i, name in enumerate(names)}
        self._lock = threading.Lock()
        self._last: np.ndarray | None = None
        self.commands_clamped = 0
        self.commands_held = 0

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

    def command(self, action: np.ndarray | None, measured: np.ndarray) -> SafeCommand:
        """The safe command for this tick from the queued action (None on starvation) and the measured state."""
        measured = np.asarray(measured, dtype=np.float64)
        with self._lock:
            if self._last is None:
                self._last = measured.copy()
                return SafeCommand(measured.copy(), clamped=False, held=action is None, first=True)
            if action is None:
                self.commands_held += 1
                return SafeCommand(self._last.copy(), clamped=False, held=True, first=False)
            target = np.clip(action, self.lower, self.upper)
            step = np.clip(target - self._last, -self.max_step, self.max_step)
            positions = self._last + step
            clamped = not np.allclose(positions, action, rtol=0.0, atol=1e-12)
            if clamped:
                self.commands_clamped += 1
            self._last = positions
            return SafeCommand(positions.copy(), clamped=clamped, held=False, first=False)

    @property
    def last_command(self) -> np.ndarray | None:
        """The previous command, None before the first one."""
        with self._lock:
            return None if self._last is None else self._last.copy()

    def reset(self) -> None:
        """Start over: the next command is the measured state again (on activation)."""
        with self._lock:
            self._last = None

    def _bad(self, values: np.ndarray) -> list[str]:
        return [name for name, value in zip(self.joint_names, values, strict=True) if not np.isfinite(value)]
