"""The policy node with a tiny SmolVLA checkpoint and the real executor node, each in its own process over real DDS.

This test process plays the robot (joint states that follow the commands) and the cameras, and watches the
messages between policy and executor.
"""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from PIL import Image as PILImage
from rcl_interfaces.srv import SetParameters
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray

from smolvla_msgs.msg import ActionChunk, ChunkRequest, ExecutorStatus, PolicyStatus
from smolvla_msgs.srv import SetInstruction
from smolvla_ros.chunk_messages import actions_to_trajectory, chunk_to_msg, time_to_seconds
from smolvla_ros.launcher import NodeSpec, find_config, find_executable
from smolvla_ros.parameters import set_parameters_request

pytestmark = pytest.mark.ros

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
Q0 = np.array([0.1, -0.2, 0.3, 0.0, 0.5, 0.2])
N = 30
RATE = 30.0
# The wrist camera arrives JPEG-compressed (image_transport's naming), the front camera raw.
CAMERAS = ["/camera/front/image_raw", "/camera/wrist/image_raw/compressed"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from smolvla.policy import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), n_cameras=2, chunk_size=N)


class Peer:
    """Robot (joint states following the last command), two cameras, and recorders of the graph's messages."""

    def __init__(self, ros) -> None:
        self.ros = ros
        self.node = ros.node("policy_graph_peer")
        self.position = Q0.copy()
        self.encoding = "rgb8"
        self.commands: list[np.ndarray] = []
        self.requests: dict[int, ChunkRequest] = {}
        self.chunks: list[ActionChunk] = []
        self.statuses: list[PolicyStatus] = []
        self.executor_status: ExecutorStatus | None = None
        self.diagnostics: list[DiagnosticStatus] = []
        self.state_pub = self.node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.front_pub = self.node.create_publisher(Image, CAMERAS[0], qos_profile_sensor_data)
        self.wrist_pub = self.node.create_publisher(CompressedImage, CAMERAS[1], qos_profile_sensor_data)
        jpeg = io.BytesIO()
        PILImage.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(jpeg, format="JPEG")
        self.wrist_jpeg = jpeg.getvalue()
        self.chunk_pub = self.node.create_publisher(ActionChunk, "/smolvla/action_chunk", 10)
        self.node.create_subscription(Float64MultiArray, "/forward_position_controller/commands", self.on_command, 10)
        self.node.create_subscription(ChunkRequest, "/smolvla/chunk_request", self.on_request, 10)
        self.node.create_subscription(ActionChunk, "/smolvla/action_chunk", self.chunks.append, 10)
        self.node.create_subscription(PolicyStatus, "/smolvla/policy_status", self.statuses.append, 10)
        self.node.create_subscription(ExecutorStatus, "/smolvla/executor_status", self.on_executor_status, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)
        self.set_instruction = self.node.create_client(SetInstruction, "/smolvla/set_instruction")
        self.node.create_timer(0.02, self.publish_state)
        self.node.create_timer(1.0 / 30.0, self.publish_images)

    def now_stamp(self):
        return self.node.get_clock().now().to_msg()

    def publish_state(self) -> None:
        msg = JointState(name=JOINTS, position=self.position.tolist())
        msg.header.stamp = self.now_stamp()
        self.state_pub.publish(msg)

    def publish_images(self) -> None:
        channels = {"rgb8": 3, "mono16": 2}[self.encoding]
        front = Image(height=48, width=64, encoding=self.encoding, step=64 * channels, data=bytes(48 * 64 * channels))
        front.header.stamp = self.now_stamp()
        self.front_pub.publish(front)
        wrist = CompressedImage(format="jpeg", data=self.wrist_jpeg)
        wrist.header.stamp = front.header.stamp
        self.wrist_pub.publish(wrist)

    def on_command(self, msg: Float64MultiArray) -> None:
        self.position = np.array(msg.data)  # an ideal position-controlled arm
        self.commands.append(self.position)

    def on_request(self, msg: ChunkRequest) -> None:
        self.requests[msg.request_id] = msg

    def on_executor_status(self, msg: ExecutorStatus) -> None:
        self.executor_status = msg

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics += [s for s in msg.status if s.name.startswith("smolvla_policy")]

    def wait_chunks(self, count: int, timeout: float = 30.0, what: str = "chunks") -> None:
        target = len(self.chunks) + count
        self.ros.wait_for(lambda: len(self.chunks) >= target, timeout, what)

    def moving(self, ticks: int = 15) -> bool:
        """Did the commands change over the last `ticks` ticks (spinning for them first)?"""
        start = len(self.commands)
        self.ros.wait_for(lambda: len(self.commands) >= start + ticks, 5.0, f"{ticks} commands")
        recent = np.array(self.commands[start:])
        return bool(np.any(np.abs(np.diff(recent, axis=0)) > 1e-9))

    def command_rate(self, seconds: float = 2.0) -> float:
        start = len(self.commands)
        self.ros.spin_for(seconds)
        return (len(self.commands) - start) / seconds


