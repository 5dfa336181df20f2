"""Joint units: the driver's radians <-> LeRobot's SO-100 units, compared with LeRobot 0.4.4's own numbers.

tests/data/lerobot_units.json was written by tools/lerobot_units_vectors.py with LeRobot 0.4.4's Feetech motor bus:
for every joint, both drive modes and each of LeRobot's three modes, what it makes of ticks inside, at and beyond
the calibrated range, and which goal ticks it writes for normalised values inside, at and beyond their range.
Ticks reach us as the driver's radians (rad = sign * (ticks - middle) * 2 pi / 4096), so every comparison goes
through radians, as on the robot.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from smolvla.joint_units import (
    CalibrationError,
    JointConverter,
    MotorCalibration,
    load_lerobot_calibration,
    parse_lerobot_calibration,
)
from smolvla.robot_interface import SO100_JOINT_NAMES, so100_interface

VECTORS = json.loads((Path(__file__).parent / "data" / "lerobot_units.json").read_text())
CASES = VECTORS["cases"]


@pytest.fixture(scope="module")
def calibration_files(tmp_path_factory) -> dict[str, Path]:
    """The vectors' calibrations as LeRobot calibration files (what the driver's calibration_file holds)."""
    root = tmp_path_factory.mktemp("calibration")
    files = {}
    for key, content in VECTORS["calibrations"].items():
        files[key] = root / f"{key}.json"
        files[key].write_text(json.dumps(content))
    return files


def _converter(case, calibration_files) -> tuple[JointConverter, MotorCalibration]:
    calibration = load_lerobot_calibration(calibration_files[case["calibration"]])
    return JointConverter([case["motor"]], [case["units"]], calibration), calibration[case["motor"]]


def test_the_vectors_cover_every_joint_drive_mode_unit_and_both_range_ends():
    assert VECTORS["lerobot"] == "0.4.4"
    covered = {(c["calibration"], c["motor"], c["units"]) for c in CASES}
    assert covered == {
        (f"drive_mode_{d}", joint, units)
        for d in (0, 1)
        for joint in SO100_JOINT_NAMES
        for units in ("degrees", "range_m100_100", "range_0_100")
    }
    for case in CASES:
        motor = VECTORS["calibrations"][case["calibration"]][case["motor"]]
        assert {motor["range_min"], motor["range_max"]} <= set(case["ticks"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['calibration']}-{c['motor']}-{c['units']}")
def test_radians_to_lerobot_units_equals_lerobots_normalisation(case, calibration_files):
    converter, motor = _converter(case, calibration_files)
    radians = motor.ticks_to_radians(np.array(case["ticks"], dtype=np.float64))
    ours = converter.to_policy(radians[:, None])[:, 0]
    np.testing.assert_allclose(ours, case["normalized"], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['calibration']}-{c['motor']}-{c['units']}")
def test_lerobot_units_to_radians_gives_lerobots_goal_ticks(case, calibration_files):
    """LeRobot truncates the goal towards zero to a whole tick (int()); ours stays continuous for the driver to
    round, so truncating ours (up to float rounding of an exact integer) gives LeRobot's tick."""
    converter, motor = _converter(case, calibration_files)
    radians = converter.to_radians(np.array(case["values"], dtype=np.float64)[:, None])[:, 0]
    ticks = motor.radians_to_ticks(radians)
    lerobot = np.array(case["unnormalized"], dtype=np.float64)
    np.testing.assert_array_equal(np.trunc(ticks + np.sign(ticks) * 1e-9), lerobot)


