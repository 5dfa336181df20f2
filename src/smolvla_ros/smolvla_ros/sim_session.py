"""Drive episodes on a running simulated graph (so101_sim + policy side + executor): the demo, the evaluation and
the closed-loop test share this.

SimSession is an in-process rclpy node spun on a background thread. It restarts episodes cleanly (executor
deactivated, which clears its queue and holds the arm; simulated arm reset to a seeded scene; executor activated
again, starting from the measured joint state), sets other nodes' parameters (e.g. the executor's aggregation),
records placements (rising edges of /so101_sim/task_success), the executor's status (queue length, latency, seams),
its tick log (every tick's command, /smolvla/executor_ticks) and optionally camera frames. Given a recorder node, it
also cuts one recorded episode per scene: the recorder's episode is opened right after the reset (before the
executor moves the arm, so the bag starts at the seeded start pose) and kept or discarded by `end_recording` when
the caller knows the outcome.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from smolvla.images import raw_to_rgb
from smolvla_msgs.msg import ExecutorStatus
from smolvla_msgs.srv import SetInstruction
from smolvla_ros.chunk_messages import time_to_seconds
from smolvla_ros.parameters import set_parameters_request

CAMERA_TOPICS = ("/camera/front/image_raw", "/camera/wrist/image_raw")


@dataclass(frozen=True)
class StatusSample:
    """One ExecutorStatus, reduced: receive time (s, monotonic), queue length, last latency, idle ticks; its stamp
    (s, the executor's clock) and the cumulative chunk and seam counters (see ExecutorStatus.msg)."""

    time: float
    queue_length: int
    last_latency: float
    idle_ticks: int
    stamp: float
    chunks_received: int
    chunks_late: int
    seams: int
    seam_jump_last: float
    seam_jump_mean: float


@dataclass(frozen=True)
class TickCommand:
    """One entry of the executor's tick log: the tick's stamp (s, the executor's clock) and its command."""

    stamp: float
    positions: tuple[float, ...]
    names: tuple[str, ...]


class PlacementEdges:
    """Placements as the rising edges of the simulator's task-success flag, which it publishes with every state.

    After a reset the previous scene's True can still be queued behind it; counted as a placement, it would end
    the new episode at once as a success (and keep an empty demonstration). `rearm` makes a True count again only
    after the new scene has been reported unplaced.
    """

    def __init__(self) -> None:
        self._success = False
        self.times: list[float] = []

    def rearm(self) -> None:
        """The scene was reset: ignore success until the simulator reports the new scene unplaced."""
        self._success = True

    def update(self, success: bool, now: float) -> None:
        """Take one success message received at `now`; a placement goes into `times`."""
        if success and not self._success:
            self.times.append(now)
        self._success = success


class SimSession:
    """See the module docstring. Use as a context manager; all waits raise TimeoutError with a reason."""

    def __init__(
        self, *, record_images_every: float = 0.0, recorder: str | None = None, domain_context: Context | None = None
    ) -> None:
        """record_images_every: keep a camera frame per topic this often (s; 0: none). recorder: the full name of
        a recorder node (e.g. "/smolvla_recorder") to record one episode per start_episode; None: no recording."""
        self._own_context = domain_context is None
        self._context = domain_context or Context()
        if self._own_context:
            # No rclpy signal handler: Ctrl-C must reach the caller (and the launcher's cleanup) as
            # KeyboardInterrupt instead of silently shutting this context down.
            rclpy.init(context=self._context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("sim_session", context=self._context)
        self._lock = threading.Lock()
        self._placements = PlacementEdges()
        self.status: list[StatusSample] = []
        self.ticks: list[TickCommand] = []
        self.frames: dict[str, list[tuple[float, np.ndarray]]] = {topic: [] for topic in CAMERA_TOPICS}
        self._image_interval = record_images_every
        self._last_frame: dict[str, float] = {}
        self.node.create_subscription(Bool, "/so101_sim/task_success", self._on_success, 10)
        self.node.create_subscription(ExecutorStatus, "/smolvla/executor_status", self._on_status, 10)
        self.node.create_subscription(JointState, "/smolvla/executor_ticks", self._on_tick, 10)
        if record_images_every > 0:
            for topic in CAMERA_TOPICS:
                self.node.create_subscription(
                    Image, topic, lambda msg, t=topic: self._on_image(t, msg), qos_profile_sensor_data
                )
        self._reset = self.node.create_client(Trigger, "/so101_sim/reset")
        self._lifecycle = self.node.create_client(ChangeState, "/smolvla_executor/change_state")
        self._instruction = self.node.create_client(SetInstruction, "/smolvla/set_instruction")
        self._parameter_clients: dict[str, object] = {}
        self._recorder = (
            None
            if recorder is None
            else {
                action: self.node.create_client(Trigger, f"{recorder.rstrip('/')}/{action}_episode")
                for action in ("start", "stop", "discard")
            }
        )
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, name="sim-session", daemon=True)
        self._thread.start()

    # --- subscriptions ------------------------------------------------------------------------------------
    def _on_success(self, msg: Bool) -> None:
        with self._lock:
            self._placements.update(msg.data, time.monotonic())

    def _on_status(self, msg: ExecutorStatus) -> None:
        sample = StatusSample(
            time.monotonic(),
            msg.queue_length,
            msg.last_latency,
            msg.idle_ticks,
            time_to_seconds(msg.header.stamp),
            msg.chunks_received,
            msg.chunks_late,
            msg.seams,
            msg.seam_jump_last,
            msg.seam_jump_mean,
        )
        with self._lock:
            self.status.append(sample)

    def _on_tick(self, msg: JointState) -> None:
        command = TickCommand(time_to_seconds(msg.header.stamp), tuple(msg.position), tuple(msg.name))
        with self._lock:
            self.ticks.append(command)

    def _on_image(self, topic: str, msg: Image) -> None:
        now = time.monotonic()
        if now - self._last_frame.get(topic, -1e9) < self._image_interval:
            return
        self._last_frame[topic] = now
        image = raw_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        with self._lock:
            self.frames[topic].append((now, image))

    # --- calls --------------------------------------------------------------------------------------------
    def _call(self, client, request, timeout: float):
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available after {timeout:.0f} s")
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {client.srv_name} did not answer within {timeout:.0f} s")
            time.sleep(0.01)
        return future.result()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the arm, the executor, the policy side (and the recorder) offer their services and the
        executor reports."""
        deadline = time.monotonic() + timeout
        for client in (self._reset, self._lifecycle, self._instruction, *(self._recorder or {}).values()):
            if not client.wait_for_service(timeout_sec=max(0.1, deadline - time.monotonic())):
                raise TimeoutError(f"service {client.srv_name} not available after {timeout:.0f} s")
        while not self.status:
            if time.monotonic() > deadline:
                raise TimeoutError("no /smolvla/executor_status received")
            time.sleep(0.05)

    def set_instruction(self, text: str, timeout: float = 10.0) -> str:
        """Send the instruction to the policy side; returns its confirmation, raises ValueError when refused."""
        response = self._call(self._instruction, SetInstruction.Request(instruction=text), timeout)
        if not response.accepted:
            raise ValueError(f"instruction refused: {response.message}")
        return response.message

    def set_parameters(self, node: str, values: dict[str, object], timeout: float = 10.0) -> None:
        """Set parameters of another node (full name, e.g. "/smolvla_executor"), like `ros2 param set`; raises
        ValueError with the node's reason when it refuses one."""
        if node not in self._parameter_clients:
            self._parameter_clients[node] = self.node.create_client(SetParameters, f"{node.rstrip('/')}/set_parameters")
        response = self._call(self._parameter_clients[node], set_parameters_request(values), timeout)
        refused = [f"{name}: {r.reason}" for name, r in zip(values, response.results, strict=True) if not r.successful]
        if refused:
            raise ValueError(f"{node} refused parameters: " + "; ".join(refused))

    def _transition(self, transition_id: int, timeout: float) -> None:
        request = ChangeState.Request()
        request.transition.id = transition_id
        if not self._call(self._lifecycle, request, timeout).success:
            raise RuntimeError(f"executor refused lifecycle transition {transition_id}")

    def _recorder_call(self, action: str, timeout: float) -> str:
        """Call the recorder's ~/<action>_episode; its message, RuntimeError with the recorder's reason if refused."""
        if self._recorder is None:
            raise RuntimeError("this session has no recorder (give SimSession a recorder node name)")
        response = self._call(self._recorder[action], Trigger.Request(), timeout)
        if not response.success:
            raise RuntimeError(f"recorder refused to {action} an episode: {response.message}")
        return response.message

    def start_episode(self, timeout: float = 10.0, seed: int | None = None) -> tuple[float, str]:
        """Hold the executor, reset the arm to the next seeded scene (or to this seed's), (open a recorded
        episode,) resume; returns (start time, scene text)."""
        self._transition(Transition.TRANSITION_DEACTIVATE, timeout)
        if seed is not None:
            self.set_parameters("/so101_sim", {"seed": seed}, timeout)
        response = self._call(self._reset, Trigger.Request(), timeout)
        with self._lock:
            self._placements.rearm()
        if self._recorder is not None:
            # While the executor holds: it sends no commands, so the bag (which starts once every topic has sent)
            # begins with the first command after the reset, at the seeded start pose.
            self._recorder_call("start", timeout)
        self._transition(Transition.TRANSITION_ACTIVATE, timeout)
        return time.monotonic(), response.message

    def end_recording(self, keep: bool, timeout: float = 10.0) -> str:
        """Close the episode start_episode opened under its final name (keep) or discard it, so a failed
        demonstration never reaches training; returns the recorder's message (where the bag went)."""
        return self._recorder_call("stop" if keep else "discard", timeout)

    def status_snapshot(self) -> list[StatusSample]:
        """A copy of the executor status samples received so far."""
        with self._lock:
            return list(self.status)

    def ticks_snapshot(self) -> list[TickCommand]:
        """A copy of the executor's tick log received so far."""
        with self._lock:
            return list(self.ticks)

    def frames_snapshot(self) -> dict[str, list[tuple[float, np.ndarray]]]:
        """A copy of the recorded camera frames per topic: (receive time, RGB image)."""
        with self._lock:
            return {topic: list(frames) for topic, frames in self.frames.items()}

    def placements_since(self, start: float) -> list[float]:
        """Placement times in seconds after start."""
        with self._lock:
            return [t - start for t in self._placements.times if t >= start]

    def wait_placement(self, start: float, timeout: float) -> float | None:
        """Seconds from start to the first placement after it, or None after timeout seconds."""
        deadline = start + timeout
        while time.monotonic() < deadline:
            done = self.placements_since(start)
            if done:
                return done[0]
            time.sleep(0.05)
        return None

    def close(self) -> None:
        """Stop spinning and release the node (and the context when this session created it)."""
        self._executor.shutdown()
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        if self._own_context and self._context.ok():
            rclpy.shutdown(context=self._context)

    def __enter__(self) -> SimSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
