"""The policy node, started as users start it (its executable, the repository's config/policy.yaml), refuses a
checkpoint it cannot run correctly and says what to set; with the parameters set, it starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from smolvla.robot_interface import README_SECTION, SO100_JOINT_NAMES
from smolvla_ros.launcher import NodeSpec, find_config, find_executable

pytestmark = pytest.mark.ros

CAMERAS = ("observation.images.wrist", "observation.images.front")


@pytest.fixture(scope="module")
def lerobot_checkpoint(tmp_path_factory) -> Path:
    """A tiny checkpoint as lerobot-train writes one: no robot_interface.json, cameras wrist then front."""
    from smolvla.policy import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("lerobot"), n_cameras=2, camera_names=CAMERAS, units=None)


def run_policy_node(parameters: dict, timeout: float = 60.0) -> subprocess.CompletedProcess:
    spec = NodeSpec("policy", (find_executable("policy_node"),), find_config("policy.yaml"), parameters)
    return subprocess.run(spec.argv(), capture_output=True, text=True, timeout=timeout)


def test_a_checkpoint_with_unknown_units_does_not_start(lerobot_checkpoint):
    result = run_policy_node(
        {"checkpoint": str(lerobot_checkpoint), "camera_topics": ["front=/cam/front", "wrist=/cam/wrist"]}
    )
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "does not say which joint units and frame rate it was trained with" in out
    assert "Set joint_units" in out and "fps" in out and "calibration_file" in out and README_SECTION in out
    assert "loading checkpoint" not in out  # refused before the weights are read


def test_cameras_given_in_order_for_named_cameras_are_refused_listing_the_names(lerobot_checkpoint, tmp_path):
    calibration = tmp_path / "arm.json"
    calibration.write_text(
        json.dumps(
            {
                name: {"id": i + 1, "drive_mode": 0, "homing_offset": 0, "range_min": 1000, "range_max": 3000}
                for i, name in enumerate(SO100_JOINT_NAMES)
            }
        )
    )
    parameters = {
        "checkpoint": str(lerobot_checkpoint),
        "joint_units": "lerobot_range",
        "fps": 30.0,
        "calibration_file": str(calibration),
        "camera_topics": ["/cam/front", "/cam/wrist"],
        "warmup": False,
    }
    result = run_policy_node(parameters)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert (
        "the checkpoint's cameras have names, wrist, front (observation.images.wrist, observation.images.front)" in out
    )

    # Mapped by name, the same checkpoint starts (and is stopped here once it says it is ready).
    spec = NodeSpec(
        "policy",
        (find_executable("policy_node"),),
        find_config("policy.yaml"),
        {**parameters, "camera_topics": ["front=/cam/front", "wrist=/cam/wrist"]},
    )
    process = subprocess.Popen(spec.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "model ready" in line or "cannot start" in line:
                break
    finally:
        process.terminate()
        process.wait(10)
    out = "".join(lines)
    assert "model ready" in out, out
    assert "joint units lerobot_range through" in out and "30 fps" in out
    assert "observation.images.wrist <- /cam/wrist, observation.images.front <- /cam/front" in out
