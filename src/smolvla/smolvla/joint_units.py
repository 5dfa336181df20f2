"""Joint positions between this workspace's radians and LeRobot's SO-100 / SO-101 units, through the arm's calibration.

The SO-100 driver reports and takes radians, `rad = sign * (ticks - middle) * 2 pi / 4096` with
`middle = (range_min + range_max) / 2` and `sign = -1` for `drive_mode` 1, from the LeRobot calibration JSON it is
given (`calibration_file`, docs/so100-driver.md). Checkpoints and datasets recorded with LeRobot hold its motor bus's
normalised values of the same servo ticks instead (LeRobot 0.4.4, `MotorsBus._normalize` / `_unnormalize`):

- `degrees`: `(ticks - middle) * 360 / 4095`, neither clamped nor inverted by `drive_mode`;
- `range_m100_100`: ticks clamped into the calibrated range, `-100 + 200 * (ticks - range_min) / (range_max -
  range_min)`, negated for `drive_mode` 1;
- `range_0_100`: the same on 0..100, `100 - value` for `drive_mode` 1.

A `JointConverter` maps radians to ticks with the driver's convention and ticks to these units with LeRobot's (and
back, where LeRobot clamps the range modes into -100..100 / 0..100 before converting), so a checkpoint sees exactly
the numbers LeRobot would have recorded from the same arm. The way back stays continuous: LeRobot truncates to
whole ticks, the driver rounds the radians to the nearest tick. tests/data/lerobot_units.json holds LeRobot's own
outputs (tools/lerobot_units_vectors.py) that the tests compare with.

Plain Python and numpy; imports no ROS and no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .robot_interface import JOINT_UNITS, RobotInterface

TICKS_PER_TURN = 4096
#: LeRobot's degrees divide by the STS3215's largest tick (its resolution - 1), not by the ticks per turn.
LEROBOT_MAX_TICK = 4095
_MAX_HOMING_OFFSET = 2047  # sign-magnitude with the sign at bit 11


class CalibrationError(ValueError):
    """A calibration file or entry that cannot describe an STS3215 arm; the message names the file, motor and field."""


@dataclass(frozen=True)
class MotorCalibration:
    """One motor's entry of a LeRobot calibration file (ticks are present-position ticks, after homing_offset)."""

    name: str
    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int

    def __post_init__(self) -> None:
        who = f"motor {self.name!r} (servo {self.id})"
        if not 0 <= self.id <= 253:
            raise CalibrationError(f"{who}: id must be 0..253")
        if self.drive_mode not in (0, 1):
            raise CalibrationError(f"{who}: drive_mode must be 0 or 1, got {self.drive_mode}")
        if abs(self.homing_offset) > _MAX_HOMING_OFFSET:
            raise CalibrationError(f"{who}: homing_offset {self.homing_offset} outside +-{_MAX_HOMING_OFFSET}")
        if not 0 <= self.range_min < self.range_max <= LEROBOT_MAX_TICK:
            raise CalibrationError(
                f"{who}: range [{self.range_min}, {self.range_max}] must satisfy 0 <= range_min < range_max <= 4095"
            )

    @property
    def middle(self) -> float:
        """The tick of 0 rad and of LeRobot's 0 degrees: the middle of the calibrated range."""
        return 0.5 * (self.range_min + self.range_max)

    @property
    def sign(self) -> float:
        """-1 for an inverted joint (drive_mode 1), else 1: the driver's radians follow the joint, not the servo."""
        return -1.0 if self.drive_mode else 1.0

    def ticks_to_radians(self, ticks: np.ndarray | float) -> np.ndarray:
        """The driver's radians of (fractional) present-position ticks."""
        return self.sign * (np.asarray(ticks, dtype=np.float64) - self.middle) * (2 * math.pi / TICKS_PER_TURN)

    def radians_to_ticks(self, radians: np.ndarray | float) -> np.ndarray:
        """Inverse of ticks_to_radians, not rounded (the driver rounds to the nearest tick and clamps to the range)."""
        return self.middle + self.sign * np.asarray(radians, dtype=np.float64) * (TICKS_PER_TURN / (2 * math.pi))


def parse_lerobot_calibration(text: str, source: str = "calibration") -> dict[str, MotorCalibration]:
    """Parse a LeRobot calibration file's text: motor name -> {id, drive_mode, homing_offset, range_min, range_max},
    checked as the SO-100 driver checks it. Raises CalibrationError naming `source`, the motor and the field."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CalibrationError(f"{source}: not valid JSON: {error}") from None
    if not isinstance(data, dict) or not data:
        raise CalibrationError(f"{source}: expected a non-empty object of motor name -> calibration")
    motors: dict[str, MotorCalibration] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise CalibrationError(f"{source}: motor {name!r} is not an object")
        values = {}
        for field in ("id", "drive_mode", "homing_offset", "range_min", "range_max"):
            value = entry.get(field)
            if value is None:
                raise CalibrationError(f"{source}: motor {name!r} has no {field!r}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise CalibrationError(f"{source}: motor {name!r}: {field!r} must be an integer, got {value!r}")
            values[field] = int(value)
        try:
            motors[name] = MotorCalibration(name=name, **values)
        except CalibrationError as error:
            raise CalibrationError(f"{source}: {error}") from None
    ids = [motor.id for motor in motors.values()]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise CalibrationError(f"{source}: servo ids used twice: {repeated}")
    return motors


def load_lerobot_calibration(path: str | Path) -> dict[str, MotorCalibration]:
    """Read and parse a LeRobot calibration file (the one given to the driver as `calibration_file`)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CalibrationError(f"cannot read calibration file {path}: {error}") from None
    return parse_lerobot_calibration(text, str(path))


