"""Write LeRobot 0.4.4's own SO-100 unit conversions as test vectors: src/smolvla/tests/data/lerobot_units.json.

Runs in .venv-reference (tools/setup_reference_venv.sh), the venv with LeRobot 0.4.4:

    .venv-reference/bin/python tools/lerobot_units_vectors.py

For two calibrations of an SO-100 follower (every joint with drive_mode 0, then every joint with drive_mode 1) and
each of LeRobot's three normalisation modes on every joint, it records what LeRobot's Feetech motor bus makes of
present-position ticks (`_normalize`: inside, at and beyond the range ends) and of normalised values
(`_unnormalize`: inside, at and beyond -100/0/100 or a wide span of degrees). src/smolvla/tests/test_joint_units.py
asserts that smolvla.joint_units gives the same numbers. The bus is never connected: the conversions are plain
methods of the bus object, which is assembled without opening a serial port (and without the Feetech SDK).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

from lerobot.motors import Motor, MotorCalibration, MotorNormMode
from lerobot.motors.feetech import FeetechMotorsBus
from lerobot.motors.motors_bus import MotorsBus

OUTPUT = Path(__file__).resolve().parents[1] / "src/smolvla/tests/data/lerobot_units.json"

# A plausible SO-100 calibration (ranges of a real arm's size); the second variant inverts every joint.
RANGES = {
    "shoulder_pan": (1, -1470, 758, 3292),
    "shoulder_lift": (2, 1203, 833, 3155),
    "elbow_flex": (3, -1041, 881, 3082),
    "wrist_flex": (4, 823, 857, 3228),
    "wrist_roll": (5, -112, 0, 4095),
    "gripper": (6, 1407, 2031, 3468),
}
MODES = {
    "degrees": MotorNormMode.DEGREES,
    "range_m100_100": MotorNormMode.RANGE_M100_100,
    "range_0_100": MotorNormMode.RANGE_0_100,
}
VALUES = {
    "degrees": [-250.0, -180.0, -90.5, -12.345, -0.3, 0.0, 0.3, 7.77, 45.25, 90.0, 179.9, 250.0],
    "range_m100_100": [-150.0, -100.0, -99.99, -50.5, -1.234, 0.0, 12.5, 33.3, 99.99, 100.0, 150.0],
    "range_0_100": [-20.0, 0.0, 0.01, 5.5, 12.5, 49.99, 50.0, 87.654, 99.99, 100.0, 130.0],
}


def calibration(drive_mode: int) -> dict[str, MotorCalibration]:
    return {
        name: MotorCalibration(id=i, drive_mode=drive_mode, homing_offset=offset, range_min=low, range_max=high)
        for name, (i, offset, low, high) in RANGES.items()
    }


def bus(mode: MotorNormMode, cal: dict[str, MotorCalibration]) -> FeetechMotorsBus:
    """A Feetech bus object for the conversions only: the base initialiser, no port or SDK objects."""
    instance = FeetechMotorsBus.__new__(FeetechMotorsBus)
    MotorsBus.__init__(instance, "unused", {n: Motor(c.id, "sts3215", mode) for n, c in cal.items()}, cal)
    return instance


def ticks_to_probe(low: int, high: int) -> list[int]:
    middle = (low + high) // 2
    ticks = [low - 40, low, low + 1, middle - 1, middle, middle + 1, (low + 3 * high) // 4, high - 1, high, high + 40]
    return sorted({t for t in ticks if 0 <= t <= 4095})


def main() -> int:
    cases = []
    calibrations = {}
    for drive_mode in (0, 1):
        cal = calibration(drive_mode)
        key = f"drive_mode_{drive_mode}"
        calibrations[key] = {
            name: {
                "id": c.id,
                "drive_mode": c.drive_mode,
                "homing_offset": c.homing_offset,
                "range_min": c.range_min,
                "range_max": c.range_max,
            }
            for name, c in cal.items()
        }
        for mode_name, mode in MODES.items():
            motors = bus(mode, cal)
            for name, c in cal.items():
                ticks = ticks_to_probe(c.range_min, c.range_max)
                values = VALUES[mode_name]
                cases.append(
                    {
                        "calibration": key,
                        "motor": name,
                        "units": mode_name,
                        "ticks": ticks,
                        "normalized": [motors._normalize({c.id: t})[c.id] for t in ticks],
                        "values": values,
                        "unnormalized": [motors._unnormalize({c.id: v})[c.id] for v in values],
                    }
                )
    data = {
        "generator": "tools/lerobot_units_vectors.py",
        "lerobot": version("lerobot"),
        "calibrations": calibrations,
        "cases": cases,
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
