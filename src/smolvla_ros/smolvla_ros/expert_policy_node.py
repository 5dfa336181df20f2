"""Node expert_policy: the scripted pick-and-place expert (smolvla.sim.expert) behind the policy's chunk interface.

Answers /smolvla/chunk_request with /smolvla/action_chunk and /smolvla/policy_status exactly like the policy node,
through the same RequestWorker (one computation in flight, newest pending request wins). The observation is the
latest /joint_states and /so101_sim/scene sample stamped at or before the request's capture time. `latency` adds an
artificial delay so that the expert's answers take as long as the model's: the chunk is published `latency`
seconds after the request arrived (or as soon as computed, when that takes longer). /diagnostics says what the
node can do (smolvla.health.ServingHealth), as the policy node's does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState

from smolvla.health import ServingHealth
from smolvla.instruction import check_instruction
from smolvla.observation import RateLimiter, SampleHistory, order_joint_positions, select_samples
from smolvla.parameters import Check, integer, number, text
from smolvla.policy_runner import invalid_request
from smolvla.request_worker import Dropped, DropReason, RequestWorker
from smolvla.sim.arm import quaternion_yaw
from smolvla.sim.expert import ExpertObservation, ExpertParams, PickPlaceExpert
from smolvla.sim.scene import JOINT_NAMES, SceneOptions, build_model
from smolvla_msgs.msg import ActionChunk, ChunkRequest, PolicyStatus
from smolvla_msgs.srv import SetInstruction
from smolvla_ros.chunk_messages import chunk_to_msg, seconds_to_time, time_to_seconds
from smolvla_ros.diagnostics import diagnostic_array
from smolvla_ros.node_runner import run_node
from smolvla_ros.parameters import declare_checked

_DEFAULTS: dict[str, object] = {
    "control_rate": 30.0,
    "chunk_size": 50,
    # Seconds from request to published chunk (0: as fast as the expert computes, a few milliseconds).
    "latency": 0.0,
    # Plan for the actions the executor drops on arrival (ticks that passed during the latency).
    "latency_compensation": False,
    "instruction": "pick up the cube and place it on the green target",
    "max_sample_age": 0.25,
    # Inputs keep max_sample_age + max_request_delay seconds of samples (a request may wait this long in the
    # worker); samples stamped further than future_stamp_tolerance ahead of the clock are refused.
    "max_request_delay": 5.0,
    "future_stamp_tolerance": 0.5,
    "diagnostics_rate": 1.0,
}


def _instruction_problem(value: str) -> str | None:
    check = check_instruction(value)
    return None if check.accepted else check.message


_CHECKS: dict[str, Check] = {
    "control_rate": number(above=0.0, high=1000.0),
    "chunk_size": integer(1, 1000),
    "latency": number(0.0, 60.0),
    "instruction": text(_instruction_problem),
    "max_sample_age": number(above=0.0, high=60.0),
    "max_request_delay": number(0.0, 60.0),
    "future_stamp_tolerance": number(0.0, 60.0),
    "diagnostics_rate": number(0.0, 100.0),
}


class ObservationUnavailableError(RuntimeError):
    """No usable joint state or scene sample for the capture time."""


@dataclass(frozen=True)
class _Job:
    request: ChunkRequest
    received: float


class ExpertPolicyNode(Node):
    """Thin ROS wiring around PickPlaceExpert (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("expert_policy")
        p = declare_checked(
            self,
            _DEFAULTS,
            _CHECKS,
            live={"instruction": self._apply_instruction, "latency": self._apply_latency},
        )
        p["latency"] = float(p["latency"])
        self._p = p
        self._instruction = check_instruction(p["instruction"]).instruction
        self._log_limiter = RateLimiter(5.0)
        self._dt = 1.0 / float(p["control_rate"])
        self._expert = PickPlaceExpert(
            build_model(SceneOptions(visual_cell_size=0.0)), ExpertParams(control_period=self._dt)
        )
        self._chunk_id = 0
        span = p["max_sample_age"] + p["max_request_delay"]
        tolerance = p["future_stamp_tolerance"]
        self._states: SampleHistory[np.ndarray] = SampleHistory("/joint_states", span, future_tolerance=tolerance)
        self._scenes: SampleHistory[tuple[np.ndarray, np.ndarray, float]]
        self._scenes = SampleHistory("/so101_sim/scene", span, future_tolerance=tolerance)
        self._health = ServingHealth(
            ("input", "invalid", "failed", "superseded", "shutdown"), [self._states, self._scenes], p["max_sample_age"]
        )

        self._chunk_pub = self.create_publisher(ActionChunk, "/smolvla/action_chunk", 10)
        self._status_pub = self.create_publisher(PolicyStatus, "/smolvla/policy_status", 10)
        self.create_subscription(JointState, "/joint_states", self._on_joint_state, qos_profile_sensor_data)
        self.create_subscription(PoseArray, "/so101_sim/scene", self._on_scene, 10)
        self.create_subscription(ChunkRequest, "/smolvla/chunk_request", self._on_request, 10)
        self.create_service(SetInstruction, "/smolvla/set_instruction", self._on_set_instruction)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if p["diagnostics_rate"] > 0:
            self.create_timer(1.0 / p["diagnostics_rate"], self._publish_diagnostics)
        self._worker: RequestWorker[_Job, np.ndarray] = RequestWorker(
            self._compute,
            on_result=self._on_result,
            on_failure=self._on_failure,
            on_dropped=self._on_dropped,
            must_go=lambda job: job.request.must_go,
            name="expert",
        )
        self.get_logger().info(
            f"scripted expert ready (not a learned policy): n = {p['chunk_size']}, dt = {self._dt:.4f} s, "
            f"artificial latency {p['latency']:.3f} s"
        )

    # --- inputs -------------------------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        try:
            positions = order_joint_positions(msg.name, msg.position, JOINT_NAMES)
            self._states.add(time_to_seconds(msg.header.stamp), positions)
        except ValueError as error:
            self._warn("joint state", f"joint state ignored: {error}")

    def _on_scene(self, msg: PoseArray) -> None:
        try:
            if len(msg.poses) != 2:
                raise ValueError("expected 2 poses (cube, target)")
            cube, target = (np.array([q.position.x, q.position.y, q.position.z]) for q in msg.poses)
            if not (np.all(np.isfinite(cube)) and np.all(np.isfinite(target))):
                raise ValueError("non-finite position")
            q = msg.poses[0].orientation
            yaw = quaternion_yaw(np.array([q.w, q.x, q.y, q.z]))
            if not np.isfinite(yaw):
                raise ValueError("non-finite cube orientation")
            self._scenes.add(time_to_seconds(msg.header.stamp), (cube, target, yaw))
        except ValueError as error:
            self._warn("scene", f"scene ignored: {error}")

    def _on_request(self, msg: ChunkRequest) -> None:
        self._health.requested()
        invalid = invalid_request(msg.observation_tick, time_to_seconds(msg.capture_stamp))
        if invalid:
            self._health.no_chunk("invalid", f"request {msg.request_id}: {invalid}")
            self._publish_status(msg.request_id, False, invalid, 0.0)
            return
        self._worker.submit(_Job(msg, time.monotonic()))

    def _on_set_instruction(self, request: SetInstruction.Request, response: SetInstruction.Response):
        checked = check_instruction(request.instruction)
        response.accepted = checked.accepted
        response.message = checked.message
        if checked.accepted:
            # Through the parameter, so that it always names the instruction in effect.
            self.set_parameters([Parameter("instruction", value=checked.instruction)])
        return response

    def _apply_instruction(self, value: object) -> None:
        # The scripted expert does one task whatever the words; the instruction is echoed in its chunks.
        self._instruction = check_instruction(str(value)).instruction

    def _apply_latency(self, value: object) -> None:
        self._p["latency"] = float(value)

    def _warn(self, key: str, text: str) -> None:
        allowed, suppressed = self._log_limiter.allow(key, time.monotonic())
        if allowed:
            self.get_logger().warning(text + (f" ({suppressed} more suppressed)" if suppressed else ""))

    # --- computation (worker thread) ----------------------------------------------------------------------
    def _compute(self, job: _Job) -> np.ndarray:
        request = job.request
        selection = select_samples(
            [self._states, self._scenes], time_to_seconds(request.capture_stamp), self._p["max_sample_age"]
        )
        if not selection.ok:
            raise ObservationUnavailableError(selection.describe())
        cube, target, yaw = selection.samples["/so101_sim/scene"].value
        obs = ExpertObservation(selection.samples["/joint_states"].value, cube, target, yaw)
        latency = self._p["latency"]
        delay = math.ceil(latency / self._dt) if self._p["latency_compensation"] else 0
        actions = self._expert.chunk(obs, int(self._p["chunk_size"]), int(request.observation_tick), delay)
        if self._expert.replan_reason:
            phases = ", ".join(segment.name for segment in self._expert.plan(obs) if segment.name)
            reason = self._expert.replan_reason
            self.get_logger().info(f"new plan at tick {request.observation_tick} ({reason}): {phases}")
        remaining = job.received + latency - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        return actions

    def _on_result(self, job: _Job, actions: np.ndarray, seconds: float) -> None:
        if not self.context.ok():  # shutting down (Ctrl-C) while a chunk was computed
            return
        request = job.request
        self._chunk_id += 1
        self._chunk_pub.publish(
            chunk_to_msg(
                actions,
                JOINT_NAMES,
                request_id=request.request_id,
                chunk_id=self._chunk_id,
                first_tick=request.observation_tick + 1,
                control_period=self._dt,
                capture_stamp=request.capture_stamp,
                inference_latency=seconds,
                instruction=self._instruction,
            )
        )
        self._health.chunk(seconds)
        self._publish_status(request.request_id, True, "", seconds)

    def _on_failure(self, job: _Job, error: Exception, seconds: float) -> None:
        request_id = job.request.request_id
        if isinstance(error, ObservationUnavailableError):
            self._health.no_chunk("input", f"request {request_id}: {error}")
        else:
            self._health.no_chunk("failed", f"request {request_id}: {error}", model_failure=True)
        self._publish_status(request_id, False, f"no chunk: {error}", 0.0)

    def _on_dropped(self, dropped: Dropped[_Job]) -> None:
        kind = "shutdown" if dropped.reason is DropReason.SHUTDOWN else "superseded"
        request_id = dropped.request.request.request_id
        self._health.no_chunk(kind, f"request {request_id}: {dropped.describe()}", counts_as_failure=False)
        self._publish_status(request_id, False, dropped.describe(), 0.0)

    def _publish_diagnostics(self) -> None:
        health = self._health.report(extra=[("instruction", self._instruction)])
        stamp = self.get_clock().now().to_msg()
        name = "expert_policy: scripted expert"
        self._diagnostics_pub.publish(diagnostic_array(stamp, name, health.level, health.message, health.values))

    def _publish_status(self, request_id: int, ok: bool, reason: str, latency: float) -> None:
        if not self.context.ok():
            return
        status = PolicyStatus(request_id=request_id, ok=ok, reason=reason, inference_latency=latency)
        status.header.stamp = seconds_to_time(time.time())
        status.instruction = self._instruction
        self._status_pub.publish(status)

    def close(self) -> None:
        """Stop the worker (a computation in progress is finished or abandoned after a timeout)."""
        self._worker.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of `expert_policy_node`."""
    return run_node(ExpertPolicyNode, "expert_policy", args)


if __name__ == "__main__":
    raise SystemExit(main())
