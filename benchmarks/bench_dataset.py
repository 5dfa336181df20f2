"""Training data from a LeRobotDataset v3 on this machine: decode speed and the memory a run holds, with the frame
cache on disk (what `smolvla-train` does) and with every resized frame in memory.

Writes a synthetic dataset with `smolvla.training.lerobot_writer` (EPISODES episodes of SECONDS s, two cameras of
SIZE x SIZE at 30 fps, AV1 as LeRobot records), then, in a fresh process per mode, reads every episode into an
`EpisodeDataset` for a model input of MODEL x MODEL (as `smolvla-train` does: one episode decoded at a time) and
draws every sample once through a DataLoader (batch 16). Prints per mode: episodes decoded and resized per second
(frames/s), samples per second, the process's peak resident memory and its anonymous memory at the end (the heap;
the page cache of the frame files is the operating system's), then the machine load and one JSON line.

Usage: python benchmarks/bench_dataset.py [--episodes 12] [--seconds 20] [--size 256] [--model 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FPS = 30


def _status(field: str) -> int:
    """A memory figure of /proc/self/status in bytes (VmHWM: peak resident memory of this process image)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field + ":"))


def write(root: Path, episodes: int, seconds: float, size: int) -> None:
    """A synthetic dataset: moving gradients, a state and action per frame."""
    from smolvla.robot_interface import so100_interface
    from smolvla.training.dataset import Episode
    from smolvla.training.lerobot_writer import write_dataset

    frames = round(seconds * FPS)
    y, x = np.mgrid[0:size, 0:size]

    def episode(e: int) -> Episode:
        images = tuple(
            np.stack(
                [
                    np.stack([(x + 2 * k + 40 * c) % 256, (y + k) % 256, (x + y + e) // 2 % 256], -1)
                    for k in range(frames)
                ]
            ).astype(np.uint8)
            for c in range(2)
        )
        times = np.arange(frames, dtype=np.int64) * round(1e9 / FPS)
        state = np.sin(np.arange(frames)[:, None] / 30 + np.arange(6) + e).astype(np.float32)
        index = np.repeat(np.arange(frames)[:, None], 2, axis=1)
        return Episode(
            Path(f"synthetic/{e}"),
            "pick up the cube",
            times,
            images,
            index,
            np.repeat(times[:, None], 2, 1),
            state,
            state,
        )

    interface = so100_interface(("observation.images.front", "observation.images.wrist"))
    write_dataset((episode(e) for e in range(episodes)), root, interface=interface)


def measure(root: Path, mode: str, model: int) -> dict:
    """Read the dataset into an EpisodeDataset and draw every sample once; runs in its own process."""
    import torch
    from torch.utils.data import DataLoader

    from smolvla.robot_interface import SO100_JOINT_NAMES
    from smolvla.training.dataset import EpisodeDataset
    from smolvla.training.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset(root)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=root.parent) as cache:
        samples = EpisodeDataset(
            (dataset.episode(index, SO100_JOINT_NAMES) for index in dataset.episodes),
            chunk_size=50,
            n_slots=2,
            image_size=(model, model),
            frame_cache=cache if mode == "disk" else None,
        )
        built = time.perf_counter()
        loader = DataLoader(samples, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
        for _ in loader:
            pass
        drawn = time.perf_counter()
        frames = len(samples)
        return {
            "mode": mode,
            "frames": frames,
            "read_frames_per_s": round(frames / (built - started), 1),
            "samples_per_s": round(frames / (drawn - built), 1),
            "peak_rss_mb": round(_status("VmHWM") / 1e6, 1),
            "anon_mb_at_end": round(_status("RssAnon") / 1e6, 1),
        }


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=256, help="camera frames (square, pixels)")
    parser.add_argument("--model", type=int, default=64, help="model input (square, pixels)")
    parser.add_argument("--measure", nargs=2, metavar=("ROOT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1], args.model)))
        return
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} ({os.cpu_count()} CPUs)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dataset"
        start = time.perf_counter()
        write(root, args.episodes, args.seconds, args.size)
        decoded_mb = args.episodes * round(args.seconds * FPS) * 2 * args.size**2 * 3 / 1e6
        print(f"wrote {args.episodes} episodes in {time.perf_counter() - start:.0f} s ({decoded_mb:.0f} MB decoded)")
        for mode in ("disk", "memory"):
            command = [sys.executable, __file__, "--model", str(args.model), "--measure", str(root), mode]
            row = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            )
            row["decoded_mb"] = round(decoded_mb)
            print(" ".join(f"{key}={value}" for key, value in row.items()))
            results.append(row)
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f}")
    print(json.dumps({"results": results, "loadavg_before": load_before[0], "loadavg_after": load_after[0]}))


if __name__ == "__main__":
    main()
