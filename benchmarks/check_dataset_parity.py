"""Parity of our LeRobotDataset v3 reader and writer with LeRobot 0.4.4 (the other half is
benchmarks/dataset_parity_reference.py, run in .venv-reference). `make parity-dataset` runs, in a temporary DIR:

1. `bags DIR` (here): two recorded episodes written as real rosbag2 files (the training tests' bags:
   `tests/training/rosbag_files.py`, sqlite3 and mcap, two cameras, 6 joints, a task each) converted by
   `smolvla-convert` into DIR/converted (AV1, LeRobot's encoding) and DIR/converted-lossless (`--video-codec
   lossless`).
2. the reference side: LeRobot writes DIR/lerobot_written with its recording API (and DIR/lerobot_written_split,
   the same with every episode in files of its own) and reads back these and the two converted datasets, dumping
   what it reads (npz + JSON; no pickle).
3. `check DIR` (here): our reader (`smolvla.training.lerobot_dataset`) opens the same four datasets and compares,
   episode by episode, with what LeRobot read:

   - episodes: the same episode indices, lengths and global frame indices (`index` = the episode's
     `dataset_from_index` + frame_index), the same task text per frame and the same task table;
   - state, action and timestamp of every frame: bit-equal (float32);
   - the training sample's action chunk: LeRobot's (`delta_timestamps`, CHUNK actions from the frame on, padded
     with the episode's last action and flagged in `action_is_pad`) against our `EpisodeDataset`'s `actions` and
     `action_is_pad`, bit-equal;
   - features: fps, robot type, cameras in order, each camera's (height, width), state and action names;
   - the decoded video frames: ours against LeRobot's own decoding of the same file at the same timestamp, max
     |difference| <= PIXEL_TOLERANCE, which is 0: equal. LeRobot's video decoding is lossy against the images it
     was given (AV1 at crf 30), so the images that went in are no reference for the decoders; LeRobot's decoded
     frames are. Both sides decode with FFmpeg through PyAV (LeRobot's pyav backend), from different PyAV releases
     (.venv: av 18, .venv-reference: av 15, LeRobot's pin) and so different FFmpeg builds; a conforming H.264 or
     AV1 decoder gives the same YUV planes (decoding is bit-exact by both specifications) and both convert yuv420p
     to RGB with swscale's defaults, so the frames are expected equal, and are. A wrong frame (off by one in
     time), another colour conversion (BT.601 vs BT.709, limited vs full range) or chroma upsampling would differ
     by several levels on these textured frames.

   What each decodes is also compared with the pixels that went in (informative for AV1, which is lossy; exact
   for the lossless converted dataset, on both sides).

Exit status 0 when everything matches, 1 otherwise. Usage: python benchmarks/check_dataset_parity.py {bags,check} DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: Largest |ours - LeRobot's| of a decoded pixel value (0..255) accepted: none (module docstring).
PIXEL_TOLERANCE = 0
#: Largest mean |decoded - written| of a frame's pixels for it to count as the frame written (AV1 at crf 30: ~3).
SOURCE_MEAN_ERROR = 8.0
WRITTEN = ("lerobot_written", "lerobot_written_split")
CONVERTED = ("converted", "converted-lossless")
CODECS = {"converted": "av1", "converted-lossless": "lossless"}
TASK = "pick up the cube"
#: Actions per chunk; the reference side asks LeRobot for as many (dataset_parity_reference.CHUNK).
CHUNK = 10


def write_bags_and_convert(directory: Path) -> None:
    """The training tests' two bags (tests/training/conftest.py `bags`), converted with each codec."""
    sys.path.insert(0, str(REPO / "src" / "smolvla" / "tests" / "training"))
    from rosbag_files import FRONT, WRIST, default_streams, write_bag

    from smolvla.training.convert import main as convert

    bags = directory / "bags"
    write_bag(bags / "episode_0", storage="sqlite3")
    second = write_bag(bags / "episode_1", default_streams(700.0), storage="mcap")
    (second / "task.txt").write_text("put the cube on the target\n")
    for name in CONVERTED:
        args = [
            str(bags),
            "--output",
            str(directory / name),
            "--task",
            TASK,
            "--video-codec",
            CODECS[name],
            "--cameras",
            f"front={FRONT}",
            f"wrist={WRIST}",
        ]
        if convert(args) != 0:
            raise SystemExit(f"smolvla-convert failed on {bags}")


