"""One control tick of the executor, free of ROS: joint-state freshness, the action queue and command safety.

The executor node feeds joint states in with ControlLoop.update_joint_state() (subscription thread) and calls
ControlLoop.step() once per control tick (timer); it only publishes what step() returns.

A tick acts only on a fresh joint state within the joint limits. While none has arrived yet, or the latest one is
older than the timeout (driver crashed, cable pulled, topic remapped wrongly) or outside the limits, the tick holds:
the command brakes to a stop from the last command (none before the first command), the queue does not advance (no
action is used up, whatever the tick clock) and no chunk is requested, since a request would carry an observation
that no longer describes the arm. When usable states come back near the held command the queue continues where it
stopped, within the velocity and acceleration limits; see ControlLoop for a state that comes back far from it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from smolvla.async_inference.core import AsyncActionQueue, ChunkOutcome, RequestSpec, TickResult
from smolvla.async_inference.gate import ChunkGate
from smolvla.async_inference.resample import resample_chunk
from smolvla.async_inference.safety import CommandSafety, InvalidChunkError

#: A chunk may hold at most this many times chunk_size actions (a bound on the work one message can cause).
MAX_CHUNK_FACTOR = 4


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

    command: positions to send, or None when there is nothing to send (no command yet, and no usable state to
        start from).
    request: the chunk request to send, or None.
    state: the joint-state check this tick acted on.
    queue: the queue's TickResult; None when the tick held for want of a usable joint state (the queue did not
        advance).
    resumed_after: on the first tick acting on a fresh state after ticks held on a stale one, how many ticks held;
        0 otherwise (also after the wait for the very first state, which is no outage).
    fault: why the fresh joint state was not acted on ("" when it was): outside the joint limits, or, after held
        ticks, too far from the held command (see ControlLoop).
    fault_kind: which fault at which joints ("limits: gripper", "resume: shoulder_pan"), "" without a fault: a log
        can limit its lines per kind and still report a new fault at once.
    """

    command: np.ndarray | None
    request: RequestSpec | None
    state: JointStateCheck
    queue: TickResult | None
    resumed_after: int
    fault: str = ""
    fault_kind: str = ""

    @property
    def held_without_state(self) -> bool:
        """The tick held because no usable joint state was available (none, stale or a fault)."""
        return self.queue is None


