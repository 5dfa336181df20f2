"""Reference side of the dataset parity check: LeRobot 0.4.4 writes a LeRobotDataset v3, and reads the one
`smolvla-convert` wrote (the other side is benchmarks/check_dataset_parity.py, in the workspace's .venv).

Runs in .venv-reference (tools/setup_reference_venv.sh), offline. The two sides share only files: npz (numbers,
read back with allow_pickle=False) and JSON.

- `write DIR`: `LeRobotDataset.create` / `add_frame` / `save_episode` / `finalize` write DIR/lerobot_written: 2
  episodes (EPISODE_LENGTHS frames) at FPS, two cameras stored as video (LeRobot's default encoding: SVT-AV1,
  yuv420p), a 6-joint state and action, one task per episode; and DIR/lerobot_written_split, the same with every
  episode in data and video files of its own, each in a chunk directory of its own (`update_chunk_settings`). The
  source images go to DIR/lerobot_source.npz. Then each dataset is opened again with
  `LeRobotDataset(repo_id, root=...)` and what LeRobot reads is dumped (`dump`).
- `read DIR NAME...`: `LeRobotDataset(repo_id, root=DIR/NAME)` (datasets smolvla-convert wrote) and `dump`.

`dump` opens the dataset as LeRobot's training does, with `delta_timestamps` asking for a chunk of CHUNK actions,
and writes NAME.npz: per frame (LeRobot's `dataset[i]`, i = 0..len-1) `observation.state`, `action` (the chunk,
(CHUNK, 6): the frame's action and the next ones, the episode's last repeated past its end), `action_is_pad`,
`timestamp`, `frame_index`, `episode_index`, `index`, `task_index`, and each camera's decoded frame as uint8 HWC
(LeRobot gives float32 CHW in [0, 1]: x * 255 rounded; LeRobot divides the decoder's uint8 by 255, so this is
exact); and NAME.json: the tasks per frame, fps, features, robot_type, the episodes' metadata (length, data and
video locations, tasks), the statistics' keys and shapes, and the video backend used.

Decoding: LeRobot 0.4.4 decodes with torchcodec where it is installed, else with PyAV through torchvision's
VideoReader (`video_backend="pyav"`). torchcodec's wheel cannot load beside CPU torch here (docs/training.md), so
the pyav backend is used, which needs torchvision < 0.26 (later releases dropped VideoReader).

Usage (from the repository root):

    .venv-reference/bin/python benchmarks/dataset_parity_reference.py write DIR
    .venv-reference/bin/python benchmarks/dataset_parity_reference.py read DIR NAME...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; a missing file must fail, not download
os.environ.setdefault("SVT_LOG", "2")  # SVT-AV1 prints its configuration for every file otherwise

FPS = 30
EPISODE_LENGTHS = (25, 18)
HEIGHT, WIDTH = 96, 128
CAMERAS = ("observation.images.front", "observation.images.wrist")
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
TASKS = ("pick up the red cube", "put the cube in the box")
WRITTEN = "lerobot_written"
WRITTEN_SPLIT = "lerobot_written_split"
VIDEO_BACKEND = "pyav"
#: Actions per training chunk asked of LeRobot (`delta_timestamps`): short enough that the episodes' last frames pad.
CHUNK = 10


def source_image(camera: int, episode: int, frame: int) -> np.ndarray:
    """A textured RGB frame: gradients, a square moving with the frame index, a colour per camera and episode."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.empty((HEIGHT, WIDTH, 3), np.float64)
    image[..., 0] = 2 * x + 40 * episode
    image[..., 1] = 2.5 * y + 60 * camera
    image[..., 2] = 128 + 100 * np.sin((x + 3 * frame) / 9.0) * np.cos(y / 7.0)
    top, left = (5 * frame) % (HEIGHT - 16), (7 * frame) % (WIDTH - 16)
    image[top : top + 16, left : left + 16] = (255, 255 * camera, 30 * episode)
    return np.clip(image, 0, 255).astype(np.uint8)


def state_value(episode: int, frame: int) -> np.ndarray:
    """Joint j of a frame's state: distinct per episode, frame and joint, not round in float32."""
    return (np.arange(6) * 10.0 + episode * 100.0 + frame * 0.37 + 0.123).astype(np.float32)


def action_value(episode: int, frame: int) -> np.ndarray:
    """The frame's action: its state shifted, so that state and action cannot be mistaken for each other."""
    return state_value(episode, frame + 1) + np.float32(0.5)


