"""Assemble a policy observation from asynchronous input streams at a capture time, and say why when one cannot be.

Each input (a camera, the joint states) is a stream of stamped samples arriving at its own rate. For a chunk request
with capture time t, every stream contributes its latest sample stamped at or before t (never a later one: the
executor captured its tick at t, a later frame would leak the future into the observation) and no older than the
maximum sample age. A stream with no such sample makes the request fail with a reason naming the stream and saying
what was wrong, so the policy answers with a status instead of a chunk computed from stale inputs.
Plain Python, thread-safe: ROS callbacks add samples while the request handler selects.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, NoReturn, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Sample(Generic[T]):
    """One sample of a stream: its own time stamp in seconds and the value (e.g. an undecoded image message)."""

    stamp: float
    value: T


class RejectedSampleError(ValueError):
    """A sample SampleHistory.add() did not keep: stamped in the future beyond the tolerance, before the kept span,
    or not a finite time."""


class SampleHistory(Generic[T]):
    """The samples of one input stream from the last `span` seconds, ordered by stamp.

    A time span rather than a count, so that what a request can find does not depend on the sensor rate: a request
    whose capture time lies up to `span` seconds before the newest sample still finds its sample, whether the stream
    runs at 10 Hz or 1 kHz. The span is measured back from the newest kept stamp, not from the local clock, so a
    sensor whose clock runs behind keeps working; a sample stamped more than `future_tolerance` seconds after the
    local clock is refused instead (counted in `rejected`), so one bad stamp can never push the real samples out.
    `max_samples` bounds memory under floods: beyond it the oldest samples go, which shortens the span only at rates
    above max_samples / span.
    """

    def __init__(
        self,
        name: str,
        span: float,
        *,
        future_tolerance: float = 0.5,
        max_samples: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (math.isfinite(span) and span > 0):
            raise ValueError(f"span must be a positive number of seconds, got {span}")
        if not (math.isfinite(future_tolerance) and future_tolerance >= 0):
            raise ValueError(f"future_tolerance must be >= 0 seconds, got {future_tolerance}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, got {max_samples}")
        self.name = name
        self.span = span
        self.future_tolerance = future_tolerance
        self.max_samples = max_samples
        self._clock = clock
        self._lock = threading.Lock()
        self._stamps: list[float] = []
        self._samples: list[Sample[T]] = []
        self._rejected = {"future": 0, "too old": 0, "not finite": 0}
        self._last_rejection: tuple[float, str] | None = None

    def add(self, stamp: float, value: T) -> None:
        """Insert a sample in stamp order (a sample with an already present stamp replaces it) and forget those more
        than `span` seconds older than the newest. Raises RejectedSampleError, and counts it, for a stamp that is not
        finite, lies more than future_tolerance seconds ahead of the clock, or before the kept span."""
        with self._lock:
            now = self._clock()
            if not math.isfinite(stamp):
                self._reject(now, "not finite", f"sample stamp must be finite, got {stamp}")
            if stamp - now > self.future_tolerance:
                self._reject(
                    now,
                    "future",
                    f"sample stamped {stamp - now:.3f} s in the future (tolerance {self.future_tolerance:.3f} s; "
                    f"clocks out of sync?)",
                )
            if self._stamps and stamp < self._stamps[-1] - self.span:
                self._reject(
                    now,
                    "too old",
                    f"sample stamped {self._stamps[-1] - stamp:.3f} s before the newest one, outside the kept span "
                    f"of {self.span:.3f} s",
                )
            index = bisect.bisect_left(self._stamps, stamp)
            sample = Sample(stamp, value)
            if index < len(self._stamps) and self._stamps[index] == stamp:
                self._samples[index] = sample
            else:
                self._stamps.insert(index, stamp)
                self._samples.insert(index, sample)
            expired = max(
                bisect.bisect_left(self._stamps, self._stamps[-1] - self.span), len(self._stamps) - self.max_samples
            )
            if expired > 0:
                del self._stamps[:expired]
                del self._samples[:expired]

    def _reject(self, now: float, reason: str, message: str) -> NoReturn:
        self._rejected[reason] += 1
        self._last_rejection = (now, message)
        raise RejectedSampleError(f"{self.name}: {message}")

    @property
    def rejected(self) -> dict[str, int]:
        """Samples refused so far, by reason: "future", "too old", "not finite"."""
        with self._lock:
            return dict(self._rejected)

    def last_rejection(self) -> tuple[float, str] | None:
        """(clock time, reason) of the most recent refused sample, or None."""
        with self._lock:
            return self._last_rejection

    def latest(self) -> Sample[T] | None:
        """The sample with the newest stamp, or None before the first one."""
        with self._lock:
            return self._samples[-1] if self._samples else None

    def at_or_before(self, time: float) -> Sample[T] | None:
        """The newest sample stamped at or before `time`, or None if every kept sample is later (or none is kept)."""
        with self._lock:
            index = bisect.bisect_right(self._stamps, time)
            return self._samples[index - 1] if index else None

    def oldest_stamp(self) -> float | None:
        """Stamp of the oldest kept sample."""
        with self._lock:
            return self._stamps[0] if self._stamps else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._stamps)


@dataclass(frozen=True)
class InputProblem:
    """Why one input stream cannot contribute to an observation."""

    stream: str
    reason: str

    def __str__(self) -> str:
        return f"{self.stream}: {self.reason}"


@dataclass(frozen=True)
class Selection(Generic[T]):
    """The samples chosen for one capture time, by stream name, and the problems of the streams without one."""

    capture_time: float
    samples: dict[str, Sample[T]]
    problems: tuple[InputProblem, ...]

    @property
    def ok(self) -> bool:
        """True when every stream contributed a sample."""
        return not self.problems

    def describe(self) -> str:
        """The problems as one line, e.g. for a status message ("" when ok)."""
        return "; ".join(str(problem) for problem in self.problems)


def select_samples(histories: Sequence[SampleHistory[T]], capture_time: float, max_age: float) -> Selection[T]:
    """For each history, the newest sample stamped at or before capture_time and at most max_age seconds older.

    Streams without one are reported in Selection.problems with the reason: nothing received yet, every kept
    sample is later than the capture time, or the newest usable sample is too old.
    """
    samples: dict[str, Sample[T]] = {}
    problems: list[InputProblem] = []
    for history in histories:
        sample = history.at_or_before(capture_time)
        if sample is None:
            oldest = history.oldest_stamp()
            if oldest is None:
                problems.append(InputProblem(history.name, "no sample received yet"))
            else:
                newest = history.latest()
                if newest is not None and newest.stamp - oldest >= 0.9 * history.span:
                    cause = f"the request arrived more than the kept {history.span:.3f} s late, or clocks are off"
                else:
                    cause = "the stream has no sample that early yet, or clocks are out of sync"
                problems.append(
                    InputProblem(
                        history.name,
                        f"no sample at or before the capture time (the oldest kept one is "
                        f"{oldest - capture_time:.3f} s later; {cause})",
                    )
                )
            continue
        age = capture_time - sample.stamp
        if age > max_age:
            problems.append(
                InputProblem(
                    history.name,
                    f"newest sample at or before the capture time is {age:.3f} s old (maximum age {max_age:.3f} s)",
                )
            )
            continue
        samples[history.name] = sample
    return Selection(capture_time, samples, tuple(problems))


def order_joint_positions(
    names: Sequence[str], positions: Sequence[float] | np.ndarray, joint_order: Sequence[str]
) -> np.ndarray:
    """Positions from a joint-state message (names, positions in any order, possibly more joints) in joint_order.

    Raises ValueError when the lengths differ, a joint of joint_order is missing, a name repeats, or a needed
    position is not finite.
    """
    if len(names) != len(positions):
        raise ValueError(f"joint state has {len(names)} names but {len(positions)} positions")
    index = {}
    for i, name in enumerate(names):
        if name in index:
            raise ValueError(f"joint state names {name!r} twice")
        index[name] = i
    missing = [name for name in joint_order if name not in index]
    if missing:
        raise ValueError(f"joint state lacks {', '.join(missing)} (it has {', '.join(names) or 'no joints'})")
    values = np.array([positions[index[name]] for name in joint_order], dtype=np.float64)
    bad = [name for name, value in zip(joint_order, values, strict=True) if not math.isfinite(value)]
    if bad:
        raise ValueError(f"joint state has non-finite positions for {', '.join(bad)}")
    return values


class RateLimiter:
    """Decides whether a repeated message may be logged: at most once per `interval` seconds per key.

    allow() also returns how many messages for the key were suppressed since the last allowed one, so the log can
    say "(12 similar suppressed)".
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def allow(self, key: Hashable, now: float) -> tuple[bool, int]:
        """(True, suppressed count) when a message for key may be logged at time now, else (False, 0)."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False, 0
            self._last[key] = now
            return True, self._suppressed.pop(key, 0)
