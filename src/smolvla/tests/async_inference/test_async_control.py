"""ControlLoop and JointStateMonitor: a control tick acts only on a fresh joint state, and holds without one."""

import math

import numpy as np
import pytest

from smolvla.async_inference.config import QueueConfig
from smolvla.async_inference.control import ControlLoop, JointStateMonitor
from smolvla.async_inference.core import AsyncActionQueue
from smolvla.async_inference.safety import CommandSafety

DT = 0.1
N = 10
TIMEOUT = 0.25  # 2.5 ticks: states 1 and 2 ticks old are fresh, 3 ticks old are stale
Q0 = np.array([0.1, -0.2])
STEP = 0.01  # the ramp's motion per tick on the first joint


def make_loop(tick_clock: str, mode: str = "continuous") -> ControlLoop:
    config = QueueConfig(
        chunk_size=N,
        control_period=DT,
        mode=mode,
        similarity_epsilon=0.0,
        aggregation="latest_only",  # overlapping ramps replace each other exactly
        tick_clock=tick_clock,
    )
    queue = AsyncActionQueue(config, [2.0, 2.0])
    # 0.05 rad per tick; an acceleration limit high enough not to shape these tests' motions.
    safety = CommandSafety(["a", "b"], [-1.0, -1.0], [1.0, 1.0], 0.05 / DT, 1e6, DT)
    return ControlLoop(queue, safety, TIMEOUT, resume_tolerance=0.2)


def ramp(first_tick: int) -> np.ndarray:
    """The action for tick t is Q0 with the first joint moved by STEP * t: every chunk agrees."""
    ticks = first_tick + np.arange(N)
    actions = np.tile(Q0, (N, 1))
    actions[:, 0] += STEP * ticks
    return actions


def answer(loop: ControlLoop, request, now: float, late: int = 0) -> None:
    """Answer with the ramp chunk; `late` actions are expected to be for ticks already executed."""
    first_tick = request.observation_tick + 1
    outcome = loop.queue.add_chunk(request.request_id, first_tick, ramp(first_tick), now)
    assert outcome.accepted and outcome.dropped_late == late


@pytest.mark.parametrize("timeout", [0.0, -0.5, math.nan, math.inf, True, "0.5", None])
def test_timeout_must_be_a_positive_finite_number_of_seconds(timeout):
    with pytest.raises(ValueError, match="joint_state_timeout must be > 0 seconds"):
        JointStateMonitor(timeout)


def test_monitor_reports_age_and_freshness_from_the_arrival_time():
    monitor = JointStateMonitor(0.5)
    missing = monitor.check(3.0)
    assert missing.positions is None and missing.age == math.inf and not missing.fresh
    state = np.array([0.1, 0.2])
    monitor.update(state, now=10.0)
    state[0] = 9.0  # the monitor kept its own copy
    fresh = monitor.check(10.5)
    assert fresh.fresh and fresh.age == pytest.approx(0.5)
    np.testing.assert_array_equal(fresh.positions, [0.1, 0.2])
    stale = monitor.check(10.6)
    assert not stale.fresh and stale.age == pytest.approx(0.6)
    np.testing.assert_array_equal(stale.positions, [0.1, 0.2])  # still reported, for the diagnostics
    assert monitor.check(9.0).fresh and monitor.check(9.0).age == 0.0  # clock stepped back: not "from the future"
    monitor.update([0.3, 0.4], now=11.0)
    assert monitor.check(11.2).fresh


def test_loop_refuses_a_queue_and_safety_for_different_joints():
    queue = AsyncActionQueue(QueueConfig(chunk_size=N, control_period=DT), [1.0, 1.0, 1.0])
    safety = CommandSafety(["a", "b"], [-1.0, -1.0], [1.0, 1.0], 1.0, 10.0, DT)
    with pytest.raises(ValueError, match="3 joints"):
        ControlLoop(queue, safety, TIMEOUT)
    queue = AsyncActionQueue(QueueConfig(chunk_size=N, control_period=DT), [1.0, 1.0])
    with pytest.raises(ValueError, match="same control period"):
        ControlLoop(queue, CommandSafety(["a", "b"], [-1.0, -1.0], [1.0, 1.0], 1.0, 10.0, DT / 2), TIMEOUT)


