"""Read one episode recorded with `ros2 bag record`: a rosbag2 directory (metadata.yaml + sqlite3 or mcap storage).

The bag is opened read-only through `rosbags` (pure Python, no ROS install) with the ROS 2 Jazzy message
definitions. Three kinds of topics are read:

- cameras: sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) or sensor_msgs/CompressedImage (JPEG, PNG), converted
  to HxWx3 uint8 RGB by `smolvla.images`, the same code the policy node uses;
- joint states: sensor_msgs/JointState in any joint order, reordered to the configured joint names;
- actions: std_msgs/Float64MultiArray in joint-name order (the executor's commands to a ForwardCommandController),
  trajectory_msgs/JointTrajectory (first point, by its joint_names: a leader arm or a trajectory controller) or
  sensor_msgs/JointState by name (the executor's tick log, `tick_topic`).

Cameras and joint states are placed at their header stamps (their receive time, the bag's log time, where the
header is empty), by the rule the policy node selects its inputs with (`smolvla.observation.sample_stamp`): a
frame's capture time then picks the same images in training as at run time, however long the transport took.
Commands are placed by the same rule: the executor's tick log (`tick_topic`, sensor_msgs/JointState) carries each
control tick's command stamped with the tick's capture time (the time its chunk request carries); a JointTrajectory
by its header stamp where set; Float64MultiArray has no header and keeps its log time (nanoseconds, when the recorder
received it: on the robot computer, the executor's clock, a little after the tick).
Anything unreadable raises `BagError` naming the bag, the topic and the message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from ..images import CompressedImage, ImageConversionError, RawImage
from ..instruction import check_instruction
from ..observation import order_joint_positions, sample_stamp
from ..recording import TASK_FILE  # the file that episode's task is in (overrides the run's task)
from ..robot_interface import SO100_JOINT_NAMES

#: Defaults: the topics this workspace's graph publishes (config/policy.yaml, config/executor.yaml, config/sim.yaml).
DEFAULT_CAMERA_TOPICS = ("/camera/front/image_raw", "/camera/wrist/image_raw")
DEFAULT_JOINT_STATE_TOPIC = "/joint_states"
DEFAULT_ACTION_TOPIC = "/forward_position_controller/commands"
DEFAULT_JOINT_NAMES = SO100_JOINT_NAMES


IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
FLOAT_ARRAY_TYPE = "std_msgs/msg/Float64MultiArray"
TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
_ACCEPTED_TYPES = {
    "camera": (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE),
    "joint state": (JOINT_STATE_TYPE,),
    "action": (FLOAT_ARRAY_TYPE, TRAJECTORY_TYPE, JOINT_STATE_TYPE),
}

_TYPESTORE = get_typestore(Stores.ROS2_JAZZY)


class BagError(ValueError):
    """A bag cannot be used for training; the message names the bag and, where it applies, the topic."""


@dataclass(frozen=True)
class Topics:
    """Which topics of a bag are the model's inputs and actions, and the joint order of state and action."""

    cameras: tuple[str, ...] = DEFAULT_CAMERA_TOPICS
    joint_state: str = DEFAULT_JOINT_STATE_TOPIC
    action: str = DEFAULT_ACTION_TOPIC
    joint_names: tuple[str, ...] = DEFAULT_JOINT_NAMES

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "joint_names", tuple(self.joint_names))
        if not self.cameras:
            raise ValueError("at least one camera topic is needed")
        names = [*self.cameras, self.joint_state, self.action]
        if any(not isinstance(name, str) or not name.startswith("/") for name in names):
            raise ValueError(f"topics must be absolute names starting with '/', got {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"camera, joint-state and action topics must all differ, got {names}")
        if not self.joint_names or any(not name for name in self.joint_names):
            raise ValueError(f"joint names must be non-empty, got {list(self.joint_names)}")
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f"joint names must be unique, got {list(self.joint_names)}")


@dataclass(frozen=True)
class Stream:
    """The numeric samples of one topic in stamp order: stamps (N,) int64 nanoseconds, values (N, D) float64."""

    topic: str
    stamps: np.ndarray
    values: np.ndarray


