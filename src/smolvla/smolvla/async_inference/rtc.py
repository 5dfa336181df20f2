"""The executor's side of real-time chunking (RTC; Black, Galliker, Levine 2025), and seam measurement.

With aggregation "rtc" a chunk request carries the actions still queued (aligned to the ticks of the requested
chunk) and the estimated delay d in ticks; the policy samples the chunk guided to reproduce the first d of them
(they are executed while it computes) and to stay close to the rest (smolvla.policy.rtc). The arriving chunk then
replaces the queued actions from the tick it arrives at: on time or early, its actions for those ticks were
frozen to the queued ones, so the switch is seamless. A chunk that arrives after more than d ticks was only softly
pulled toward the queued action of its first tick to execute; it is blended into the queued plan with a linear
ramp over as many ticks as it is late, then replaces it, and is counted as late.

The seam of every accepted chunk (any aggregation) is how far it moves the command of the next tick: the largest
per-joint difference between the next action after the merge and before it (the queued action for that tick, or
the last executed action when the queue was empty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smolvla.async_inference.aggregation import ramp

#: The aggregation name that selects real-time chunking (QueueConfig.aggregation).
RTC = "rtc"


def delay_ticks(latency_upper: float | None, control_period: float) -> int:
    """Ticks that pass before a chunk requested now arrives, from a pessimistic latency (seconds); 0 unknown.

    The latency is a high quantile of the recent request-to-chunk latencies (LatencyEstimator.upper), so the estimate
    follows the latency down as well as up; a running maximum would keep a warm-up outlier forever.
    """
    if latency_upper is None:
        return 0
    return math.ceil(latency_upper / control_period - 1e-9)


def merge(queued: np.ndarray, new: np.ndarray, late_by: int) -> np.ndarray:
    """The actions to keep where a chunk overlaps the queue (both (m, n_joints), index 0 = the next tick).

    late_by: ticks the chunk arrived after its request's estimated delay (0 when on time or early): the new chunk
    replaces the queued actions, except that a late one is ramped in over its first late_by ticks.
    """
    if queued.shape != new.shape:
        raise ValueError(f"overlapping actions must have one shape, got {queued.shape} and {new.shape}")
    if late_by < 0:
        raise ValueError(f"late_by must be >= 0, got {late_by}")
    merged = new.copy()
    blend = min(late_by, len(new))
    if blend:
        # The ramp's weight of the new chunk is (i + 1) / (blend + 1) at tick i: after the ramp it is the chunk alone.
        merged[:blend] = ramp(queued[:blend], new[:blend])
    return merged


@dataclass
class SeamMeter:
    """Seam jumps of accepted chunks: the last one, their mean and their maximum."""

    count: int = 0
    last: float = 0.0
    total: float = 0.0
    largest: float = 0.0

    def record(self, before: np.ndarray | None, after: np.ndarray | None) -> float:
        """Record one chunk's seam: the next command before and after it (None: there is none, no seam).

        Returns the jump (0 without a seam)."""
        if before is None or after is None:
            return 0.0
        jump = float(np.max(np.abs(np.asarray(after) - np.asarray(before))))
        self.count += 1
        self.last = jump
        self.total += jump
        self.largest = max(self.largest, jump)
        return jump

    @property
    def mean(self) -> float:
        """Mean seam jump (0 before the first seam)."""
        return self.total / self.count if self.count else 0.0
