"""Pick-and-place task rules: where cubes and targets appear for a seed, and when a placement counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Cube and target centres are drawn from this box (x, y in metres, arm base at the origin): the table area in
#: which the arm grasps vertically at any of the cube's yaws (beyond x = 0.30 m the wrist runs out of travel).
SAMPLING_BOUNDS = np.asarray([[0.13, -0.14], [0.29, 0.14]])
#: The cube's yaw (about the vertical) is drawn from +-this many radians (30 degrees): every grasp then has one
#: obvious wrist roll (at +-45 degrees two rolls would be equally right, which a policy learns as their average).
MAX_CUBE_YAW = np.pi / 6
MIN_CUBE_TARGET_DISTANCE = 0.08
#: Scene seeds from this one on are held out for evaluation: no demonstration (make train-demo: seeds 0-479) uses them.
FIRST_HELD_OUT_SEED = 1000
#: Cube centre within this distance (xy) of the target centre counts as placed.
PLACE_TOLERANCE = 0.03
#: The cube must have been lifted this far above its resting height, so pushing it to the target does not count.
MIN_CARRY_RISE = 0.03
#: A placed cube must be at rest (m/s) and released: jaw opened past this angle (radians).
MAX_PLACED_SPEED = 0.01
MIN_RELEASE_JAW_ANGLE = 0.8


@dataclass(frozen=True)
class Layout:
    """Cube and target positions (xy, metres) and the cube's yaw (radians) of one scene."""

    cube_xy: tuple[float, float]
    target_xy: tuple[float, float]
    cube_yaw: float = 0.0


def sample_layout(rng: np.random.Generator) -> Layout:
    """Draw a cube and a target position at least MIN_CUBE_TARGET_DISTANCE apart, then the cube's yaw."""
    cube = rng.uniform(*SAMPLING_BOUNDS)
    target = rng.uniform(*SAMPLING_BOUNDS)
    while np.linalg.norm(target - cube) < MIN_CUBE_TARGET_DISTANCE:
        target = rng.uniform(*SAMPLING_BOUNDS)
    yaw = rng.uniform(-MAX_CUBE_YAW, MAX_CUBE_YAW)
    return Layout(
        cube_xy=(float(cube[0]), float(cube[1])), target_xy=(float(target[0]), float(target[1])), cube_yaw=float(yaw)
    )


class PlacementJudge:
    """Decides task success from the cube's trajectory, the target and the jaw angle.

    update() is called after every physics slice; success is latched once reached, until reset().
    """

    def __init__(self, target_xy: np.ndarray, rest_height: float) -> None:
        self.reset(target_xy, rest_height)

    def reset(self, target_xy: np.ndarray, rest_height: float) -> None:
        """Start judging a new placement."""
        self._target_xy = np.asarray(target_xy, dtype=float)
        self._rest_height = float(rest_height)
        self.carried = False
        self.success = False

    def update(self, cube_pos: np.ndarray, cube_speed: float, jaw_angle: float) -> bool:
        """Feed the current cube position (3,), its linear speed and the jaw angle; returns success."""
        self.carried = self.carried or bool(cube_pos[2] - self._rest_height > MIN_CARRY_RISE)
        if not self.success:
            self.success = bool(
                self.carried
                and np.linalg.norm(np.asarray(cube_pos[:2]) - self._target_xy) < PLACE_TOLERANCE
                and cube_pos[2] - self._rest_height < 0.01
                and cube_speed < MAX_PLACED_SPEED
                and jaw_angle > MIN_RELEASE_JAW_ANGLE
            )
        return self.success