@pytest.mark.parametrize("tick_clock", ["wall", "action"])
def test_no_joint_state_yet_sends_nothing_and_does_not_start_the_queue(tick_clock):
    loop = make_loop(tick_clock)
    before = loop.queue.status()
    for i in range(5):
        tick = loop.step(i * DT)
        assert tick.held_without_state and tick.command is None and tick.request is None
        assert tick.resumed_after == 0
    after = loop.queue.status()
    assert after.tick == before.tick and after.startup_ticks == 0 and after.requests_sent == 0
    assert loop.ticks_without_state == 5

    loop.update_joint_state(Q0, 0.5)
    first = loop.step(0.5)
    assert not first.held_without_state and first.resumed_after == 0  # waiting at start is not an outage
    np.testing.assert_array_equal(first.command, Q0)  # first command = measured state
    assert first.request is not None and first.request.must_go
    assert loop.ticks_without_state == 5


@pytest.mark.parametrize("tick_clock", ["wall", "action"])
def test_stale_joint_state_holds_without_consuming_the_queue_then_resumes_the_ramp(tick_clock):
    loop = make_loop(tick_clock)
    now = 0.0
    commands = []
    unanswered = None
    # Running: a fresh state every tick; every tick requests (g = 1) and the policy answers at once.
    for _ in range(8):
        loop.update_joint_state(Q0, now)
        tick = loop.step(now)
        commands.append(tick.command)
        assert tick.request is not None
        answer(loop, tick.request, now)
        now += DT
    np.testing.assert_allclose(np.diff(np.array(commands)[1:, 0]), STEP)  # moving along the ramp

    # The joint states stop. The last state stays fresh for 2 more ticks, which still run normally; the request of
    # the first is answered only during the outage (so the second has one in flight and requests nothing).
    stopped_at = now - DT
    for expect_request in (True, False):
        tick = loop.step(now)
        commands.append(tick.command)
        assert not tick.held_without_state and (tick.request is not None) == expect_request
        unanswered = unanswered or tick.request
        now += DT
    before = loop.queue.status()
    held = []
    for i in range(6):
        tick = loop.step(now)
        assert tick.held_without_state and tick.request is None and tick.queue is None
        assert not tick.state.fresh and tick.state.age == pytest.approx(now - stopped_at)
        held.append(tick.command)
        if i == 0:  # merged while holding: late by the one tick that ran after its request, not by the hold
            answer(loop, unanswered, now, late=1)
            answered = loop.queue.status()
            assert answered.queue_length == before.queue_length + 1  # the new chunk reaches one tick further
        now += DT
    after = loop.queue.status()
    for command in held:
        np.testing.assert_array_equal(command, commands[-1])  # the last command again
    assert after.tick == before.tick  # with either clock: no tick number used up
    assert after.actions_executed == before.actions_executed and after.queue_length == answered.queue_length
    assert after.requests_sent == before.requests_sent
    assert after.idle_ticks == before.idle_ticks  # a hold for want of state is not starvation
    assert loop.ticks_without_state == 6

    # States come back; the arm is where it was held.
    loop.update_joint_state(commands[-1], now)
    resumed = loop.step(now)
    assert resumed.resumed_after == 6 and not resumed.held_without_state
    assert resumed.command[0] == pytest.approx(commands[-1][0] + STEP)  # the next action of the ramp, no skip
    np.testing.assert_allclose(resumed.command[1:], Q0[1:])
    assert resumed.request is not None  # requests resume with the fresh observation
    assert loop.safety.commands_clamped == 0
    assert loop.queue.status().actions_dropped_late == 1
    assert loop.ticks_without_state == 6


def test_resume_is_step_limited_from_the_held_command():
    loop = make_loop("action", mode="sync")
    loop.update_joint_state(Q0, 0.0)
    request = loop.step(0.0).request
    far = np.tile(Q0 + [0.5, 0.0], (N, 1))  # ten times the step limit away
    loop.queue.add_chunk(request.request_id, request.observation_tick + 1, far, 0.0)
    moved = loop.step(DT).command
    np.testing.assert_allclose(moved, Q0 + [0.05, 0.0])
    held = loop.step(1.0).command  # state 1 s old: hold
    np.testing.assert_array_equal(held, moved)
    loop.update_joint_state(Q0 + [0.04, 0.0], 1.1)  # lagging behind the held command by less than max_step
    np.testing.assert_allclose(loop.step(1.1).command, Q0 + [0.10, 0.0])  # one max_step further, no jump


