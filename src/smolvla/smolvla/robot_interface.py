"""The robot interface of a policy: which joints in which order and units, at which frame rate, from which cameras.

A checkpoint's weights only make sense together with this description: the same network fed radians instead of the
degrees it was trained on, a 30 fps chunk played at 10 Hz, or the wrist image in the front camera's slot all run
without an error and move the arm wrongly. So the description travels with the checkpoint as data
(`robot_interface.json` beside `config.json`), and everything that feeds or reads a model (the policy node,
training, recording, dataset code) takes it from here instead of restating it.

- `joint_names`: order of the state vector and of every action.
- `joint_units`: per joint, one of `JOINT_UNITS`: `radians` is this workspace's convention (the SO-100 driver and
  the simulated arm, `rad = sign * (ticks - middle) * 2 pi / 4096`); `degrees`, `range_m100_100` and `range_0_100`
  are LeRobot's motor normalisation modes, converted through the arm's LeRobot calibration file
  (`smolvla.joint_units`). `UNIT_PRESETS` names the usual combinations.
- `fps`: frames per second the policy was trained at, i.e. one action per 1 / fps seconds.
- `cameras`: the checkpoint's camera feature names (e.g. `observation.images.front`), in the checkpoint's order.

Plain Python; imports no ROS and no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: File of the robot interface inside a checkpoint directory (beside config.json).
INTERFACE_FILE = "robot_interface.json"
#: Value of the "format" key, so that a stray JSON file is not mistaken for an interface.
FORMAT = "smolvla_ros/robot_interface"
FORMAT_VERSION = 1

#: Joint units: this workspace's radians and LeRobot's three motor normalisation modes.
JOINT_UNITS = ("radians", "degrees", "range_m100_100", "range_0_100")

#: The SO-100 / SO-101 joints in servo id order (ids 1..6): the driver's, the simulated arm's and every command's
#: order. so100_driver's C++ kSo100JointNames, URDF and controller files are tested against it.
SO100_JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
#: The frame rate this workspace records and controls at by default.
SO100_FPS = 30.0

#: Named unit combinations for the six SO-100 / SO-101 joints: this workspace's radians, and LeRobot's two
#: conventions for SO-100/SO-101 followers (body joints in degrees with `use_degrees=True`, else in -100..100 of the
#: calibrated range; the gripper always 0..100 of its range).
UNIT_PRESETS: dict[str, tuple[str, ...]] = {
    "radians": ("radians",) * 6,
    "lerobot_degrees": ("degrees",) * 5 + ("range_0_100",),
    "lerobot_range": ("range_m100_100",) * 5 + ("range_0_100",),
}


#: Where a user learns what to set for a checkpoint that does not describe its robot interface.
README_SECTION = 'README.md, "Run your LeRobot-trained checkpoint on the ROS arm"'


class RobotInterfaceError(ValueError):
    """A robot interface (a file, parameters or a preset) that cannot be used; the message says what and where."""


class UnknownInterfaceError(RobotInterfaceError):
    """A checkpoint that does not say which joint units and frame rate it was trained with, and no parameters
    that do: it must not run, since a wrong guess moves the arm wrongly without any error."""


def parse_joint_units(text: str, n_joints: int) -> tuple[str, ...]:
    """Joint units from a preset name (`UNIT_PRESETS`) or a comma-separated list with one unit per joint.

    Raises RobotInterfaceError naming the accepted values when the text is neither, or gives another number of
    units than `n_joints`.
    """
    text = text.strip()
    if text in UNIT_PRESETS:
        units = UNIT_PRESETS[text]
    else:
        units = tuple(part.strip() for part in text.split(","))
        unknown = [unit for unit in units if unit not in JOINT_UNITS]
        if not text or unknown:
            raise RobotInterfaceError(
                f"joint units {text!r}: give a preset ({', '.join(UNIT_PRESETS)}) or one unit per joint, "
                f"comma separated, each one of {', '.join(JOINT_UNITS)}"
            )
    if len(units) != n_joints:
        raise RobotInterfaceError(f"joint units {text!r} give {len(units)} units for {n_joints} joints")
    return units


@dataclass(frozen=True)
class RobotInterface:
    """Joint names and units, frame rate and camera feature names of a policy; validated on construction."""

    joint_names: tuple[str, ...]
    joint_units: tuple[str, ...]
    fps: float
    cameras: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("joint_names", "joint_units", "cameras"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise RobotInterfaceError(f"{name} must be a list of strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        _check_names("joint name", self.joint_names)
        _check_names("camera", self.cameras)
        if len(self.joint_units) != len(self.joint_names):
            raise RobotInterfaceError(
                f"{len(self.joint_units)} joint units for {len(self.joint_names)} joints {list(self.joint_names)}"
            )
        unknown = sorted({str(unit) for unit in self.joint_units if unit not in JOINT_UNITS})
        if unknown:
            raise RobotInterfaceError(f"unknown joint units {unknown}; known: {', '.join(JOINT_UNITS)}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, int | float):
            raise RobotInterfaceError(f"fps must be a number, got {self.fps!r}")
        if not (math.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise RobotInterfaceError(f"fps must be a frame rate in (0, 1000] Hz, got {self.fps}")
        object.__setattr__(self, "fps", float(self.fps))

    @property
    def period(self) -> float:
        """Seconds between two actions (1 / fps): the control period of the chunks."""
        return 1.0 / self.fps

    @property
    def in_radians(self) -> bool:
        """True when every joint is in radians (no conversion, no calibration needed)."""
        return all(unit == "radians" for unit in self.joint_units)

    def describe_units(self) -> str:
        """The units as a preset name when they are one, else the per-joint list (for messages and logs)."""
        for preset, units in UNIT_PRESETS.items():
            if units == self.joint_units:
                return preset
        return ", ".join(f"{name}: {unit}" for name, unit in zip(self.joint_names, self.joint_units, strict=True))

    # -- (de)serialisation ------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: format tag and version, joints as [{name, units}] in order, fps, cameras."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "joints": [
                {"name": name, "units": unit} for name, unit in zip(self.joint_names, self.joint_units, strict=True)
            ],
            "fps": self.fps,
            "cameras": list(self.cameras),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "robot interface") -> RobotInterface:
        """Inverse of `to_dict`. Raises RobotInterfaceError naming `source` and the offending key."""
        if not isinstance(data, dict):
            raise RobotInterfaceError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise RobotInterfaceError(f"{source}: 'format' must be {FORMAT!r}, got {data.get('format')!r}")
        if data.get("version") != FORMAT_VERSION:
            raise RobotInterfaceError(
                f"{source}: version {data.get('version')!r} is not supported (this code reads {FORMAT_VERSION})"
            )
        unknown = sorted(set(data) - {"format", "version", "joints", "fps", "cameras"})
        missing = sorted({"joints", "fps", "cameras"} - set(data))
        if unknown or missing:
            raise RobotInterfaceError(f"{source}: unknown keys {unknown}, missing keys {missing}")
        joints = data["joints"]
        if not isinstance(joints, list) or not all(
            isinstance(joint, dict) and set(joint) == {"name", "units"} for joint in joints
        ):
            raise RobotInterfaceError(f'{source}: \'joints\' must be a list of {{"name": ..., "units": ...}} objects')
        try:
            return cls(
                joint_names=tuple(joint["name"] for joint in joints),
                joint_units=tuple(joint["units"] for joint in joints),
                fps=data["fps"],
                cameras=data["cameras"],
            )
        except RobotInterfaceError as error:
            raise RobotInterfaceError(f"{source}: {error}") from None

    def to_json(self) -> str:
        """The JSON text written to INTERFACE_FILE."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "robot interface") -> RobotInterface:
        """Parse JSON text; RobotInterfaceError for invalid JSON or content."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise RobotInterfaceError(f"{source}: not valid JSON: {error}") from None
        return cls.from_dict(data, source)

    def save(self, checkpoint_dir: str | Path) -> Path:
        """Write INTERFACE_FILE into a checkpoint directory; returns its path."""
        path = Path(checkpoint_dir) / INTERFACE_FILE
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> RobotInterface | None:
        """The interface stored in a checkpoint directory, or None when it has none (e.g. a LeRobot checkpoint).
        Raises RobotInterfaceError when the file exists but cannot be read or used."""
        path = Path(checkpoint_dir) / INTERFACE_FILE
        if not path.exists():
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise RobotInterfaceError(f"{path}: cannot read: {error}") from None
        return cls.from_json(text, str(path))


def so100_interface(cameras: Sequence[str], *, units: str = "radians", fps: float = SO100_FPS) -> RobotInterface:
    """This workspace's SO-100 / SO-101: the six joints in servo order, `units` (a preset or per-joint list) and
    the given camera feature names."""
    return RobotInterface(SO100_JOINT_NAMES, parse_joint_units(units, len(SO100_JOINT_NAMES)), fps, tuple(cameras))


def _check_names(kind: str, names: tuple[Any, ...]) -> None:
    bad = [name for name in names if not isinstance(name, str) or not name.strip()]
    if bad:
        raise RobotInterfaceError(f"every {kind} must be a non-empty string, got {bad}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RobotInterfaceError(f"{kind}s repeat: {repeated}")
    if kind == "joint name" and not names:
        raise RobotInterfaceError("a robot interface needs at least one joint")


def interface_for_checkpoint(
    stored: RobotInterface | None,
    *,
    source: str,
    joint_names: Sequence[str],
    joint_units: str,
    fps: float,
    cameras: Sequence[str],
) -> RobotInterface:
    """The robot interface to run a checkpoint with: the one it stores, or the one the parameters describe.

    stored: the checkpoint's robot_interface.json (None when it has none). joint_names / joint_units (a preset or
    per-joint list; "" for none) / fps (0 for none): the policy node's parameters. cameras: the checkpoint's camera
    features. A parameter that contradicts the stored interface is an error, and so is a checkpoint without one
    whose units or frame rate are not given (UnknownInterfaceError, saying what to set).
    """
    if stored is not None:
        problems = []
        if tuple(joint_names) != stored.joint_names:
            problems.append(f"joint_names {list(joint_names)}, but its joints are {list(stored.joint_names)}")
        if joint_units.strip() and parse_joint_units(joint_units, len(stored.joint_names)) != stored.joint_units:
            problems.append(f"joint_units {joint_units!r}, but it was trained in {stored.describe_units()}")
        if fps and fps != stored.fps:
            problems.append(f"fps {fps:g}, but it was trained at {stored.fps:g} fps")
        if problems:
            raise RobotInterfaceError(
                f"checkpoint {source} says how it was trained (robot_interface.json), and the parameters contradict "
                f"it: {'; '.join(problems)}. Leave joint_units and fps empty to use the checkpoint's."
            )
        return stored
    missing = [name for name, given in (("joint_units", joint_units.strip()), ("fps", fps)) if not given]
    if missing:
        raise UnknownInterfaceError(
            f"checkpoint {source} does not say which joint units and frame rate it was trained with (it has no "
            f"{INTERFACE_FILE}; checkpoints trained with LeRobot have none), and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set. Refusing to guess: a model fed other units than it was "
            "trained on moves the arm wrongly. Set joint_units (lerobot_degrees: LeRobot 0.4 SO-100/SO-101 "
            "recordings, body joints in degrees; lerobot_range: recorded with use_degrees=False, body joints in "
            "-100..100; radians: this workspace's recordings; or one unit per joint, comma separated), fps (the "
            "frame rate of the dataset it was trained on, e.g. 30) and, for LeRobot's units, calibration_file (the "
            f"arm's LeRobot calibration JSON, the driver's calibration_file). See {README_SECTION}."
        )
    return RobotInterface(tuple(joint_names), parse_joint_units(joint_units, len(joint_names)), fps, tuple(cameras))
