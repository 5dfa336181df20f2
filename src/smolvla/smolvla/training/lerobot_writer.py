"""Write `Episode`s (the training samples of recorded bags) as a LeRobotDataset v3 (`smolvla.training.lerobot_dataset`
describes the layout).

Frame k of an episode is its training frame k: the images it shows, its state, and its first action (the command
of the tick after it), so that reading the dataset back gives the same samples. Its `timestamp` is k / fps, the
frame grid LeRobot requires (videos are decoded at those times); the exact capture times of the bag's ticks, a
little irregular, are not kept. Episodes follow each other in one data file and, per camera, in one video file
until it outgrows `VIDEO_FILE_MB` (the next episode starts a new file), as LeRobot lays them out.

Statistics (meta/stats.json) are LeRobot's: per feature min, max, mean, std (population), count and the 1/10/50/90/99
% quantiles (exact here, LeRobot approximates them with histograms); camera statistics per channel in [0, 1], shaped
(3, 1, 1). Per-episode statistics in meta/episodes are not written. meta/robot_interface.json records the joint
units and cameras (LeRobot ignores the file; this workspace's reader takes the units from it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..robot_interface import RobotInterface
from .dataset import Episode
from .lerobot_dataset import (
    ACTION,
    CAMERA_PREFIX,
    CODEBASE_VERSION,
    EPISODES_DIR,
    INFO_FILE,
    INTERFACE_FILE,
    STATE,
    STATS_FILE,
    TASKS_FILE,
)
from .video import CODECS, VideoWriter

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CHUNKS_SIZE = 1000  # files per chunk directory
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
_INDEX_FEATURES = ("frame_index", "episode_index", "index", "task_index")


def _chunk_and_file(n: int) -> tuple[int, int]:
    return divmod(n, CHUNKS_SIZE)


def _vector_stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's statistics of (N, D) values over N."""
    values = values.astype(np.float64)
    stats = {
        "min": values.min(0),
        "max": values.max(0),
        "mean": values.mean(0),
        "std": values.std(0),
        "count": np.array([len(values)]),
    }
    for q in QUANTILES:
        stats[f"q{round(q * 100):02d}"] = np.quantile(values, q, axis=0)
    return {key: value.tolist() for key, value in stats.items()}


class _ImageStats:
    """Per-channel min, max, mean and std of frames in [0, 1], accumulated episode by episode."""

    def __init__(self) -> None:
        self.count = 0
        self.pixels = 0
        self.sum = np.zeros(3)
        self.sum_sq = np.zeros(3)
        self.min = np.full(3, np.inf)
        self.max = np.full(3, -np.inf)

    def add(self, frames: np.ndarray) -> None:
        values = frames.reshape(-1, 3).astype(np.float64) / 255.0
        self.count += len(frames)
        self.pixels += len(values)
        self.sum += values.sum(0)
        self.sum_sq += np.square(values).sum(0)
        self.min = np.minimum(self.min, values.min(0))
        self.max = np.maximum(self.max, values.max(0))

    def result(self) -> dict[str, list]:
        mean = self.sum / self.pixels
        std = np.sqrt(np.maximum(self.sum_sq / self.pixels - mean**2, 0.0))

        def per_channel(value: np.ndarray) -> list:
            return value.reshape(3, 1, 1).tolist()

        return {
            "min": per_channel(self.min),
            "max": per_channel(self.max),
            "mean": per_channel(mean),
            "std": per_channel(std),
            "count": [self.count],
        }


def _tasks_table(tasks: Sequence[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes LeRobot's DataFrame: task_index, with the texts as the (unnamed) index,
    so that LeRobot's `pd.read_parquet` gets the texts back as the index."""
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "__index_level_0__": pa.array(list(tasks), pa.string())}
    )
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _check_episode(episode: Episode, cameras: int, joints: int, shapes: list[tuple[int, ...]]) -> None:
    if len(episode.images) != cameras or episode.state.shape[1] != joints or episode.actions.shape[1] != joints:
        raise ValueError(
            f"{episode.path}: {len(episode.images)} cameras, {episode.state.shape[1]} state and "
            f"{episode.actions.shape[1]} action values; expected {cameras} cameras and {joints} joints"
        )
    if [frames.shape[1:] for frames in episode.images] != shapes:
        raise ValueError(f"{episode.path}: camera image sizes differ from the first episode's {shapes}")