def test_a_state_far_from_the_held_command_after_an_outage_is_a_fault_until_the_arm_is_back():
    loop = make_loop("action", mode="sync")
    loop.update_joint_state(Q0, 0.0)
    request = loop.step(0.0).request
    loop.queue.add_chunk(request.request_id, request.observation_tick + 1, np.tile(Q0, (N, 1)), 0.0)
    held = loop.step(DT).command
    assert loop.step(1.0).held_without_state
    queued = loop.queue.status().queue_length
    moved = Q0 + [0.3, -0.2]  # torque was off while the driver restarted, or a spoofed state
    for i in range(3):
        loop.update_joint_state(moved, 1.1 + i * DT)
        tick = loop.step(1.1 + i * DT)
        assert tick.held_without_state and tick.request is None
        assert "0.300 rad from where it was last seen and from the held command at a" in tick.fault
        assert tick.fault_kind == "resume: a"
        np.testing.assert_array_equal(tick.command, held)  # never the spoofed state, never a jump
    assert loop.joint_state_faults == 3 and loop.queue.status().queue_length == queued
    loop.update_joint_state(Q0 + [0.02, 0.0], 1.5)  # the real arm is back near the held command
    tick = loop.step(1.5)
    assert not tick.fault and tick.queue is not None
    np.testing.assert_array_equal(tick.command, held)  # the queued action (Q0) is executed, not skipped
    assert loop.queue.status().queue_length == queued - 1


def test_an_arm_resting_away_from_its_command_resumes_where_it_was_seen():
    loop = make_loop("action", mode="sync")
    loop.update_joint_state(Q0, 0.0)
    request = loop.step(0.0).request
    squeeze = np.tile(Q0 + [0.0, -0.4], (N, 1))  # e.g. a gripper closing on an object it cannot close through
    loop.queue.add_chunk(request.request_id, request.observation_tick + 1, squeeze, 0.0)
    now = DT
    for _ in range(15):  # the command closes, the jaw stops at the object
        loop.update_joint_state(Q0, now)
        loop.step(now)
        now += DT
    assert loop.safety.last_command[1] == pytest.approx(Q0[1] - 0.4)
    assert loop.step(now + 1.0).held_without_state  # an outage
    loop.update_joint_state(Q0, now + 1.1)  # back where it was seen, 0.4 rad from its command
    tick = loop.step(now + 1.1)
    assert not tick.fault and not tick.held_without_state


def test_a_joint_state_outside_the_limits_is_a_fault_never_commanded():
    loop = make_loop("action")
    loop.update_joint_state(np.array([3.0, 0.0]), 0.0)  # before the first command: nothing at all is sent
    tick = loop.step(0.0)
    assert tick.command is None and tick.request is None and "a 3.000 not in [-1.000, 1.000]" in tick.fault
    assert tick.fault_kind == "limits: a"
    loop.update_joint_state(Q0, 0.1)
    first = loop.step(0.1)
    np.testing.assert_array_equal(first.command, Q0)
    answer(loop, first.request, 0.1)
    loop.update_joint_state(np.array([0.1, -1.5]), 0.2)  # while running: hold, do not act on it
    tick = loop.step(0.2)
    assert tick.fault and tick.queue is None
    np.testing.assert_array_equal(tick.command, first.command)
    assert loop.joint_state_faults == 2


def test_a_restart_after_reactivation_starts_from_the_measured_state():
    loop = make_loop("action", mode="sync")
    loop.update_joint_state(Q0, 0.0)
    loop.step(0.0)
    assert loop.step(1.0).held_without_state
    loop.reset()  # re-activation: an operator's decision to start over where the arm is
    loop.update_joint_state(Q0 + [0.3, -0.2], 1.1)
    tick = loop.step(1.1)
    assert not tick.fault
    np.testing.assert_allclose(tick.command, Q0 + [0.3, -0.2])


def test_stale_state_right_after_activation_sends_nothing():
    loop = make_loop("action")
    loop.update_joint_state(Q0, 0.0)
    assert loop.step(0.0).command is not None
    loop.reset()  # deactivate / activate while the robot is gone
    tick = loop.step(5.0)
    assert tick.held_without_state and tick.command is None and tick.request is None
    assert tick.state.positions is not None and not tick.state.fresh
    loop.update_joint_state(Q0 + 0.2, 5.1)
    np.testing.assert_allclose(loop.step(5.1).command, Q0 + 0.2)  # starts from the new measurement
