"""Consistency of the driver's URDF, controllers and launch file with each other and with the executor.

These files only run on a full ROS 2 install (xacro, controller_manager, launch); here they are checked
as data: the joints, their order, the controller names and the topics the SmolVLA executor uses.
"""

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parents[1]
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
XACRO = "{http://www.ros.org/wiki/xacro}"


@pytest.fixture(scope="module")
def controllers() -> dict:
    return yaml.safe_load((PACKAGE / "config" / "controllers.yaml").read_text())


@pytest.fixture(scope="module")
def robot() -> ET.Element:
    return ET.parse(PACKAGE / "urdf" / "so100.urdf.xacro").getroot()


def test_urdf_chain_has_the_six_servo_joints_in_id_order(robot):
    movable = [j for j in robot.iter("joint") if j.get("type") == "revolute"]
    assert [j.get("name") for j in movable] == JOINTS
    children = {j.find("child").get("link") for j in robot.iter("joint")}
    parents = {j.find("parent").get("link") for j in robot.iter("joint")}
    drawn = {link.get("name") for link in robot.iter(f"{XACRO}box_link")} | {"world"}
    assert children | parents <= drawn, "every joint connects links that exist"
    for joint in movable:
        limit = joint.find("limit")
        assert float(limit.get("lower")) < float(limit.get("upper"))


def test_ros2_control_tag_lists_the_joints_with_ids_and_switches_hardware():
    macro = ET.parse(PACKAGE / "urdf" / "so100.ros2_control.xacro").getroot()
    control = macro.find(f"{XACRO}macro[@name='so100_ros2_control']")
    uses = control.findall(f".//{XACRO}so100_joint")
    assert [(u.get("name"), int(u.get("id"))) for u in uses] == list(zip(JOINTS, range(1, 7), strict=True))
    plugins = {p.text for p in control.iter("plugin")}
    assert plugins == {"mock_components/GenericSystem", "so100_driver/So100Hardware"}
    real = control.find(f".//{XACRO}unless")
    params = {p.get("name") for p in real.iter("param")}
    assert {"port", "calibration_file", "reply_timeout_ms", "max_consecutive_failures"} <= params
    # No empty calibration_file param without a file (the controller manager warns about empty params).
    optional = real.find(f"{XACRO}if/param[@name='calibration_file']/..")
    assert optional is not None and optional.get("value") == "${calibration_file != ''}"
    joint = macro.find(f"{XACRO}macro[@name='so100_joint']/joint")
    assert [c.get("name") for c in joint.findall("command_interface")] == ["position"]


def test_plugin_description_names_the_exported_class():
    library = ET.parse(PACKAGE / "so100_hardware_plugin.xml").getroot()
    assert library.get("path") == "so100_hardware"
    cls = library.find("class")
    assert cls.get("name") == "so100_driver/So100Hardware"
    assert cls.get("base_class_type") == "hardware_interface::SystemInterface"
    source = (PACKAGE / "src" / "so100_hardware.cpp").read_text()
    assert "PLUGINLIB_EXPORT_CLASS(so100_driver::So100Hardware, hardware_interface::SystemInterface)" in source


def test_every_controller_has_a_type_and_parameters(controllers):
    declared = controllers["controller_manager"]["ros__parameters"]
    names = {k for k, v in declared.items() if isinstance(v, dict)}
    assert names == set(controllers) - {"controller_manager"}
    for name in names:
        assert "/" in declared[name]["type"], name


def test_command_controllers_cover_the_joints(controllers):
    assert controllers["forward_position_controller"]["ros__parameters"]["joints"] == JOINTS
    assert controllers["forward_position_controller"]["ros__parameters"]["interface_name"] == "position"
    assert controllers["joint_trajectory_controller"]["ros__parameters"]["joints"] == JOINTS
    assert controllers["arm_trajectory_controller"]["ros__parameters"]["joints"] == JOINTS[:5]
    assert controllers["gripper_controller"]["ros__parameters"]["joint"] == "gripper"


def test_launch_command_sets_name_existing_controllers(controllers):
    tree = ast.parse((PACKAGE / "launch" / "so100_driver.launch.py").read_text())
    sets = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMMAND_SETS"
    )
    assert set(sets) == {"forward", "trajectory", "arm_gripper"}
    launched = {name for names in sets.values() for name in names} | {"joint_state_broadcaster"}
    assert launched == set(controllers) - {"controller_manager"}


@pytest.mark.skipif(not (REPO / "config" / "executor.yaml").exists(), reason="built outside the smolvla_ros repository")
def test_executor_publishes_where_the_controllers_listen(controllers, robot):
    executor = yaml.safe_load((REPO / "config" / "executor.yaml").read_text())
    params = next(iter(executor.values()))["ros__parameters"]
    assert params["joint_names"] == JOINTS
    assert params["command_topic"] == "/forward_position_controller/commands"
    assert params["trajectory_topic"] == "/joint_trajectory_controller/joint_trajectory"
    limits = {j.get("name"): j.find("limit") for j in robot.iter("joint") if j.get("type") == "revolute"}
    assert [float(limits[j].get("lower")) for j in JOINTS] == pytest.approx(params["joint_lower_limits"])
    assert [float(limits[j].get("upper")) for j in JOINTS] == pytest.approx(params["joint_upper_limits"])
