"""Rate limiting of per-message log lines: one line per burst of repeated events, with a count of the rest."""

from __future__ import annotations

import math


class BurstLog:
    """Decides which of a stream of repeated events (a rejected message, a refused chunk) to log.

    The first event after `quiet` seconds without any is logged, and so is the first of another kind (`kind`, e.g.
    which check failed); within a burst, at most one line every `interval` seconds. report() returns how many
    events were suppressed since the last logged one (so the line can say so), or None when this event is not to be
    logged. Not thread-safe: one per callback (callbacks of one subscription do not run concurrently).
    """

    def __init__(self, quiet: float = 2.0, interval: float = 10.0) -> None:
        self.quiet = quiet
        self.interval = interval
        self._last_event = -math.inf
        self._last_logged = -math.inf
        self._suppressed = 0
        self._kind = ""

    def report(self, now: float, kind: str = "") -> int | None:
        """An event at `now` seconds: the number suppressed since the last logged one if it is to be logged."""
        new_burst = now - self._last_event > self.quiet or kind != self._kind
        self._last_event, self._kind = now, kind
        if new_burst or now - self._last_logged >= self.interval:
            suppressed, self._suppressed = self._suppressed, 0
            self._last_logged = now
            return suppressed
        self._suppressed += 1
        return None