class Report:
    """Named checks, each passed or failed with a detail line."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.count = 0

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        self.count += 1
        status = "ok  " if ok else "FAIL"
        print(f"  {status} {what}" + (f": {detail}" if detail else ""))
        if not ok:
            self.failures.append(what)


def _load(prefix: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(prefix.with_suffix(".npz"), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return arrays, json.loads(prefix.with_suffix(".json").read_text())


def compare(name: str, directory: Path, report: Report, sources: dict[str, np.ndarray] | None) -> dict:
    """Our reader against LeRobot's dump of dataset `name`; returns the pixel figures per camera. `sources`: the
    pixels that went in, per camera in dataset frame order (None: not known here)."""
    from smolvla.training import EpisodeDataset
    from smolvla.training.lerobot_dataset import LeRobotDataset, dataset_joint

    print(f"{name}:")
    ref, meta = _load(directory / name)
    ours = LeRobotDataset(directory / name)
    features = meta["features"]
    report.check(ours.fps == meta["fps"], "fps", f"ours {ours.fps:g}, LeRobot {meta['fps']}")
    report.check(ours.robot_type == meta["robot_type"], "robot type", f"{ours.robot_type!r}")
    report.check(list(ours.camera_keys) == meta["video_keys"], "cameras", f"{list(ours.camera_keys)}")
    for camera in ours.camera_keys:
        shape = list(ours.camera_shape(camera))
        report.check(shape == features[camera]["shape"][:2], f"{camera} size", f"{shape}")
    for key, names in (("observation.state", ours.state_names), ("action", ours.action_names)):
        report.check(list(names) == features[key]["names"], f"{key} names", f"{list(names)}")
    report.check(sorted(ours.tasks.values()) == sorted(meta["tasks_table"]), "task table", f"{meta['tasks_table']}")

    lengths = [episode["length"] for episode in meta["episodes"]]
    report.check(
        {e: entry.length for e, entry in ours.episodes.items()} == dict(enumerate(lengths)),
        "episodes and lengths",
        f"{lengths}",
    )
    joints = [dataset_joint(n) for n in ours.state_names]
    frames_checked = 0
    pixels: dict[str, dict[str, float]] = {}
    for e, entry in enumerate(meta["episodes"]):
        rows = np.flatnonzero(ref["episode_index"] == e)
        rows = rows[np.argsort(ref["frame_index"][rows], kind="stable")]
        episode = ours.episode(e, joints)
        where = f"episode {e}"
        report.check(
            np.array_equal(ref["frame_index"][rows], np.arange(entry["length"]))
            and np.array_equal(ref["index"][rows], entry["dataset_from_index"] + np.arange(entry["length"]))
            and entry["dataset_to_index"] == entry["dataset_from_index"] + entry["length"],
            f"{where}: boundaries",
            f"frames {entry['dataset_from_index']}..{entry['dataset_to_index'] - 1}",
        )
        report.check(np.array_equal(episode.state, ref["observation.state"][rows]), f"{where}: state (bit-equal)")
        report.check(np.array_equal(episode.actions, ref["action"][rows, 0]), f"{where}: action (bit-equal)")
        samples = EpisodeDataset([episode], chunk_size=CHUNK, n_slots=len(episode.images), image_size=(8, 8))
        chunks = np.stack([samples[k]["actions"].numpy() for k in range(len(samples))])
        is_pad = np.stack([samples[k]["action_is_pad"].numpy() for k in range(len(samples))])
        report.check(
            np.array_equal(chunks, ref["action"][rows]) and np.array_equal(is_pad, ref["action_is_pad"][rows]),
            f"{where}: action chunks and padding (bit-equal)",
            f"{len(rows)} chunks of {CHUNK}, {int(is_pad.sum())} padded actions",
        )
        # Ours: int64 ns from the float32 timestamps, LeRobot: the float32 timestamps.
        ref_ns = np.round(ref["timestamp"][rows].astype(np.float64) * 1e9).astype(np.int64)
        report.check(np.array_equal(episode.times, ref_ns), f"{where}: timestamps", f"{len(rows)} frames")
        tasks = {meta["task_per_frame"][i] for i in rows}
        report.check(tasks == {episode.task} and entry["tasks"] == [episode.task], f"{where}: task", episode.task)
        for c, camera in enumerate(ours.camera_keys):
            mine = episode.images[c][episode.image_index[:, c]].astype(np.int16)
            theirs = ref[camera][rows].astype(np.int16)
            if mine.shape != theirs.shape:
                report.check(False, f"{where}: {camera} frames", f"shapes {mine.shape} vs {theirs.shape}")
                continue
            diff = np.abs(mine - theirs)
            figures = pixels.setdefault(camera, {"max": 0, "sum": 0.0, "n": 0, "unequal": 0})
            figures["max"] = max(figures["max"], int(diff.max()))
            figures["sum"] += float(diff.sum())
            figures["n"] += diff.size
            figures["unequal"] += int(np.count_nonzero(diff))
            if sources is not None:
                source = sources[camera][rows].astype(np.int16)
                figures["ours_vs_source"] = figures.get("ours_vs_source", 0.0) + float(np.abs(mine - source).sum())
                figures["lerobot_vs_source"] = figures.get("lerobot_vs_source", 0.0) + float(
                    np.abs(theirs - source).sum()
                )
                figures["source_max"] = max(
                    figures.get("source_max", 0), int(np.abs(mine - source).max()), int(np.abs(theirs - source).max())
                )
            report.check(
                int(diff.max()) <= PIXEL_TOLERANCE,
                f"{where}: {camera} frames, ours vs LeRobot's decoding",
                f"max |diff| {int(diff.max())}, {np.count_nonzero(diff)} of {diff.size} values differ",
            )
        frames_checked += len(rows)
    report.check(frames_checked == meta["frames"] == len(ref["index"]), "every frame compared", f"{frames_checked}")
    for camera, figures in pixels.items():
        line = (
            f"  {camera}: ours vs LeRobot: max {figures['max']}, mean {figures['sum'] / figures['n']:.4f}, "
            f"{figures['unequal']} of {figures['n']} values differ"
        )
        if "ours_vs_source" in figures:
            line += (
                f"; vs the source pixels: ours mean {figures['ours_vs_source'] / figures['n']:.3f}, LeRobot mean "
                f"{figures['lerobot_vs_source'] / figures['n']:.3f}, max {figures['source_max']}"
            )
            # The frames must be the ones written, in order: a shifted frame moves the square and the colours.
            report.check(
                figures["lerobot_vs_source"] / figures["n"] < SOURCE_MEAN_ERROR,
                f"{camera}: LeRobot's frames are the ones written",
                f"mean |decoded - written| < {SOURCE_MEAN_ERROR}",
            )
        print(line)
    return pixels


def bag_frames(directory: Path, name: str) -> dict[str, np.ndarray]:
    """The pixels each converted frame came from: the bags' frames as training aligns them."""
    sys.path.insert(0, str(REPO / "src" / "smolvla" / "tests" / "training"))
    from rosbag_files import FRONT, WRIST

    from smolvla.training import Topics, load_episode
    from smolvla.training.lerobot_dataset import CAMERA_PREFIX

    episodes = [
        load_episode(directory / "bags" / f"episode_{e}", Topics(cameras=(FRONT, WRIST)), task=TASK) for e in (0, 1)
    ]
    return {
        f"{CAMERA_PREFIX}{camera}": np.concatenate([e.images[c][e.image_index[:, c]] for e in episodes])
        for c, camera in enumerate(("front", "wrist"))
    }


