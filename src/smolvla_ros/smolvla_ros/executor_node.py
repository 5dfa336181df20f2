"""Action-queue executor node `smolvla_executor`: thin ROS wiring around smolvla.async_inference.

Every control tick (timer at control_rate) runs ControlLoop.step(): with a fresh, plausible joint state it pops one
action from AsyncActionQueue, passes it through CommandSafety (first command = measured state, joint limits,
velocity and acceleration limits, braking hold on starvation) and publishes it to the position controller (or, with
`dry_run`, only to the dry-run topic); when the queue asks for a chunk it publishes a ChunkRequest for the current
tick. Without a usable joint state (none younger than `joint_state_timeout`, or a fault: outside the joint limits,
or far from the held command after an outage) the tick holds: braking from the last command (nothing before the
first), no action used up, no chunk request. Chunks (ActionChunk) go through ControlLoop.offer_chunk() (rate check,
gate on absurd chunks, queue); policy outcomes (PolicyStatus) go to the thread-safe queue.

Parameters are validated (smolvla.async_inference.parameters) when set, not only at configure: a bad value is
refused with the reason. Those in parameters.LIVE apply at once; the others are read-only.

Managed node (rclpy lifecycle): commands are sent only while active. Deactivation and shutdown publish one hold
command (the last command) and log it, then stop commanding. With `autostart: true` (the default, for running
without a lifecycle manager) the node configures and activates itself at start; with false it waits for
`ros2 lifecycle set /smolvla_executor configure` and `activate`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import NameValidationException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from smolvla.async_inference import BurstLog, ControlLoop, ControlTick, QueueStatus, TrajectoryStream
from smolvla.async_inference.control import MAX_CHUNK_FACTOR
from smolvla.async_inference.parameters import LIVE, apply_live, build_control_loop
from smolvla.robot_interface import SO100_JOINT_NAMES
from smolvla_msgs.msg import ActionChunk, ChunkRequest, ExecutorStatus, PolicyStatus
from smolvla_ros.chunk_messages import (
    actions_to_trajectory,
    chunk_from_msg,
    max_chunk_message_bytes,
    seconds_to_duration,
    seconds_to_time,
)
from smolvla_ros.diagnostics import diagnostic_array
from smolvla_ros.node_runner import EXIT_CANNOT_START, run_node

NODE_NAME = "smolvla_executor"
# Subscription depth of the chunk and policy-status topics.
FLOOD_DEPTH = 100
# Parameters that take one number for every joint or a list with one per joint.
PER_JOINT = ("max_velocity", "max_acceleration", "gate_max_jump")
OUTPUTS = ("position", "trajectory")
MAX_STOP_TIME = 1.0  # seconds: the longest a deliberate stop brakes before it holds where braking got to

# Defaults: the SO-100/SO-101 joints and position limits in radians (the simulated arm's ranges).
JOINTS = list(SO100_JOINT_NAMES)
LOWER = [-1.91986, -1.74533, -1.69, -1.65806, -2.74385, -0.17453]
UPPER = [1.91986, 1.74533, 1.69, 1.65806, 2.84121, 1.74533]

PARAMETERS: dict[str, object] = {
    "autostart": True,
    "joint_names": JOINTS,
    "joint_lower_limits": LOWER,
    "joint_upper_limits": UPPER,
    # Velocity (rad/s) and acceleration (rad/s^2) limits of the commands: one number for every joint or one per
    # joint (dynamically typed parameters).
    "max_velocity": [3.0, 3.0, 3.0, 3.0, 3.0, 9.0],
    "max_acceleration": [30.0, 30.0, 30.0, 30.0, 30.0, 90.0],
    "joint_limit_tolerance": 0.05,
    "resume_tolerance": 0.2,
    # The gate on absurd chunks.
    "gate_max_jump": [0.5, 0.5, 0.5, 0.5, 0.5, 2.0],
    "gate_limit_margin": 0.1,
    "gate_outside_fraction": 0.5,
    "resample_chunks": False,
    "dry_run": False,
    "dry_run_topic": "/smolvla/dry_run_command",
    "control_rate": 30.0,
    "chunk_size": 50,
    "mode": "async",
    "threshold": 0.7,
    "auto_margin": 0.2,
    "aggregation": "latest_only",
    "similarity_epsilon": 0.01,
    "max_in_flight": 1,
    "request_timeout": 10.0,
    "failure_backoff": 0.2,
    "tick_clock": "action",
    "output": "position",
    "joint_state_topic": "/joint_states",
    "command_topic": "/forward_position_controller/commands",
    "trajectory_topic": "/joint_trajectory_controller/joint_trajectory",
    # Every tick's command as sensor_msgs/JointState stamped with the tick's capture time ("": not published).
    "tick_topic": "/smolvla/executor_ticks",
    "chunk_request_topic": "/smolvla/chunk_request",
    "action_chunk_topic": "/smolvla/action_chunk",
    "policy_status_topic": "/smolvla/policy_status",
    "executor_status_topic": "/smolvla/executor_status",
    "status_rate": 0.0,
    "diagnostics_rate": 1.0,
    "joint_state_timeout": 0.5,
}


class ExecutorNode(LifecycleNode):
    """The executor as a lifecycle node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        for name, default in PARAMETERS.items():
            # Parameters the running executor cannot apply are read-only, so `ros2 param set` says so instead of
            # reporting success and changing nothing.
            descriptor = ParameterDescriptor(dynamic_typing=name in PER_JOINT, read_only=name not in LIVE)
            self.declare_parameter(name, default, descriptor)
        self.autostart = bool(self.get_parameter("autostart").value)
        # Serialises control ticks with the hold on deactivation, so no command follows the hold.
        self._control_lock = threading.Lock()
        self._active = False
        self._loop: ControlLoop | None = None
        self._stream: TrajectoryStream | None = None
        self._chunks_invalid = 0
        self._chunk_log = BurstLog()
        self._fault_log = BurstLog()
        self._shut_down = False
        self._entities: list[tuple[Callable, object]] = []  # (destroy function, entity), created on configure
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        try:
            if p["output"] not in OUTPUTS:
                raise ValueError(f"output must be one of {OUTPUTS}, got {p['output']!r}")
            self._loop = build_control_loop(p)
            self._queue, self._safety = self._loop.queue, self._loop.safety
            self._period = self._queue.config.control_period
            # A dry run publishes one JointState per tick, whatever the output.
            streaming = p["output"] == "trajectory" and not p["dry_run"]
            self._stream = TrajectoryStream(self._safety, self._period) if streaming else None
            self._params = p
            self._create_entities(p)
        except (ValueError, TypeError, OverflowError, NameValidationException) as error:
            self._destroy_entities()
            self._loop = None
            self.get_logger().error(f"invalid parameters, staying unconfigured: {error}")
            return TransitionCallbackReturn.FAILURE
        dry = f", DRY RUN: commands only on {p['dry_run_topic']}" if p["dry_run"] else ""
        self.get_logger().info(
            f"configured: {len(p['joint_names'])} joints at {p['control_rate']:g} Hz, mode {p['mode']} "
            f"(g = {self._queue.threshold():.2f}), n = {p['chunk_size']}, tick clock {p['tick_clock']}, "
            f"output {p['output']}{dry}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {parameter.name: parameter.value for parameter in parameters}
        values = {name: self.get_parameter(name).value for name in PARAMETERS} | changes
        try:
            build_control_loop(values)  # validates the whole set, as the next configure would
        except (ValueError, TypeError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        with self._control_lock:
            if self._loop is not None and LIVE.intersection(changes):
                apply_live(self._loop, values)
                self._params.update((name, changes[name]) for name in LIVE.intersection(changes))
                self.get_logger().info(f"applied {changes} (g = {self._queue.threshold():.2f})")
        return SetParametersResult(successful=True)

    def _create_entities(self, p: dict) -> None:
        def publisher(msg_type, topic: str):
            pub = self.create_publisher(msg_type, topic, 10)
            self._entities.append((self.destroy_publisher, pub))
            return pub

        def subscription(msg_type, topic: str, callback, qos, raw: bool = False) -> None:
            sub = self.create_subscription(msg_type, topic, callback, qos, raw=raw)
            self._entities.append((self.destroy_subscription, sub))

        def timer(rate: float, callback) -> None:
            self._entities.append((self.destroy_timer, self.create_timer(1.0 / rate, callback)))

        if p["dry_run"]:
            self._command_pub = publisher(JointState, p["dry_run_topic"])
        elif p["output"] == "position":
            self._command_pub = publisher(Float64MultiArray, p["command_topic"])
        else:
            self._command_pub = publisher(JointTrajectory, p["trajectory_topic"])
        self._request_pub = publisher(ChunkRequest, p["chunk_request_topic"])
        self._tick_pub = publisher(JointState, p["tick_topic"]) if p["tick_topic"] else None
        self._status_pub = publisher(ExecutorStatus, p["executor_status_topic"])
        self._diagnostics_pub = publisher(DiagnosticArray, "/diagnostics")
        subscription(JointState, p["joint_state_topic"], self._on_joint_state, qos_profile_sensor_data)
        # Deep queues: a burst of rogue messages must not push out the policy's answer before it is read (a request or
        # chunk lost anyway is re-issued after a time tied to the measured latency, see AsyncActionQueue). Chunks
        # arrive serialized: an oversized one is refused by its size, before rclpy would spend control ticks
        # converting it.
        self._max_chunk_bytes = max_chunk_message_bytes(MAX_CHUNK_FACTOR * p["chunk_size"], len(p["joint_names"]))
        subscription(ActionChunk, p["action_chunk_topic"], self._on_serialized_chunk, FLOOD_DEPTH, raw=True)
        subscription(PolicyStatus, p["policy_status_topic"], self._on_policy_status, FLOOD_DEPTH)
        timer(p["control_rate"], self._on_tick)
        timer(p["diagnostics_rate"], self._publish_diagnostics)
        if p["status_rate"] > 0:
            timer(p["status_rate"], self._publish_status)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._control_lock:
            self._loop.reset()
            if self._stream is not None:
                self._stream.reset()
            self._active = True
        self.get_logger().info("active: commanding the arm, starting from its measured joint state")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._hold("deactivated")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self._hold("shutting down")
        self._shut_down = True  # the publishers stay until destroy_node(), which follows
        return TransitionCallbackReturn.SUCCESS

    def autostart_transitions(self) -> None:
        """With `autostart`, configure and activate now, as a lifecycle manager would. A failed configure ends the
        process (exit status EXIT_CANNOT_START), so a launcher sees it: the parameters it refused are read-only."""
        if not self.autostart:
            return
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().fatal("autostart: configure failed (reason above), exiting")
            raise SystemExit(EXIT_CANNOT_START)
        self.trigger_activate()

    def close(self) -> None:
        """Hold and stop commanding (the shutdown transition), unless a lifecycle manager already shut it down."""
        if not self._shut_down:
            self.trigger_shutdown()

    def _hold(self, why: str) -> None:
        with self._control_lock:
            self._active = False
            discarded = self._queue.clear()
            stop = self._safety.stop(round(MAX_STOP_TIME / self._period))
        self._publish_stop(stop)
        held = "no command was sent yet" if not len(stop) else f"holding at {np.round(stop[-1], 3).tolist()}"
        braked = f" after braking for {len(stop) - 1} tick{'s' if len(stop) > 2 else ''}" if len(stop) > 1 else ""
        self.get_logger().info(
            f"{why}: stopped commanding motion{braked}, {held} ({discarded} queued actions discarded)"
        )
        self._publish_status()

    def _publish_stop(self, points: np.ndarray) -> None:
        # A deliberate stop brakes within the acceleration limit like any other command; the transition waits the
        # few ticks that takes (at most MAX_STOP_TIME), so that a shutdown cannot cut the stop short.
        if self._stream is not None and len(points):
            self._publish_trajectory(points)
            return
        for k, positions in enumerate(points):
            if k:
                time.sleep(self._period)
            self._publish_command(positions)

    def _destroy_entities(self) -> None:
        for destroy, entity in self._entities:
            destroy(entity)
        self._entities = []

    # ---- control tick -------------------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        with self._control_lock:
            if self._active:
                self._control_step()
        if self._params["status_rate"] <= 0:  # status every tick, also while inactive
            self._publish_status()

    def _control_step(self) -> None:
        now = self._now()
        tick = self._loop.step(now)
        if tick.command is not None:
            self._send_tick_command(tick, now)
        self._log_joint_state_hold(tick)
        if tick.request is not None:
            request = tick.request
            msg = ChunkRequest(
                request_id=request.request_id,
                observation_tick=request.observation_tick,
                capture_stamp=seconds_to_time(request.capture_time),
                must_go=request.must_go,
                delay_ticks=request.delay_ticks,
            )
            if request.previous_actions is not None:
                msg.previous_actions = actions_to_trajectory(
                    request.previous_actions, self._safety.joint_names, self._period
                )
            self._request_pub.publish(msg)

    def _log_joint_state_hold(self, tick: ControlTick) -> None:
        topic = self._params["joint_state_topic"]
        if tick.fault:
            suppressed = self._fault_log.report(self._now(), tick.fault_kind)
            if suppressed is not None:
                held = "holding the last command" if tick.command is not None else "nothing commanded"
                more = f" ({suppressed} more such ticks since the last message)" if suppressed else ""
                self.get_logger().error(f"not acting on the joint state from {topic}: {tick.fault}; {held}{more}")
        elif tick.state.positions is None:
            self.get_logger().warning(f"waiting for joint states on {topic}", throttle_duration_sec=5.0)
        elif not tick.state.fresh:
            held = "holding the last command" if tick.command is not None else "nothing commanded yet"
            self.get_logger().warning(
                f"no joint state on {topic} for {tick.state.age:.2f} s (joint_state_timeout "
                f"{self._loop.joint_states.timeout:g} s): {held}, action queue paused, no chunk requests",
                throttle_duration_sec=2.0,
            )
        elif tick.resumed_after:
            self.get_logger().info(
                f"joint states on {topic} are fresh again after {tick.resumed_after} held ticks: "
                f"resuming the action queue where it stopped ({tick.queue.queue_length} actions queued)",
                throttle_duration_sec=1.0,
            )

    def _send_tick_command(self, tick: ControlTick, tick_time: float) -> None:
        if self._tick_pub is not None:
            # The tick log: this tick's command stamped with its capture time (the chunk requests' capture_stamp),
            # so a recording tells training which observation each tick's command followed (smolvla.training).
            log = JointState(name=list(self._safety.joint_names), position=[float(x) for x in tick.command])
            log.header.stamp = seconds_to_time(tick_time)
            self._tick_pub.publish(log)
        if self._stream is None:
            self._publish_command(tick.command)
            return
        queued = self._queue.queued_actions() if tick.queue is not None else None
        points = self._stream.update(tick.command, queued)
        if points is not None:
            self._publish_trajectory(points)

    def _publish_trajectory(self, points: np.ndarray) -> None:
        msg = JointTrajectory(joint_names=list(self._safety.joint_names))  # stamp zero: start on receipt
        for positions, seconds in zip(points, self._stream.times(len(points)), strict=True):
            point = JointTrajectoryPoint(positions=[float(x) for x in positions])
            point.time_from_start = seconds_to_duration(float(seconds))
            msg.points.append(point)
        self._command_pub.publish(msg)

    def _publish_command(self, positions: np.ndarray) -> None:
        values = [float(x) for x in positions]
        if self._params["dry_run"]:
            msg = JointState(name=list(self._safety.joint_names), position=values)
            msg.header.stamp = self.get_clock().now().to_msg()
            self._command_pub.publish(msg)
        elif self._params["output"] == "position":
            self._command_pub.publish(Float64MultiArray(data=values))
        else:
            point = JointTrajectoryPoint(positions=values, time_from_start=seconds_to_duration(self._period))
            self._command_pub.publish(JointTrajectory(joint_names=list(self._safety.joint_names), points=[point]))

    # ---- inputs -------------------------------------------------------------------------------------------------

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            measured = self._safety.order(msg.name, msg.position, "joint state")
        except ValueError as error:
            self.get_logger().warning(f"ignoring joint state: {error}", throttle_duration_sec=5.0)
            return
        self._loop.update_joint_state(measured, self._now())

    def _on_serialized_chunk(self, data: bytes) -> None:
        if len(data) > self._max_chunk_bytes:
            self._chunks_invalid += 1
            line = (
                f"rejected a chunk message of {len(data)} bytes: more than {MAX_CHUNK_FACTOR} x chunk_size "
                f"({self._params['chunk_size']}) actions take ({self._max_chunk_bytes} bytes)"
            )
            self._log_chunk(self._now(), "invalid", line)
            return
        self._on_chunk(deserialize_message(data, ActionChunk))

    def _on_chunk(self, msg: ActionChunk) -> None:
        now = self._now()
        try:
            self._loop.check_chunk_length(len(msg.trajectory.points))
            data = chunk_from_msg(msg)
            actions = self._safety.validate_chunk(data.joint_names, data.actions)
            outcome = self._loop.offer_chunk(data.request_id, data.first_tick, actions, data.control_period, now)
        except ValueError as error:  # InvalidChunkError included
            # Counted and logged only: any publisher can send a malformed chunk with the id of a request in flight,
            # so it neither frees that request (its real answer may still come) nor delays the next one.
            self._chunks_invalid += 1
            self._log_chunk(now, "invalid", f"rejected chunk {msg.chunk_id} (request {msg.request_id}): {error}")
            return
        if not outcome.accepted:
            line = f"chunk {msg.chunk_id} (request {msg.request_id}) not used: {outcome.reason}"
            self._log_chunk(now, outcome.kind, line)
        elif len(actions) != self._params["chunk_size"]:
            self.get_logger().warning(
                f"chunks hold {len(actions)} actions but chunk_size is {self._params['chunk_size']}: "
                "the threshold g is relative to chunk_size",
                throttle_duration_sec=60.0,
            )
        if outcome.late_seam:
            self.get_logger().info(
                f"chunk {msg.chunk_id} arrived later than the delay its request announced: ramped in "
                f"(seam jump {outcome.seam_jump:.4f})",
                throttle_duration_sec=5.0,
            )

    def _log_chunk(self, now: float, kind: str, line: str) -> None:
        suppressed = self._chunk_log.report(now, kind)
        if suppressed is not None:
            more = f" ({suppressed} more chunks not used since the last message)" if suppressed else ""
            self.get_logger().warning(line + more)

    def _on_policy_status(self, msg: PolicyStatus) -> None:
        if not msg.ok and self._queue.request_failed(msg.request_id, self._now()):
            self.get_logger().warning(
                f"policy produced no chunk for request {msg.request_id}: {msg.reason}", throttle_duration_sec=2.0
            )

    # ---- status -------------------------------------------------------------------------------------------------

    def _publish_status(self) -> None:
        s = self._queue.status()
        msg = ExecutorStatus(
            active=self._active,
            tick=s.tick,
            control_period=s.control_period,
            queue_length=s.queue_length,
            chunk_size=s.chunk_size,
            mode=s.mode,
            threshold=s.threshold,
            threshold_min=s.threshold_min,
            idle_ticks=s.idle_ticks,
            starvation_episodes=s.starvation_episodes,
            requests_sent=s.requests_sent,
            requests_skipped=s.requests_skipped,
            chunks_received=s.chunks_received,
            chunks_rejected=self._chunks_invalid + s.chunks_unmatched + s.chunks_superseded,
            chunks_gated=s.chunks_gated,
            chunks_wrong_rate=s.chunks_wrong_rate,
            commands_clamped=self._safety.commands_clamped,
            ticks_without_joint_state=self._loop.ticks_without_state,
            joint_state_faults=self._loop.joint_state_faults,
            dry_run=self._params["dry_run"],
            last_latency=s.last_latency,
            latency_estimate=s.latency_estimate,
            seams=s.seams,
            seam_jump_last=s.seam_jump_last,
            seam_jump_mean=s.seam_jump_mean,
            seam_jump_max=s.seam_jump_max,
            chunks_late=s.chunks_late,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        s = self._queue.status()
        state = self._loop.joint_states.check(self._now())
        level, message = _diagnostic_level(
            self._active, s, state.age, self._loop.joint_states.timeout, self._loop.fault
        )
        if self._params["dry_run"]:
            message = f"dry run, commands only on {self._params['dry_run_topic']}: {message}"
        values = {
            "joint_state_age": f"{state.age:.3f}",
            "invalid_chunks": str(self._chunks_invalid),
            "commands_clamped": str(self._safety.commands_clamped),
            "commands_held": str(self._safety.commands_held),
            "ticks_without_joint_state": str(self._loop.ticks_without_state),
            "joint_state_faults": str(self._loop.joint_state_faults),
            **{k: str(v) for k, v in vars(s).items()},
        }
        stamp = self.get_clock().now().to_msg()
        name = f"{self.get_name()}: action queue"
        self._diagnostics_pub.publish(diagnostic_array(stamp, name, level, message, values.items()))

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9


def _diagnostic_level(
    active: bool, s: QueueStatus, state_age: float, state_timeout: float, fault: str
) -> tuple[bytes, str]:
    if not active:
        return DiagnosticStatus.WARN, "inactive: holding, not commanding"
    if fault:
        return DiagnosticStatus.ERROR, f"holding: {fault}"
    if state_age == math.inf:
        return DiagnosticStatus.ERROR, "no joint state received yet: waiting, nothing commanded"
    if state_age > state_timeout:
        message = f"no joint state for {state_age:.1f} s: holding, action queue paused, no requests"
        return DiagnosticStatus.ERROR, message
    if s.queue_length == 0 and s.idle_ticks:
        return (
            DiagnosticStatus.WARN,
            f"starving: queue empty, holding (g = {s.threshold:.2f}, g_min = {s.threshold_min:.2f})",
        )
    return DiagnosticStatus.OK, f"running: queue {s.queue_length}/{s.chunk_size}, g = {s.threshold:.2f}"


def main(args: list[str] | None = None) -> int:
    """Entry point of `executor_node`."""
    return run_node(ExecutorNode, NODE_NAME, args, after_start=ExecutorNode.autostart_transitions)


if __name__ == "__main__":
    raise SystemExit(main())
