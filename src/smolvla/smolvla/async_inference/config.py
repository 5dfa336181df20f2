"""Configuration of the asynchronous action queue, validated once at construction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from smolvla.async_inference.aggregation import AGGREGATIONS
from smolvla.async_inference.rtc import RTC

#: Execution modes. sync: g = 0 (request only when the queue is empty, the robot idles during inference);
#: async: the configured threshold (paper default 0.7); continuous: g = 1 (request whenever nothing is in flight);
#: auto: g follows the measured latency, above the anti-starvation bound g_min with a margin.
MODES = ("sync", "async", "continuous", "auto")

#: Most requests that may be unanswered at once (the queue remembers 4 times as many for late chunks).
MAX_IN_FLIGHT = 16

#: Values of QueueConfig.aggregation: the aggregation functions, and "rtc" (real-time chunking,
#: smolvla.async_inference.rtc: requests carry the queued actions, the arriving chunk replaces them).
AGGREGATION_NAMES = (*AGGREGATIONS, RTC)

#: Which control ticks advance the tick counter (see smolvla.async_inference.core): "wall" every tick, "action" only
#: ticks that execute an action (holding on an empty queue does not use up the chunk's actions).
TICK_CLOCKS = ("wall", "action")


@dataclass(frozen=True)
class QueueConfig:
    """Parameters of AsyncActionQueue.

    chunk_size: n, the number of actions a chunk holds (the threshold is relative to it).
    control_period: dt in seconds.
    mode: one of MODES.
    threshold: g for mode "async"; the starting g for mode "auto" until a latency has been measured.
    auto_margin: relative margin of the automatic g over the latency bound (0.2 = 20 % more queue than needed).
    aggregation: how overlapping actions of a new chunk and the queue are combined, one of AGGREGATION_NAMES.
    similarity_epsilon: skip a (non must-go) request when the normalised joint state moved less than this since the
        last observation whose chunk was used; 0 disables the filter.
    max_in_flight: requests sent and not yet answered, at most.
    request_timeout: seconds after which an unanswered request stops counting as in flight (a lost request never
        stalls the robot; a late chunk for it is still used if it is not older than what the queue holds). Once
        latencies are measured, a shorter time tied to them applies (see core.LOST_AFTER_LATENCIES).
    failure_backoff: seconds to wait before requesting again after the policy reported that the newest request
        failed (not after the failure of an older, e.g. superseded, one).
    latency_window: number of recent latencies the estimate is computed from.
    latency_quantile: quantile of that window used where a pessimistic latency is needed (must-go, automatic g).
    tick_clock: one of TICK_CLOCKS.
    """

    chunk_size: int = 50
    control_period: float = 1.0 / 30.0
    mode: str = "async"
    threshold: float = 0.7
    auto_margin: float = 0.2
    aggregation: str = "latest_only"
    similarity_epsilon: float = 0.01
    max_in_flight: int = 1
    request_timeout: float = 10.0
    failure_backoff: float = 0.2
    latency_window: int = 20
    latency_quantile: float = 0.9
    tick_clock: str = "action"

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            problems.append(f"chunk_size must be a positive integer, got {self.chunk_size!r}")
        if not (math.isfinite(self.control_period) and self.control_period > 0):
            problems.append(f"control_period must be > 0 seconds, got {self.control_period!r}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0.0 <= self.threshold <= 1.0:
            problems.append(f"threshold must be in [0, 1], got {self.threshold!r}")
        if not (math.isfinite(self.auto_margin) and self.auto_margin >= 0):
            problems.append(f"auto_margin must be >= 0, got {self.auto_margin!r}")
        if self.aggregation not in AGGREGATION_NAMES:
            problems.append(f"aggregation must be one of {', '.join(AGGREGATION_NAMES)}, got {self.aggregation!r}")
        if not (math.isfinite(self.similarity_epsilon) and self.similarity_epsilon >= 0):
            problems.append(f"similarity_epsilon must be >= 0, got {self.similarity_epsilon!r}")
        if not isinstance(self.max_in_flight, int) or not 1 <= self.max_in_flight <= MAX_IN_FLIGHT:
            problems.append(f"max_in_flight must be an integer in [1, {MAX_IN_FLIGHT}], got {self.max_in_flight!r}")
        if not self.request_timeout > 0:
            problems.append(f"request_timeout must be > 0 seconds, got {self.request_timeout!r}")
        if not self.failure_backoff >= 0:
            problems.append(f"failure_backoff must be >= 0 seconds, got {self.failure_backoff!r}")
        if not isinstance(self.latency_window, int) or self.latency_window < 1:
            problems.append(f"latency_window must be a positive integer, got {self.latency_window!r}")
        if not 0.5 <= self.latency_quantile <= 1.0:
            problems.append(f"latency_quantile must be in [0.5, 1], got {self.latency_quantile!r}")
        if self.tick_clock not in TICK_CLOCKS:
            problems.append(f"tick_clock must be one of {', '.join(TICK_CLOCKS)}, got {self.tick_clock!r}")
        if problems:
            raise ValueError("invalid queue configuration: " + "; ".join(problems))
