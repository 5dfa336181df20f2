import numpy as np
import pytest

from smolvla.async_inference.safety import CommandSafety, InvalidChunkError

JOINTS = ["a", "b", "c"]


def make_safety(max_step=0.1) -> CommandSafety:
    return CommandSafety(JOINTS, [-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [max_step] * 3)


def test_first_command_is_the_measured_state_even_with_an_action():
    safety = make_safety()
    measured = np.array([0.5, -0.2, 0.0])
    first = safety.command(np.array([0.9, 0.9, 0.9]), measured)
    assert first.first and not first.clamped
    np.testing.assert_array_equal(first.positions, measured)


def test_step_and_limits_are_clamped_and_counted():
    safety = make_safety(max_step=0.1)
    safety.command(None, np.zeros(3))
    small = safety.command(np.array([0.05, -0.05, 0.0]), np.zeros(3))
    assert not small.clamped
    big = safety.command(np.array([0.5, 0.05, 0.0]), np.zeros(3))
    assert big.clamped
    np.testing.assert_allclose(big.positions, [0.15, 0.05, 0.0])
    assert safety.commands_clamped == 1
    for _ in range(30):  # a target beyond the limit ends at the limit, never beyond
        out = safety.command(np.array([5.0, 0.0, 0.0]), np.zeros(3))
    assert out.positions[0] == pytest.approx(1.0)
    assert safety.commands_clamped == 31


def test_starting_outside_the_limits_walks_back_without_a_jump():
    safety = make_safety(max_step=0.1)
    safety.command(None, np.array([1.3, 0.0, 0.0]))
    out = safety.command(np.array([1.3, 0.0, 0.0]), np.zeros(3))
    assert out.positions[0] == pytest.approx(1.2)


def test_hold_repeats_the_last_command_never_zeros():
    safety = make_safety(max_step=1.0)
    safety.command(None, np.array([0.3, 0.3, 0.3]))
    safety.command(np.array([0.4, 0.2, 0.1]), np.zeros(3))
    held = safety.command(None, np.zeros(3))
    assert held.held and not held.first
    np.testing.assert_allclose(held.positions, [0.4, 0.2, 0.1])
    assert safety.commands_held == 1
    safety.reset()
    np.testing.assert_array_equal(safety.command(None, np.full(3, -0.5)).positions, np.full(3, -0.5))


def test_validate_chunk_reorders_by_name():
    safety = make_safety()
    actions = np.array([[3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(safety.validate_chunk(["c", "a", "b"], actions), [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize(
    ("names", "actions", "reason"),
    [
        (JOINTS, np.array([[0.0, np.nan, 0.0]]), "NaN"),
        (JOINTS, np.array([[0.0, np.inf, 0.0], [0.0, 0.0, -np.inf]]), "2 NaN or infinite values"),
        (JOINTS, np.zeros((2, 2)), "3 joint names but 2 values"),
        (["a", "b", "elbow"], np.zeros((1, 3)), "unknown joints ['elbow']"),
        (["a", "b"], np.zeros((1, 2)), "lacks joints ['c']"),
        (["a", "a", "b"], np.zeros((1, 3)), "repeats"),
        (JOINTS, np.zeros((0, 3)), "at least one action"),
    ],
)
def test_bad_chunks_are_rejected_with_a_reason(names, actions, reason):
    with pytest.raises(InvalidChunkError, match=None) as error:
        make_safety().validate_chunk(names, actions)
    assert reason in str(error.value)


def test_order_joint_state_ignores_extra_joints_and_rejects_missing_or_nan():
    safety = make_safety()
    np.testing.assert_array_equal(safety.order(["x", "b", "a", "c"], [9, 2, 1, 3], "joint state"), [1, 2, 3])
    with pytest.raises(ValueError, match="missing joints"):
        safety.order(["a", "b"], [1, 2], "joint state")
    with pytest.raises(ValueError, match="NaN"):
        safety.order(JOINTS, [1, np.nan, 3], "joint state")


def test_invalid_limits_are_refused():
    with pytest.raises(ValueError, match="lower < upper"):
        CommandSafety(JOINTS, [0, 0, 0], [1, 0, 1], [0.1] * 3)
    with pytest.raises(ValueError, match="one per joint"):
        CommandSafety(JOINTS, [0, 0], [1, 1], [0.1] * 3)
    with pytest.raises(ValueError, match="max step"):
        CommandSafety(JOINTS, [0, 0, 0], [1, 1, 1], [0.1, 0.0, 0.1])
    with pytest.raises(ValueError, match="max step must have 3 numbers"):
        CommandSafety(JOINTS, [0, 0, 0], [1, 1, 1], "abc")
