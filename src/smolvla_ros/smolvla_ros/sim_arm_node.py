"""Node so101_sim: the MuJoCo SO-101 (smolvla.sim) behind the same topics as the real arm under ros2_control.

Publishes /joint_states, the front and wrist cameras (sensor_msgs/Image rgb8, sensor-data QoS, stamped with the
render time), the scene (/so101_sim/scene, geometry_msgs/PoseArray: cube centre and orientation, then target
centre) and task success (/so101_sim/task_success, std_msgs/Bool). Follows /forward_position_controller/commands
and the last point of /joint_trajectory_controller/joint_trajectory. /so101_sim/reset (std_srvs/Trigger) puts the
arm home and draws a new scene from the `seed` parameter, then increments it, so a sequence of resets is
reproducible.

Real-time mode steps the physics against the system clock on its own thread; lock-step mode advances exactly one
control period per received command (for tests on a loaded machine: the simulation then cannot fall behind).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseArray
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, Header
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from smolvla.observation import RateLimiter, order_joint_positions
from smolvla.parameters import Check, integer, number, text
from smolvla.sim.arm import DISTURBANCE_STD_RANGE, DISTURBANCE_TIME_CONSTANT_RANGE, CommandDisturbance, SimArm
from smolvla.sim.scene import CAMERA_NAMES, JOINT_NAMES, SceneOptions
from smolvla_ros.chunk_messages import seconds_to_time
from smolvla_ros.node_runner import run_node
from smolvla_ros.parameters import declare_checked

_DEFAULTS: dict[str, object] = {
    "image_width": 256,
    "image_height": 256,
    # Camera frames per second (0: no cameras, e.g. for an expert that does not look).
    "camera_rate": 30.0,
    "state_rate": 100.0,
    # Used in lock-step mode: simulated seconds per received command.
    "control_rate": 30.0,
    "lockstep": False,
    "seed": 0,
    # After a placement, respawn cube and target (arm left in place) this many simulated seconds later; < 0: never.
    "respawn_delay": 1.0,
    # Smooth random offset on each arm joint's command (radians, Ornstein-Uhlenbeck; 0: none), for recording
    # demonstrations that show corrections (smolvla.sim.arm.CommandDisturbance).
    "command_disturbance": 0.0,
    "command_disturbance_time_constant": 1.0,
    "command_topic": "/forward_position_controller/commands",
    "trajectory_topic": "/joint_trajectory_controller/joint_trajectory",
}

#: Seeds are numpy generator seeds; after a reset the next one wraps around within this range.
SEED_RANGE = 2**32

_CHECKS: dict[str, Check] = {
    "image_width": integer(16, 4096),
    "image_height": integer(16, 4096),
    "camera_rate": number(0.0, 1000.0),
    "state_rate": number(above=0.0, high=2000.0),
    "control_rate": number(above=0.0, high=1000.0),
    "seed": integer(0, SEED_RANGE - 1),
    "respawn_delay": number(high=3600.0),
    "command_disturbance": number(*DISTURBANCE_STD_RANGE),
    "command_disturbance_time_constant": number(*DISTURBANCE_TIME_CONSTANT_RANGE),
    "command_topic": text(lambda value: None if value.strip() else "must not be empty"),
    "trajectory_topic": text(lambda value: None if value.strip() else "must not be empty"),
}


class SimArmNode(Node):
    """Thin ROS wiring around smolvla.sim.arm.SimArm (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("so101_sim")
        # `seed` may change while running (the next reset uses it); the rest is read at start (read-only).
        p = declare_checked(self, _DEFAULTS, _CHECKS, live={"seed": lambda value: None})
        for name in ("camera_rate", "respawn_delay"):
            p[name] = float(p[name])
        self._p = p
        options = SceneOptions(image_width=int(p["image_width"]), image_height=int(p["image_height"]))
        self._lock = threading.Lock()
        disturbance = CommandDisturbance(float(p["command_disturbance"]), float(p["command_disturbance_time_constant"]))
        self._sim = SimArm(options, seed=int(p["seed"]), disturbance=disturbance)
        self._log_limiter = RateLimiter(5.0)
        self._success_since: float | None = None
        self._next_camera_time = 0.0

        self._state_pub = self.create_publisher(JointState, "/joint_states", 10)
        self._scene_pub = self.create_publisher(PoseArray, "/so101_sim/scene", 10)
        self._success_pub = self.create_publisher(Bool, "/so101_sim/task_success", 10)
        self._image_pubs = {
            camera: self.create_publisher(Image, f"/camera/{camera}/image_raw", qos_profile_sensor_data)
            for camera in CAMERA_NAMES
        }
        self.create_subscription(Float64MultiArray, p["command_topic"], self._on_command, 10)
        self.create_subscription(JointTrajectory, p["trajectory_topic"], self._on_trajectory, 10)
        self.create_service(Trigger, "/so101_sim/reset", self._on_reset)

        self._stop = threading.Event()
        if p["lockstep"]:
            # Until commands flow, republish the state so the executor can start ticking.
            self.create_timer(1.0 / p["state_rate"], self._publish_idle)
            self._thread = None
        else:
            self._thread = threading.Thread(target=self._run_real_time, name="sim", daemon=True)
            self._thread.start()
        self.get_logger().info(
            f"simulated SO-101 ready: {'lock-step' if p['lockstep'] else 'real-time'}, cameras "
            f"{options.image_width}x{options.image_height} at {p['camera_rate']} Hz, seed {p['seed']}"
            + (f", command disturbance {disturbance.std:g} rad" if disturbance.std else "")
        )

    # --- inputs -------------------------------------------------------------------------------------------
    def _apply(self, positions: np.ndarray) -> None:
        with self._lock:
            self._sim.set_command(positions)
            if self._p["lockstep"]:
                self._advance(1.0 / self._p["control_rate"])

    def _on_command(self, msg: Float64MultiArray) -> None:
        try:
            self._apply(np.asarray(msg.data, dtype=float))
        except ValueError as error:
            self._warn("command", f"command ignored: {error}")

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            if not msg.points:
                raise ValueError("trajectory has no points")
            self._apply(order_joint_positions(msg.joint_names, msg.points[-1].positions, JOINT_NAMES))
        except ValueError as error:
            self._warn("trajectory", f"trajectory ignored: {error}")

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        seed = int(self.get_parameter("seed").value)
        with self._lock:
            layout = self._sim.reset(seed)
            self._success_since = None
            self._next_camera_time = 0.0
        self.set_parameters([rclpy.parameter.Parameter("seed", value=(seed + 1) % SEED_RANGE)])
        response.success = True
        response.message = (
            f"seed {seed}: cube at ({layout.cube_xy[0]:.3f}, {layout.cube_xy[1]:.3f}), "
            f"target at ({layout.target_xy[0]:.3f}, {layout.target_xy[1]:.3f})"
        )
        self.get_logger().info(f"reset, {response.message}")
        return response

    def _warn(self, key: str, text: str) -> None:
        allowed, suppressed = self._log_limiter.allow(key, time.monotonic())
        if allowed:
            self.get_logger().warning(text + (f" ({suppressed} more suppressed)" if suppressed else ""))

    # --- simulation ---------------------------------------------------------------------------------------
    def _advance(self, duration: float) -> None:
        """Step the physics (lock held), respawn after a placement, publish state and due camera frames."""
        success = self._sim.step(duration)
        now_sim = self._sim.time
        if success and self._success_since is None:
            self._success_since = now_sim
            self.get_logger().info(f"cube placed after {now_sim:.2f} s simulated (placements {self._sim.placements})")
        delay = self._p["respawn_delay"]
        if self._success_since is not None and delay >= 0 and now_sim - self._success_since >= delay:
            self._sim.respawn()
            self._success_since = None
        self._publish_state()
        if self._p["camera_rate"] > 0 and now_sim >= self._next_camera_time:
            self._next_camera_time = now_sim + 1.0 / self._p["camera_rate"]
            for camera, publisher in self._image_pubs.items():
                image = self._sim.render(camera)
                publisher.publish(self._image_msg(image, camera))

    def _publish_idle(self) -> None:
        with self._lock:
            self._publish_state()

    def _publish_state(self) -> None:
        stamp = seconds_to_time(time.time())
        self._state_pub.publish(
            JointState(
                header=_header(stamp, "base"),
                name=list(JOINT_NAMES),
                position=self._sim.joint_positions().tolist(),
                velocity=self._sim.joint_velocities().tolist(),
            )
        )
        scene = self._sim.scene_state()
        poses = PoseArray(header=_header(stamp, "world"))
        for position, orientation in ((scene.cube_position, scene.cube_quaternion), (scene.target_position, None)):
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
            if orientation is None:
                pose.orientation.w = 1.0
            else:
                q = pose.orientation
                q.w, q.x, q.y, q.z = (float(v) for v in orientation)
            poses.poses.append(pose)
        self._scene_pub.publish(poses)
        self._success_pub.publish(Bool(data=scene.success))

    def _image_msg(self, image: np.ndarray, camera: str) -> Image:
        height, width, _ = image.shape
        return Image(
            header=_header(seconds_to_time(time.time()), f"{camera}_camera"),
            height=height,
            width=width,
            encoding="rgb8",
            is_bigendian=0,
            step=3 * width,
            data=image.tobytes(),
        )

    def _run_real_time(self) -> None:
        """Keep simulated time with the system clock, one state period per iteration; skip ahead when late."""
        period = 1.0 / self._p["state_rate"]
        deadline = time.monotonic()
        while not self._stop.is_set() and self.context.ok():
            with self._lock:
                try:
                    self._advance(period)
                except RCLError:
                    # Ctrl-C shuts the context down before main() stops this thread: end quietly.
                    if self.context.ok():
                        raise
                    return
            deadline += period
            lag = time.monotonic() - deadline
            if lag > 0.5:
                self._warn("lag", f"simulation {lag:.2f} s behind real time; dropping the backlog")
                deadline = time.monotonic()
            self._stop.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop the simulation thread and release the renderer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._lock:
            self._sim.close()


def _header(stamp: Time, frame_id: str) -> Header:
    return Header(stamp=stamp, frame_id=frame_id)


def main(args: list[str] | None = None) -> int:
    """Entry point of `sim_arm_node`."""
    return run_node(SimArmNode, "so101_sim", args)


if __name__ == "__main__":
    raise SystemExit(main())
