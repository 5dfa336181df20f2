"""Chunks streamed into a joint trajectory controller as time-parameterised trajectories.

With `output: trajectory` the executor keeps its control tick (queue, chunk requests, command safety, holds) and
sends the controller the plan instead of one position per tick: this tick's command followed by every queued
action, one control period apart (point i at (i + 1) * period from receipt), each exactly the command
CommandSafety would give for it on its tick (joint limits, velocity and acceleration limits: CommandSafety.preview).
The controller interpolates between the points at its own rate and replaces the trajectory it is running whenever a
new one arrives.

A trajectory is sent only when the plan differs from the rest of the one sent last: a chunk was merged into the
queue, a hold replaced motion (starvation, no joint state, deactivation), commanding restarted. Otherwise the
controller keeps executing what it has; after its last point it holds there, as the executor holds its last command
on an empty queue.
"""

from __future__ import annotations

import numpy as np

from smolvla.async_inference.safety import CommandSafety


class TrajectoryStream:
    """Decides, tick by tick, which trajectory (if any) to send to a joint trajectory controller.

    safety: the executor's CommandSafety (its limits plan the points); period: the control period in seconds.
    Not thread-safe: the executor calls it from its control tick only.
    """

    def __init__(self, safety: CommandSafety, period: float) -> None:
        if not period > 0:
            raise ValueError(f"period must be > 0 s, got {period}")
        self.safety = safety
        self.period = float(period)
        self._sent: np.ndarray | None = None
        self._ticks_since_sent = 0

    def plan(self, command: np.ndarray, queued: np.ndarray | None) -> np.ndarray:
        """This tick's command (the safety's latest), then the commands the safety would give for the queued
        actions on the next ticks: shape (1 + m, n_joints)."""
        command = np.asarray(command, dtype=np.float64)[None]
        if queued is None or len(queued) == 0:
            return command
        return np.vstack([command, self.safety.preview(queued)])

    def times(self, count: int) -> np.ndarray:
        """Seconds from receipt of each of `count` points."""
        return self.period * np.arange(1, count + 1)

    def update(self, command: np.ndarray, queued: np.ndarray | None) -> np.ndarray | None:
        """The points to send this tick (see plan), or None when the controller's trajectory already is the plan.

        command: this tick's safe command; queued: the queue after this tick's pop, or None when the tick held
        for want of a joint state (then only the held command is sent: no motion planned on stale observations).
        """
        points = self.plan(command, queued)
        if self._sent is not None:
            self._ticks_since_sent += 1
            # Past its last point the controller holds that point.
            rest = self._sent[min(self._ticks_since_sent, len(self._sent) - 1) :]
            if rest.shape == points.shape and np.allclose(rest, points, rtol=0.0, atol=1e-9):
                return None
        self._sent, self._ticks_since_sent = points, 0
        return points

    def reset(self) -> None:
        """Forget what was sent (on activation, or after a hold sent outside the stream)."""
        self._sent = None
        self._ticks_since_sent = 0