def check(directory: Path) -> int:
    report = Report()
    with np.load(directory / "lerobot_source.npz", allow_pickle=False) as data:
        sources = {key: data[key] for key in data.files}
    for name in WRITTEN:
        compare(name, directory, report, sources)
    # The split dataset must really have put each episode into data and video files of its own.
    meta = json.loads((directory / WRITTEN[1]).with_suffix(".json").read_text())
    files = {
        key: [(episode[f"{key}/chunk_index"], episode[f"{key}/file_index"]) for episode in meta["episodes"]]
        for key in ["data", *(f"videos/{camera}" for camera in meta["video_keys"])]
    }
    report.check(
        all(len(set(located)) == len(meta["episodes"]) for located in files.values()),
        f"{WRITTEN[1]}: every episode in files of its own",
        "; ".join(f"{key} (chunk, file): {located}" for key, located in files.items()),
    )
    for name in CONVERTED:
        pixels = compare(name, directory, report, bag_frames(directory, name))
        if CODECS[name] == "lossless":
            exact = all(figures["source_max"] == 0 for figures in pixels.values())
            report.check(exact, f"{name}: LeRobot and ours decode exactly the bags' pixels")
    print(f"dataset parity: {report.count - len(report.failures)} of {report.count} checks passed")
    if report.failures:
        print("failed: " + "; ".join(report.failures))
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["bags", "check"])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    if args.action == "bags":
        write_bags_and_convert(args.directory)
        return 0
    return check(args.directory)


if __name__ == "__main__":
    sys.exit(main())
