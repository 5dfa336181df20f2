"""What a chunk-serving node (the policy, the scripted expert) can do right now, for its /diagnostics.

A node is healthy when its requests get chunks, not merely when its inputs arrive: frames that arrive on time but
cannot be decoded, or a model that fails, make every request fail while every input looks fresh. ServingHealth
therefore combines the outcomes of the recent requests with the state of the input streams:

  ERROR  the last computation failed in the model, or the last `failing_after` requests (or more) all got no chunk;
  WARN   an input is missing or older than the maximum sample age, an input refused samples recently (e.g. stamped
         in the future), or the last request got no chunk;
  OK     otherwise ("ready").

Superseded requests are neither successes nor failures: a newer request replaced them. Plain Python, thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

from smolvla.observation import SampleHistory


class Level(IntEnum):
    """Health levels, numbered as diagnostic_msgs/DiagnosticStatus does."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass(frozen=True)
class Health:
    """One diagnostics report: level, a one-line message and key/value details."""

    level: Level
    message: str
    values: tuple[tuple[str, str], ...]


@dataclass
class OutcomeStats:
    """Counters of the requests a node handled and the state of the latest ones."""

    requests: int = 0
    chunks: int = 0
    no_chunk: dict[str, int] = field(default_factory=dict)  # by kind, e.g. "input", "superseded"
    consecutive_failures: int = 0  # requests without a chunk since the last chunk (superseded ones not counted)
    last_no_chunk: str = ""
    model_failing: bool = False  # the latest counted outcome was a failure of the computation itself
    last_model_seconds: float | None = None
    computing: bool = False


class ServingHealth:
    """Request outcomes plus input streams -> Health; see the module docstring.

    kinds: the no-chunk kinds counted (all start at 0); histories: the input streams; failing_after: consecutive
    requests without a chunk that make the node ERROR; rejection_window: seconds a refused input sample keeps the
    node at WARN.
    """

    def __init__(
        self,
        kinds: Iterable[str],
        histories: Sequence[SampleHistory],
        max_sample_age: float,
        *,
        failing_after: int = 3,
        rejection_window: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if failing_after < 1:
            raise ValueError(f"failing_after must be at least 1, got {failing_after}")
        self._histories = tuple(histories)
        self.max_sample_age = max_sample_age
        self.failing_after = failing_after
        self.rejection_window = rejection_window
        self._clock = clock
        self._lock = threading.Lock()
        self._stats = OutcomeStats(no_chunk={kind: 0 for kind in kinds})

    @property
    def stats(self) -> OutcomeStats:
        """A snapshot of the counters."""
        with self._lock:
            return replace(self._stats, no_chunk=dict(self._stats.no_chunk))

    def requested(self) -> None:
        """A request arrived."""
        with self._lock:
            self._stats.requests += 1

    def set_computing(self, computing: bool) -> None:
        """A computation started (True) or ended (False)."""
        with self._lock:
            self._stats.computing = computing

    def chunk(self, model_seconds: float) -> None:
        """A request got its chunk."""
        with self._lock:
            self._stats.chunks += 1
            self._stats.last_model_seconds = model_seconds
            self._stats.consecutive_failures = 0
            self._stats.model_failing = False

    def no_chunk(self, kind: str, reason: str, *, counts_as_failure: bool = True, model_failure: bool = False) -> None:
        """A request got no chunk. counts_as_failure=False for requests that merely gave way (superseded, shutdown);
        model_failure=True when the computation itself failed (not its inputs)."""
        with self._lock:
            self._stats.no_chunk[kind] = self._stats.no_chunk.get(kind, 0) + 1
            self._stats.last_no_chunk = reason
            if counts_as_failure:
                self._stats.consecutive_failures += 1
                self._stats.model_failing = model_failure

    def input_ages(self, now: float | None = None) -> dict[str, float | None]:
        """Seconds since the newest sample of each input (None: nothing received yet)."""
        now = self._clock() if now is None else now
        ages: dict[str, float | None] = {}
        for history in self._histories:
            latest = history.latest()
            ages[history.name] = None if latest is None else now - latest.stamp
        return ages

    def report(self, now: float | None = None, extra: Iterable[tuple[str, str]] = ()) -> Health:
        """The health now, with counters, input ages and refused samples as values (after `extra`)."""
        now = self._clock() if now is None else now
        stats = self.stats
        ages = self.input_ages(now)
        values = [
            *extra,
            ("state", "computing" if stats.computing else "idle"),
            ("requests", str(stats.requests)),
            ("chunks", str(stats.chunks)),
            *((f"no chunk: {kind}", str(count)) for kind, count in stats.no_chunk.items()),
            ("requests without chunk since the last chunk", str(stats.consecutive_failures)),
            ("last model time [s]", "none" if stats.last_model_seconds is None else f"{stats.last_model_seconds:.4f}"),
            ("last request without chunk", stats.last_no_chunk or "none"),
        ]
        recent_rejections = []
        for history in self._histories:
            age = ages[history.name]
            values.append((f"age of {history.name} [s]", "never received" if age is None else f"{age:.3f}"))
            rejected = history.rejected
            values.append(
                (f"samples refused on {history.name}", ", ".join(f"{n} {why}" for why, n in rejected.items()))
            )
            last = history.last_rejection()
            if last is not None and now - last[0] <= self.rejection_window:
                recent_rejections.append(f"{history.name}: {last[1]}")
        values_tuple = tuple(values)
        stale = [name for name, age in ages.items() if age is None or age > self.max_sample_age]
        if stats.model_failing:
            return Health(Level.ERROR, f"model failing: {stats.last_no_chunk}", values_tuple)
        if stats.consecutive_failures >= self.failing_after:
            return Health(
                Level.ERROR,
                f"no chunk for the last {stats.consecutive_failures} requests: {stats.last_no_chunk}",
                values_tuple,
            )
        if stale:
            return Health(Level.WARN, f"stale or missing input: {', '.join(stale)}", values_tuple)
        if recent_rejections:
            return Health(Level.WARN, f"refusing input samples: {'; '.join(recent_rejections)}", values_tuple)
        if stats.consecutive_failures:
            return Health(Level.WARN, f"last request without chunk: {stats.last_no_chunk}", values_tuple)
        return Health(Level.OK, "ready", values_tuple)
