"""Real rosbag2 episodes for the training tests, written with rosbags' Writer (sqlite3 or mcap) from synthetic
messages whose values say which message they are."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from smolvla.training.bags import DEFAULT_JOINT_NAMES

TS = get_typestore(Stores.ROS2_JAZZY)
T0 = 1_700_000_000 * 10**9  # log time of the first message (ns)
MS = 10**6
FRONT = "/camera/front/image_raw"  # sensor_msgs/Image, bgr8
WRIST = "/camera/wrist/image_raw/compressed"  # sensor_msgs/CompressedImage, PNG
JOINTS = "/joint_states"
ACTION = "/forward_position_controller/commands"
HEIGHT, WIDTH = 24, 32
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


def ticks(start_ms: float, period_ms: float, end_ms: float) -> list[int]:
    """Log times T0 + start, start + period, ... up to end (ms), in ns."""
    count = int((end_ms - start_ms) // period_ms) + 1
    return [T0 + round((start_ms + i * period_ms) * MS) for i in range(count)]


def default_streams(duration_ms: float = 1000.0) -> dict[str, list[int]]:
    """Joint states at 100 Hz from 0 ms, the front camera at 30 Hz from 20 ms, the wrist camera at 10 Hz from
    30 ms, commands at 30 Hz from 40 ms (the last to start: frame 0 is at 40 ms)."""
    return {
        JOINTS: ticks(0, 10, duration_ms),
        FRONT: ticks(20, 1000 / 30, duration_ms),
        WRIST: ticks(30, 100, duration_ms),
        ACTION: ticks(40, 1000 / 30, duration_ms),
    }


def state_value(i: int) -> np.ndarray:
    """Joint state i in DEFAULT_JOINT_NAMES order: i + 0.01 j."""
    return i + 0.01 * np.arange(len(DEFAULT_JOINT_NAMES))


def action_value(i: int) -> np.ndarray:
    """Command i in DEFAULT_JOINT_NAMES order: 100 + i + 0.01 j."""
    return 100 + i + 0.01 * np.arange(len(DEFAULT_JOINT_NAMES))


def front_rgb(i: int) -> tuple[int, int, int]:
    """Colour of front image i."""
    return (i % 256, 10, 200)


def wrist_rgb(i: int) -> tuple[int, int, int]:
    """Colour of wrist image i."""
    return (i % 256, 20, 100)


def _header(stamp: int):
    time = TS.types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9)
    return TS.types["std_msgs/msg/Header"](stamp=time, frame_id="")


def _front(i: int, stamp: int):
    r, g, b = front_rgb(i)
    pixels = np.tile(np.array([b, g, r], np.uint8), (HEIGHT, WIDTH, 1))  # bgr8: blue first
    return TS.types["sensor_msgs/msg/Image"](
        header=_header(stamp),
        height=HEIGHT,
        width=WIDTH,
        encoding="bgr8",
        is_bigendian=0,
        step=WIDTH * 3,
        data=pixels.reshape(-1),
    )


def _wrist(i: int, stamp: int):
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.array(wrist_rgb(i), np.uint8), (HEIGHT, WIDTH, 1))).save(buffer, format="PNG")
    return TS.types["sensor_msgs/msg/CompressedImage"](
        header=_header(stamp), format="png", data=np.frombuffer(buffer.getvalue(), np.uint8)
    )


def _joint_state(i: int, stamp: int, rng: random.Random):
    order = list(range(len(DEFAULT_JOINT_NAMES)))
    rng.shuffle(order)  # any joint order: the reader reorders by name
    values = state_value(i)
    return TS.types["sensor_msgs/msg/JointState"](
        header=_header(stamp),
        name=[DEFAULT_JOINT_NAMES[j] for j in order] + ["extra_joint"],
        position=np.array([values[j] for j in order] + [-7.0]),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )


def _command(i: int, stamp: int):
    return TS.types["std_msgs/msg/Float64MultiArray"](
        layout=TS.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=action_value(i)
    )


def _trajectory(i: int, stamp: int):
    order = [5, 3, 1, 0, 2, 4]
    values = action_value(i)
    point = TS.types["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.array([values[j] for j in order]),
        velocities=np.zeros(0),
        accelerations=np.zeros(0),
        effort=np.zeros(0),
        time_from_start=TS.types["builtin_interfaces/msg/Duration"](sec=0, nanosec=33_000_000),
    )
    return TS.types["trajectory_msgs/msg/JointTrajectory"](
        header=_header(stamp), joint_names=[DEFAULT_JOINT_NAMES[j] for j in order], points=[point]
    )


def serialized_messages(
    streams: dict[str, list[int]] | None = None,
    *,
    trajectory: bool = False,
    header_delays: dict[str, int] | None = None,
) -> list[tuple[int, str, str, bytes]]:
    """(log time ns, topic, message type, CDR bytes) of every message of an episode, in log-time order; message i
    of a topic carries the values of `state_value(i)`, `action_value(i)`, `front_rgb(i)`, `wrist_rgb(i)`. With
    `trajectory` the action topic holds JointTrajectory messages instead of Float64MultiArray. Header stamps are the
    log times, less `header_delays[topic]` ns (capture-to-recording delay) where given; a delay of None leaves
    the header empty (stamp 0)."""
    streams = default_streams() if streams is None else streams
    header_delays = header_delays or {}
    rng = random.Random(0)
    makers = {
        FRONT: ("sensor_msgs/msg/Image", _front),
        WRIST: ("sensor_msgs/msg/CompressedImage", _wrist),
        JOINTS: ("sensor_msgs/msg/JointState", lambda i, t: _joint_state(i, t, rng)),
        ACTION: (
            ("trajectory_msgs/msg/JointTrajectory", _trajectory)
            if trajectory
            else ("std_msgs/msg/Float64MultiArray", _command)
        ),
    }
    messages = []
    for topic, stamps in streams.items():
        msgtype, make = makers[topic]
        delay = header_delays.get(topic, 0)
        messages += [
            (stamp, topic, msgtype, bytes(TS.serialize_cdr(make(i, 0 if delay is None else stamp - delay), msgtype)))
            for i, stamp in enumerate(stamps)
        ]
    return sorted(messages, key=lambda m: m[0])


def write_bag(
    path: Path,
    streams: dict[str, list[int]] | None = None,
    *,
    storage: str = "sqlite3",
    trajectory: bool = False,
    header_delays: dict[str, int] | None = None,
) -> Path:
    """Write `serialized_messages(streams, ...)` as a rosbag2 episode (version 9, as Jazzy writes)."""
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        connections = {}
        messages = serialized_messages(streams, trajectory=trajectory, header_delays=header_delays)
        for stamp, topic, msgtype, data in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(connections[topic], stamp, data)
    return path
