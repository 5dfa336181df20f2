"""Conversion between action chunks as numpy arrays and smolvla_msgs/ActionChunk, and ROS time helpers.

Shared by every node that publishes or receives chunks (policy, expert, executor), so that the message layout
and the tick convention are written down once: trajectory point i is the action for tick first_tick + i and
its time_from_start is i * control_period. The previous actions of a ChunkRequest (real-time chunking) use the
same layout, point i for the requested chunk's action i.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration, Time
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from smolvla_msgs.msg import ActionChunk

_NS_PER_S = 1_000_000_000
#: Serialized bytes an ActionChunk may take besides its points: header, joint names, instruction (a few kB).
CHUNK_MESSAGE_OVERHEAD = 64 * 1024


def max_chunk_message_bytes(max_points: int, n_joints: int) -> int:
    """The most bytes a serialized ActionChunk of at most `max_points` points for `n_joints` joints takes: per point
    four filled arrays (positions, velocities, accelerations, efforts: a 4-byte length, up to 4 bytes of alignment
    and 8 bytes per value each) and an 8-byte time_from_start, plus CHUNK_MESSAGE_OVERHEAD. A receiver checks a
    message's size against it before converting the message: the conversion of a huge chunk costs far more than
    its refusal."""
    return CHUNK_MESSAGE_OVERHEAD + max_points * (4 * (8 + 8 * n_joints) + 8)


def time_to_seconds(stamp: Time) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return stamp.sec + stamp.nanosec / _NS_PER_S


def seconds_to_time(seconds: float) -> Time:
    """float seconds (>= 0) -> builtin_interfaces/Time."""
    ns = round(seconds * _NS_PER_S)
    return Time(sec=ns // _NS_PER_S, nanosec=ns % _NS_PER_S)


def duration_to_seconds(duration: Duration) -> float:
    """builtin_interfaces/Duration -> float seconds."""
    return duration.sec + duration.nanosec / _NS_PER_S


def seconds_to_duration(seconds: float) -> Duration:
    """float seconds -> builtin_interfaces/Duration (nanosec normalised into [0, 1e9))."""
    ns = round(seconds * _NS_PER_S)
    return Duration(sec=ns // _NS_PER_S, nanosec=ns % _NS_PER_S)


@dataclass(frozen=True)
class ChunkData:
    """An ActionChunk's content as plain values. actions[i] is the command for tick first_tick + i."""

    request_id: int
    chunk_id: int
    first_tick: int
    joint_names: tuple[str, ...]
    actions: np.ndarray  # (n, len(joint_names)) float64
    control_period: float
    capture_time: float
    inference_latency: float
    instruction: str


def actions_to_trajectory(actions: np.ndarray, joint_names: Sequence[str], control_period: float) -> JointTrajectory:
    """An (n, n_joints) array of absolute joint positions as a JointTrajectory, point i at i * control_period."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != len(joint_names):
        raise ValueError(f"actions must have shape (n, {len(joint_names)}), got {actions.shape}")
    return JointTrajectory(
        joint_names=list(joint_names),
        points=[
            JointTrajectoryPoint(positions=row.tolist(), time_from_start=seconds_to_duration(i * control_period))
            for i, row in enumerate(actions)
        ],
    )


def actions_from_trajectory(trajectory: JointTrajectory) -> tuple[tuple[str, ...], np.ndarray]:
    """(joint names, (n, n_joints) float64 positions) of a JointTrajectory, n >= 0; raises ValueError when a point
    does not have one position per joint."""
    names = tuple(trajectory.joint_names)
    points = trajectory.points
    lengths = {len(p.positions) for p in points}
    if points and lengths != {len(names)}:
        raise ValueError(f"trajectory has {len(names)} joint names but points with {sorted(lengths)} positions")
    actions = np.array([p.positions for p in points], dtype=np.float64).reshape(len(points), len(names))
    return names, actions


def chunk_to_msg(
    actions: np.ndarray,
    joint_names: Sequence[str],
    *,
    request_id: int,
    chunk_id: int,
    first_tick: int,
    control_period: float,
    capture_stamp: Time,
    inference_latency: float,
    instruction: str,
) -> ActionChunk:
    """Build an ActionChunk from an (n, n_joints) array of absolute joint positions."""
    msg = ActionChunk()
    msg.header.stamp = capture_stamp
    msg.chunk_id = int(chunk_id)
    msg.request_id = int(request_id)
    msg.first_tick = int(first_tick)
    msg.control_period = seconds_to_duration(control_period)
    msg.trajectory = actions_to_trajectory(actions, joint_names, control_period)
    msg.inference_latency = float(inference_latency)
    msg.instruction = instruction
    return msg


def chunk_from_msg(msg: ActionChunk) -> ChunkData:
    """Read an ActionChunk; raises ValueError when its points do not all have one position per joint."""
    if not msg.trajectory.points:
        raise ValueError("chunk has no trajectory points")
    try:
        names, actions = actions_from_trajectory(msg.trajectory)
    except ValueError as error:
        raise ValueError(f"chunk: {error}") from error
    return ChunkData(
        request_id=msg.request_id,
        chunk_id=msg.chunk_id,
        first_tick=msg.first_tick,
        joint_names=names,
        actions=actions,
        control_period=duration_to_seconds(msg.control_period),
        capture_time=time_to_seconds(msg.header.stamp),
        inference_latency=msg.inference_latency,
        instruction=msg.instruction,
    )
