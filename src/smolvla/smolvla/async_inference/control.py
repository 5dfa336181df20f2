"""One control tick of the executor, free of ROS: joint-state freshness, the action queue and command safety.

The executor node feeds joint states in with ControlLoop.update_joint_state() (subscription thread) and calls
ControlLoop.step() once per control tick (timer); it only publishes what step() returns.

A tick acts only on a fresh joint state. While none has arrived yet, or the latest one is older than the timeout
(driver crashed, cable pulled, topic remapped wrongly), the tick holds: the command is the last command again (none
before the first command), the queue does not advance (no action is used up, whatever the tick clock) and no chunk
is requested, since a request would carry an observation that no longer describes the arm. When fresh states come
back the queue continues where it stopped; CommandSafety limits the step from the held command as on every tick,
unless the arm is then more than max_step away from the held command (it moved while unobserved, e.g. a driver
restarted with torque off): commanding then restarts from the measured state, as on activation, instead of pulling
the arm back at the servos' own speed.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from smolvla.async_inference.core import AsyncActionQueue, RequestSpec, TickResult
from smolvla.async_inference.safety import CommandSafety


@dataclass(frozen=True)
class JointStateCheck:
    """The latest joint state as seen at one instant.

    positions: the latest joint state in joint_names order, None when none has arrived.
    age: seconds since it arrived (infinite when none has).
    fresh: positions is not None and age <= the timeout: a tick may act on it.
    """

    positions: np.ndarray | None
    age: float
    fresh: bool


class JointStateMonitor:
    """The latest measured joint state and its arrival time; says whether it is fresh enough to act on.

    Ages are measured from the arrival time on the caller's clock rather than from a header stamp, so that a
    robot computer whose clock differs cannot make states look fresh or stale. A state that seems to arrive in
    the future (the caller's clock stepped back) counts as fresh with age 0.
    Thread-safe: update() may run on a subscription thread while check() runs on the control thread.
    """

    def __init__(self, timeout: float) -> None:
        number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
        if not (number and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"joint_state_timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._positions: np.ndarray | None = None
        self._time = -math.inf

    def update(self, positions: np.ndarray, now: float) -> None:
        """Record a joint state (in joint_names order) received at `now` seconds."""
        positions = np.array(positions, dtype=np.float64)  # a copy: the caller may reuse its buffer
        with self._lock:
            self._positions = positions
            self._time = now

    def check(self, now: float) -> JointStateCheck:
        """The latest joint state, its age at `now` and whether it is fresh. Changes nothing."""
        with self._lock:
            positions, arrived = self._positions, self._time
        if positions is None:
            return JointStateCheck(None, math.inf, False)
        age = max(0.0, now - arrived)
        return JointStateCheck(positions.copy(), age, age <= self.timeout)


@dataclass(frozen=True)
class ControlTick:
    """What one control tick decided; the node publishes `command` and `request`.

    command: positions to send, or None when there is nothing to send (no command yet, and no fresh state to
        start from).
    request: the chunk request to send, or None.
    state: the joint-state check this tick acted on.
    queue: the queue's TickResult; None when the tick held for want of a fresh joint state (the queue did not
        advance).
    resumed_after: on the first tick acting on a fresh state after ticks held on a stale one, how many ticks held;
        0 otherwise (also after the wait for the very first state, which is no outage).
    restarted: on that tick, the arm was more than max_step from the held command, so the command restarted from
        the measured state.
    """

    command: np.ndarray | None
    request: RequestSpec | None
    state: JointStateCheck
    queue: TickResult | None
    resumed_after: int
    restarted: bool = False

    @property
    def held_without_state(self) -> bool:
        """The tick held because no fresh joint state was available."""
        return self.queue is None


class ControlLoop:
    """The executor's control tick: joint-state freshness, then the action queue, then command safety.

    step() is called from one thread (the control timer); update_joint_state() from any thread.
    ticks_without_state counts ticks held because no joint state had arrived yet or the latest was older than
    the timeout: one counter, since both mean the same to the arm (held, nothing consumed, nothing requested).
    """

    def __init__(self, queue: AsyncActionQueue, safety: CommandSafety, joint_state_timeout: float) -> None:
        if queue.n_joints != len(safety.joint_names):
            raise ValueError(f"queue has {queue.n_joints} joints but safety {len(safety.joint_names)}")
        self.queue = queue
        self.safety = safety
        self.joint_states = JointStateMonitor(joint_state_timeout)
        self.ticks_without_state = 0
        self._stale_run = 0  # consecutive ticks held on a stale (not a missing) state

    def update_joint_state(self, positions: np.ndarray, now: float) -> None:
        """A joint state in joint_names order arrived at `now` seconds."""
        self.joint_states.update(positions, now)

    def step(self, now: float) -> ControlTick:
        """Run one control tick at `now` seconds."""
        state = self.joint_states.check(now)
        if not state.fresh:
            self.ticks_without_state += 1
            if state.positions is not None:
                self._stale_run += 1
            # Not CommandSafety.command(None, ...): that would turn a stale measurement into the first command.
            return ControlTick(self.safety.last_command, None, state, None, 0)
        resumed, self._stale_run = self._stale_run, 0
        held = self.safety.last_command
        moved_away = held is not None and bool(np.any(np.abs(state.positions - held) > self.safety.max_step))
        restart = bool(resumed) and moved_away
        if restart:
            self.safety.reset()
        result = self.queue.tick(now, state.positions)
        command = self.safety.command(result.action, state.positions)
        return ControlTick(command.positions, result.request, state, result, resumed, restart)

    def reset(self) -> int:
        """Start over (on activation): empty queue, next command = the measured state. Returns actions discarded."""
        discarded = self.queue.clear()
        self.safety.reset()
        self._stale_run = 0
        return discarded
