import numpy as np
import pytest

from smolvla.async_inference.safety import CommandSafety, InvalidChunkError

JOINTS = ["a", "b", "c"]


DT = 0.1


def make_safety(max_step=0.1, max_step_change=1e6, tolerance=0.05) -> CommandSafety:
    """Limits given per tick for readability: velocity max_step / DT, acceleration max_step_change / DT^2."""
    return CommandSafety(
        JOINTS, [-1.0] * 3, [1.0] * 3, max_step / DT, max_step_change / DT**2, DT, limit_tolerance=tolerance
    )


def assert_safe(safety: CommandSafety, commands: np.ndarray, from_rest: bool = True) -> None:
    """Every command within the limits, every step within max_step, every change of step within the accel limit
    (the first command at rest, unless from_rest is False)."""
    commands = np.asarray(commands)
    assert np.all(commands >= safety.lower) and np.all(commands <= safety.upper)
    steps = np.diff(commands, axis=0)
    assert np.all(np.abs(steps) <= safety.max_step + 1e-12)
    change = safety.max_acceleration * DT**2
    if from_rest:
        steps = np.vstack([np.zeros(3), steps])
    assert np.all(np.abs(np.diff(steps, axis=0)) <= change + 1e-12)


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


def test_limits_are_given_per_second_so_the_step_scales_with_the_rate():
    slow = CommandSafety(JOINTS, [-1.0] * 3, [1.0] * 3, 3.0, 1e6, 1 / 30)
    fast = CommandSafety(JOINTS, [-1.0] * 3, [1.0] * 3, 3.0, 1e6, 1 / 100)
    np.testing.assert_allclose(slow.max_step, 0.1)
    np.testing.assert_allclose(fast.max_step, 0.03)


def test_a_measured_state_outside_the_limits_is_a_fault_never_commanded():
    safety = make_safety(tolerance=0.05)
    spoofed = np.array([3.0, 0.0, 0.0])
    assert "a 3.000 not in [-1.000, 1.000]" in safety.state_fault(spoofed)
    with pytest.raises(ValueError, match="not commanding: joint state outside the joint limits"):
        safety.command(None, spoofed)
    assert safety.last_command is None
    assert safety.state_fault(np.array([1.04, -1.04, 0.0])) == ""  # within the tolerance: starts at the limit
    first = safety.command(None, np.array([1.04, -1.04, 0.0]))
    np.testing.assert_array_equal(first.positions, [1.0, -1.0, 0.0])


def test_acceleration_limit_ramps_up_and_brakes_onto_the_target():
    safety = make_safety(max_step=0.1, max_step_change=0.02)
    commands = [safety.command(None, np.zeros(3)).positions]
    target = np.array([0.8, -0.3, 0.0])
    for _ in range(40):
        commands.append(safety.command(target, np.zeros(3)).positions)
    commands = np.array(commands)
    assert_safe(safety, commands)
    np.testing.assert_allclose(commands[1:4, 0], [0.02, 0.06, 0.12])  # speeds up by 0.02 per tick
    np.testing.assert_allclose(commands[-1], target)  # arrives exactly
    assert np.all(commands[:, 0] <= 0.8 + 1e-12)  # without overshooting


def test_hold_brakes_to_a_stop_and_never_sends_zeros():
    safety = make_safety(max_step=0.1, max_step_change=0.04)
    commands = [safety.command(None, np.array([0.3, 0.3, 0.3])).positions]
    commands += [safety.command(np.array([1.0, 0.3, 0.3]), np.zeros(3)).positions for _ in range(4)]
    held = [safety.command(None, np.zeros(3)) for _ in range(6)]
    assert all(h.held and not h.first for h in held)
    positions = np.array([c for c in commands] + [h.positions for h in held])
    assert_safe(safety, positions)
    np.testing.assert_allclose(np.diff(positions[-4:], axis=0), 0.0)  # stopped, and stays
    assert positions[-1, 0] > commands[-1][0]  # braked over a few ticks instead of stopping dead
    assert safety.commands_held == 6
    safety.reset()
    np.testing.assert_array_equal(safety.command(None, np.full(3, -0.5)).positions, np.full(3, -0.5))


def test_a_deliberate_stop_brakes_within_the_acceleration_limit():
    safety = make_safety(max_step=0.1, max_step_change=0.02)
    assert safety.stop(10).shape == (0, 3)  # nothing commanded yet: nothing to stop
    commands = [safety.command(None, np.zeros(3)).positions]
    commands += [safety.command(np.array([0.9, -0.9, 0.0]), np.zeros(3)).positions for _ in range(6)]
    stop = safety.stop(100)
    assert_safe(safety, np.vstack([commands, stop]))
    steps = np.diff(np.vstack([commands[-1], stop])[:, 0])
    assert steps[0] > 0.05 and steps[-1] == 0.0  # from speed to rest
    np.testing.assert_allclose(np.diff(steps), -0.02)  # as hard as allowed, no harder: the shortest safe stop
    np.testing.assert_allclose(safety.stop(100), stop[-1:])  # at rest: the last command again
    safety.command(np.array([0.9, -0.9, 0.0]), np.zeros(3))
    safety.command(np.array([0.9, -0.9, 0.0]), np.zeros(3))
    assert len(safety.stop(1)) == 1  # bounded: a stop longer than max_ticks ends where the last tick left it


def test_every_command_is_safe_whatever_the_actions():
    rng = np.random.default_rng(7)
    for trial in range(20):
        safety = make_safety(max_step=rng.uniform(0.01, 0.3), max_step_change=rng.uniform(0.001, 0.1))
        commands = [safety.command(None, rng.uniform(-1.0, 1.0, 3)).positions]
        from_rest = True
        for i in range(200):
            if i == 100 and trial % 2:  # a live change of the acceleration limit applies from then on
                safety.set_limits(safety.max_velocity, safety.max_acceleration * rng.choice([0.25, 4.0]))
                commands, from_rest = commands[-2:], False
            kind = rng.integers(4)
            action = None if kind == 0 else rng.uniform(-30.0, 30.0, 3) if kind == 1 else rng.uniform(-1.2, 1.2, 3)
            commands.append(safety.command(action, np.zeros(3)).positions)
            if i == 99:
                assert_safe(safety, commands)
        assert_safe(safety, commands, from_rest)


def test_limits_are_validated_and_a_bad_change_changes_nothing():
    safety = make_safety()
    with pytest.raises(ValueError, match="max_velocity must be finite and > 0"):
        safety.set_limits([1.0, 0.0, 1.0], 10.0)
    with pytest.raises(ValueError, match="max_acceleration must have 3 numbers"):
        safety.set_limits(1.0, [1.0, 2.0])
    np.testing.assert_allclose(safety.max_step, 0.1)


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
        CommandSafety(JOINTS, [0, 0, 0], [1, 0, 1], 1.0, 10.0, DT)
    with pytest.raises(ValueError, match="one per joint"):
        CommandSafety(JOINTS, [0, 0], [1, 1], 1.0, 10.0, DT)
    with pytest.raises(ValueError, match="max_velocity must be finite and > 0"):
        CommandSafety(JOINTS, [0, 0, 0], [1, 1, 1], [1.0, 0.0, 1.0], 10.0, DT)
    with pytest.raises(ValueError, match="max_velocity must have 3 numbers"):
        CommandSafety(JOINTS, [0, 0, 0], [1, 1, 1], "abc", 10.0, DT)
    with pytest.raises(ValueError, match="control period"):
        CommandSafety(JOINTS, [0, 0, 0], [1, 1, 1], 1.0, 10.0, 0.0)