def start_policy(processes, checkpoint: Path, name: str = "policy"):
    spec = NodeSpec(
        name,
        (find_executable("policy_node"),),
        params_file=find_config("policy.yaml"),
        parameters={"checkpoint": str(checkpoint), "camera_topics": CAMERAS},
    )
    return processes.start(name, spec.argv())


def start_executor(processes):
    spec = NodeSpec(
        "executor",
        (find_executable("executor_node"),),
        params_file=find_config("executor.yaml"),
        parameters={
            "chunk_size": N,
            "control_rate": RATE,
            "request_timeout": 2.0,
            "max_velocity": 0.05 * RATE,
            # The tiny checkpoint's random weights give arbitrary actions, which the gate on absurd chunks rightly
            # refuses; these tests are about the graph's plumbing, so the gate lets everything through.
            "gate_outside_fraction": 0.99,
            "gate_limit_margin": 100.0,
            "gate_max_jump": 100.0,
        },
    )
    return processes.start("executor", spec.argv())


def wait_policy_ready(ros, peer: Peer, timeout: float = 60.0) -> None:
    # The policy node creates its publishers only after the model is loaded and warmed up.
    ros.wait_for(lambda: peer.node.count_publishers("/smolvla/policy_status") > 0, timeout, "the policy node")


def test_chunks_flow_commands_at_rate_and_instruction_changes(ros, processes, checkpoint):
    policy = start_policy(processes, checkpoint)
    executor = start_executor(processes)
    peer = Peer(ros)
    wait_policy_ready(ros, peer)
    peer.wait_chunks(3, what="chunks from the policy")

    for chunk in peer.chunks[:3]:
        request = peer.requests[chunk.request_id]
        assert chunk.header.stamp == request.capture_stamp  # stamped with the observation's capture time
        assert chunk.first_tick == request.observation_tick + 1
        assert list(chunk.trajectory.joint_names) == JOINTS and len(chunk.trajectory.points) == N
        assert chunk.instruction == "pick up the cube and place it on the green target"
        assert 0 < chunk.inference_latency < 5
    answered = {c.request_id for c in peer.chunks[:3]}
    ros.wait_for(lambda: answered <= {s.request_id for s in peer.statuses if s.ok}, 5.0, "ok statuses for the chunks")
    ids = [c.chunk_id for c in peer.chunks]
    assert ids == list(range(ids[0], ids[0] + len(ids)))

    assert 0.8 * RATE <= peer.command_rate() <= 1.1 * RATE
    assert peer.moving()

    response = ros.call(peer.set_instruction, SetInstruction.Request(instruction="  stack the red   block "))
    assert response.accepted and "stack the red block" in response.message
    after = max(peer.requests)
    ros.wait_for(lambda: any(c.request_id > after for c in peer.chunks), 20.0, "a chunk for a request after the change")
    assert all(c.instruction == "stack the red block" for c in peer.chunks if c.request_id > after)
    refused = ros.call(peer.set_instruction, SetInstruction.Request(instruction="   "))
    assert not refused.accepted and "empty" in refused.message

    seen = len(peer.diagnostics)
    ros.wait_for(lambda: len(peer.diagnostics) > seen, 10.0, "policy diagnostics after the change")
    values = {kv.key: kv.value for kv in peer.diagnostics[-1].values}
    assert values["instruction"] == "stack the red block"
    assert float(values["age of /camera/front/image_raw [s]"]) < 1.0
    assert float(values["age of /camera/wrist/image_raw/compressed [s]"]) < 1.0
    assert peer.diagnostics[-1].level == DiagnosticStatus.OK

    assert policy.poll() is None and executor.poll() is None
    assert processes.stop(policy) == 0
    assert processes.stop(executor) == 0


