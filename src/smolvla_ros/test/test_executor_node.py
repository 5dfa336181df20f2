"""The executor node in its own process over real DDS; this test process plays the robot (joint states, command
subscriber) and the policy (answers chunk requests)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from smolvla_msgs.msg import ActionChunk, ChunkRequest, ExecutorStatus
from smolvla_ros.chunk_messages import chunk_to_msg

TEST_DIR = Path(__file__).resolve().parent
pytestmark = pytest.mark.ros

CONFIG = TEST_DIR.parents[2] / "config" / "executor.yaml"
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
Q0 = np.array([0.1, -0.2, 0.3, 0.0, 0.5, 0.2])
N = 20
RATE = 30.0
MAX_STEP = 0.05  # rad per tick: max_velocity = MAX_STEP * RATE
LOWER = np.array([-1.91986, -1.74533, -1.69, -1.65806, -2.74385, -0.17453])  # config/executor.yaml
UPPER = np.array([1.91986, 1.74533, 1.69, 1.65806, 2.84121, 1.74533])


class RobotAndPolicy:
    """An arm that tracks its commands exactly: publishes the last command as its joint state (Q0 before the first;
    `state_override` instead when set; only while `publishing_state`); records commands and status; answers chunk
    requests with `answer(request)`."""

    def __init__(self, ros) -> None:
        self.node = ros.node("executor_test_peer")
        self.commands: list[tuple[float, np.ndarray]] = []
        self.requests: list[ChunkRequest] = []
        self.status: ExecutorStatus | None = None
        self.statuses: list[ExecutorStatus] = []
        self.answer = self.ramp_chunk
        self.publishing_state = True
        self.state_override: np.ndarray | None = None
        self.chunk_id = 0
        self.state_pub = self.node.create_publisher(JointState, "/joint_states", 10)
        self.chunk_pub = self.node.create_publisher(ActionChunk, "/smolvla/action_chunk", 10)
        self.node.create_subscription(Float64MultiArray, "/forward_position_controller/commands", self.on_command, 10)
        self.node.create_subscription(ChunkRequest, "/smolvla/chunk_request", self.on_request, 10)
        self.node.create_subscription(ExecutorStatus, "/smolvla/executor_status", self.on_status, 10)
        self.node.create_timer(0.02, self.publish_state)
        self.lifecycle = self.node.create_client(ChangeState, "/smolvla_executor/change_state")

    def publish_state(self) -> None:
        if self.publishing_state:
            position = self.commands[-1][1] if self.commands else Q0
            if self.state_override is not None:
                position = self.state_override
            self.state_pub.publish(JointState(name=JOINTS, position=position.tolist()))

    def on_command(self, msg: Float64MultiArray) -> None:
        self.commands.append((time.monotonic(), np.array(msg.data)))

    def on_status(self, msg: ExecutorStatus) -> None:
        self.status = msg
        self.statuses.append(msg)

    def on_request(self, msg: ChunkRequest) -> None:
        self.requests.append(msg)
        chunk = self.answer(msg)
        if chunk is not None:
            self.chunk_pub.publish(chunk)

    def make_chunk(
        self, request: ChunkRequest, actions: np.ndarray, joints=JOINTS, period: float = 1.0 / RATE
    ) -> ActionChunk:
        self.chunk_id += 1
        return chunk_to_msg(
            actions,
            joints,
            request_id=request.request_id,
            chunk_id=self.chunk_id,
            first_tick=request.observation_tick + 1,
            control_period=period,
            capture_stamp=request.capture_stamp,
            inference_latency=0.0,
            instruction="test",
        )

    def ramp_chunk(self, request: ChunkRequest) -> ActionChunk:
        # The action for tick t moves the first joint by 0.002 rad per tick from Q0: every chunk agrees.
        ticks = request.observation_tick + 1 + np.arange(N)
        actions = np.tile(Q0, (N, 1))
        actions[:, 0] += 0.002 * ticks
        return self.make_chunk(request, actions)

    def command_count(self) -> int:
        return len(self.commands)


def start_executor(processes, **overrides):
    # An acceleration limit that does not shape these tests' motions unless a test sets one.
    params = {
        "chunk_size": N,
        "control_rate": RATE,
        "max_velocity": MAX_STEP * RATE,
        "max_acceleration": 1000.0,
        "request_timeout": 1.0,
        **overrides,
    }
    argv = [sys.executable, "-m", "smolvla_ros.executor_node", "--ros-args", "--params-file", str(CONFIG)]
    for name, value in params.items():
        argv += ["-p", f"{name}:={value}"]
    return processes.start("executor", argv)


@pytest.mark.parametrize("tick_clock", ["wall", "action"])
def test_commands_flow_at_rate_hold_when_policy_stalls_and_resume(ros, processes, tick_clock):
    executor = start_executor(processes, tick_clock=tick_clock)
    peer = RobotAndPolicy(ros)
    ros.wait_for(lambda: peer.command_count() > 0, 30.0, "the first command")
    np.testing.assert_allclose(peer.commands[0][1], Q0, atol=1e-12)  # first command = measured state

    ros.wait_for(lambda: peer.command_count() > 15, 10.0, "commands to flow")
    start = peer.command_count()
    ros.spin_for(2.0)
    rate = (peer.command_count() - start) / 2.0
    assert 0.75 * RATE <= rate <= 1.1 * RATE
    moving = np.array([c for _, c in peer.commands[-30:]])
    assert np.all(np.diff(moving[:, 0]) > 0)  # the ramp is executed
    np.testing.assert_allclose(np.diff(moving[:, 0]), 0.002, atol=1e-9)  # one action per tick, none skipped
    np.testing.assert_allclose(moving[:, 1:], np.tile(Q0[1:], (30, 1)))
    ids = [r.request_id for r in peer.requests]
    assert ids == sorted(set(ids))

    peer.answer = lambda request: None  # the policy stalls
    ros.wait_for(lambda: peer.status is not None and peer.status.idle_ticks > 10, 10.0, "the executor to starve")
    held_from = peer.command_count()
    ros.spin_for(1.0)
    held = np.array([c for _, c in peer.commands[held_from:]])
    assert len(held) > 15
    assert np.all(held == held[0])  # holds the last command
    everything = np.array([c for _, c in peer.commands])
    assert np.max(np.abs(np.diff(everything, axis=0))) <= MAX_STEP + 1e-9  # never a jump
    assert peer.status.starvation_episodes >= 1 and peer.status.active

    peer.answer = peer.ramp_chunk  # the policy comes back; the lost request has timed out after 1 s
    resumed_from = peer.command_count()
    ros.wait_for(
        lambda: len({c[0] for _, c in peer.commands[resumed_from:]}) > 5, 10.0, "motion to resume after the stall"
    )
    steps = np.diff([c[0] for _, c in peer.commands[resumed_from - 1 :]])
    if tick_clock == "action":  # the ramp continues where it stopped
        assert np.max(steps) == pytest.approx(0.002, abs=1e-9)
        assert peer.status.commands_clamped == 0
    else:  # the held ticks used up their actions: the arm catches up at the maximum step
        assert np.max(steps) == pytest.approx(MAX_STEP, abs=1e-9)
        ros.wait_for(lambda: peer.status.commands_clamped > 0, 5.0, "the catch-up to be counted as clamped")
    assert processes.stop(executor) == 0


@pytest.mark.parametrize("tick_clock", ["action", "wall"])
def test_joint_states_stop_mid_motion_hold_without_consuming_the_queue_then_resume(ros, processes, tick_clock):
    # g = 1 without the similarity filter: while running, a request goes out on nearly every tick, so silence
    # during the hold is meaningful.
    executor = start_executor(
        processes,
        mode="continuous",
        similarity_epsilon=0.0,
        joint_state_timeout=0.3,
        diagnostics_rate=10.0,
        tick_clock=tick_clock,
    )
    peer = RobotAndPolicy(ros)
    diagnostics: list[DiagnosticStatus] = []
    peer.node.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: diagnostics.extend(msg.status), 10)

    def moving() -> bool:
        return peer.status is not None and peer.command_count() > 0 and peer.commands[-1][1][0] > Q0[0] + 0.02

    ros.wait_for(moving, 30.0, "motion")
    waited = peer.status.ticks_without_joint_state  # ticks before the first joint state arrived count too

    peer.publishing_state = False  # the driver dies mid-motion
    # Past the timeout, and a few ticks more so that an answer to the last request has been merged.
    ros.wait_for(lambda: peer.status.ticks_without_joint_state >= waited + 3, 5.0, "the executor to hold")
    held_status, held_from, requests_before = peer.status, peer.command_count(), len(peer.requests)
    ros.spin_for(0.5)
    held = np.array([c for _, c in peer.commands[held_from - 1 :]])
    assert len(held) >= 10  # still commanding at the control rate...
    assert np.all(held == held[0])  # ...the last command, unchanged
    assert held[0][0] > Q0[0] + 0.02  # held mid-motion, not back at the start
    assert len(peer.requests) == requests_before  # no chunk requests from a stale observation
    status = peer.status
    assert status.active and status.queue_length == held_status.queue_length  # no queued action used up
    assert status.tick == held_status.tick and status.requests_sent == held_status.requests_sent
    assert status.ticks_without_joint_state >= held_status.ticks_without_joint_state + 10

    def diagnosed() -> bool:
        return any(d.level == DiagnosticStatus.ERROR and "action queue paused" in d.message for d in diagnostics)

    ros.wait_for(diagnosed, 2.0, "an ERROR diagnostic saying that it holds")

    peer.publishing_state = True  # the driver is back
    resumed_from = peer.command_count()
    ros.wait_for(lambda: len({c[0] for _, c in peer.commands[resumed_from:]}) > 5, 5.0, "motion to resume")
    first_joint = np.array([c[0] for _, c in peer.commands[resumed_from - 1 :]])
    steps = np.diff(first_joint)
    # Ticks before the first fresh state still hold; then, with either tick clock, the ramp continues where it
    # stopped at its normal 0.002 per tick: no action was used up while holding, none is skipped.
    np.testing.assert_allclose(steps[steps != 0], 0.002, atol=1e-9)
    assert first_joint[0] == held[0][0]
    ros.wait_for(lambda: len(peer.requests) > requests_before, 5.0, "chunk requests to resume")
    assert peer.status.commands_clamped == 0
    assert processes.stop(executor) == 0
    logs = processes.logs()
    assert "no joint state on /joint_states for" in logs and "action queue paused" in logs
    assert "joint states on /joint_states are fresh again after" in logs


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("joint_state_timeout", 0.0, "joint_state_timeout must be within [0.001, 60], got 0.0"),
        ("control_rate", 1e-300, "control_rate must be within [1, 1000], got 1e-300"),
    ],
)
def test_invalid_parameters_fail_configure_with_the_reason_and_end_the_process(ros, processes, name, value, message):
    executor = start_executor(processes, **{name: value})
    peer = RobotAndPolicy(ros)
    ros.wait_for(lambda: executor.poll() is not None, 30.0, "the executor to exit")
    assert executor.returncode == 2 and not peer.commands  # a launcher sees it; nothing was commanded
    logs = processes.logs()
    assert "invalid parameters, staying unconfigured: " in logs and message in logs
    assert "autostart: configure failed" in logs and "Traceback" not in logs


def test_parameters_are_validated_when_set_and_the_live_ones_apply_at_once(ros, processes):
    executor = start_executor(processes, mode="async", threshold=0.7)
    peer = RobotAndPolicy(ros)
    ros.wait_for(lambda: peer.status is not None and peer.command_count() > 5, 30.0, "commands")
    client = peer.node.create_client(SetParameters, "/smolvla_executor/set_parameters")
    assert client.wait_for_service(timeout_sec=10.0)

    def set_parameter(name: str, value) -> SetParametersResult:
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return ros.call(client, request).results[0]

    assert set_parameter("threshold", 0.5).successful
    ros.wait_for(lambda: peer.status.threshold == pytest.approx(0.5), 5.0, "g = 0.5 in effect")
    refused = set_parameter("threshold", 7.0)
    assert not refused.successful and "threshold must be in [0, 1], got 7.0" in refused.reason
    refused = set_parameter("mode", "bogus")
    assert not refused.successful and "mode must be one of" in refused.reason
    refused = set_parameter("control_rate", -5.0)  # cannot change while running: read-only
    assert not refused.successful and "read-only" in refused.reason
    assert set_parameter("mode", "sync").successful
    ros.wait_for(lambda: peer.status.mode == "sync" and peer.status.threshold == 0.0, 5.0, "sync mode in effect")
    assert set_parameter("max_velocity", [0.3] * 6).successful  # 0.01 rad per tick
    peer.answer = lambda request: peer.make_chunk(request, np.tile(Q0 + [0.4, 0, 0, 0, 0, 0], (N, 1)))
    ros.wait_for(lambda: peer.commands[-1][1][0] > Q0[0] + 0.1, 20.0, "motion at the new velocity limit")
    steps = np.diff([c[0] for _, c in peer.commands])
    assert np.max(steps) == pytest.approx(0.01, abs=1e-9)
    assert executor.poll() is None
    assert processes.stop(executor) == 0


def test_bad_chunks_are_rejected_clamping_is_counted_and_deactivation_holds(ros, processes):
    executor = start_executor(processes, mode="sync")
    peer = RobotAndPolicy(ros)

    def nan_chunk(request):
        actions = np.tile(Q0, (N, 1))
        actions[3, 2] = np.nan
        return peer.make_chunk(request, actions)

    def wrong_length(request):
        chunk = peer.make_chunk(request, np.tile(Q0, (N, 1)))
        chunk.trajectory.points[4].positions = Q0[:5].tolist()
        return chunk

    def unknown_joints(request):
        return peer.make_chunk(request, np.tile(Q0, (N, 1)), joints=[*JOINTS[:5], "jaw"])

    def jump(request):
        actions = np.tile(Q0, (N, 1))
        actions[:, 0] += 0.4  # eight times the maximum step (below the gate's jump limit)
        return peer.make_chunk(request, actions)

    answers = iter([nan_chunk, wrong_length, unknown_joints])
    peer.answer = lambda request: next(answers, jump)(request)

    ros.wait_for(lambda: peer.status is not None and peer.status.chunks_rejected >= 3, 30.0, "three rejections")
    ros.wait_for(lambda: peer.status.commands_clamped >= 5, 10.0, "clamped commands")
    assert executor.poll() is None
    ros.wait_for(lambda: peer.commands[-1][1][0] > Q0[0] + 0.35, 10.0, "the arm to reach the target in steps")
    first_joint = np.array([c[0] for _, c in peer.commands])
    assert np.max(np.abs(np.diff(first_joint))) <= MAX_STEP + 1e-9
    assert peer.status.chunks_received >= 1

    assert peer.lifecycle.wait_for_service(timeout_sec=10.0)
    response = ros.call(peer.lifecycle, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE)))
    assert response.success
    ros.wait_for(lambda: not peer.status.active, 5.0, "an inactive status")
    stopped = peer.command_count()
    ros.spin_for(0.7)
    assert peer.command_count() == stopped  # no commands while inactive
    held = peer.commands[-1][1]
    np.testing.assert_allclose(held, peer.commands[-2][1])  # the hold repeats the last command

    response = ros.call(peer.lifecycle, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE)))
    assert response.success
    ros.wait_for(lambda: peer.command_count() > stopped, 5.0, "commands after re-activation")
    # Starts again from the measured state: where the arm was held, not back at Q0.
    np.testing.assert_allclose(peer.commands[stopped][1], held, atol=1e-12)
    assert processes.stop(executor) == 0
    assert "deactivated: stopped commanding motion, holding at" in processes.logs()


def test_deactivation_mid_motion_brakes_within_the_acceleration_limit(ros, processes):
    executor = start_executor(processes, max_acceleration=30.0, mode="continuous")
    peer = RobotAndPolicy(ros)

    def fast_ramp(request: ChunkRequest) -> ActionChunk:  # 0.04 rad per tick: 1.2 rad/s on the first joint
        actions = np.tile(Q0, (N, 1))
        actions[:, 0] += 0.04 * (request.observation_tick + 1 + np.arange(N))
        return peer.make_chunk(request, actions)

    peer.answer = fast_ramp
    ros.wait_for(lambda: peer.commands and peer.commands[-1][1][0] > Q0[0] + 0.3, 30.0, "the arm at speed")
    deactivate = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
    assert ros.call(peer.lifecycle, deactivate).success
    ros.spin_for(0.5)
    first_joint = np.array([c[0] for _, c in peer.commands])
    steps = np.diff(first_joint)
    assert steps[-4] > 0.03 and steps[-1] == 0.0  # at speed a few ticks before the end, at rest at the end
    max_step_change = np.array([30.0] * 6) / RATE**2
    assert_safe_commands(peer.commands, MAX_STEP, max_step_change)  # the stop included: no velocity step
    assert processes.stop(executor) == 0
    # 0.04 rad per tick, then 0.0067 (0.0333 less, the acceleration limit), then at rest
    assert "deactivated: stopped commanding motion after braking for 1 tick, holding at" in processes.logs()


def test_trajectory_output_streams_chunks_into_a_joint_trajectory_controller(ros, processes):
    executor = start_executor(processes, output="trajectory", mode="async", threshold=0.5)
    peer = RobotAndPolicy(ros)
    trajectories: list[JointTrajectory] = []
    peer.node.create_subscription(
        JointTrajectory, "/joint_trajectory_controller/joint_trajectory", trajectories.append, 10
    )
    ros.wait_for(lambda: len(trajectories) > 5, 30.0, "trajectories")
    assert not peer.commands  # nothing on the position controller's topic
    first = trajectories[0]
    assert list(first.joint_names) == JOINTS and len(first.points) == 1  # the measured state, before any chunk
    np.testing.assert_allclose(first.points[0].positions, Q0, atol=1e-12)
    assert first.points[0].time_from_start.nanosec == pytest.approx(1e9 / RATE, abs=1)
    # Each chunk arrives as one time-parameterised trajectory: this tick's command then the queued actions, one
    # control period apart, following the ramp (0.002 rad per tick on the first joint).
    streamed = [t for t in trajectories if len(t.points) > 1]
    assert streamed, "no chunk was streamed"
    for trajectory in streamed:
        assert trajectory.header.stamp.sec == 0 and trajectory.header.stamp.nanosec == 0  # start on receipt
        times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in trajectory.points]
        np.testing.assert_allclose(times, (np.arange(len(times)) + 1) / RATE, atol=1e-6)
        positions = np.array([p.positions for p in trajectory.points])
        np.testing.assert_allclose(np.diff(positions[:, 0]), 0.002, atol=1e-9)
        np.testing.assert_allclose(positions[:, 1:], np.tile(Q0[1:], (len(positions), 1)))
    assert streamed[-1].points[0].positions[0] > streamed[0].points[0].positions[0]  # the ramp goes on
    # Sent when the plan changes (a new chunk), not every tick: the controller runs each trajectory meanwhile.
    before = len(trajectories)
    ros.spin_for(2.0)
    assert 0 < len(trajectories) - before < RATE
    assert processes.stop(executor) == 0


def test_without_autostart_it_waits_for_the_lifecycle_transitions(ros, processes):
    executor = start_executor(processes, autostart="false")
    peer = RobotAndPolicy(ros)
    assert peer.lifecycle.wait_for_service(timeout_sec=30.0)
    ros.spin_for(1.0)
    assert not peer.commands and not peer.requests  # unconfigured: silent

    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        assert ros.call(peer.lifecycle, ChangeState.Request(transition=Transition(id=transition))).success
    ros.wait_for(lambda: peer.command_count() > 5, 10.0, "commands after activation")
    np.testing.assert_allclose(peer.commands[0][1], Q0, atol=1e-12)
    assert processes.stop(executor) == 0
    assert "shutting down: stopped commanding motion, holding at" in processes.logs()


def assert_safe_commands(
    commands: list[tuple[float, np.ndarray]], max_step: float, max_step_change: np.ndarray
) -> None:
    """Each command within the limits; between consecutive ones at most max_step, and the step changes by at most
    max_step_change per tick (starting at rest)."""
    positions = np.array([c for _, c in commands])
    assert np.all(np.isfinite(positions))
    assert np.all(positions >= LOWER) and np.all(positions <= UPPER)
    steps = np.diff(positions, axis=0)
    assert np.max(np.abs(steps)) <= max_step + 1e-9
    assert np.all(np.abs(np.diff(np.vstack([np.zeros(6), steps]), axis=0)) <= max_step_change + 1e-9)


def test_unsafe_joint_states_are_faults_never_commanded_on_any_path(ros, processes):
    executor = start_executor(
        processes, max_acceleration=30.0, mode="continuous", joint_state_timeout=0.3, diagnostics_rate=10.0
    )
    peer = RobotAndPolicy(ros)
    diagnostics: list[DiagnosticStatus] = []
    peer.node.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: diagnostics.extend(msg.status), 10)
    ros.wait_for(lambda: peer.command_count() > 10, 30.0, "commands")

    def spoof(state: np.ndarray, seconds: float) -> None:
        peer.state_override = state
        ros.spin_for(seconds)
        peer.state_override = None

    # An outage, then one spoofed state outside the limits, then one within the limits but far from the arm.
    peer.publishing_state = False
    ros.wait_for(lambda: peer.status.ticks_without_joint_state > 5, 5.0, "the outage to be noticed")
    held = peer.commands[-1][1]
    peer.publishing_state = True
    spoof(held + [3.0, 0, 0, 0, 0, 0], 0.5)
    ros.wait_for(lambda: peer.status.joint_state_faults >= 5, 5.0, "faults counted")

    def diagnosed(text: str) -> bool:
        return any(d.level == DiagnosticStatus.ERROR and text in d.message for d in diagnostics)

    ros.wait_for(lambda: diagnosed("outside the joint limits"), 2.0, "an ERROR diagnostic on the limits")
    faults = peer.status.joint_state_faults
    spoof(held + [0.8, 0, 0, 0, 0, 0], 0.5)
    ros.wait_for(lambda: peer.status.joint_state_faults >= faults + 5, 5.0, "faults counted")
    ros.wait_for(lambda: diagnosed("from the held command"), 2.0, "an ERROR diagnostic on the resume")
    # The real state is back: the ramp resumes.
    resumed_from = peer.command_count()
    ros.wait_for(lambda: peer.commands[-1][1][0] > peer.commands[resumed_from - 1][1][0], 5.0, "motion again")

    # Re-activation while the state is outside the limits: nothing is commanded until it is back inside.
    assert peer.lifecycle.wait_for_service(timeout_sec=10.0)
    deactivate = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
    assert ros.call(peer.lifecycle, deactivate).success
    stopped = peer.command_count()
    peer.state_override = np.array([0.1, -0.2, 0.3, 0.0, 0.5, 1.95])  # gripper 0.2 rad past its limit
    ros.spin_for(0.2)
    activate = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE))
    assert ros.call(peer.lifecycle, activate).success
    ros.spin_for(0.7)
    assert peer.command_count() == stopped
    peer.state_override = None
    ros.wait_for(lambda: peer.command_count() > stopped + 5, 5.0, "commands from the real state")
    np.testing.assert_allclose(peer.commands[stopped][1], peer.commands[stopped - 1][1], atol=1e-12)

    max_step_change = np.array([30.0] * 6) / RATE**2  # max_acceleration per tick^2
    assert_safe_commands(peer.commands[:stopped], MAX_STEP, max_step_change)
    assert_safe_commands(peer.commands[stopped:], MAX_STEP, max_step_change)
    assert processes.stop(executor) == 0
    logs = processes.logs()
    assert "not acting on the joint state from /joint_states: joint state outside the joint limits" in logs
    assert "shoulder_pan" in logs and "gripper 1.950 not in [-0.175, 1.745]" in logs


def test_chunks_in_wrong_units_or_at_another_rate_never_reach_the_command_topic(ros, processes):
    executor = start_executor(processes, mode="sync")
    peer = RobotAndPolicy(ros)
    ramp = peer.ramp_chunk

    def degrees(request):  # a LeRobot checkpoint in degrees, run as if it spoke radians
        chunk = ramp(request)
        for point in chunk.trajectory.points:
            point.positions = np.degrees(point.positions).tolist()
        return chunk

    def slow(request):  # a 10 Hz policy under a 30 Hz executor
        chunk = ramp(request)
        return peer.make_chunk(request, np.array([p.positions for p in chunk.trajectory.points]), period=0.1)

    peer.answer = degrees
    ros.wait_for(lambda: peer.status is not None and peer.status.chunks_gated >= 4, 30.0, "gated chunks")
    peer.answer = slow
    ros.wait_for(lambda: peer.status.chunks_wrong_rate >= 3, 10.0, "chunks refused for their rate")
    assert peer.command_count() > 30
    np.testing.assert_allclose(np.array([c for _, c in peer.commands]), np.tile(Q0, (peer.command_count(), 1)))
    assert peer.status.chunks_received == 0 and peer.status.active
    peer.answer = ramp
    ros.wait_for(lambda: peer.commands[-1][1][0] > Q0[0] + 0.01, 10.0, "motion from a chunk in radians")
    assert processes.stop(executor) == 0
    logs = processes.logs()
    assert "wrong units?" in logs and "0.100000 s apart but the control period is 0.033333 s" in logs
    assert logs.count("wrong units?") < peer.status.chunks_gated  # once per burst, not once per chunk


def test_dry_run_publishes_only_to_the_dry_run_topic(ros, processes):
    executor = start_executor(processes, mode="continuous", dry_run="true")
    peer = RobotAndPolicy(ros)
    dry: list[JointState] = []
    trajectories: list[JointTrajectory] = []
    peer.node.create_subscription(JointState, "/smolvla/dry_run_command", dry.append, 10)
    peer.node.create_subscription(
        JointTrajectory, "/joint_trajectory_controller/joint_trajectory", trajectories.append, 10
    )
    peer.state_override = Q0  # the arm does not move: nothing drives it
    ros.wait_for(lambda: len(dry) > 30, 30.0, "dry-run commands")
    assert list(dry[0].name) == JOINTS
    np.testing.assert_allclose(dry[0].position, Q0, atol=1e-12)
    assert dry[-1].position[0] > Q0[0] + 0.01  # requests, queue and safety run: the ramp is executed
    assert not peer.commands and not trajectories  # nothing on any controller's topic
    assert peer.status.dry_run and peer.status.requests_sent > 0
    assert processes.stop(executor) == 0


def test_a_flood_of_rogue_chunks_neither_starves_the_executor_nor_floods_the_log(ros, processes):
    executor = start_executor(processes, mode="continuous", similarity_epsilon=0.0)
    peer = RobotAndPolicy(ros)
    ros.wait_for(lambda: peer.status is not None and peer.status.chunks_received > 3, 30.0, "chunks")
    # 500 Hz, 15 times the control rate, of which 5 chunks a second are 10,000 points (480 kB) long.
    flooder = processes.start_python("rogue_flood", TEST_DIR / "rogue_chunk_flood.py", "2.0", "500")
    ros.wait_for(lambda: flooder.poll() is not None, 30.0, "the rogue publisher to finish its flood")
    sent, flood_start, flood_end = processes.logs().split("sent ")[1].split()[:3]
    sent, flood_start, flood_end = int(sent), float(flood_start), float(flood_end)
    # Judge by the executor's own status stamps: a status received after the flood says what happened during it.
    ros.wait_for(lambda: stamp_seconds(peer.status) > flood_end + 0.5, 10.0, "a status stamped after the flood")
    before = status_at(peer.statuses, flood_start)
    after = status_at(peer.statuses, flood_end)
    rate = sent / (flood_end - flood_start)
    during = after.chunks_received - before.chunks_received
    ticks, held = after.tick - before.tick, after.ticks_without_joint_state - before.ticks_without_joint_state
    span = stamp_seconds(after) - stamp_seconds(before)
    assert ticks >= 0.8 * RATE * span, f"{ticks} control ticks in {span:.2f} s of a {rate:.0f} Hz flood"
    assert during >= 10, (
        f"only {during} of the policy's chunks used during a {rate:.0f} Hz flood ({ticks} ticks, {held} of them "
        "without a fresh joint state)"
    )
    rejected = after.chunks_rejected - before.chunks_rejected
    assert rejected >= sent // 2 and executor.poll() is None, f"{rejected} of {sent} rogue chunks rejected"
    assert peer.commands[-1][1][0] > Q0[0]  # still executing the policy's ramp
    assert processes.stop(executor) == 0
    logs = processes.logs()
    lines = logs.count("not used: request_id 1000000000") + logs.count("more than 4 x chunk_size")
    assert 1 <= lines <= 6, f"{lines} log lines for {sent} rogue chunks at {rate:.0f} Hz"


def stamp_seconds(status: ExecutorStatus | None) -> float:
    return -math.inf if status is None else status.header.stamp.sec + 1e-9 * status.header.stamp.nanosec


def status_at(statuses: list[ExecutorStatus], wall_time: float) -> ExecutorStatus:
    """The last status the executor stamped at or before `wall_time`."""
    return [s for s in statuses if stamp_seconds(s) <= wall_time][-1]


@pytest.mark.parametrize("aggregation", ["rtc", "weighted_average"])
def test_rtc_requests_carry_the_queued_actions_and_the_delay(ros, processes, aggregation):
    """With aggregation rtc a request carries the actions still queued for the ticks of the requested chunk and
    the delay in ticks from the measured latency; with any other aggregation both stay empty (no guidance)."""
    executor = start_executor(processes, aggregation=aggregation, similarity_epsilon=0.0)
    peer = RobotAndPolicy(ros)
    statuses: list[ExecutorStatus] = []
    peer.node.create_subscription(ExecutorStatus, "/smolvla/executor_status", statuses.append, 10)
    ros.wait_for(lambda: len(peer.requests) >= 2, 30.0, "a second chunk request")
    first, second = peer.requests[:2]
    assert (len(first.previous_actions.points), first.delay_ticks) == (0, 0)  # empty queue, no latency yet
    if aggregation != "rtc":
        assert (len(second.previous_actions.points), second.delay_ticks) == (0, 0)
        assert processes.stop(executor) == 0
        return
    # The first chunk covers ticks first.observation_tick + 1 ... + N; the second request's observation tick has
    # executed, so the queue holds its ticks second.observation_tick + 1 ... first.observation_tick + N.
    previous = second.previous_actions
    assert list(previous.joint_names) == JOINTS
    ticks = np.arange(second.observation_tick + 1, first.observation_tick + N + 1)
    assert len(previous.points) == len(ticks) > 0
    positions = np.array([p.positions for p in previous.points])
    np.testing.assert_allclose(positions[:, 0], Q0[0] + 0.002 * ticks, atol=1e-12)
    np.testing.assert_allclose(positions[:, 1:], np.tile(Q0[1:], (len(ticks), 1)))
    # One latency measured so far (the first chunk's): the delay is that latency in ticks, rounded up.
    latency = next(s.last_latency for s in statuses if s.chunks_received == 1)
    assert second.delay_ticks == math.ceil(latency * RATE - 1e-6) >= 1
    ros.wait_for(lambda: peer.status.chunks_received >= 3, 10.0, "more chunks")
    # The ramp chunks agree with each other: no seam jumps more than one tick's motion (0 while the queue never
    # runs dry, one tick's motion after it did).
    assert peer.status.seam_jump_max <= 0.002 + 1e-9
    assert 1 <= peer.status.seams < peer.status.chunks_received  # the first chunk found nothing to move
    assert processes.stop(executor) == 0
