"""LeRobotDataset v3 (LeRobot 0.4's format) read into `Episode`s: the same training sample as a recorded bag.

A v3 dataset directory (or hub dataset id, resolved through the huggingface_hub cache like checkpoints, offline
with HF_HUB_OFFLINE=1) holds:

- `meta/info.json`: `codebase_version` ("v3.0"), `fps`, the path templates `data_path` / `video_path`, and
  `features`: name -> {dtype, shape, names}; `observation.state` and `action` are float vectors whose `names` are
  the joints (LeRobot's SO-100 names them `shoulder_pan.pos`, ...), cameras are `observation.images.<name>` of
  dtype `video`, shape (height, width, 3);
- `meta/tasks.parquet`: the task texts (the pandas index) and their `task_index`;
- `meta/episodes/chunk-*/file-*.parquet`: one row per episode: `episode_index`, `length`, which data file
  (`data/chunk_index`, `data/file_index`) and, per camera, which video file (`videos/<camera>/chunk_index`,
  `.../file_index`) and where in it the episode lies (`.../from_timestamp`, `.../to_timestamp`: several episodes
  share a file, one after the other);
- `data/chunk-*/file-*.parquet`: one row per frame: `observation.state`, `action`, `timestamp` (seconds from the
  episode's start, frame_index / fps), `frame_index`, `episode_index`, `index`, `task_index`;
- `videos/<camera>/chunk-*/file-*.mp4`; frame k of an episode is the video frame at from_timestamp + timestamp_k,
  within LeRobot's tolerance (`smolvla.training.video`);
- `meta/stats.json` (statistics; training computes its own from the frames it uses, as for bags) and, in datasets
  `smolvla-convert` wrote, `meta/robot_interface.json`: the joints' units and the cameras (`RobotInterface`).

An episode becomes an `Episode` with one frame per dataset frame: the images of frame k are its video frames, its
state `observation.state[k]` and its first action `action[k]`, the command sent after observing frame k, which is
what a bag's frame k holds as the command of the next tick. State and action are reordered to the requested joint
names (a dataset name `NAME` or `NAME.pos` is joint NAME); units are left as recorded: the caller decides, from
`interface` or the user, which units the data is in.

Everything read is checked; an error names the file and the episode (`DatasetError`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..instruction import check_instruction
from ..robot_interface import RobotInterface, RobotInterfaceError
from .dataset import Episode
from .video import TOLERANCE_S, VideoError, decode_frames

CODEBASE_VERSION = "v3.0"
INFO_FILE = "meta/info.json"
STATS_FILE = "meta/stats.json"
TASKS_FILE = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
#: This workspace's addition (LeRobot ignores it): the dataset's RobotInterface, units included.
INTERFACE_FILE = "meta/robot_interface.json"
STATE = "observation.state"
ACTION = "action"
CAMERA_PREFIX = "observation.images."
#: What to fetch of a hub dataset (everything a v3 dataset has but its card).
HUB_PATTERNS = ["meta/*", "data/*", "videos/*"]
_VERSION = re.compile(r"v(\d+)\.(\d+)")


class DatasetError(ValueError):
    """A LeRobotDataset that cannot be used; the message names the file and, where it applies, the episode."""


@dataclass(frozen=True)
class VideoSegment:
    """Where one camera's frames of an episode lie: file indices and the segment's start and end (s) in it."""

    chunk_index: int
    file_index: int
    from_timestamp: float
    to_timestamp: float


@dataclass(frozen=True)
class EpisodeEntry:
    """One row of meta/episodes: the episode's length, data file and video segments."""

    index: int
    length: int
    data_chunk: int
    data_file: int
    videos: dict[str, VideoSegment]


def is_dataset(path: str | Path) -> bool:
    """True for a directory holding meta/info.json."""
    return (Path(path) / INFO_FILE).is_file()


def open_dataset(name_or_path: str | Path) -> LeRobotDataset:
    """A LeRobotDataset from a local directory or a hub dataset id (through the huggingface_hub cache; with
    HF_HUB_OFFLINE=1 only what is cached is used)."""
    from ..policy.checkpoint import resolve_repo

    root = resolve_repo(name_or_path, HUB_PATTERNS, repo_type="dataset")
    return LeRobotDataset(root)


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: cannot read: {error}") from None


def _read_parquet(path: Path, what: str, **kwargs) -> pa.Table:
    if not path.is_file():
        raise DatasetError(f"{path}: missing {what}")
    try:
        return pq.read_table(path, **kwargs)
    except (OSError, pa.ArrowException) as error:
        raise DatasetError(f"{path}: cannot read {what}: {error}") from None


