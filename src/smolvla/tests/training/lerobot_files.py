"""A small LeRobotDataset v3 written in-test the way LeRobot 0.4.4 lays one out (parquet through pyarrow, lossless
mp4 through PyAV), independently of `smolvla.training.lerobot_writer`; its values say which frame they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from smolvla.robot_interface import SO100_JOINT_NAMES
from smolvla.training.video import VideoWriter

FPS = 30
HEIGHT, WIDTH = 24, 32
CAMERAS = ("observation.images.laptop", "observation.images.phone")
#: LeRobot's SO-100 names, in another order than the workspace's joints (the reader reorders by name).
DATASET_JOINTS = tuple(f"{name}.pos" for name in reversed(SO100_JOINT_NAMES))
TASKS = ("pick up the cube", "put the cube in the box")
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


def state_value(episode: int, k: int) -> np.ndarray:
    """observation.state of frame k in SO100_JOINT_NAMES order: 100 e + k + 0.01 j."""
    return (100 * episode + k + 0.01 * np.arange(6)).astype(np.float32)


def action_value(episode: int, k: int) -> np.ndarray:
    """action of frame k in SO100_JOINT_NAMES order: 1000 + 100 e + k + 0.01 j."""
    return (1000 + 100 * episode + k + 0.01 * np.arange(6)).astype(np.float32)


def frame(episode: int, k: int, camera: int) -> np.ndarray:
    """The picture of frame k: a colour naming episode, frame and camera, and a gradient."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[..., 0] = 40 * episode + 5 * k
    image[..., 1] = 60 + 80 * camera
    image[..., 2] = np.arange(WIDTH)[None, :] * 7
    return image


def _reordered(values: np.ndarray) -> list[float]:
    """Workspace joint order -> the dataset's (DATASET_JOINTS)."""
    return [float(values[SO100_JOINT_NAMES.index(name.removesuffix(".pos"))]) for name in DATASET_JOINTS]


def write_v3(root: Path, lengths: tuple[int, ...] = (12, 9), *, version: str = "v3.0") -> Path:
    """Episodes of `lengths` frames (episode e has task TASKS[e % 2]) in one data file and, per camera, one video
    file (episode e + 1 starts where e ends, as LeRobot concatenates them). Returns root."""
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    rows, episodes = [], []
    index = 0
    for e, length in enumerate(lengths):
        for k in range(length):
            rows.append(
                {
                    "observation.state": _reordered(state_value(e, k)),
                    "action": _reordered(action_value(e, k)),
                    "timestamp": np.float32(k / FPS),
                    "frame_index": k,
                    "episode_index": e,
                    "index": index,
                    "task_index": e % 2,
                }
            )
            index += 1
        start = sum(lengths[:e]) / FPS
        episode = {
            "episode_index": e,
            "tasks": [TASKS[e % 2]],
            "length": length,
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": index - length,
            "dataset_to_index": index,
        }
        for key in CAMERAS:
            episode |= {
                f"videos/{key}/chunk_index": 0,
                f"videos/{key}/file_index": 0,
                f"videos/{key}/from_timestamp": start,
                f"videos/{key}/to_timestamp": start + length / FPS,
            }
        episode |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        episodes.append(episode)
    vector = pa.list_(pa.float32(), 6)
    schema = pa.schema(
        [
            ("observation.state", vector),
            ("action", vector),
            ("timestamp", pa.float32()),
            *((name, pa.int64()) for name in ("frame_index", "episode_index", "index", "task_index")),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema), root / DATA_PATH.format(chunk_index=0, file_index=0))
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"task_index": [0, 1], "__index_level_0__": list(TASKS)}), root / "meta" / "tasks.parquet")
    for c, key in enumerate(CAMERAS):
        path = root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True)
        with VideoWriter(path, FPS, HEIGHT, WIDTH, "lossless") as writer:
            for e, length in enumerate(lengths):
                for k in range(length):
                    writer.write(frame(e, k, c))
    features = {
        "action": {"dtype": "float32", "shape": [6], "names": list(DATASET_JOINTS)},
        "observation.state": {"dtype": "float32", "shape": [6], "names": list(DATASET_JOINTS)},
        **{
            key: {"dtype": "video", "shape": [HEIGHT, WIDTH, 3], "names": ["height", "width", "channels"]}
            for key in CAMERAS
        },
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        **{
            name: {"dtype": "int64", "shape": [1], "names": None}
            for name in ("frame_index", "episode_index", "index", "task_index")
        },
    }
    info = {
        "codebase_version": version,
        "robot_type": "so100_follower",
        "total_episodes": len(lengths),
        "total_frames": index,
        "total_tasks": 2,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": FPS,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return root


def edit_info(root: Path, change) -> None:
    """Apply `change(info)` to meta/info.json."""
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))
