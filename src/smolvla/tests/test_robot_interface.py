"""The robot interface: validation, JSON round trip, the checkpoint file, and the one SO-100 definition."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from smolvla.robot_interface import (
    INTERFACE_FILE,
    SO100_JOINT_NAMES,
    UNIT_PRESETS,
    RobotInterface,
    RobotInterfaceError,
    parse_joint_units,
    so100_interface,
)

REPO = Path(__file__).resolve().parents[3]
CAMERAS = ("observation.images.wrist", "observation.images.front")


def test_json_round_trip_keeps_order_and_values(tmp_path):
    interface = so100_interface(CAMERAS, units="lerobot_degrees", fps=15)
    path = interface.save(tmp_path)
    assert path == tmp_path / INTERFACE_FILE
    loaded = RobotInterface.load(tmp_path)
    assert loaded == interface
    assert loaded.joint_names == SO100_JOINT_NAMES and loaded.cameras == CAMERAS
    assert loaded.joint_units == ("degrees",) * 5 + ("range_0_100",)
    assert loaded.period == pytest.approx(1 / 15)
    data = json.loads(path.read_text())
    assert data["joints"][5] == {"name": "gripper", "units": "range_0_100"}
    assert data["fps"] == 15.0


def test_a_directory_without_the_file_has_no_interface(tmp_path):
    assert RobotInterface.load(tmp_path) is None


def test_presets_and_per_joint_lists():
    assert parse_joint_units("radians", 6) == ("radians",) * 6
    assert parse_joint_units("lerobot_range", 6) == ("range_m100_100",) * 5 + ("range_0_100",)
    assert parse_joint_units(" degrees, range_0_100 ", 2) == ("degrees", "range_0_100")
    assert set(UNIT_PRESETS) == {"radians", "lerobot_degrees", "lerobot_range"}
    assert so100_interface(("observation.image",)).describe_units() == "radians"
    assert RobotInterface(("a", "b"), ("degrees", "radians"), 30, ()).describe_units() == "a: degrees, b: radians"


@pytest.mark.parametrize(
    ("text", "n", "message"),
    [
        ("rad", 6, "give a preset (radians, lerobot_degrees, lerobot_range)"),
        ("", 6, "give a preset"),
        ("degrees,percent", 2, "each one of radians, degrees, range_m100_100, range_0_100"),
        ("radians", 5, "give 6 units for 5 joints"),
    ],
)
def test_unusable_units_text_is_refused_with_the_choices(text, n, message):
    with pytest.raises(RobotInterfaceError, match=re.escape(message)):
        parse_joint_units(text, n)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"joint_units": ("radians",) * 5}, "5 joint units for 6 joints"),
        ({"joint_units": ("radians",) * 5 + ("percent",)}, "unknown joint units ['percent']"),
        ({"joint_names": ("a", "a", "b", "c", "d", "e")}, "joint names repeat: ['a']"),
        ({"joint_names": ()}, "a robot interface needs at least one joint"),
        ({"cameras": ("observation.image", "")}, "every camera must be a non-empty string"),
        ({"cameras": "observation.image"}, "cameras must be a list of strings"),
        ({"fps": 0.0}, "fps must be a frame rate in (0, 1000] Hz"),
        ({"fps": float("nan")}, "fps must be a frame rate"),
        ({"fps": True}, "fps must be a number"),
    ],
)
def test_invalid_interfaces_are_refused(change, message):
    fields = {"joint_names": SO100_JOINT_NAMES, "joint_units": ("radians",) * 6, "fps": 30.0, "cameras": CAMERAS}
    with pytest.raises(RobotInterfaceError, match=re.escape(message)):
        RobotInterface(**{**fields, **change})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="something"), "'format' must be 'smolvla_ros/robot_interface'"),
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d.pop("fps"), "missing keys ['fps']"),
        (lambda d: d.update(rate=30), "unknown keys ['rate']"),
        (lambda d: d["joints"][0].pop("units"), "'joints' must be a list of"),
        (lambda d: d["joints"][2].update(units="deg"), "unknown joint units ['deg']"),
    ],
)
def test_invalid_files_are_refused_naming_the_file(tmp_path, edit, message):
    data = so100_interface(CAMERAS).to_dict()
    edit(data)
    (tmp_path / INTERFACE_FILE).write_text(json.dumps(data))
    with pytest.raises(RobotInterfaceError, match=re.escape(message)) as error:
        RobotInterface.load(tmp_path)
    assert str(tmp_path / INTERFACE_FILE) in str(error.value)


def test_not_json_is_refused(tmp_path):
    (tmp_path / INTERFACE_FILE).write_text("{joints: radians")
    with pytest.raises(RobotInterfaceError, match="not valid JSON"):
        RobotInterface.load(tmp_path)


def test_the_driver_description_and_parameter_files_use_the_one_joint_order():
    """The C++ driver, its URDF and controllers, and the nodes' parameter files cannot import the Python
    definition; they are compared with it here."""
    calibration_cpp = (REPO / "src/so100_driver/src/calibration.cpp").read_text()
    declared = re.search(r"kSo100JointNames = \{([^}]*)\}", calibration_cpp).group(1)
    assert tuple(re.findall(r'"(\w+)"', declared)) == SO100_JOINT_NAMES
    control = ET.parse(REPO / "src/so100_driver/urdf/so100.ros2_control.xacro").getroot()
    joints = [e.get("name") for e in control.iter() if e.tag.endswith("so100_joint")]
    assert tuple(joints) == SO100_JOINT_NAMES
    controllers = yaml.safe_load((REPO / "src/so100_driver/config/controllers.yaml").read_text())
    assert tuple(controllers["forward_position_controller"]["ros__parameters"]["joints"]) == SO100_JOINT_NAMES
    for name in ("executor.yaml", "policy.yaml"):
        params = next(iter(yaml.safe_load((REPO / "config" / name).read_text()).values()))["ros__parameters"]
        assert tuple(params["joint_names"]) == SO100_JOINT_NAMES, name
