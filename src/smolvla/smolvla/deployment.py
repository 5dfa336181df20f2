"""What a checkpoint needs from the robot it runs on, settled before its weights are loaded.

`prepare_deployment` reads a checkpoint's config and robot interface (no weights), and combines them with the
policy node's parameters into one `Deployment`: the robot interface (its own, or one the parameters describe for a
checkpoint without one), the joint-unit conversion through the arm's calibration file, and the camera topic of each
camera feature. Anything that cannot be right (unknown units, a missing calibration, a camera without a topic)
raises `DeploymentError` with what to set, before a gigabyte of weights is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .camera_mapping import CameraMapping, CameraMappingError, map_cameras
from .joint_units import CalibrationError, JointConverter
from .policy.checkpoint import read_config, resolve_repo
from .policy.configuration import SmolVLAConfig
from .policy.policy import check_interface_matches
from .robot_interface import RobotInterface, RobotInterfaceError, interface_for_checkpoint


class DeploymentError(ValueError):
    """The checkpoint cannot run with these parameters; the message says what to set."""


@dataclass(frozen=True)
class Deployment:
    """directory: the checkpoint's local directory; config: its policy config; interface: joints, units, fps and
    cameras it runs with; units: radians <-> its units; cameras: the topic of each camera feature;
    calibration_file: the calibration the units are converted through ("" when every joint is in radians)."""

    directory: Path
    config: SmolVLAConfig
    interface: RobotInterface
    units: JointConverter
    cameras: CameraMapping
    calibration_file: str

    def describe(self) -> str:
        """One line for the log: units (and calibration), rate, cameras."""
        units = self.interface.describe_units()
        if not self.units.identity:
            units += f" through {self.calibration_file}"
        return f"joint units {units}; {self.interface.fps:g} fps; cameras {self.cameras.describe()}"


def prepare_deployment(
    checkpoint: str | Path,
    *,
    camera_topics: Sequence[str],
    joint_names: Sequence[str],
    joint_units: str = "",
    fps: float = 0.0,
    calibration_file: str = "",
) -> Deployment:
    """Resolve a checkpoint (hub id or directory) and the node's parameters into a Deployment, or raise
    DeploymentError (FileNotFoundError for a checkpoint that cannot be found)."""
    directory = resolve_repo(checkpoint)
    config, _ = read_config(directory)
    try:
        interface = interface_for_checkpoint(
            RobotInterface.load(directory),
            source=str(checkpoint),
            joint_names=joint_names,
            joint_units=joint_units,
            fps=fps,
            cameras=config.camera_names,
        )
        check_interface_matches(interface, config)
        units = JointConverter.for_interface(interface, calibration_file or None)
        cameras = map_cameras(camera_topics, config.camera_names)
    except (RobotInterfaceError, CalibrationError, CameraMappingError) as error:
        raise DeploymentError(str(error)) from None
    return Deployment(directory, config, interface, units, cameras, calibration_file if not units.identity else "")