def test_bad_images_and_bad_chunks_are_rejected_and_a_stalled_policy_makes_the_executor_hold(
    ros, processes, checkpoint
):
    policy = start_policy(processes, checkpoint)
    executor = start_executor(processes)
    peer = Peer(ros)
    wait_policy_ready(ros, peer)
    peer.wait_chunks(2)

    # Images the policy cannot convert: a status with the reason for every request, no chunk, and the arm holds.
    peer.encoding = "mono16"
    ros.wait_for(
        lambda: any(not s.ok and "unsupported encoding 'mono16'" in s.reason for s in peer.statuses),
        20.0,
        "a status rejecting the mono16 images",
    )
    ros.wait_for(lambda: not peer.moving(), 20.0, "the executor to hold while no chunk comes")
    assert peer.executor_status.queue_length == 0 and peer.executor_status.idle_ticks > 0
    # Every input is fresh, but the node cannot produce a chunk: its diagnostics say so.
    ros.wait_for(
        lambda: peer.diagnostics and peer.diagnostics[-1].level == DiagnosticStatus.ERROR, 10.0, "policy ERROR"
    )
    assert "no chunk for the last" in peer.diagnostics[-1].message
    assert 0.8 * RATE <= peer.command_rate() <= 1.1 * RATE  # holding means commanding the same position

    # Chunks the executor must refuse: non-finite actions, unknown joints.
    rejected = peer.executor_status.chunks_rejected
    request = peer.requests[max(peer.requests)]
    bad_values = np.full((N, 6), np.nan)
    for actions, joints in ((bad_values, JOINTS), (np.zeros((N, 6)), [*JOINTS[:5], "tail"])):
        peer.chunk_pub.publish(
            chunk_to_msg(
                actions,
                joints,
                request_id=request.request_id,
                chunk_id=10_000,
                first_tick=request.observation_tick + 1,
                control_period=1 / RATE,
                capture_stamp=request.capture_stamp,
                inference_latency=0.0,
                instruction="bad",
            )
        )
    ros.wait_for(lambda: peer.executor_status.chunks_rejected >= rejected + 2, 10.0, "both bad chunks rejected")
    assert not peer.moving()

    # Good images again: chunks and motion resume. Nothing crashed on the way.
    peer.encoding = "rgb8"
    peer.wait_chunks(2, what="chunks after the images are fixed")
    ros.wait_for(peer.moving, 20.0, "motion to resume")
    ros.wait_for(lambda: peer.diagnostics[-1].level == DiagnosticStatus.OK, 10.0, "policy diagnostics OK again")

    # A policy that stops answering (process suspended): the executor holds, then resumes when it answers again.
    os.kill(policy.pid, signal.SIGSTOP)
    try:
        ros.wait_for(lambda: not peer.moving(), 20.0, "the executor to hold while the policy is stalled")
        held = len(peer.commands)
        ros.spin_for(1.0)
        assert len(peer.commands) - held >= 0.8 * RATE
        assert np.allclose(peer.commands[held:], peer.commands[held - 1])
    finally:
        os.kill(policy.pid, signal.SIGCONT)
    ros.wait_for(peer.moving, 30.0, "motion to resume after the stall")
    assert policy.poll() is None and executor.poll() is None
    assert processes.stop(policy) == 0 and processes.stop(executor) == 0


def test_stopping_the_policy_node_holds_and_starting_it_again_resumes_motion(ros, processes, checkpoint):
    policy = start_policy(processes, checkpoint)
    executor = start_executor(processes)
    peer = Peer(ros)
    wait_policy_ready(ros, peer)
    peer.wait_chunks(2)
    ros.wait_for(peer.moving, 20.0, "motion")

    assert processes.stop(policy) == 0  # Ctrl-C: a clean exit
    ros.wait_for(lambda: not peer.moving(), 20.0, "the executor to hold without a policy")
    assert executor.poll() is None

    restarted = start_policy(processes, checkpoint, name="policy_again")
    before = len(peer.chunks)
    ros.wait_for(lambda: len(peer.chunks) > before, 60.0, "chunks from the restarted policy")
    ros.wait_for(peer.moving, 20.0, "motion to resume")
    newest = peer.chunks[-1]
    assert time.time() - time_to_seconds(newest.header.stamp) < 5.0
    assert processes.stop(restarted) == 0 and processes.stop(executor) == 0


