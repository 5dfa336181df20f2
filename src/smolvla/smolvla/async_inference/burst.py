"""Rate limiting of per-message log lines: one line per burst of repeated events, with a count of the rest."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class _Burst:
    last_event: float = -math.inf
    last_logged: float = -math.inf
    suppressed: int = 0


class BurstLog:
    """Decides which of a stream of repeated events (a rejected message, a refused chunk) to log.

    Each kind of event (`kind`, e.g. which check failed) is limited on its own, so a sender alternating two kinds
    gets no more lines than one sending each alone: the first event of a kind after `quiet` seconds without one is
    logged, and within a burst at most one line every `interval` seconds. report() returns how many events of that
    kind were suppressed since its last logged one (so the line can say so), or None when this event is not to be
    logged. Not thread-safe: one per callback (callbacks of one subscription do not run concurrently).
    """

    def __init__(self, quiet: float = 2.0, interval: float = 10.0) -> None:
        self.quiet = quiet
        self.interval = interval
        self._bursts: dict[str, _Burst] = {}

    def report(self, now: float, kind: str = "") -> int | None:
        """An event at `now` seconds: the number suppressed since the last logged one if it is to be logged."""
        burst = self._bursts.setdefault(kind, _Burst())
        new_burst = now - burst.last_event > self.quiet
        burst.last_event = now
        if new_burst or now - burst.last_logged >= self.interval:
            suppressed, burst.suppressed = burst.suppressed, 0
            burst.last_logged = now
            return suppressed
        burst.suppressed += 1
        return None
