"""SmolVLA policy node `smolvla_policy`: thin ROS wiring around smolvla.policy_runner.PolicyRunner.

Camera frames (sensor_msgs/Image, or CompressedImage on topics ending in /compressed, the image_transport naming)
and joint states arrive with the sensor-data QoS and are kept with their stamps. A ChunkRequest hands its capture
time to the runner, which selects the inputs at or before it and computes the chunk on its worker thread (one model
call at a time, newest waiting request wins); the outcome comes back as an ActionChunk plus an ok PolicyStatus, or
as a PolicyStatus saying why there is no chunk. SetInstruction replaces the instruction from the next request on.
/diagnostics reports state, input ages and the model time. Parameters: config/policy.yaml, docs/ros-graph.md.
"""

from __future__ import annotations

import functools
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState

from smolvla.deployment import DeploymentError, prepare_deployment
from smolvla.images import CompressedImage as CompressedFrame
from smolvla.images import RawImage
from smolvla.instruction import check_instruction
from smolvla.model_dtype import DTYPE_CHOICES, resolve_dtype
from smolvla.observation import RateLimiter, sample_stamp
from smolvla.parameters import Check, integer, names, number, one_of, text
from smolvla.policy_runner import ChunkResult, NoChunk, NoChunkKind, PolicyRunner
from smolvla.robot_interface import JOINT_UNITS, SO100_JOINT_NAMES, UNIT_PRESETS
from smolvla_msgs.msg import ActionChunk, ChunkRequest, PolicyStatus
from smolvla_msgs.srv import SetInstruction
from smolvla_ros.chunk_messages import chunk_to_msg, seconds_to_time, time_to_seconds
from smolvla_ros.diagnostics import diagnostic_array
from smolvla_ros.node_runner import run_node
from smolvla_ros.parameters import ConfigurationError, declare_checked

NODE_NAME = "smolvla_policy"
JOINTS = list(SO100_JOINT_NAMES)

PARAMETERS: dict[str, object] = {
    "camera_topics": ["/camera/front/image_raw", "/camera/wrist/image_raw"],
    "joint_state_topic": "/joint_states",
    "joint_names": JOINTS,
    "joint_units": "",
    "fps": 0.0,
    "calibration_file": "",
    "checkpoint": "",
    "device": "cpu",
    "dtype": "auto",
    "compile": False,
    "torch_threads": 0,
    "warmup": True,
    # Seconds added to every chunk computation (experiments: a slower model, e.g. the paper's latency sweep).
    "added_latency": 0.0,
    "instruction": "pick up the cube and place it on the green target",
    "max_sample_age": 0.25,
    "max_request_delay": 2.0,
    "future_stamp_tolerance": 0.5,
    "rtc_max_guidance_weight": 5.0,
    "chunk_request_topic": "/smolvla/chunk_request",
    "action_chunk_topic": "/smolvla/action_chunk",
    "policy_status_topic": "/smolvla/policy_status",
    "set_instruction_service": "/smolvla/set_instruction",
    "diagnostics_rate": 1.0,
    "error_log_interval": 5.0,
}


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _instruction_problem(value: str) -> str | None:
    check = check_instruction(value)
    return None if check.accepted else check.message


def _units_problem(value: str) -> str | None:
    # The count per joint is checked against the joints once the checkpoint is known (smolvla.deployment).
    if not value.strip() or value.strip() in UNIT_PRESETS:
        return None
    if all(part.strip() in JOINT_UNITS for part in value.split(",")):
        return None
    return (
        f"must be empty (the checkpoint's), a preset ({', '.join(UNIT_PRESETS)}) or one unit per joint, comma "
        f"separated, each one of {', '.join(JOINT_UNITS)}; got {value!r}"
    )


CHECKS: dict[str, Check] = {
    "camera_topics": names(1, 16),
    "joint_state_topic": text(_not_empty),
    "joint_names": names(1, 32),
    "joint_units": text(_units_problem),
    "fps": number(0.0, 1000.0),
    "calibration_file": text(lambda value: None),
    "checkpoint": text(lambda v: None if v.strip() else "must be set: a Hugging Face hub id or a local directory"),
    "device": text(_not_empty),
    "dtype": one_of(*DTYPE_CHOICES),
    "torch_threads": integer(0, 1024),
    "added_latency": number(0.0, 60.0),
    "instruction": text(_instruction_problem),
    "max_sample_age": number(above=0.0, high=60.0),
    "max_request_delay": number(0.0, 60.0),
    "future_stamp_tolerance": number(0.0, 60.0),
    "rtc_max_guidance_weight": number(0.0, 100.0),
    "diagnostics_rate": number(0.0, 100.0),
    "error_log_interval": number(0.0, 3600.0),
}