def _joint_names(feature: dict, key: str, path: Path) -> tuple[str, ...]:
    """The per-dimension names of a vector feature (a list, or LeRobot's older {"motors": [...]} form)."""
    names = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    shape = tuple(feature.get("shape") or ())
    if len(shape) != 1 or not isinstance(names, list) or len(names) != shape[0]:
        raise DatasetError(f"{path}: feature {key} must be a vector with one name per value, got {feature}")
    return tuple(str(name) for name in names)


class LeRobotDataset:
    """A LeRobotDataset v3 directory, its metadata read and checked on construction; `episode` reads one episode.

    Attributes: root, fps, camera_keys (the video features, in info.json's order), state_names / action_names
    (as the dataset names them), episodes (EpisodeEntry by episode index), tasks (task_index -> text), interface
    (meta/robot_interface.json, None for datasets LeRobot recorded), robot_type.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path = self.root / INFO_FILE
        if not info_path.is_file():
            raise DatasetError(f"{self.root}: not a LeRobotDataset (no {INFO_FILE})")
        info = _load_json(info_path)
        if not isinstance(info, dict):
            raise DatasetError(f"{info_path}: expected a JSON object")
        version = info.get("codebase_version")
        match = _VERSION.fullmatch(version) if isinstance(version, str) else None
        if match is None or match.group(1) != "3":
            raise DatasetError(
                f"{info_path}: codebase_version {version!r} is not supported: this reads LeRobotDataset v3 "
                f"({CODEBASE_VERSION}); convert older datasets with LeRobot's convert_dataset_v21_to_v30"
            )
        fps = info.get("fps")
        if isinstance(fps, bool) or not isinstance(fps, int | float) or not (math.isfinite(fps) and fps > 0):
            raise DatasetError(f"{info_path}: fps must be a positive number, got {fps!r}")
        self.fps = float(fps)
        self.robot_type = info.get("robot_type")
        features = info.get("features")
        if not isinstance(features, dict):
            raise DatasetError(f"{info_path}: no features")
        for key in (STATE, ACTION):
            if key not in features:
                raise DatasetError(f"{info_path}: no {key} feature (features: {', '.join(features)})")
        self.features = features
        self.state_names = _joint_names(features[STATE], STATE, info_path)
        self.action_names = _joint_names(features[ACTION], ACTION, info_path)
        images = [
            key for key, feature in features.items() if isinstance(feature, dict) and feature.get("dtype") == "image"
        ]
        if images:
            raise DatasetError(
                f"{info_path}: cameras stored as images in parquet ({', '.join(images)}) are not read "
                "yet; only video features are"
            )
        self.camera_keys = tuple(
            key for key, feature in features.items() if isinstance(feature, dict) and feature.get("dtype") == "video"
        )
        if not self.camera_keys:
            raise DatasetError(f"{info_path}: no camera (no feature of dtype video)")
        for key in self.camera_keys:
            shape = tuple(features[key].get("shape") or ())
            if len(shape) != 3 or 3 not in (shape[0], shape[2]):
                raise DatasetError(f"{info_path}: camera {key} has shape {list(shape)}, expected (height, width, 3)")
        self.data_path = info.get("data_path")
        self.video_path = info.get("video_path")
        if not isinstance(self.data_path, str) or not isinstance(self.video_path, str):
            raise DatasetError(f"{info_path}: data_path and video_path must be path templates")
        self.tasks = self._read_tasks()
        self.episodes = self._read_episodes()
        self.interface = self._read_interface()
        self._table_path: Path | None = None
        self._table: pa.Table | None = None

    def __repr__(self) -> str:
        return f"LeRobotDataset({self.root}, {len(self.episodes)} episodes at {self.fps:g} fps)"

    def camera_shape(self, key: str) -> tuple[int, int]:
        """(height, width) of a camera as info.json gives it."""
        shape = tuple(self.features[key]["shape"])
        return (shape[0], shape[1]) if shape[2] == 3 else (shape[1], shape[2])

    # -- metadata -------------------------------------------------------------------------------------------------

    def _read_tasks(self) -> dict[int, str]:
        path = self.root / TASKS_FILE
        table = _read_parquet(path, "task list")
        if "task_index" not in table.column_names:
            raise DatasetError(f"{path}: no task_index column")
        # LeRobot writes the texts as the pandas index: a string column beside task_index, whatever its name.
        text_columns = [
            name
            for name in table.column_names
            if pa.types.is_string(table.schema.field(name).type)
            or pa.types.is_large_string(table.schema.field(name).type)
        ]
        if len(text_columns) != 1:
            raise DatasetError(f"{path}: expected one column of task texts, got columns {table.column_names}")
        indices = table.column("task_index").to_pylist()
        texts = table.column(text_columns[0]).to_pylist()
        return dict(zip(indices, texts, strict=True))

    def _read_episodes(self) -> dict[int, EpisodeEntry]:
        directory = self.root / EPISODES_DIR
        files = sorted(directory.glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(f"{directory}: missing episode metadata (no chunk-*/file-*.parquet)")
        required = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        for key in self.camera_keys:
            required += [
                f"videos/{key}/{field}" for field in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
            ]
        episodes: dict[int, EpisodeEntry] = {}
        for path in files:
            schema = pq.read_schema(path)
            missing = [name for name in required if name not in schema.names]
            if missing:
                raise DatasetError(f"{path}: episode metadata lacks the columns {missing}")
            rows = _read_parquet(path, "episode metadata", columns=required).to_pylist()
            for row in rows:
                index = int(row["episode_index"])
                if index in episodes:
                    raise DatasetError(f"{path}: episode {index} is listed twice")
                videos = {
                    key: VideoSegment(
                        int(row[f"videos/{key}/chunk_index"]),
                        int(row[f"videos/{key}/file_index"]),
                        float(row[f"videos/{key}/from_timestamp"]),
                        float(row[f"videos/{key}/to_timestamp"]),
                    )
                    for key in self.camera_keys
                }
                entry = EpisodeEntry(
                    index, int(row["length"]), int(row["data/chunk_index"]), int(row["data/file_index"]), videos
                )
                if entry.length < 1:
                    raise DatasetError(f"{path}: episode {index} has length {entry.length}")
                episodes[index] = entry
        return dict(sorted(episodes.items()))

    def _read_interface(self) -> RobotInterface | None:
        path = self.root / INTERFACE_FILE
        if not path.exists():
            return None
        try:
            return RobotInterface.from_json(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, RobotInterfaceError) as error:
            raise DatasetError(f"{path}: {error}") from None

    # -- episodes -------------------------------------------------------------------------------------------------

    def data_file(self, episode: int) -> Path:
        """The parquet file holding an episode's frames."""
        entry = self.episodes[episode]
        return self.root / self.data_path.format(chunk_index=entry.data_chunk, file_index=entry.data_file)

    def video_file(self, episode: int, camera: str) -> Path:
        """The mp4 file holding an episode's frames of one camera."""
        segment = self.episodes[episode].videos[camera]
        return self.root / self.video_path.format(
            video_key=camera, chunk_index=segment.chunk_index, file_index=segment.file_index
        )

    def _frames_table(self, path: Path) -> pa.Table:
        """The columns training reads of one data file; the last file read is kept (episodes share files)."""
        if self._table_path != path:
            columns = [STATE, ACTION, "timestamp", "frame_index", "episode_index", "task_index"]
            schema = pq.read_schema(path) if path.is_file() else None
            if schema is not None:
                missing = [name for name in columns if name not in schema.names]
                if missing:
                    raise DatasetError(f"{path}: frame data lacks the columns {missing}")
            self._table = _read_parquet(path, "frame data", columns=columns)
            self._table_path = path
        return self._table

    def episode(self, index: int, joint_names: Sequence[str], cameras: Sequence[str] | None = None) -> Episode:
        """Episode `index` as an `Episode`: state and actions in `joint_names` order, the images of `cameras`
        (dataset camera keys; default: all, in info.json's order) decoded at the frames' timestamps."""
        if index not in self.episodes:
            raise DatasetError(f"{self.root}: no episode {index} (episodes {min(self.episodes)}..{max(self.episodes)})")
        cameras = self.camera_keys if cameras is None else tuple(cameras)
        unknown = [camera for camera in cameras if camera not in self.camera_keys]
        if unknown:
            raise DatasetError(f"{self.root}: no camera {unknown}; its cameras are {list(self.camera_keys)}")
        entry = self.episodes[index]
        path = self.data_file(index)
        where = f"{path}: episode {index}"
        table = self._frames_table(path)
        rows = table.filter(pc.equal(table.column("episode_index"), index))
        if rows.num_rows != entry.length:
            raise DatasetError(f"{where} has {rows.num_rows} frames, the episode metadata says {entry.length}")
        frame_index = rows.column("frame_index").to_numpy()
        order = np.argsort(frame_index, kind="stable")
        if not np.array_equal(frame_index[order], np.arange(entry.length)):
            raise DatasetError(f"{where}: frame_index is not 0..{entry.length - 1}")
        timestamps = rows.column("timestamp").to_numpy().astype(np.float64)[order]
        steps = np.diff(timestamps)
        irregular = np.flatnonzero(np.abs(steps - 1.0 / self.fps) >= TOLERANCE_S)
        if irregular.size:
            k = int(irregular[0])
            raise DatasetError(
                f"{where}: frames {k} and {k + 1} are {steps[k]:.6f} s apart, not 1/fps = {1 / self.fps:.6f} s "
                f"(within {TOLERANCE_S:g} s)"
            )
        state = self._vectors(rows, STATE, where)[order]
        actions = self._vectors(rows, ACTION, where)[order]
        task = self._task(rows, where)
        images = tuple(self._camera_frames(index, camera, timestamps) for camera in cameras)
        times = np.round(timestamps * 1e9).astype(np.int64)
        return Episode(
            path=self.root,
            task=task,
            times=times,
            images=images,
            image_index=np.repeat(np.arange(entry.length)[:, None], len(cameras), axis=1),
            image_stamps=np.repeat(times[:, None], len(cameras), axis=1),
            state=_reorder(state, self.state_names, joint_names, STATE, where),
            actions=_reorder(actions, self.action_names, joint_names, ACTION, where),
            episode_index=index,
        )

    def _vectors(self, rows: pa.Table, key: str, where: str) -> np.ndarray:
        size = len(self.state_names if key == STATE else self.action_names)
        column = rows.column(key).combine_chunks()
        if not (
            pa.types.is_list(column.type)
            or pa.types.is_fixed_size_list(column.type)
            or pa.types.is_large_list(column.type)
        ):
            raise DatasetError(f"{where}: {key} is {column.type}, expected a list of floats per frame")
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        wrong = np.flatnonzero(lengths != size)
        if wrong.size:
            k = int(wrong[0])
            raise DatasetError(
                f"{where}: feature shape mismatch: {key} of frame {k} has {lengths[k]} values, info.json says "
                f"shape ({size},)"
            )
        values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), size)
        if not np.isfinite(values).all():
            raise DatasetError(f"{where}: {key} has non-finite values")
        return values

    def _task(self, rows: pa.Table, where: str) -> str:
        indices = sorted(set(rows.column("task_index").to_pylist()))
        if len(indices) != 1:
            raise DatasetError(f"{where} has several tasks {indices}; each episode must have one")
        if indices[0] not in self.tasks:
            raise DatasetError(f"{where}: task_index {indices[0]} is not in {self.root / TASKS_FILE}")
        check = check_instruction(self.tasks[indices[0]])
        if not check.accepted:
            raise DatasetError(f"{where}: task {indices[0]}: {check.message}")
        return check.instruction

    def _camera_frames(self, index: int, camera: str, timestamps: np.ndarray) -> np.ndarray:
        segment = self.episodes[index].videos[camera]
        path = self.video_file(index, camera)
        where = f"{path}: episode {index}, camera {camera}"
        if not path.is_file():
            raise DatasetError(f"{where}: missing video file")
        start, end = segment.from_timestamp + timestamps[0], segment.from_timestamp + timestamps[-1]
        if timestamps[0] < -TOLERANCE_S or end > segment.to_timestamp + TOLERANCE_S:
            raise DatasetError(
                f"{where}: timestamps out of range: the frames are at {start:.4f}..{end:.4f} s of the file, the "
                f"episode's segment is {segment.from_timestamp:.4f}..{segment.to_timestamp:.4f} s"
            )
        try:
            frames = decode_frames(path, segment.from_timestamp + timestamps)
        except VideoError as error:
            raise DatasetError(f"episode {index}, camera {camera}: {error}") from None
        height, width = self.camera_shape(camera)
        if frames.shape[1:3] != (height, width):
            raise DatasetError(
                f"{where}: feature shape mismatch: frames are {frames.shape[1]}x{frames.shape[2]} (height x width), "
                f"info.json says {height}x{width}"
            )
        return frames


def dataset_joint(name: str) -> str:
    """A dataset's name of a joint value -> the joint: LeRobot's `shoulder_pan.pos` -> `shoulder_pan`."""
    return name.removesuffix(".pos")


def _reorder(values: np.ndarray, names: Sequence[str], joint_names: Sequence[str], key: str, where: str) -> np.ndarray:
    position = {dataset_joint(name): i for i, name in enumerate(names)}
    missing = [joint for joint in joint_names if joint not in position]
    if missing:
        raise DatasetError(
            f"{where}: {key} has no value for the joints {missing}; its names are {list(names)} (give the dataset's "
            "joint names with --joint-names)"
        )
    return np.ascontiguousarray(values[:, [position[joint] for joint in joint_names]])