def import_lerobot_dataset():
    """LeRobotDataset, after torchvision (whose CUDA build's C ops cannot load beside CPU torch) is imported."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_reference import import_torchvision

    import_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset


def write(directory: Path) -> None:
    """LeRobot writes DIR/lerobot_written and DIR/lerobot_written_split with its recording API, then reads them
    back (dump). The split one has a file size limit so small (and one file per chunk directory) that every episode
    starts a new data file and new video files, each in a new chunk directory."""
    lerobot_dataset = import_lerobot_dataset()
    for name, split in ((WRITTEN, False), (WRITTEN_SPLIT, True)):
        sources = write_dataset(lerobot_dataset, directory / name, split)
        dump(lerobot_dataset, directory, name)
    np.savez(directory / "lerobot_source.npz", **sources)


def write_dataset(lerobot_dataset, root: Path, split: bool) -> dict[str, np.ndarray]:
    """One dataset written with LeRobot's recording API; returns the images given to it, per camera, in order."""
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": [f"{j}.pos" for j in JOINTS]},
        "action": {"dtype": "float32", "shape": (6,), "names": [f"{j}.pos" for j in JOINTS]},
        **{
            camera: {"dtype": "video", "shape": (HEIGHT, WIDTH, 3), "names": ["height", "width", "channels"]}
            for camera in CAMERAS
        },
    }
    dataset = lerobot_dataset.create(
        f"parity/{root.name}",
        FPS,
        features,
        root=root,
        robot_type="so101_follower",
        use_videos=True,
        video_backend=VIDEO_BACKEND,
    )
    if split:
        dataset.meta.update_chunk_settings(chunks_size=1, data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6)
    sources = {camera: [] for camera in CAMERAS}
    for episode, length in enumerate(EPISODE_LENGTHS):
        for frame in range(length):
            images = {camera: source_image(c, episode, frame) for c, camera in enumerate(CAMERAS)}
            for camera, image in images.items():
                sources[camera].append(image)
            dataset.add_frame(
                {
                    "observation.state": state_value(episode, frame),
                    "action": action_value(episode, frame),
                    "task": TASKS[episode],
                    **images,
                }
            )
        dataset.save_episode()
    dataset.finalize()
    return {camera: np.stack(frames) for camera, frames in sources.items()}


def read(directory: Path, names: list[str]) -> None:
    """LeRobot reads DIR/NAME for each name (dump)."""
    lerobot_dataset = import_lerobot_dataset()
    for name in names:
        dump(lerobot_dataset, directory, name)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def dump(lerobot_dataset, directory: Path, name: str) -> None:
    """What LeRobot reads of DIR/NAME, frame by frame, into DIR/NAME.npz and DIR/NAME.json (module docstring)."""
    fps = json.loads((directory / name / "meta" / "info.json").read_text())["fps"]
    dataset = lerobot_dataset(
        f"parity/{name}",
        root=directory / name,
        video_backend=VIDEO_BACKEND,
        delta_timestamps={"action": [k / fps for k in range(CHUNK)]},
    )
    prefix = directory / name
    meta = dataset.meta
    scalars = ("timestamp", "frame_index", "episode_index", "index", "task_index")
    vectors = ("observation.state", "action", "action_is_pad")
    columns: dict[str, list] = {key: [] for key in (*vectors, *scalars, *meta.video_keys)}
    tasks = []
    for i in range(len(dataset)):
        item = dataset[i]
        for key in (*vectors, *scalars):
            columns[key].append(item[key].numpy())
        for camera in meta.video_keys:
            chw = item[camera].numpy()
            columns[camera].append(np.round(chw.transpose(1, 2, 0) * 255.0).astype(np.uint8))
        tasks.append(item["task"])
    np.savez(prefix.with_suffix(".npz"), **{key: np.stack(values) for key, values in columns.items()})
    episodes = []
    for e in range(meta.total_episodes):
        row = meta.episodes[e]
        keep = [
            "episode_index",
            "length",
            "tasks",
            "dataset_from_index",
            "dataset_to_index",
            "data/chunk_index",
            "data/file_index",
        ]
        for camera in meta.video_keys:
            keep += [f"videos/{camera}/{k}" for k in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
        episodes.append({key: _jsonable(row[key]) for key in keep})
    stats = {key: {name: list(np.shape(value)) for name, value in stat.items()} for key, stat in meta.stats.items()}
    summary = {
        "frames": len(dataset),
        "fps": meta.fps,
        "robot_type": meta.robot_type,
        "features": _jsonable(meta.features),
        "video_keys": list(meta.video_keys),
        "tasks_table": list(meta.tasks.index),
        "task_per_frame": tasks,
        "episodes": episodes,
        "stats_shapes": stats,
        "video_backend": dataset.video_backend,
    }
    prefix.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(
        f"dataset-parity-reference: {prefix.name}: LeRobot read {len(dataset)} frames of {meta.total_episodes} "
        f"episodes, cameras {list(meta.video_keys)}, decoded with {dataset.video_backend}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["write", "read"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("names", nargs="*", help="read: the datasets in DIR to read")
    args = parser.parse_args()
    if args.action == "write":
        write(args.directory)
    else:
        read(args.directory, args.names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
