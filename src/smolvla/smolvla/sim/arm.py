"""The simulated SO-101 arm: position actuators driven by joint commands, cameras, seeded task resets."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from smolvla.sim.scene import (
    CAMERA_NAMES,
    CUBE_BODY,
    JOINT_NAMES,
    TARGET_BODY,
    SceneOptions,
    build_model,
)
from smolvla.sim.task import Layout, PlacementJudge, sample_layout

#: Home pose: the shipped env's zero arm pose with the jaw open.
HOME_POSITION = np.asarray([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])


def quaternion_yaw(quaternion: np.ndarray) -> float:
    """Rotation about the world vertical (radians) of a (w, x, y, z) orientation."""
    w, x, y, z = (float(v) for v in quaternion)
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


#: The accepted CommandDisturbance values: std in radians, time constant in seconds (inclusive bounds).
DISTURBANCE_STD_RANGE = (0.0, 0.5)
DISTURBANCE_TIME_CONSTANT_RANGE = (0.01, 60.0)


@dataclass(frozen=True)
class CommandDisturbance:
    """A slowly wandering offset added to each arm joint's command before the actuators see it (not the gripper's).

    Each joint's offset is an Ornstein-Uhlenbeck process: standard deviation `std` radians, correlation time
    `time_constant` seconds, zero at every reset, drawn from the scene's seed. Recording demonstrations with it is
    DART (Laskey et al., 2017): the arm strays from where the expert commanded, the cameras and joint states show
    the stray, and the expert, planning from what it observes, answers with the correction; the recorded actions
    are the expert's commands, not the disturbed ones. A policy trained on them has seen how to get back from the
    small misses that its own errors cause, which a policy trained on perfect motions never has.
    """

    std: float = 0.0
    time_constant: float = 1.0

    def __post_init__(self) -> None:
        low, high = DISTURBANCE_STD_RANGE
        if not (np.isfinite(self.std) and low <= self.std <= high):
            raise ValueError(f"disturbance std must be within {low:g}..{high:g} rad, got {self.std}")
        low, high = DISTURBANCE_TIME_CONSTANT_RANGE
        if not (np.isfinite(self.time_constant) and low <= self.time_constant <= high):
            raise ValueError(f"disturbance time constant must be within {low:g}..{high:g} s, got {self.time_constant}")


@dataclass(frozen=True)
class SceneState:
    """Where the cube and the target are (world frame, metres) and whether the cube counts as placed."""

    cube_position: np.ndarray
    target_position: np.ndarray
    success: bool
    placements: int
    #: The cube's orientation (w, x, y, z) and its rotation about the vertical (radians).
    cube_quaternion: np.ndarray
    cube_yaw: float


class SimArm:
    """MuJoCo SO-101 with a cube and a target, stepped in fixed physics steps.

    Commands are absolute joint positions in JOINT_NAMES order (radians, the gripper as its jaw angle), written to
    the position actuators and held until the next command, like ros2_control's forward position controller.
    Not thread-safe: the caller serialises access.
    """

    def __init__(
        self, options: SceneOptions | None = None, *, seed: int = 0, disturbance: CommandDisturbance | None = None
    ) -> None:
        self.options = options or SceneOptions()
        self.disturbance = disturbance or CommandDisturbance()
        self.model = build_model(self.options)
        self.data = mujoco.MjData(self.model)
        self._qpos_adr = np.asarray([self.model.joint(n).qposadr[0] for n in JOINT_NAMES])
        self._qvel_adr = np.asarray([self.model.joint(n).dofadr[0] for n in JOINT_NAMES])
        self._actuators = np.asarray([self.model.actuator(n).id for n in JOINT_NAMES])
        self.command_low = self.model.actuator_ctrlrange[self._actuators, 0].copy()
        self.command_high = self.model.actuator_ctrlrange[self._actuators, 1].copy()
        self._cube_joint = self.model.joint(CUBE_BODY)
        self._cube_half = float(self.model.geom(CUBE_BODY).size[2])
        self._target_mocap = self.model.body(TARGET_BODY).mocapid[0]
        self._renderer: mujoco.Renderer | None = None
        self._rng = np.random.default_rng(seed)
        self._judge = PlacementJudge(np.zeros(2), self._cube_half)
        self.placements = 0
        self.seed = seed
        self.reset(seed)

    @property
    def time(self) -> float:
        """Simulated seconds since the last reset."""
        return float(self.data.time)

    @property
    def physics_dt(self) -> float:
        return float(self.model.opt.timestep)

    def reset(self, seed: int) -> Layout:
        """Arm to HOME_POSITION at rest, cube and target drawn from the seed; the same seed gives the same scene."""
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._qpos_adr] = HOME_POSITION
        self._command = HOME_POSITION.copy()
        self._offset = np.zeros(len(JOINT_NAMES))
        self._disturbance_rng = np.random.default_rng([self.seed, 1])
        self._actuate()
        self.placements = 0
        return self._place_objects()

    def respawn(self) -> Layout:
        """New cube and target from the episode's random stream, arm left where it is (continuous runs)."""
        return self._place_objects()

    def _place_objects(self) -> Layout:
        layout = sample_layout(self._rng)
        adr = self._cube_joint.qposadr[0]
        half = layout.cube_yaw / 2
        self.data.qpos[adr : adr + 7] = [*layout.cube_xy, self._cube_half, np.cos(half), 0.0, 0.0, np.sin(half)]
        dof = self._cube_joint.dofadr[0]
        self.data.qvel[dof : dof + 6] = 0.0
        self.data.mocap_pos[self._target_mocap] = [*layout.target_xy, 0.0]
        mujoco.mj_forward(self.model, self.data)
        self._judge.reset(np.asarray(layout.target_xy), self._cube_half)
        self.layout = layout
        return layout

    def set_command(self, positions: np.ndarray) -> np.ndarray:
        """Hold these joint positions from now on; values are clipped to the actuator ranges (returned).

        Raises ValueError for a wrong length or non-finite values (the previous command stays in force).
        """
        positions = np.asarray(positions, dtype=float)
        if positions.shape != (len(JOINT_NAMES),):
            raise ValueError(f"command needs {len(JOINT_NAMES)} joint positions, got shape {positions.shape}")
        if not np.all(np.isfinite(positions)):
            raise ValueError("command contains non-finite values")
        clipped = np.clip(positions, self.command_low, self.command_high)
        self._command = clipped
        self._actuate()
        return clipped

    @property
    def command(self) -> np.ndarray:
        """The joint positions last commanded (clipped), without the disturbance."""
        return self._command.copy()

    @property
    def disturbance_offset(self) -> np.ndarray:
        """What the disturbance adds to the command now (radians, JOINT_NAMES order; the gripper's is 0)."""
        return self._offset.copy()

    def _actuate(self) -> None:
        self.data.ctrl[self._actuators] = np.clip(self._command + self._offset, self.command_low, self.command_high)

    def _disturb(self, duration: float) -> None:
        """Advance the disturbance by `duration` seconds (the exact Ornstein-Uhlenbeck transition)."""
        if self.disturbance.std == 0.0:
            return
        decay = np.exp(-duration / self.disturbance.time_constant)
        arm = len(JOINT_NAMES) - 1
        noise = self._disturbance_rng.standard_normal(arm) * self.disturbance.std * np.sqrt(1.0 - decay**2)
        self._offset[:arm] = self._offset[:arm] * decay + noise
        self._actuate()

    def step(self, duration: float) -> bool:
        """Advance the physics by round(duration / physics_dt) steps; returns task success."""
        steps = max(1, round(duration / self.physics_dt))
        self._disturb(steps * self.physics_dt)
        success_before = self._judge.success
        for _ in range(steps):
            mujoco.mj_step(self.model, self.data)
        adr = self._cube_joint.qposadr[0]
        dof = self._cube_joint.dofadr[0]
        success = self._judge.update(
            self.data.qpos[adr : adr + 3],
            float(np.linalg.norm(self.data.qvel[dof : dof + 3])),
            float(self.data.qpos[self._qpos_adr[-1]]),
        )
        if success and not success_before:
            self.placements += 1
        return success

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qpos_adr].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._qvel_adr].copy()

    def scene_state(self) -> SceneState:
        adr = self._cube_joint.qposadr[0]
        quaternion = self.data.qpos[adr + 3 : adr + 7].copy()
        return SceneState(
            cube_position=self.data.qpos[adr : adr + 3].copy(),
            target_position=self.data.mocap_pos[self._target_mocap].copy(),
            success=self._judge.success,
            placements=self.placements,
            cube_quaternion=quaternion,
            cube_yaw=quaternion_yaw(quaternion),
        )

    def render(self, camera: str) -> np.ndarray:
        """RGB image (height, width, 3) uint8 of one camera in CAMERA_NAMES, without shadows, skybox or AA."""
        if camera not in CAMERA_NAMES:
            raise ValueError(f"unknown camera {camera!r}; cameras: {', '.join(CAMERA_NAMES)}")
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.options.image_height, self.options.image_width)
        self._renderer.update_scene(self.data, camera=camera)
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        return self._renderer.render()

    def close(self) -> None:
        """Release the GL context (call before exit: EGL contexts freed at interpreter teardown raise errors)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SimArm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