class ControlLoop:
    """The executor's control tick: joint-state freshness and plausibility, then the action queue, then command
    safety; and the way in for chunks: the rate check, the gate on absurd chunks, then the queue.

    A tick acts only on a fresh joint state within the joint limits (CommandSafety.state_fault()). After ticks held
    for want of such a state, it also has to lie within `resume_tolerance` radians (every joint) of the state the
    last acting tick saw or of the held command: the queue then continues from the held command within the velocity
    and acceleration limits, so the command never jumps. A state further away (the arm moved while unobserved, or
    the state is spoofed) is a fault: the tick keeps holding until such a state arrives or the node is re-activated
    (reset()), which restarts from the measured state. Each tick that holds on a fault counts in `joint_state_faults`;
    `fault` is the latest tick's reason ("" when it acted).

    step() is called from one thread (the control timer); update_joint_state() and offer_chunk() from any thread.
    ticks_without_state counts ticks held because no joint state had arrived yet or the latest was older than
    the timeout: one counter, since both mean the same to the arm (held, nothing consumed, nothing requested).
    """

    def __init__(
        self,
        queue: AsyncActionQueue,
        safety: CommandSafety,
        joint_state_timeout: float,
        gate: ChunkGate | None = None,
        resume_tolerance: float = 0.2,
        resample: bool = False,
    ) -> None:
        if queue.n_joints != len(safety.joint_names):
            raise ValueError(f"queue has {queue.n_joints} joints but safety {len(safety.joint_names)}")
        if abs(queue.config.control_period - safety.control_period) > 1e-12:
            raise ValueError("queue and safety must use the same control period")
        if not (math.isfinite(resume_tolerance) and resume_tolerance > 0):
            raise ValueError(f"resume_tolerance must be > 0 radians, got {resume_tolerance!r}")
        self.queue = queue
        self.safety = safety
        self.gate = gate
        self.resample = resample
        self.resume_tolerance = float(resume_tolerance)
        self.joint_states = JointStateMonitor(joint_state_timeout)
        self.ticks_without_state = 0
        self.joint_state_faults = 0
        self.fault = ""  # the latest tick's ControlTick.fault
        self._stale_run = 0  # consecutive ticks held on a stale (not a missing) state
        self._interrupted = False  # ticks held since the last command that acted on a state
        self._last_seen: np.ndarray | None = None  # the state the last acting tick acted on

    def update_joint_state(self, positions: np.ndarray, now: float) -> None:
        """A joint state in joint_names order arrived at `now` seconds."""
        self.joint_states.update(positions, now)

    def step(self, now: float) -> ControlTick:
        """Run one control tick at `now` seconds."""
        state = self.joint_states.check(now)
        self.fault = ""
        if not state.fresh:
            self.ticks_without_state += 1
            if state.positions is not None:
                self._stale_run += 1
            self._interrupted = self._interrupted or self.safety.last_command is not None
            return ControlTick(self.safety.brake(), None, state, None, 0)
        fault = self.safety.state_fault(state.positions)
        outside = [self.safety.joint_names[i] for i in self.safety.joints_outside(state.positions)]
        kind = f"limits: {', '.join(outside)}" if fault else ""
        held = self.safety.last_command
        if not fault and self._interrupted and held is not None and self._last_seen is not None:
            # Where the arm was last seen acting, or where it was held: a gripper squeezing an object or a joint
            # under load rests away from its command, and braking moves the command on a little.
            error = np.minimum(np.abs(state.positions - self._last_seen), np.abs(state.positions - held))
            if np.any(error > self.resume_tolerance):
                joint = int(np.argmax(error))
                kind = f"resume: {self.safety.joint_names[joint]}"
                fault = (
                    f"after held ticks the arm is {error[joint]:.3f} rad from where it was last seen and from the "
                    f"held command at {self.safety.joint_names[joint]} (resume_tolerance {self.resume_tolerance:g} "
                    "rad): it moved while unobserved or the joint state is wrong; holding until it is back or the "
                    "node is re-activated"
                )
        if fault:
            self.fault = fault
            self.joint_state_faults += 1
            self._interrupted = self._interrupted or held is not None
            return ControlTick(self.safety.brake(), None, state, None, 0, fault, kind)
        resumed, self._stale_run, self._interrupted = self._stale_run, 0, False
        self._last_seen = state.positions
        result = self.queue.tick(now, state.positions)
        command = self.safety.command(result.action, state.positions)
        return ControlTick(command.positions, result.request, state, result, resumed)

    def check_chunk_length(self, length: int) -> None:
        """Raises InvalidChunkError for a chunk of more than MAX_CHUNK_FACTOR times the chunk size: callable before
        a message is converted, so that a huge chunk costs the control loop no conversion time."""
        if length > MAX_CHUNK_FACTOR * self.queue.config.chunk_size:
            raise InvalidChunkError(
                f"chunk holds {length} actions, more than {MAX_CHUNK_FACTOR} x chunk_size "
                f"({self.queue.config.chunk_size})"
            )

    def offer_chunk(
        self, request_id: int, first_tick: int, actions: np.ndarray, control_period: float, now: float
    ) -> ChunkOutcome:
        """A validated chunk (joint_names order) spaced `control_period` seconds arrived at `now`: check its rate
        (refused when it differs from the loop's, unless `resample`: then resampled to it, see resample_chunk),
        then the gate, then merge it into the queue. A refused chunk frees its request (retried after the
        failure back-off) and is counted in the queue's status. Raises InvalidChunkError for a chunk longer than
        MAX_CHUNK_FACTOR times the chunk size."""
        self.check_chunk_length(len(actions))
        period = self.queue.config.control_period
        if abs(control_period - period) > 1e-6 * max(period, control_period) + 1e-9:
            if not self.resample:
                why = (
                    f"its actions are {control_period:.6f} s apart but the control period is {period:.6f} s "
                    f"({1.0 / period:g} Hz): it would play at the wrong speed (set control_rate to the policy's "
                    "rate, or resample_chunks)"
                )
                return self.queue.refuse_chunk(request_id, now, "wrong_rate", why)
            actions = resample_chunk(actions, control_period, period)
        if self.gate is not None:
            why = self.gate.check(actions, self.queue.observed_state(request_id))
            if why:
                return self.queue.refuse_chunk(request_id, now, "gated", why)
        return self.queue.add_chunk(request_id, first_tick, actions, now)

    def reset(self) -> int:
        """Start over (on activation): empty queue, next command = the measured state. Returns actions discarded."""
        discarded = self.queue.clear()
        self.safety.reset()
        self._stale_run = 0
        self._interrupted = False
        self._last_seen = None
        return discarded
