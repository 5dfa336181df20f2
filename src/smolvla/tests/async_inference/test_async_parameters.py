"""The executor's parameters: bounds, building the loop, live changes."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from smolvla.async_inference.parameters import LIVE, apply_live, build_control_loop

CONFIG = Path(__file__).resolve().parents[4] / "config" / "executor.yaml"


def defaults() -> dict:
    return dict(yaml.safe_load(CONFIG.read_text())["smolvla_executor"]["ros__parameters"])


def test_the_shipped_parameter_file_builds_a_loop():
    loop = build_control_loop(defaults())
    np.testing.assert_allclose(loop.safety.max_step, [0.1] * 5 + [0.3])  # 3 and 9 rad/s at 30 Hz
    assert loop.queue.config.control_period == pytest.approx(1 / 30)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("control_rate", 1e-300, "control_rate must be within [1, 1000], got 1e-300"),
        ("diagnostics_rate", 1e-300, "diagnostics_rate must be within [0.01, 100]"),
        ("status_rate", 1e-300, "status_rate must be 0 (every tick) or at least 0.01 Hz"),
        ("control_rate", -5.0, "control_rate must be within"),
        ("control_rate", float("nan"), "control_rate must be within"),
        ("chunk_size", 10**6, "chunk_size must be within [1, 1000]"),
        ("joint_state_timeout", 0.0, "joint_state_timeout must be within"),
        ("threshold", 7.0, "threshold must be in [0, 1], got 7.0"),
        ("mode", "bogus", "mode must be one of"),
        ("max_velocity", [1.0, 2.0], "max_velocity must have 6 numbers"),
        ("max_acceleration", -1.0, "max_acceleration must be finite and > 0"),
        ("gate_max_jump", 0.0, "gate_max_jump must be > 0"),
        ("resume_tolerance", 0.0, "resume_tolerance must be within"),
    ],
)
def test_out_of_bounds_values_are_refused_with_the_reason(name, value, message):
    with pytest.raises(ValueError) as error:
        build_control_loop(defaults() | {name: value})
    assert message in str(error.value)


def test_live_parameters_apply_to_a_running_loop():
    p = defaults()
    loop = build_control_loop(p)
    changed = p | {"mode": "async", "threshold": 0.4, "aggregation": "latest_only", "similarity_epsilon": 0.0}
    changed |= {"max_velocity": 1.5, "max_acceleration": 15.0, "gate_max_jump": 0.3}
    assert set(changed) - set(p) == set() and {"threshold", "max_velocity", "gate_max_jump"} <= LIVE
    apply_live(loop, changed)
    assert loop.queue.threshold() == 0.4 and loop.queue.config.aggregation == "latest_only"
    np.testing.assert_allclose(loop.safety.max_step, 0.05)
    np.testing.assert_allclose(loop.gate.max_jump, 0.3)


def test_the_queue_refuses_a_live_change_of_what_cannot_change():
    loop = build_control_loop(defaults())
    with pytest.raises(ValueError, match="chunk_size cannot change while the queue runs"):
        loop.queue.reconfigure(dataclasses.replace(loop.queue.config, chunk_size=10))
