"""Record episodes as rosbag2 bags, the format `smolvla-train` reads (smolvla.training.bags); plain Python, no ROS.

The recorder node (smolvla_ros/recorder_node.py) hands every message it receives to an `EpisodeWriter` as the
serialised CDR bytes it got from the middleware, with the receive time as the bag's log time (what `ros2 bag
record` does): nothing is decoded and encoded again. The bag is written with `rosbags` (mcap by default, or
sqlite3) and the ROS 2 Jazzy type store, which gives each topic's message definition and type hash.

On disk, under an output directory:

    episode_0001/                  a closed episode: metadata.yaml, episode_0001.mcap, task.txt
    episode_0002/
    .episode_0003.partial/episode_0003/    the episode being written (or left by a crash)

An episode is written inside a hidden `.episode_NNNN.partial` directory and moved to `episode_NNNN` only when it
has been closed, so a bag under its final name is always complete. A process killed while writing (SIGKILL, power
loss) leaves the partial directory behind: it has no metadata.yaml, so `smolvla-train` never takes it for a bag;
numbering continues after it and nothing is ever overwritten. A discarded episode (`EpisodeWriter.discard`) leaves
nothing behind, and its number is taken by the next one. This module is imported without torch (the recorder
node must start fast and small), so it lives outside `smolvla.training`, which loads the model code.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from .instruction import check_instruction

#: File in a bag directory whose text is that episode's task (smolvla.training.bags reads it).
TASK_FILE = "task.txt"
EPISODE_PREFIX = "episode_"
PARTIAL_SUFFIX = ".partial"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: rosbag2 metadata version written by ROS 2 Jazzy.
BAG_VERSION = 9

_TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
_EPISODE_NAME = re.compile(rf"^\.?{EPISODE_PREFIX}(\d+)(?:{re.escape(PARTIAL_SUFFIX)})?$")
_TOPIC_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RecordingError(ValueError):
    """An episode cannot be recorded as asked (bad directory, topic, message type or task); says why."""


def check_topic_name(topic: str) -> str:
    """`topic` if it is a fully qualified ROS 2 topic name (rcl's rules: '/'-separated tokens of letters, digits and
    underscores, none starting with a digit); RecordingError otherwise. Relative names are refused: a recording
    must say exactly which topic it holds."""
    if not isinstance(topic, str) or not topic.startswith("/") or topic == "/":
        raise RecordingError(f"topic {topic!r} must be a full name starting with '/'")
    if not all(_TOPIC_TOKEN.match(token) for token in topic[1:].split("/")):
        raise RecordingError(
            f"topic {topic!r} is not a valid ROS 2 name: '/'-separated tokens of letters, digits and underscores, "
            "none empty or starting with a digit"
        )
    return topic


def check_output_dir(path: str | Path) -> Path:
    """The output directory as an absolute path, created if missing; RecordingError if it cannot hold episodes."""
    if not str(path).strip():
        raise RecordingError("output directory is empty: give the directory episodes are written to")
    directory = Path(path).expanduser().absolute()
    if directory.exists() and not directory.is_dir():
        raise RecordingError(f"output directory {directory} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RecordingError(f"output directory {directory} cannot be created: {error}") from error
    if not os.access(directory, os.W_OK | os.X_OK):
        raise RecordingError(f"output directory {directory} is not writable")
    return directory


def episode_name(index: int) -> str:
    """Directory name of episode `index` (1-based): episode_0001, ..., episode_10000 past 9999."""
    return f"{EPISODE_PREFIX}{index:04d}"


def next_episode_index(directory: Path) -> int:
    """One more than the highest episode number in `directory`, closed or partial (1 when there is none)."""
    numbers = [int(match.group(1)) for entry in directory.iterdir() if (match := _EPISODE_NAME.match(entry.name))]
    return max(numbers, default=0) + 1


def check_task(task: str) -> str:
    """The task text as training reads it back from task.txt (white space collapsed); RecordingError if refused."""
    check = check_instruction(task)
    if not check.accepted:
        raise RecordingError(f"task: {check.message}")
    return check.instruction


def write_task_file(bag: Path, task: str) -> None:
    """Write the episode's task as `task.txt` (one line), validated as smolvla.training reads it back."""
    (bag / TASK_FILE).write_text(check_task(task) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class ClosedEpisode:
    """A finished episode: its directory, messages written per topic, and the topics that never sent a message.

    path is None when nothing was written (some topic never delivered a message: `silent_topics` names them);
    nothing of such an episode stays on disk.
    """

    path: Path | None
    counts: Mapping[str, int]
    silent_topics: tuple[str, ...]


class EpisodeWriter:
    """One episode being recorded: `write` messages, then `close`.

    output_dir: an existing writable directory (check_output_dir); topics: {topic: message type, e.g.
    "sensor_msgs/msg/Image"}; task: the episode's task text (None: no task.txt, give it at training time);
    storage: "mcap" or "sqlite3". The next free episode number is taken at construction; the bag is written in
    `.episode_NNNN.partial/episode_NNNN` and moved to `episode_NNNN` by `close`.

    The bag starts when every topic has delivered a message: what arrives before is not written. Training frames
    start at that instant anyway (the first one at which every input has a sample), and a sample from before it
    could be older than training accepts (e.g. a joint state sent before a simulator stalls on its first camera
    frame), which would make training refuse the whole episode.
    """

    def __init__(
        self, output_dir: Path, topics: Mapping[str, str], *, task: str | None = None, storage: str = "mcap"
    ) -> None:
        if storage not in STORAGES:
            raise RecordingError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if not topics:
            raise RecordingError("no topics to record")
        for topic, msgtype in topics.items():
            check_topic_name(topic)
            if msgtype not in _TYPESTORE.types:
                raise RecordingError(f"topic {topic}: unknown message type {msgtype!r} (ROS 2 Jazzy types only)")
        self.task = None if task is None else check_task(task)
        self.output_dir = Path(output_dir)
        index, self._partial = self._reserve()
        self.name = episode_name(index)
        self.path = self.output_dir / self.name
        self._bag = self._partial / self.name
        self._writer = Writer(self._bag, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        try:
            self._writer.open()
            self._connections = {
                topic: self._writer.add_connection(topic, msgtype, typestore=_TYPESTORE)
                for topic, msgtype in topics.items()
            }
        except BaseException:
            self._writer.abort()
            self._remove_partial()
            raise
        self.counts = dict.fromkeys(topics, 0)
        self._heard: set[str] = set()
        self._open = True

    def _reserve(self) -> tuple[int, Path]:
        """The next free episode number and its new partial directory. mkdir is atomic: a number whose partial
        directory exists is taken, even by another recorder writing into the same directory."""
        index = next_episode_index(self.output_dir)
        while True:
            partial = self.output_dir / f".{episode_name(index)}{PARTIAL_SUFFIX}"
            if not (self.output_dir / episode_name(index)).exists():
                try:
                    partial.mkdir()
                    return index, partial
                except FileExistsError:
                    pass
            index += 1

    @property
    def started(self) -> bool:
        """True once every topic has delivered a message, from when messages are written."""
        return len(self._heard) == len(self._connections)

    def write(self, topic: str, data: bytes, log_time_ns: int) -> bool:
        """Append one serialised (CDR) message of `topic` received at `log_time_ns` (ns since the epoch); False
        when it came before the bag started (see the class docstring) and was not written."""
        if not self._open:
            raise RecordingError(f"{self.name} is closed")
        connection = self._connections.get(topic)
        if connection is None:
            raise RecordingError(f"{self.name} does not record topic {topic}")
        self._heard.add(topic)
        if not self.started:
            return False
        self._writer.write(connection, int(log_time_ns), data)
        self.counts[topic] += 1
        return True

    def close(self) -> ClosedEpisode:
        """Finish the bag (storage index, metadata.yaml, task.txt) and move it to its final name.

        An episode that never started (a topic stayed silent) is not kept: its partial directory is removed and
        its path is None.
        """
        if not self._open:
            raise RecordingError(f"{self.name} is already closed")
        self._open = False
        counts = dict(self.counts)
        silent = tuple(topic for topic in self._connections if topic not in self._heard)
        if not self.started:
            self._writer.abort()
            self._remove_partial()
            return ClosedEpisode(None, counts, silent)
        self._writer.close()
        if self.task is not None:
            write_task_file(self._bag, self.task)
        # The bag directory is complete now; one rename makes it visible under its final name.
        if self.path.exists():  # only another process could have created it since _reserve
            raise RecordingError(f"{self.path} appeared while recording; the episode stays in {self._partial}")
        self._bag.rename(self.path)
        self._partial.rmdir()
        return ClosedEpisode(self.path, counts, silent)

    def discard(self) -> None:
        """Drop the episode: nothing of it stays on disk and its number is free again.

        For an episode that must not reach training (e.g. a demonstration that failed); cheaper and safer than
        closing it and deleting the bag afterwards, which would leave a complete-looking bag behind on a crash.
        """
        if not self._open:
            raise RecordingError(f"{self.name} is already closed")
        self._open = False
        self._writer.abort()
        self._remove_partial()

    def _remove_partial(self) -> None:
        shutil.rmtree(self._partial)
