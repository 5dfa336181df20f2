"""The action queue with threshold, similarity filter, aggregation and latency-aware request timing.

Tick convention (shared with the ROS messages): control ticks t = 0, 1, 2, ... at period dt, counted by calls to
AsyncActionQueue.tick. The observation captured at tick k yields the chunk for ticks k + 1 ... k + n
(first_tick = k + 1). A tick first pops its own action, then decides whether to send the observation of this very
tick; so a chunk requested at tick k never holds an action for a tick that has already been executed at the time
of the request, and actions for ticks that passed while it was computed are dropped on arrival (and counted).

Which ticks pass is the `tick_clock` setting. "action" (the default): a call that holds because the queue is empty
does not use up a tick number (it repeats the tick of the held command), so a chunk that arrives after the queue ran
dry continues from the last executed action, as the reference implementation's action counter and the paper's
synchronous mode (chunk fully executed after the wait) do; the arm stood still meanwhile, so that is where the
chunk's plan picks up. "wall": every call is a tick, also one that holds, so such a chunk loses the actions of the
held ticks and the arm has to catch up (at the step limit). Both are identical while the queue never runs dry.

Every action that enters the queue leaves it in exactly one counted way: executed at its tick, dropped because its
tick had passed when its chunk arrived, blended into the queued action for the same tick, or discarded by
clear(). QueueStatus carries these counters, and `actions_received` equals their sum plus the queue length.

Thread safety: one lock guards all state; tick() (control thread) and add_chunk() / request_failed() (subscription
threads) may be called concurrently. The queue has no clock: the caller passes `now` in seconds, from one clock.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from smolvla.async_inference.aggregation import aggregate
from smolvla.async_inference.config import MAX_IN_FLIGHT, QueueConfig
from smolvla.async_inference.latency import LatencyEstimator, threshold_bound
from smolvla.async_inference.rtc import RTC, SeamMeter, delay_ticks, merge
from smolvla.async_inference.similarity import SimilarityFilter

# Requests remembered after they stop being in flight (timed out), so that a late chunk can still be matched.
_REMEMBERED_REQUESTS = 4 * MAX_IN_FLIGHT

#: Once latencies have been measured, a request unanswered for LOST_AFTER_LATENCIES times the pessimistic latency
#: plus LOST_AFTER_SLACK seconds counts as lost (if that is shorter than request_timeout), so that a request or chunk
#: dropped on the way (a flooded topic, a restarted policy) is re-issued after a time tied to the measured latency.
LOST_AFTER_LATENCIES = 3.0
LOST_AFTER_SLACK = 0.5


@dataclass(frozen=True)
class RequestSpec:
    """A chunk request to send: the observation of tick `observation_tick`, captured at `capture_time`.

    With aggregation "rtc": previous_actions (m, n_joints) are the queued actions for ticks observation_tick + 1 ..
    observation_tick + m (the requested chunk's first m ticks), and delay_ticks the estimated ticks until its chunk
    arrives. Otherwise None and 0: no guidance.
    """

    request_id: int
    observation_tick: int
    capture_time: float
    must_go: bool
    previous_actions: np.ndarray | None = None
    delay_ticks: int = 0


@dataclass(frozen=True)
class TickResult:
    """What one control tick decided.

    action: the queued action for this tick, or None when the queue was empty (hold the last command).
    request: the request to send now, or None.
    queue_length: actions left after this tick's pop (before any request is answered).
    request_skipped: a request was due but the similarity filter skipped it.
    """

    tick: int
    action: np.ndarray | None
    request: RequestSpec | None
    queue_length: int
    threshold: float
    request_skipped: bool


@dataclass(frozen=True)
class ChunkOutcome:
    """Result of offering a chunk to the queue. accepted is False with a reason when it was not used, and `kind`
    says which counter it went to: unmatched, superseded, gated or wrong_rate."""

    accepted: bool
    reason: str = ""
    latency: float | None = None
    dropped_late: int = 0
    blended: int = 0
    kind: str = ""
    seam_jump: float = 0.0
    late_seam: bool = False


@dataclass(frozen=True)
class QueueStatus:
    """Snapshot of the queue's state and counters (the executor publishes it as ExecutorStatus).

    chunks_late: "rtc" chunks that arrived after more ticks than their request's delay_ticks (requests that carried
    previous actions only). seams: accepted chunks that had a seam (a queued or executed action to move), and
    seam_jump_*: their seam jumps (smolvla.async_inference.rtc), the last one, mean and maximum since construction.
    """

    tick: int
    queue_length: int
    chunk_size: int
    control_period: float
    mode: str
    threshold: float
    threshold_min: float
    in_flight: int
    idle_ticks: int
    starvation_episodes: int
    startup_ticks: int
    requests_sent: int
    requests_skipped: int
    requests_timed_out: int
    requests_failed: int
    chunks_received: int
    chunks_superseded: int
    chunks_unmatched: int
    chunks_gated: int
    chunks_wrong_rate: int
    actions_received: int
    actions_executed: int
    actions_dropped_late: int
    actions_blended: int
    actions_discarded: int
    last_latency: float
    latency_estimate: float
    chunks_late: int
    seams: int
    seam_jump_last: float
    seam_jump_mean: float
    seam_jump_max: float


@dataclass
class _Pending:
    observation_tick: int
    sent_time: float
    joint_state: np.ndarray
    delay_ticks: int | None = None  # announced to the policy with previous actions to follow ("rtc" only)


class AsyncActionQueue:
    """The paper's asynchronous action queue (Algorithm 1) as a thread-safe object without clock or thread.

    Usage per control tick: `result = queue.tick(now, joint_state)`; execute result.action (or hold when None);
    send result.request if any. When a chunk arrives: `queue.add_chunk(request_id, first_tick, actions, now)`.
    When the policy reports that a request produced no chunk: `queue.request_failed(request_id, now)`.
    """

    def __init__(self, config: QueueConfig, joint_scales: Sequence[float] | np.ndarray) -> None:
        self.config = config
        self._similarity = SimilarityFilter(joint_scales, config.similarity_epsilon)
        self.n_joints = self._similarity.scales.size
        self._latency = LatencyEstimator(config.latency_window, config.latency_quantile)
        self._lock = threading.Lock()
        self._next_request_id = 1  # increases over the object's life, also across clear()
        self._reset_locked()
        self._reset_counters()

    # ---- control thread -------------------------------------------------------------------------------------

    def tick(self, now: float, joint_state: np.ndarray) -> TickResult:
        """Advance one control tick: pop this tick's action, then maybe request a chunk from this tick's state."""
        state = np.asarray(joint_state, dtype=np.float64)
        if state.shape != (self.n_joints,):
            raise ValueError(f"joint state must have {self.n_joints} values, got shape {state.shape}")
        with self._lock:
            if len(self._queue) or self.config.tick_clock == "wall":
                tick = self._tick
                self._tick += 1
            else:
                tick = self._tick - 1  # "action" clock: holding repeats the tick of the last command
            self._expire_locked(now)
            action = self._pop_locked()
            queue_length = len(self._queue)
            threshold = self._threshold_locked()
            request, skipped = self._maybe_request_locked(tick, now, state, queue_length, threshold)
            return TickResult(tick, action, request, queue_length, threshold, skipped)

    def _pop_locked(self) -> np.ndarray | None:
        # Invariant: a non-empty queue starts at the tick being executed (add_chunk aligns every chunk to it and
        # each tick pops exactly one action), so the head is this tick's action.
        if len(self._queue):
            action = self._queue[0].copy()
            self._queue = self._queue[1:]
            self._last_action = action
            self._ever_executed = True
            self._was_idle = False
            self._counters["actions_executed"] += 1
            return action
        if not self._ever_executed:
            self._counters["startup_ticks"] += 1
        else:
            self._counters["idle_ticks"] += 1
            if not self._was_idle:
                self._counters["starvation_episodes"] += 1
            self._was_idle = True
        return None

    def _maybe_request_locked(
        self, tick: int, now: float, state: np.ndarray, queue_length: int, threshold: float
    ) -> tuple[RequestSpec | None, bool]:
        n = self.config.chunk_size
        if queue_length > threshold * n + 1e-9:
            return None, False
        if len(self._in_flight) >= self.config.max_in_flight or now < self._retry_after:
            return None, False
        must_go = queue_length == 0
        upper = self._latency.upper()
        if upper is not None:
            # The chunk brings actions from tick + 1 + latency_ticks on; the queue covers tick + 1 ... tick + length.
            must_go = must_go or queue_length <= math.ceil(upper / self.config.control_period)
        if not must_go and self._similarity.is_similar(state):
            self._counters["requests_skipped"] += 1
            return None, True
        delay = None  # a chunk is late only against a delay it was guided for
        if self.config.aggregation == RTC:
            estimate = delay_ticks(upper, self.config.control_period)
            request = RequestSpec(self._next_request_id, tick, now, must_go, self._queue.copy(), estimate)
            delay = estimate if queue_length else None
        else:
            request = RequestSpec(self._next_request_id, tick, now, must_go)
        self._next_request_id += 1
        pending = _Pending(tick, now, state.copy(), delay)
        self._in_flight[request.request_id] = pending
        self._remembered[request.request_id] = pending
        while len(self._remembered) > _REMEMBERED_REQUESTS:
            self._remembered.popitem(last=False)
        self._counters["requests_sent"] += 1
        return request, False

    def _expire_locked(self, now: float) -> None:
        timeout = self.config.request_timeout
        upper = self._latency.upper()
        if upper is not None:
            timeout = min(timeout, LOST_AFTER_LATENCIES * upper + LOST_AFTER_SLACK)
        for request_id, pending in list(self._in_flight.items()):
            if now - pending.sent_time > timeout:
                del self._in_flight[request_id]
                self._counters["requests_timed_out"] += 1

    # ---- policy side (any thread) ---------------------------------------------------------------------------

    def add_chunk(self, request_id: int, first_tick: int, actions: np.ndarray, now: float) -> ChunkOutcome:
        """Merge the chunk answering `request_id`; actions[i] is for tick first_tick + i.

        Actions for ticks already executed are dropped. Where the chunk overlaps queued actions they are combined
        with the configured aggregation ("rtc": replaced, a chunk later than its request's delay_ticks ramped in
        over the extra ticks and counted in chunks_late; see smolvla.async_inference.rtc). Queued actions beyond
        the chunk's last tick are kept (only a chunk shorter than the queue's remainder leaves such a tail; dropping
        it would starve the robot sooner). A chunk computed from an older observation than the one the queue
        already holds is not used (superseded). The outcome carries the chunk's seam jump.
        """
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] == 0 or actions.shape[1] != self.n_joints:
            raise ValueError(f"chunk actions must have shape (m >= 1, {self.n_joints}), got {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError("chunk actions contain NaN or infinite values")
        with self._lock:
            pending = self._answered(request_id)
            if pending is None:
                return self._unmatched(request_id)
            latency = now - pending.sent_time
            self._latency.add(latency)
            if first_tick != pending.observation_tick + 1:
                self._counters["chunks_unmatched"] += 1
                return ChunkOutcome(
                    False,
                    f"first_tick {first_tick} does not follow the request's observation tick "
                    f"{pending.observation_tick}",
                    latency,
                    kind="unmatched",
                )
            if pending.observation_tick < self._newest_observation_tick:
                self._counters["chunks_superseded"] += 1
                return ChunkOutcome(
                    False,
                    f"computed from tick {pending.observation_tick}, older than the queued chunk's tick "
                    f"{self._newest_observation_tick}",
                    latency,
                    kind="superseded",
                )
            self._newest_observation_tick = pending.observation_tick
            # The filter compares with observations that produced a chunk: after a failed or lost request the
            # next one is not skipped for resembling an observation the policy never answered.
            self._similarity.remember(pending.joint_state)
            self._counters["chunks_received"] += 1
            self._counters["actions_received"] += actions.shape[0]
            elapsed = max(0, self._tick - first_tick)
            late = min(elapsed, actions.shape[0])
            fresh = actions[late:]
            overlap = min(len(self._queue), len(fresh))
            late_by = 0 if pending.delay_ticks is None else max(0, elapsed - pending.delay_ticks)
            if self.config.aggregation == RTC:
                blended = merge(self._queue[:overlap], fresh[:overlap], late_by)
            else:
                blended = aggregate(self.config.aggregation, self._queue[:overlap], fresh[:overlap])
            tail = self._queue[overlap:] if len(self._queue) > len(fresh) else fresh[overlap:]
            before = self._queue[0] if len(self._queue) else self._last_action
            self._queue = np.concatenate([blended, tail])
            seam = self._seams.record(before, self._queue[0] if len(fresh) else None)
            self._counters["actions_dropped_late"] += late
            self._counters["actions_blended"] += overlap
            self._counters["chunks_late"] += int(late_by > 0)
            return ChunkOutcome(True, "", latency, late, overlap, seam_jump=seam, late_seam=late_by > 0)

    def _answered(self, request_id: int) -> _Pending | None:
        """Forget the request `request_id` (remembered and in flight): the pending entry, or None if unknown."""
        self._in_flight.pop(request_id, None)
        return self._remembered.pop(request_id, None)

    def _unmatched(self, request_id: int) -> ChunkOutcome:
        """Count and describe a chunk for a request that is not (or no longer) one of this run's."""
        self._counters["chunks_unmatched"] += 1
        why = f"request_id {request_id} is not a request of this run or was answered"
        return ChunkOutcome(False, why, kind="unmatched")

    def observed_state(self, request_id: int) -> np.ndarray | None:
        """The joint state sent with `request_id` (a copy), None when the request is unknown or answered."""
        with self._lock:
            pending = self._remembered.get(request_id)
            return None if pending is None else pending.joint_state.copy()

    def refuse_chunk(self, request_id: int, now: float, counter: str, reason: str) -> ChunkOutcome:
        """The chunk answering `request_id` must not be used (counter "gated": absurd, "wrong_rate": spaced at
        another period): count it, free its request and retry after failure_backoff (the policy would most likely
        answer the same way at once). A chunk for an unknown request counts as unmatched."""
        if counter not in ("gated", "wrong_rate"):
            raise ValueError(f"unknown refusal counter {counter!r}")
        with self._lock:
            if self._answered(request_id) is None:
                return self._unmatched(request_id)
            self._counters[f"chunks_{counter}"] += 1
            self._retry_after = now + self.config.failure_backoff
            return ChunkOutcome(False, reason, kind=counter)

    def request_failed(self, request_id: int, now: float) -> bool:
        """The policy answered `request_id` without a chunk: free its slot; if it is the newest request sent,
        retry only after failure_backoff (the policy cannot answer now: a camera is missing, the model failed).

        The failure of an older request (e.g. superseded by a newer one at the policy) frees its slot without any
        back-off: it says nothing about the newer request, which may still be answered. Returns False when the
        request is unknown (not of this run, or already answered).
        """
        with self._lock:
            pending = self._remembered.pop(request_id, None)
            self._in_flight.pop(request_id, None)
            if pending is None:
                return False
            self._counters["requests_failed"] += 1
            if request_id == self._next_request_id - 1:
                self._retry_after = now + self.config.failure_backoff
            return True

    def reconfigure(self, config: QueueConfig) -> None:
        """Change mode, threshold, margin, aggregation or similarity epsilon while running; chunk size, period and
        the request settings must stay (ValueError otherwise). Takes effect at the next tick."""
        fixed = ("chunk_size", "control_period", "max_in_flight", "request_timeout", "failure_backoff")
        fixed += ("latency_window", "latency_quantile", "tick_clock")
        changed = [name for name in fixed if getattr(config, name) != getattr(self.config, name)]
        if changed:
            raise ValueError(f"{', '.join(changed)} cannot change while the queue runs")
        with self._lock:
            self.config = config
            self._similarity.epsilon = config.similarity_epsilon

    # ---- lifecycle and status -------------------------------------------------------------------------------

    def clear(self) -> int:
        """Forget the queue and the requests in flight and restart at tick 0 (on deactivation).

        Chunks answering earlier requests are refused afterwards. Counters and the latency estimate are kept.
        Returns the number of queued actions discarded.
        """
        with self._lock:
            discarded = len(self._queue)
            self._counters["actions_discarded"] += discarded
            self._reset_locked()
            return discarded

    def _reset_locked(self) -> None:
        # Next tick to execute. With the "action" clock the first command (the measured state) is tick 0 and
        # the first action tick 1, so that the observation of the very first (holding) tick is tick 0 either way.
        self._tick = 0 if self.config.tick_clock == "wall" else 1
        self._queue = np.zeros((0, self.n_joints))
        self._in_flight: dict[int, _Pending] = {}
        self._remembered: OrderedDict[int, _Pending] = OrderedDict()
        self._newest_observation_tick = -1
        self._retry_after = -math.inf
        self._ever_executed = False
        self._was_idle = False
        self._last_action: np.ndarray | None = None
        self._similarity.clear()

    def _reset_counters(self) -> None:
        names = [f.name for f in fields(QueueStatus) if f.name not in _NON_COUNTERS]
        self._counters = dict.fromkeys(names, 0)
        self._seams = SeamMeter()

    def _threshold_locked(self) -> float:
        config = self.config
        if config.mode == "sync":
            return 0.0
        if config.mode == "continuous":
            return 1.0
        if config.mode == "async":
            return config.threshold
        upper = self._latency.upper()
        if upper is None:
            return config.threshold
        # One tick more than the pessimistic latency, times the margin: the request goes out while the queue
        # still covers the time until the chunk arrives.
        needed = (1.0 + config.auto_margin) * threshold_bound(upper, config.control_period, config.chunk_size)
        return min(1.0, needed + 1.0 / config.chunk_size)

    def threshold(self) -> float:
        """The threshold g in effect (fixed by the mode, or the automatic g)."""
        with self._lock:
            return self._threshold_locked()

    def queued_actions(self) -> np.ndarray:
        """A copy of the queue, head first: the actions for the next ticks, shape (queue_length, n_joints)."""
        with self._lock:
            return self._queue.copy()

    def status(self) -> QueueStatus:
        """A consistent snapshot of state and counters."""
        with self._lock:
            estimate = self._latency.estimate()
            config = self.config
            return QueueStatus(
                tick=self._tick,
                queue_length=len(self._queue),
                chunk_size=config.chunk_size,
                control_period=config.control_period,
                mode=config.mode,
                threshold=self._threshold_locked(),
                threshold_min=0.0
                if estimate is None
                else threshold_bound(estimate, config.control_period, config.chunk_size),
                in_flight=len(self._in_flight),
                last_latency=self._latency.last or 0.0,
                latency_estimate=estimate or 0.0,
                seams=self._seams.count,
                seam_jump_last=self._seams.last,
                seam_jump_mean=self._seams.mean,
                seam_jump_max=self._seams.largest,
                **self._counters,
            )


_NON_COUNTERS = {
    "tick",
    "queue_length",
    "chunk_size",
    "control_period",
    "mode",
    "threshold",
    "threshold_min",
    "in_flight",
    "last_latency",
    "latency_estimate",
    "seams",
    "seam_jump_last",
    "seam_jump_mean",
    "seam_jump_max",
}