def test_hostile_stamps_ticks_parameters_and_instruction_floods_leave_the_policy_serving(ros, processes, checkpoint):
    policy = start_policy(processes, checkpoint)
    peer = Peer(ros)
    request_pub = peer.node.create_publisher(ChunkRequest, "/smolvla/chunk_request", 10)
    parameters = peer.node.create_client(SetParameters, "/smolvla_policy/set_parameters")
    wait_policy_ready(ros, peer)
    ros.spin_for(1.0)  # the policy has samples from before the first capture time
    next_id = iter(range(1, 1_000_000))

    def request(tick: int = 5, **fields) -> PolicyStatus:
        msg = ChunkRequest(request_id=next(next_id), observation_tick=tick, capture_stamp=peer.now_stamp(), **fields)
        ros.spin_for(0.1)  # samples at or before the capture time have arrived
        request_pub.publish(msg)
        ros.wait_for(lambda: any(s.request_id == msg.request_id for s in peer.statuses), 20.0, "the request's status")
        return next(s for s in peer.statuses if s.request_id == msg.request_id)

    assert request().ok
    # 20 joint states and 20 frames stamped 1e6 s ahead: refused, counted, and the real samples keep serving.
    for _ in range(20):
        future = JointState(name=JOINTS, position=Q0.tolist())
        future.header.stamp.sec = int(time.time() + 1e6)
        peer.state_pub.publish(future)
        frame = Image(height=48, width=64, encoding="rgb8", step=192, data=bytes(48 * 64 * 3))
        frame.header.stamp = future.header.stamp
        peer.front_pub.publish(frame)
    ros.spin_for(0.3)
    assert all(request().ok for _ in range(3))
    seen = len(peer.diagnostics)
    ros.wait_for(lambda: len(peer.diagnostics) > seen, 10.0, "diagnostics after the future stamps")
    assert peer.diagnostics[-1].level == DiagnosticStatus.WARN
    assert peer.diagnostics[-1].message.startswith("refusing input samples")

    # A tick whose first_tick would overflow int64: one status with the reason, no traceback, still serving.
    huge = request(tick=2**63 - 1)
    assert not huge.ok and huge.reason.startswith("invalid request")
    assert request().ok and policy.poll() is None

    # Real-time chunking: a request with the executor's queued actions gets a guided chunk; previous actions that
    # lack a joint get a status with the reason.
    previous = actions_to_trajectory(np.tile(Q0, (N // 2, 1)), JOINTS, 1.0 / RATE)
    before = len(peer.chunks)
    assert request(previous_actions=previous, delay_ticks=3).ok
    ros.wait_for(lambda: len(peer.chunks) > before, 10.0, "a guided chunk")
    assert len(peer.chunks[-1].trajectory.points) == N
    partial = actions_to_trajectory(np.tile(Q0[:5], (2, 1)), JOINTS[:5], 1.0 / RATE)
    refused = request(previous_actions=partial, delay_ticks=3)
    assert not refused.ok and refused.reason.startswith("invalid previous actions")

    # Parameters: checked at set time; live ones applied, the others read-only.
    def set_parameter(name, value):
        return ros.call(parameters, set_parameters_request({name: value})).results[0]

    assert "read-only" in set_parameter("device", "cuda").reason
    assert "read-only" in set_parameter("max_sample_age", 1.0).reason
    assert "empty" in set_parameter("instruction", "   ").reason
    assert "at least 0" in set_parameter("error_log_interval", -1.0).reason
    assert set_parameter("instruction", "stack the blocks").successful
    before = len(peer.chunks)
    assert request().ok
    ros.wait_for(lambda: len(peer.chunks) > before, 10.0, "a chunk after the change")
    assert peer.chunks[-1].instruction == "stack the blocks"

    # A client calling SetInstruction in a loop does not flood the log.
    for k in range(100):
        assert ros.call(peer.set_instruction, SetInstruction.Request(instruction=f"task {k}")).accepted
    assert processes.stop(policy) == 0
    log = processes.logs()
    assert log.count("instruction set:") <= 5, log[-3000:]
    assert "Traceback" not in log