class JointConverter:
    """Joint positions between the driver's radians and a policy's joint units, joint by joint.

    joint_names / joint_units: the policy's joints in order (a `RobotInterface`'s). calibration: the arm's LeRobot
    calibration by motor name; needed (for those joints) whenever a unit is not radians.
    Arrays are (..., n_joints) in joint_names order.
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        joint_units: Sequence[str],
        calibration: Mapping[str, MotorCalibration] | None = None,
        *,
        calibration_source: str = "the calibration",
    ) -> None:
        if len(joint_names) != len(joint_units):
            raise ValueError(f"{len(joint_units)} units for {len(joint_names)} joints")
        unknown = sorted({unit for unit in joint_units if unit not in JOINT_UNITS})
        if unknown:
            raise ValueError(f"unknown joint units {unknown}; known: {', '.join(JOINT_UNITS)}")
        self.joint_names = tuple(joint_names)
        self.joint_units = tuple(joint_units)
        converted = [name for name, unit in zip(joint_names, joint_units, strict=True) if unit != "radians"]
        if converted and calibration is None:
            raise CalibrationError(
                f"joints in LeRobot's units ({', '.join(converted)}) need the arm's LeRobot calibration file "
                "(the driver's calibration_file) to be converted from and to radians"
            )
        missing = [name for name in converted if name not in (calibration or {})]
        if missing:
            raise CalibrationError(
                f"{calibration_source} has no entry for {', '.join(missing)} (it has {', '.join(calibration or {})})"
            )
        n = len(self.joint_names)
        units = np.array(self.joint_units)
        self._radians = units == "radians"
        self._degrees = units == "degrees"
        self._m100 = units == "range_m100_100"
        self._percent = units == "range_0_100"
        # Per-joint calibration arrays; joints in radians keep neutral values that are never used.
        self._middle = np.zeros(n)
        self._sign = np.ones(n)
        self._low = np.zeros(n)
        self._high = np.ones(n)
        self._inverted = np.zeros(n, dtype=bool)
        for i, name in enumerate(self.joint_names):
            if self._radians[i]:
                continue
            motor = calibration[name]
            self._middle[i], self._sign[i] = motor.middle, motor.sign
            self._low[i], self._high[i] = motor.range_min, motor.range_max
            self._inverted[i] = bool(motor.drive_mode)

    @classmethod
    def for_interface(cls, interface: RobotInterface, calibration_file: str | Path | None = None) -> JointConverter:
        """The converter of a robot interface, reading the calibration file when a joint needs it."""
        if interface.in_radians:
            return cls(interface.joint_names, interface.joint_units)
        if not calibration_file:
            return cls(interface.joint_names, interface.joint_units, None)
        return cls(
            interface.joint_names,
            interface.joint_units,
            load_lerobot_calibration(calibration_file),
            calibration_source=f"calibration file {calibration_file}",
        )

    @property
    def identity(self) -> bool:
        """True when every joint is in radians (both directions return their input)."""
        return bool(self._radians.all())

    def to_policy(self, radians: np.ndarray) -> np.ndarray:
        """Driver radians -> the policy's units (a state, or recorded commands for training)."""
        radians = self._check(radians)
        ticks = self._middle + self._sign * radians * (TICKS_PER_TURN / (2 * math.pi))
        span = self._high - self._low
        bounded = np.clip(ticks, self._low, self._high)  # LeRobot clamps the range modes, not degrees
        degrees = (ticks - self._middle) * 360 / LEROBOT_MAX_TICK
        m100 = (bounded - self._low) / span * 200 - 100
        m100 = np.where(self._inverted, -m100, m100)
        percent = (bounded - self._low) / span * 100
        percent = np.where(self._inverted, 100 - percent, percent)
        return self._select(radians, degrees, m100, percent)

    def to_radians(self, values: np.ndarray) -> np.ndarray:
        """The policy's units -> driver radians (actions). The range modes are clamped into -100..100 / 0..100
        first, as LeRobot does before writing a goal position."""
        values = self._check(values)
        span = self._high - self._low
        degrees_ticks = values * LEROBOT_MAX_TICK / 360 + self._middle
        m100 = np.clip(np.where(self._inverted, -values, values), -100.0, 100.0)
        m100_ticks = (m100 + 100) / 200 * span + self._low
        percent = np.clip(np.where(self._inverted, 100 - values, values), 0.0, 100.0)
        percent_ticks = percent / 100 * span + self._low
        ticks = self._select(self._middle, degrees_ticks, m100_ticks, percent_ticks)
        from_ticks = self._sign * (ticks - self._middle) * (2 * math.pi / TICKS_PER_TURN)
        return np.where(self._radians, values, from_ticks)

    def _check(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim < 1 or values.shape[-1] != len(self.joint_names):
            raise ValueError(f"expected (..., {len(self.joint_names)}) joint values, got shape {values.shape}")
        return values

    def _select(self, radians: Any, degrees: Any, m100: Any, percent: Any) -> np.ndarray:
        return np.select([self._radians, self._degrees, self._m100, self._percent], [radians, degrees, m100, percent])