def write_dataset(
    episodes: Iterable[Episode],
    output: str | Path,
    *,
    interface: RobotInterface,
    codec: str = "av1",
    robot_type: str | None = None,
) -> Path:
    """Write the episodes as a new LeRobotDataset v3 in `output` (which must not exist or be empty). Episodes are
    taken one at a time (an iterator that loads each when asked keeps one episode in memory); an error leaves a
    partial dataset behind.

    interface: the joints (state and action names, in the episodes' order), their units, the frame rate (a whole
    number of frames per second) and a name per camera of the episodes, in their order (`front` or
    `observation.images.front` becomes feature `observation.images.front`). codec: a key of `video.CODECS`.
    """
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"output {output} exists and is not an empty directory; choose a new one")
    if codec not in CODECS:
        raise ValueError(f"unknown video codec {codec!r}; known: {', '.join(CODECS)}")
    fps = interface.fps
    if fps != round(fps):
        raise ValueError(f"LeRobotDataset needs a whole number of frames per second, got {fps:g}")
    fps = int(round(fps))
    joints = interface.joint_names
    names = [name.removeprefix(CAMERA_PREFIX) for name in interface.cameras]
    if any(not name or "/" in name for name in names):
        raise ValueError(f"camera names must not be empty or contain '/': {list(interface.cameras)}")
    cameras = tuple(f"{CAMERA_PREFIX}{name}" for name in names)
    output.mkdir(parents=True, exist_ok=True)
    tasks: list[str] = []
    shapes: list[tuple[int, ...]] = []
    data_path = output / DATA_PATH.format(chunk_index=0, file_index=0)
    data_path.parent.mkdir(parents=True)
    vector = pa.list_(pa.float32(), len(joints))
    schema = pa.schema(
        [
            (STATE, vector),
            (ACTION, vector),
            ("timestamp", pa.float32()),
            *((name, pa.int64()) for name in _INDEX_FEATURES),
        ]
    )
    rows: list[dict] = []
    video_files = [0] * len(cameras)
    writers: list[VideoWriter | None] = [None] * len(cameras)
    image_stats = [_ImageStats() for _ in cameras]
    states, actions, timestamps, indices = [], [], [], {name: [] for name in _INDEX_FEATURES}
    frame_offset = 0
    try:
        with pq.ParquetWriter(data_path, schema, compression="snappy") as data:
            for e, episode in enumerate(episodes):
                shapes = shapes or [frames.shape[1:] for frames in episode.images]
                _check_episode(episode, len(cameras), len(joints), shapes)
                if episode.task not in tasks:
                    tasks.append(episode.task)
                k = len(episode)
                stamps = (np.arange(k) / fps).astype(np.float32)
                columns = {
                    STATE: episode.state.astype(np.float32),
                    ACTION: episode.actions.astype(np.float32),
                    "frame_index": np.arange(k),
                    "episode_index": np.full(k, e),
                    "index": np.arange(frame_offset, frame_offset + k),
                    "task_index": np.full(k, tasks.index(episode.task)),
                }
                table = pa.table(
                    {
                        STATE: pa.FixedSizeListArray.from_arrays(columns[STATE].reshape(-1), len(joints)),
                        ACTION: pa.FixedSizeListArray.from_arrays(columns[ACTION].reshape(-1), len(joints)),
                        "timestamp": stamps,
                        **{name: columns[name].astype(np.int64) for name in _INDEX_FEATURES},
                    },
                    schema=schema,
                )
                data.write_table(table)
                states.append(columns[STATE])
                actions.append(columns[ACTION])
                timestamps.append(stamps)
                for name in _INDEX_FEATURES:
                    indices[name].append(columns[name])
                row = {
                    "episode_index": e,
                    "tasks": [episode.task],
                    "length": k,
                    "data/chunk_index": 0,
                    "data/file_index": 0,
                    "dataset_from_index": frame_offset,
                    "dataset_to_index": frame_offset + k,
                }
                for c, camera in enumerate(cameras):
                    writer = writers[c]
                    if writer is not None and writer.bytes >= VIDEO_FILE_MB * 1024**2:
                        writer.close()
                        writer = None
                        video_files[c] += 1
                    if writer is None:
                        chunk, file = _chunk_and_file(video_files[c])
                        path = output / VIDEO_PATH.format(video_key=camera, chunk_index=chunk, file_index=file)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        height, width = shapes[c][:2]
                        writer = writers[c] = VideoWriter(path, fps, height, width, codec)
                    start = writer.frames
                    frames = episode.images[c][episode.image_index[:, c]]
                    for frame in frames:
                        writer.write(frame)
                    image_stats[c].add(frames)
                    chunk, file = _chunk_and_file(video_files[c])
                    row |= {
                        f"videos/{camera}/chunk_index": chunk,
                        f"videos/{camera}/file_index": file,
                        f"videos/{camera}/from_timestamp": start / fps,
                        f"videos/{camera}/to_timestamp": writer.frames / fps,
                    }
                row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
                rows.append(row)
                frame_offset += k
    finally:
        for writer in writers:
            if writer is not None:
                writer.close()

    if not rows:
        raise ValueError("no episodes to write")
    episodes_path = output / EPISODES_DIR / "chunk-000" / "file-000.parquet"
    episodes_path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), episodes_path)
    pq.write_table(_tasks_table(tasks), output / TASKS_FILE)

    def scalar(dtype: str) -> dict:
        return {"dtype": dtype, "shape": [1], "names": None}

    features: dict[str, dict] = {
        STATE: {"dtype": "float32", "shape": [len(joints)], "names": list(joints)},
        ACTION: {"dtype": "float32", "shape": [len(joints)], "names": list(joints)},
    }
    spec = CODECS[codec]
    for camera, shape in zip(cameras, shapes, strict=True):
        height, width = shape[:2]
        features[camera] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": spec.name,
                "video.pix_fmt": spec.pix_fmt,
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    features["timestamp"] = scalar("float32")
    for name in _INDEX_FEATURES:
        features[name] = scalar("int64")
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(rows),
        "total_frames": frame_offset,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": VIDEO_FILE_MB,
        "fps": fps,
        "splits": {"train": f"0:{len(rows)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }
    (output / INFO_FILE).write_text(json.dumps(info, indent=4) + "\n")
    stats = {
        STATE: _vector_stats(np.concatenate(states)),
        ACTION: _vector_stats(np.concatenate(actions)),
        "timestamp": _vector_stats(np.concatenate(timestamps)[:, None]),
        **{name: _vector_stats(np.concatenate(values)[:, None]) for name, values in indices.items()},
        **{camera: stats.result() for camera, stats in zip(cameras, image_stats, strict=True)},
    }
    (output / STATS_FILE).write_text(json.dumps(stats, indent=4) + "\n")
    (output / INTERFACE_FILE).write_text(RobotInterface(joints, interface.joint_units, fps, cameras).to_json())
    return output