@pytest.mark.parametrize("drive_mode", [0, 1])
@pytest.mark.parametrize("preset", ["lerobot_degrees", "lerobot_range"])
def test_round_trip_of_six_joints_inside_the_range(preset, drive_mode, calibration_files):
    interface = so100_interface(("observation.images.front",), units=preset)
    converter = JointConverter.for_interface(interface, calibration_files[f"drive_mode_{drive_mode}"])
    calibration = load_lerobot_calibration(calibration_files[f"drive_mode_{drive_mode}"])
    rng = np.random.default_rng(drive_mode)
    ticks = np.stack(
        [rng.uniform(calibration[n].range_min, calibration[n].range_max, 64) for n in SO100_JOINT_NAMES], axis=-1
    )
    radians = np.stack([calibration[n].ticks_to_radians(ticks[:, i]) for i, n in enumerate(SO100_JOINT_NAMES)], -1)
    np.testing.assert_allclose(converter.to_radians(converter.to_policy(radians)), radians, atol=1e-12)


def test_radians_need_no_calibration_and_pass_through():
    converter = JointConverter.for_interface(so100_interface(("observation.image",)))
    values = np.array([[0.1, -0.2, 3.0, 0.0, -4.0, 1e-3]])
    assert converter.identity
    np.testing.assert_array_equal(converter.to_policy(values), values)
    np.testing.assert_array_equal(converter.to_radians(values), values)


def test_the_range_modes_clamp_like_lerobot_and_degrees_do_not(calibration_files):
    calibration = load_lerobot_calibration(calibration_files["drive_mode_0"])
    converter = JointConverter(
        ["elbow_flex", "wrist_flex", "gripper"], ["degrees", "range_m100_100", "range_0_100"], calibration
    )
    far = np.array([[10.0, 10.0, 10.0]])  # radians far beyond every range
    degrees, m100, percent = converter.to_policy(far)[0]
    assert degrees > 360 and m100 == 100.0 and percent == 100.0
    back = converter.to_radians(np.array([[0.0, 150.0, -20.0]]))[0]
    assert back[1] == pytest.approx(calibration["wrist_flex"].ticks_to_radians(3228))
    assert back[2] == pytest.approx(calibration["gripper"].ticks_to_radians(2031))


def test_lerobot_joints_without_a_calibration_are_refused(calibration_files):
    interface = so100_interface(("observation.image",), units="lerobot_degrees")
    with pytest.raises(CalibrationError, match="need the arm's LeRobot calibration file"):
        JointConverter.for_interface(interface)
    partial = json.loads(calibration_files["drive_mode_0"].read_text())
    del partial["gripper"]
    path = calibration_files["drive_mode_0"].with_name("partial.json")
    path.write_text(json.dumps(partial))
    with pytest.raises(CalibrationError, match=re.escape(f"calibration file {path} has no entry for gripper")):
        JointConverter.for_interface(interface, path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "expected a non-empty object"),
        ("{}", "expected a non-empty object"),
        ('{"a": {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 0}}', "motor 'a' has no 'range_max'"),
        (
            '{"a": {"id": 1, "drive_mode": 2, "homing_offset": 0, "range_min": 0, "range_max": 9}}',
            "drive_mode must be 0 or 1",
        ),
        (
            '{"a": {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 9, "range_max": 9}}',
            "0 <= range_min < range_max <= 4095",
        ),
        (
            '{"a": {"id": 1, "drive_mode": 0, "homing_offset": 0.5, "range_min": 0, "range_max": 9}}',
            "'homing_offset' must be an integer",
        ),
        (
            '{"a": {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 0, "range_max": 9},'
            ' "b": {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 0, "range_max": 9}}',
            "servo ids used twice: [1]",
        ),
        ("{nope", "not valid JSON"),
    ],
)
def test_invalid_calibration_files_are_refused_naming_the_problem(content, message):
    with pytest.raises(CalibrationError, match=re.escape(message)):
        parse_lerobot_calibration(content, "arm.json")


def test_the_radians_convention_is_the_drivers():
    """docs/so100-driver.md: rad = sign * (ticks - middle) * 2 pi / 4096."""
    motor = MotorCalibration("elbow_flex", 3, 1, 0, 1000, 3000)
    assert motor.ticks_to_radians(2000 + 1024) == pytest.approx(-math.pi / 2)
    assert motor.radians_to_ticks(-math.pi / 2) == pytest.approx(3024)