def _with_added_latency(predict, seconds: float):
    """predict itself, or predict followed by a sleep of `seconds` on the worker thread (as a slower model)."""
    if seconds <= 0:
        return predict

    def slower(*args, **kwargs):
        actions = predict(*args, **kwargs)
        time.sleep(seconds)
        return actions

    return slower


def _stamp_seconds(msg_stamp, received: float) -> float:
    return sample_stamp(time_to_seconds(msg_stamp), received)


class PolicyNode(Node):
    """The policy node; see the module docstring. Raises ConfigurationError for unusable parameters and the
    model's own errors when the checkpoint cannot be loaded."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        # Live: the instruction (as SetInstruction) and the log interval; the rest is read at start (read-only).
        p = declare_checked(
            self,
            PARAMETERS,
            CHECKS,
            live={"instruction": self._apply_instruction, "error_log_interval": self._apply_log_interval},
        )
        # Units, rate and cameras are settled before the weights load: a refusal comes in seconds.
        try:
            deployment = prepare_deployment(
                p["checkpoint"],
                camera_topics=list(p["camera_topics"]),
                joint_names=list(p["joint_names"]),
                joint_units=p["joint_units"],
                fps=p["fps"],
                calibration_file=p["calibration_file"],
            )
        except DeploymentError as error:
            raise ConfigurationError(str(error)) from None
        self.control_period = deployment.interface.period
        self.joint_names = list(deployment.interface.joint_names)
        self._closing = False
        self._chunk_id = 0
        self._chunk_lock = threading.Lock()
        self._log_limiter = RateLimiter(p["error_log_interval"])

        from smolvla.policy import SmolVLAPolicy  # torch is slow to import; only the node needs it

        if p["torch_threads"] > 0:
            import torch

            torch.set_num_threads(p["torch_threads"])

        self.get_logger().info(f"checkpoint {p['checkpoint']}: {deployment.describe()}")
        dtype = resolve_dtype(p["dtype"], p["device"])
        self.get_logger().info(f"loading checkpoint {p['checkpoint']} on {p['device']} ({dtype.dtype}, {dtype.reason})")
        if dtype.warning:
            self.get_logger().warning(dtype.warning)
        policy = SmolVLAPolicy.from_pretrained(
            deployment.directory, device=p["device"], dtype=dtype.dtype, compile=p["compile"]
        )
        if p["warmup"]:
            self._warm_up(policy)
        self.runner = PolicyRunner(
            _with_added_latency(
                functools.partial(policy.predict_chunk, max_guidance_weight=p["rtc_max_guidance_weight"]),
                p["added_latency"],
            ),
            camera_slots=deployment.cameras.topics,
            joint_names=self.joint_names,
            max_sample_age=p["max_sample_age"],
            instruction=p["instruction"],
            on_chunk=self._publish_chunk,
            on_no_chunk=self._publish_no_chunk,
            units=deployment.units,
            max_request_delay=p["max_request_delay"],
            future_tolerance=p["future_stamp_tolerance"],
        )
        self.get_logger().info(
            f"model ready: chunk size {policy.chunk_size} (set the executor's chunk_size to match), chunks at "
            f"{deployment.interface.fps:g} Hz (the executor's control_rate must match), instruction "
            f"{self.runner.instruction!r}"
        )

        self._chunk_pub = self.create_publisher(ActionChunk, p["action_chunk_topic"], 10)
        self._status_pub = self.create_publisher(PolicyStatus, p["policy_status_topic"], 10)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        for topic in deployment.cameras.streams:
            if topic.rstrip("/").endswith("/compressed"):
                self.create_subscription(
                    CompressedImage, topic, lambda msg, t=topic: self._on_compressed(t, msg), qos_profile_sensor_data
                )
            else:
                self.create_subscription(
                    Image, topic, lambda msg, t=topic: self._on_image(t, msg), qos_profile_sensor_data
                )
        self.create_subscription(JointState, p["joint_state_topic"], self._on_joint_state, qos_profile_sensor_data)
        self.create_subscription(ChunkRequest, p["chunk_request_topic"], self._on_request, 10)
        self.create_service(SetInstruction, p["set_instruction_service"], self._on_set_instruction)
        if p["diagnostics_rate"] > 0:
            self.create_timer(1.0 / p["diagnostics_rate"], self._publish_diagnostics)

    def _warm_up(self, policy) -> None:
        # The first forward pass pays for lazy initialisation (kernels, allocator); keep that out of the first chunk.
        import numpy as np

        start = time.perf_counter()
        images = [np.zeros((256, 256, 3), np.uint8)] + [None] * (len(policy.camera_names) - 1)
        policy.predict_chunk(images, np.zeros(policy.state_dim, np.float32), "warm up")
        self.get_logger().info(f"warm-up forward pass took {time.perf_counter() - start:.2f} s")

    # -- inputs --------------------------------------------------------------------------------------------------------

    def _on_image(self, topic: str, msg: Image) -> None:
        frame = RawImage(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        self._add_image(topic, _stamp_seconds(msg.header.stamp, time.time()), frame)

    def _on_compressed(self, topic: str, msg: CompressedImage) -> None:
        self._add_image(topic, _stamp_seconds(msg.header.stamp, time.time()), CompressedFrame(msg.format, msg.data))

    def _add_image(self, topic: str, stamp: float, frame: RawImage | CompressedFrame) -> None:
        try:
            self.runner.add_image(topic, stamp, frame)
        except ValueError as error:
            self._log_limited(topic, f"camera frame ignored: {error}")

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            self.runner.add_joint_state(_stamp_seconds(msg.header.stamp, time.time()), msg.name, msg.position)
        except ValueError as error:
            self._log_limited("joint_state", f"joint state ignored: {error}")

    def _on_request(self, msg: ChunkRequest) -> None:
        previous = msg.previous_actions
        self.runner.request(
            msg.request_id,
            msg.observation_tick,
            time_to_seconds(msg.capture_stamp),
            msg.must_go,
            previous_joint_names=previous.joint_names,
            previous_actions=[point.positions for point in previous.points],
            delay_ticks=msg.delay_ticks,
        )

    def _on_set_instruction(self, request: SetInstruction.Request, response: SetInstruction.Response):
        # Through the parameter, so that `ros2 param get ... instruction` always names the instruction in effect.
        check = check_instruction(request.instruction)
        response.accepted = check.accepted
        response.message = check.message
        if check.accepted:
            self.set_parameters([Parameter("instruction", value=check.instruction)])
        else:
            self._log_limited("instruction refused", f"instruction refused: {check.message}")
        return response

    def _apply_instruction(self, value: object) -> None:
        check = self.runner.set_instruction(str(value))
        # Rate limited: a client calling in a loop must not flood the log (each change is in the chunks' fields).
        self._log_limited("instruction", f"{check.message} (from the next chunk request on)", error=False)

    def _apply_log_interval(self, value: object) -> None:
        self._log_limiter.interval = float(value)

    # -- outcomes (worker thread) ------------------------------------------------------------------------------------

    def _publish_chunk(self, result: ChunkResult) -> None:
        if self._closing:
            return
        job = result.job
        with self._chunk_lock:
            self._chunk_id += 1
            chunk_id = self._chunk_id
        capture_stamp = seconds_to_time(job.capture_time)
        self._chunk_pub.publish(
            chunk_to_msg(
                result.actions,
                self.joint_names,
                request_id=job.request_id,
                chunk_id=chunk_id,
                first_tick=result.first_tick,
                control_period=self.control_period,
                capture_stamp=capture_stamp,
                inference_latency=result.model_seconds,
                instruction=job.instruction,
            )
        )
        self._status_pub.publish(self._status(job.request_id, True, "", result.model_seconds, job.instruction))

    def _publish_no_chunk(self, outcome: NoChunk) -> None:
        if outcome.kind is NoChunkKind.SUPERSEDED:
            self.get_logger().debug(f"request {outcome.request_id}: {outcome.reason}")
        else:
            # One log line per input (or failure kind) and interval: a broken camera at 30 Hz must not flood the log.
            key = (outcome.kind, outcome.reason.split(":", 1)[0])
            self._log_limited(key, f"request {outcome.request_id}: no chunk: {outcome.reason}")
        if self._closing:
            return
        self._status_pub.publish(self._status(outcome.request_id, False, outcome.reason, 0.0, outcome.instruction))

    def _status(self, request_id: int, ok: bool, reason: str, latency: float, instruction: str) -> PolicyStatus:
        msg = PolicyStatus(
            request_id=request_id, ok=ok, reason=reason, inference_latency=latency, instruction=instruction
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def _log_limited(self, key: object, message: str, error: bool = True) -> None:
        allowed, suppressed = self._log_limiter.allow(key, time.monotonic())
        if allowed:
            suffix = f" ({suppressed} similar messages suppressed)" if suppressed else ""
            # Two call sites: rclpy's logger refuses one site logging at two severities.
            if error:
                self.get_logger().error(message + suffix)
            else:
                self.get_logger().info(message + suffix)

    def _publish_diagnostics(self) -> None:
        health = self.runner.health()
        stamp = self.get_clock().now().to_msg()
        name = f"{NODE_NAME}: policy"
        self._diagnostics_pub.publish(diagnostic_array(stamp, name, health.level, health.message, health.values))

    def close(self) -> None:
        """Stop answering: a waiting request is dropped, a running computation awaited briefly."""
        self._closing = True
        if not self.runner.close(timeout=5.0):
            self.get_logger().warning("model still computing at shutdown; leaving it behind")


def main(args: list[str] | None = None) -> int:
    """Entry point of `policy_node`: exit 0 after Ctrl-C/SIGTERM, 2 for a configuration or checkpoint error."""
    return run_node(PolicyNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
