"""A checkpoint meets the robot: its units, rate and cameras settled before it runs, or a refusal saying what to set.

The checkpoints are tiny ones built here in LeRobot's layout: without robot_interface.json (as `lerobot-train`
writes them) and with their cameras in a LeRobot dataset's order (wrist first), or with an interface (as
`smolvla-train` writes them).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from smolvla.deployment import DeploymentError, prepare_deployment
from smolvla.images import RawImage
from smolvla.joint_units import MotorCalibration
from smolvla.policy import SmolVLAPolicy, make_tiny_checkpoint
from smolvla.policy_runner import PolicyRunner
from smolvla.robot_interface import README_SECTION, SO100_JOINT_NAMES, UNIT_PRESETS

JOINTS = list(SO100_JOINT_NAMES)
CAMERAS = ("observation.images.wrist", "observation.images.front")
CALIBRATION = {
    name: {"id": i + 1, "drive_mode": i % 2, "homing_offset": 0, "range_min": 900 + 10 * i, "range_max": 3100}
    for i, name in enumerate(JOINTS)
}


@pytest.fixture(scope="module")
def lerobot_checkpoint(tmp_path_factory):
    """A checkpoint as LeRobot writes it: no robot interface, cameras wrist then front."""
    directory = tmp_path_factory.mktemp("lerobot")
    return make_tiny_checkpoint(directory, n_cameras=2, camera_names=CAMERAS, units=None)


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "so100_follower.json"
    path.write_text(json.dumps(CALIBRATION))
    return path


def test_a_checkpoint_with_unknown_units_is_refused_saying_what_to_set(lerobot_checkpoint):
    with pytest.raises(DeploymentError) as error:
        prepare_deployment(lerobot_checkpoint, camera_topics=["front=/f", "wrist=/w"], joint_names=JOINTS)
    message = str(error.value)
    assert f"checkpoint {lerobot_checkpoint} does not say which joint units and frame rate" in message
    assert "joint_units and fps are not set" in message
    assert "lerobot_degrees" in message and "calibration_file" in message and README_SECTION in message
    with pytest.raises(DeploymentError, match="and fps is not set"):
        prepare_deployment(
            lerobot_checkpoint, camera_topics=["front=/f", "wrist=/w"], joint_names=JOINTS, joint_units="radians"
        )


def test_lerobot_units_without_the_calibration_are_refused(lerobot_checkpoint):
    with pytest.raises(DeploymentError, match="need the arm's LeRobot calibration file"):
        prepare_deployment(
            lerobot_checkpoint,
            camera_topics=["front=/f", "wrist=/w"],
            joint_names=JOINTS,
            joint_units="lerobot_degrees",
            fps=30.0,
        )


def test_parameters_that_contradict_the_checkpoint_are_refused(tmp_path):
    ours = make_tiny_checkpoint(tmp_path, n_cameras=2, fps=15.0)
    with pytest.raises(
        DeploymentError,
        match="joint_units 'lerobot_range', but it was trained in radians; fps 30, but it was trained at 15 fps",
    ):
        prepare_deployment(ours, camera_topics=["/f"], joint_names=JOINTS, joint_units="lerobot_range", fps=30.0)
    deployment = prepare_deployment(ours, camera_topics=["/f"], joint_names=JOINTS)
    assert deployment.interface.fps == 15.0 and deployment.interface.period == pytest.approx(1 / 15)
    assert deployment.units.identity and deployment.calibration_file == ""


def _frame(value: int) -> RawImage:
    return RawImage("rgb8", 8, 8, 24, bytes([value]) * 192)


def test_a_lerobot_checkpoint_runs_with_its_cameras_by_name_and_its_units(lerobot_checkpoint, calibration_file):
    deployment = prepare_deployment(
        lerobot_checkpoint,
        camera_topics=["front=/camera/front", "wrist=/camera/wrist"],
        joint_names=JOINTS,
        joint_units="lerobot_degrees",
        fps=30.0,
        calibration_file=str(calibration_file),
    )
    assert deployment.cameras.topics == ("/camera/wrist", "/camera/front")
    assert deployment.interface.joint_units == UNIT_PRESETS["lerobot_degrees"]
    assert deployment.describe() == (
        f"joint units lerobot_degrees through {calibration_file}; 30 fps; cameras observation.images.wrist <- "
        "/camera/wrist, observation.images.front <- /camera/front"
    )

    policy = SmolVLAPolicy.from_pretrained(deployment.directory)
    seen = []

    def predict(images, state, instruction):
        actions = policy.predict_chunk(images, state, instruction)
        seen.append((images, state, actions))
        return actions

    done = threading.Event()
    chunks = []
    runner = PolicyRunner(
        predict,
        camera_slots=deployment.cameras.topics,
        joint_names=deployment.interface.joint_names,
        max_sample_age=0.25,
        instruction="pick up the cube",
        on_chunk=lambda result: (chunks.append(result), done.set()),
        on_no_chunk=lambda outcome: done.set(),
        units=deployment.units,
    )
    runner.add_image("/camera/front", 10.0, _frame(10))
    runner.add_image("/camera/wrist", 10.0, _frame(200))
    radians = np.array([0.1, -0.2, 0.3, -0.4, 0.5, 0.2])
    runner.add_joint_state(10.0, JOINTS, radians)
    runner.request(1, 0, 10.05)
    assert done.wait(30) and runner.wait_idle(30)
    runner.close()

    ((images, state, raw),), (result,) = seen, chunks
    assert images[0][0, 0, 0] == 200 and images[1][0, 0, 0] == 10  # wrist in the wrist slot, front in the front slot
    # The model sees LeRobot's degrees (and 0..100 for the gripper) of the arm's ticks, not radians.
    motors = {name: MotorCalibration(name, **CALIBRATION[name]) for name in JOINTS}
    ticks = [motors[name].radians_to_ticks(r) for name, r in zip(JOINTS, radians, strict=True)]
    expected = [(t - motors[n].middle) * 360 / 4095 for n, t in zip(JOINTS[:5], ticks[:5], strict=True)]
    gripper = motors["gripper"]  # drive_mode 1: LeRobot inverts its 0..100
    expected.append(100 - (ticks[5] - gripper.range_min) / (gripper.range_max - gripper.range_min) * 100)
    np.testing.assert_allclose(state, expected, rtol=1e-5)
    # Its actions come back in the driver's radians, converted through the same calibration.
    np.testing.assert_allclose(result.actions, deployment.units.to_radians(raw), rtol=1e-12)
    assert not np.allclose(result.actions, raw, atol=1e-3)