def read_task_file(bag: Path) -> str | None:
    """The episode's task from `task.txt` in the bag directory (whitespace collapsed), None when there is none."""
    path = bag / TASK_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BagError(f"{path}: cannot read the task: {error}") from error
    check = check_instruction(text)
    if not check.accepted:
        raise BagError(f"{path}: {check.message}")
    return check.instruction


def find_bags(paths: Sequence[str | Path]) -> list[Path]:
    """Bag directories from the command line: a directory with metadata.yaml is a bag, otherwise its immediate
    sub-directories that are bags are taken in name order. A path that yields no bag is an error."""
    bags: list[Path] = []
    for path in map(Path, paths):
        if (path / "metadata.yaml").is_file():
            bags.append(path)
            continue
        if not path.is_dir():
            raise BagError(f"{path}: no such bag directory")
        found = sorted(child for child in path.iterdir() if (child / "metadata.yaml").is_file())
        if not found:
            raise BagError(f"{path}: neither a rosbag2 bag (no metadata.yaml) nor a directory of bags")
        bags.extend(found)
    resolved = [bag.resolve() for bag in bags]
    if len(set(resolved)) != len(resolved):
        raise BagError("a bag is given more than once")
    return bags


class Recording:
    """One rosbag2 episode opened for reading (a context manager; nothing in the bag is ever written).

    Opening checks that the directory is a rosbag2 bag, that every configured topic is in it with an accepted
    message type and at least one message. Samples are then read per topic in log-time order.
    """

    def __init__(self, path: str | Path, topics: Topics) -> None:
        self.path = Path(path)
        self.topics = topics
        if not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path}: not a rosbag2 bag directory (no metadata.yaml)")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as error:  # rosbags raises several types for broken metadata or storage files
            raise BagError(f"{self.path}: cannot open the bag: {error}") from error
        try:
            self.start_time = self._reader.start_time
            self._connections = {}
            for kind, topic_names in (
                ("camera", topics.cameras),
                ("joint state", (topics.joint_state,)),
                ("action", (topics.action,)),
            ):
                for topic in topic_names:
                    self._connections[topic] = self._check_topic(kind, topic)
        except BaseException:
            self._reader.close()
            raise

    def _check_topic(self, kind: str, topic: str):
        info = self._reader.topics.get(topic)
        if info is None:
            present = ", ".join(sorted(self._reader.topics)) or "none"
            raise BagError(f"{self.path}: {kind} topic {topic} is not in the bag (its topics: {present})")
        if info.msgtype not in _ACCEPTED_TYPES[kind]:
            accepted = " or ".join(_ACCEPTED_TYPES[kind])
            raise BagError(f"{self.path}: {kind} topic {topic} has type {info.msgtype}, expected {accepted}")
        if info.msgcount == 0:
            raise BagError(f"{self.path}: {kind} topic {topic} has no messages")
        return info.connections

    def __enter__(self) -> Recording:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the bag's storage."""
        if self._reader.is_open:
            self._reader.close()

    def seconds(self, stamp: int) -> float:
        """Seconds from the bag's first message to `stamp` (how error messages locate a moment)."""
        return (stamp - self.start_time) / 1e9

    def _messages(self, topic: str) -> Iterator[tuple[int, int, str, bytes]]:
        """(index, log time ns, message type, serialised message) of one topic in log-time order (rosbags sorts
        by log time for both storages, however the messages were written; the alignment relies on it)."""
        try:
            for index, (connection, stamp, raw) in enumerate(self._reader.messages(self._connections[topic])):
                yield index, stamp, connection.msgtype, raw
        except Exception as error:  # a corrupt storage file surfaces here, as whatever its backend raises
            raise BagError(f"{self.path}: cannot read topic {topic}: {error}") from error

    def _decoded(self, topic: str) -> Iterator[tuple[int, int, object]]:
        """(index, log time ns, message) of one topic in log-time order."""
        for index, stamp, msgtype, raw in self._messages(topic):
            yield index, stamp, self._deserialize(topic, index, stamp, msgtype, raw)

    def _deserialize(self, topic: str, index: int, stamp: int, msgtype: str, raw: bytes) -> object:
        try:
            return _TYPESTORE.deserialize_cdr(raw, msgtype)
        except Exception as error:  # rosbags reports malformed CDR with several exception types
            raise self._message_error(topic, index, stamp, f"cannot deserialise {msgtype}: {error}") from error

    def joint_states(self) -> Stream:
        """Joint positions in `topics.joint_names` order, at their header stamps (module docstring)."""
        topic = self.topics.joint_state
        stamps, values = [], []
        for index, stamp, msg in self._decoded(topic):
            try:
                values.append(order_joint_positions(list(msg.name), msg.position, self.topics.joint_names))
            except ValueError as error:
                raise self._message_error(topic, index, stamp, error) from error
            stamps.append(sample_stamp(_header_ns(msg), stamp))
        order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
        return self._stream(topic, [stamps[i] for i in order], [values[i] for i in order])

    def actions(self) -> Stream:
        """Commanded joint positions in `topics.joint_names` order.

        Float64MultiArray data is taken to be in joint-name order already (as the executor publishes it) and must
        have one value per joint; a JointTrajectory contributes its first point, reordered by its joint_names.
        """
        topic = self.topics.action
        names = self.topics.joint_names
        stamps, values = [], []
        for index, stamp, msg in self._decoded(topic):
            try:
                if msg.__msgtype__ == TRAJECTORY_TYPE:
                    if not msg.points:
                        raise ValueError("trajectory has no points")
                    value = order_joint_positions(list(msg.joint_names), msg.points[0].positions, names)
                elif msg.__msgtype__ == JOINT_STATE_TYPE:
                    value = order_joint_positions(list(msg.name), msg.position, names)
                else:
                    value = np.asarray(msg.data, dtype=np.float64)
                    if value.shape != (len(names),):
                        raise ValueError(f"command has {value.size} values, expected one per joint of {list(names)}")
                    if not np.isfinite(value).all():
                        raise ValueError("command has non-finite values")
            except ValueError as error:
                raise self._message_error(topic, index, stamp, error) from error
            header = 0 if msg.__msgtype__ == FLOAT_ARRAY_TYPE else _header_ns(msg)
            stamps.append(sample_stamp(header, stamp))
            values.append(value)
        order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
        return self._stream(topic, [stamps[i] for i in order], [values[i] for i in order])

    def image_stamps(self, topic: str) -> np.ndarray:
        """Header stamps (int64 ns; the log time where a header is empty) of every message of a camera topic, by
        message index (not necessarily sorted), without decoding the images."""
        return np.array(
            [sample_stamp(_header_ns(msg), stamp) for _, stamp, msg in self._decoded(topic)], dtype=np.int64
        )

    def images(self, topic: str, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(index, HxWx3 uint8 RGB) for the messages of a camera topic at the given indices (positions in
        `image_stamps`), in index order; only those messages are deserialised and decoded."""
        wanted = set(indices)
        for index, stamp, msgtype, raw in self._messages(topic):
            if index not in wanted:
                continue
            msg = self._deserialize(topic, index, stamp, msgtype, raw)
            if msgtype == IMAGE_TYPE:
                frame = RawImage(msg.encoding, msg.height, msg.width, msg.step, msg.data)
            else:
                frame = CompressedImage(msg.format, msg.data)
            try:
                rgb = frame.to_rgb()
            except ImageConversionError as error:
                raise self._message_error(topic, index, stamp, error) from error
            yield index, rgb

    def _message_error(self, topic: str, index: int, stamp: int, error: Exception | str) -> BagError:
        return BagError(f"{self.path}: {topic} message {index} at {self.seconds(stamp):.3f} s: {error}")

    def _stream(self, topic: str, stamps: list[int], values: list[np.ndarray]) -> Stream:
        dim = len(self.topics.joint_names)
        array = np.array(values, dtype=np.float64).reshape(len(values), dim)
        return Stream(topic, np.array(stamps, dtype=np.int64), array)


def _header_ns(msg: object) -> int:
    """A message's header stamp in nanoseconds (0 for an empty header)."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
