"""The gate on absurd chunks: a chunk that cannot be right never reaches the action queue.

A valid chunk (right joints, finite values) can still be absurd: a checkpoint trained in degrees or in LeRobot's
-100..100 range, run as if it spoke radians, asks for positions tens of radians away. Clipping such a chunk to the
joint limits and approaching it at the velocity limit would still drive the arm to its limits, so the executor
refuses it whole, keeps holding and says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class ChunkGate:
    """Refuses chunks whose actions lie mostly outside the joint limits or jump further than the arm can move.

    A chunk is refused when
    - more than `max_outside_fraction` of its actions have a joint beyond its limits by more than `limit_margin`
      radians, or
    - its first action is further than `max_jump` (radians, per joint) from the joint state the policy observed
      (the action is for the very next tick), or two consecutive actions are further apart than that.
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        lower: np.ndarray,
        upper: np.ndarray,
        max_jump: np.ndarray,
        limit_margin: float = 0.1,
        max_outside_fraction: float = 0.5,
    ) -> None:
        self.joint_names = tuple(joint_names)
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        max_jump = np.asarray(max_jump, dtype=np.float64)
        if max_jump.ndim == 0:
            max_jump = np.full(len(self.joint_names), float(max_jump))
        if max_jump.shape != (len(self.joint_names),) or not np.all(np.isfinite(max_jump) & (max_jump > 0)):
            raise ValueError(f"gate_max_jump must be > 0 radians, one number or one per joint, got {max_jump}")
        if not (math.isfinite(limit_margin) and limit_margin >= 0):
            raise ValueError(f"gate_limit_margin must be >= 0 radians, got {limit_margin!r}")
        if not 0.0 <= max_outside_fraction < 1.0:
            raise ValueError(f"gate_outside_fraction must be in [0, 1), got {max_outside_fraction!r}")
        self.max_jump = max_jump
        self.limit_margin = float(limit_margin)
        self.max_outside_fraction = float(max_outside_fraction)

    def check(self, actions: np.ndarray, observed: np.ndarray | None) -> str:
        """Why the chunk (m, n_joints, joint_names order) must be refused, "" when it passes.

        observed: the joint state the chunk was computed from (None when unknown: only the other checks run).
        """
        actions = np.asarray(actions, dtype=np.float64)
        outside = (actions < self.lower - self.limit_margin) | (actions > self.upper + self.limit_margin)
        rows_outside = np.any(outside, axis=1)
        if rows_outside.mean() > self.max_outside_fraction:
            joint = int(np.argmax(outside.sum(axis=0)))
            return (
                f"{rows_outside.sum()} of {len(actions)} actions lie outside the joint limits (e.g. "
                f"{self.joint_names[joint]} {_extreme(actions[:, joint]):.3f} rad, limits "
                f"[{self.lower[joint]:.3f}, {self.upper[joint]:.3f}]): wrong units?"
            )
        if observed is not None:
            jump = np.abs(actions[0] - np.asarray(observed, dtype=np.float64))
            if np.any(jump > self.max_jump):
                joint = int(np.argmax(jump / self.max_jump))
                return (
                    f"first action is {jump[joint]:.3f} rad from the observed state for {self.joint_names[joint]} "
                    f"(gate_max_jump {self.max_jump[joint]:g} rad): wrong units or a broken model?"
                )
        if len(actions) > 1:
            steps = np.abs(np.diff(actions, axis=0))
            over = steps > self.max_jump
            if np.any(over):
                row, joint = np.argwhere(over)[0]
                return (
                    f"actions {row} and {row + 1} are {steps[row, joint]:.3f} rad apart for "
                    f"{self.joint_names[joint]} (gate_max_jump {self.max_jump[joint]:g} rad)"
                )
        return ""


def _extreme(values: np.ndarray) -> float:
    return float(values[np.argmax(np.abs(values))])
