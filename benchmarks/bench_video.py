"""Video decoding for LeRobotDataset v3 training on this machine: frames per second of `smolvla.training.video`.

Encodes one synthetic 30 s episode per codec (a moving gradient, 30 fps, LeRobot's recording settings: AV1 crf 30
and a key frame every 2 frames; H.264 alike; the lossless RGB H.264 of `smolvla-convert --video-codec lossless`)
at the given size, then measures decoding the whole episode at its timestamps (what training does per episode)
and single random timestamps (what a per-sample loader would do). With --torchcodec it also decodes the same files
with torchcodec the way LeRobot 0.4.4 does (`VideoDecoder(seek_mode="approximate").get_frames_at`), if torchcodec
and the FFmpeg libraries it loads are installed. Prints the machine load before and after, and one JSON line.

Usage: python benchmarks/bench_video.py [--size 256] [--seconds 30] [--torchcodec]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from smolvla.training.video import VideoWriter, decode_frames

FPS = 30


def synthetic_frames(count: int, size: int) -> np.ndarray:
    """A gradient that moves a little every frame, with some texture (compresses like a camera, not like noise)."""
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 24, (size, size, 1))
    frames = np.empty((count, size, size, 3), np.uint8)
    for n in range(count):
        frames[n, ..., 0] = (x + 2 * n) % 256
        frames[n, ..., 1] = (y + n) % 256
        frames[n, ..., 2] = (x + y) // 2 % 256
        frames[n] = np.clip(frames[n].astype(np.int16) + texture, 0, 255)
    return frames


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def torchcodec_decode(path: Path, timestamps: np.ndarray) -> np.ndarray:
    """LeRobot 0.4.4's torchcodec path: frame indices from the average fps, `get_frames_at`."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), seek_mode="approximate")
    fps = decoder.metadata.average_fps
    return decoder.get_frames_at(indices=[round(t * fps) for t in timestamps]).data.numpy()


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="square frame size (pixels)")
    parser.add_argument("--seconds", type=float, default=30.0, help="episode length")
    parser.add_argument("--random", type=int, default=30, help="single-timestamp decodes to time")
    parser.add_argument("--torchcodec", action="store_true", help="also time torchcodec")
    args = parser.parse_args()
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} ({os.cpu_count()} CPUs)")
    count = round(args.seconds * FPS)
    frames = synthetic_frames(count, args.size)
    timestamps = np.arange(count) / FPS
    rng = np.random.default_rng(1)
    picks = np.sort(rng.choice(count, args.random, replace=False))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for codec in ("av1", "h264", "lossless"):
            path = Path(tmp) / f"{codec}.mp4"

            def encode(path=path, codec=codec):
                with VideoWriter(path, FPS, args.size, args.size, codec) as writer:
                    for frame in frames:
                        writer.write(frame)

            encode_s, _ = timed(encode)
            whole_s, decoded = timed(lambda path=path: decode_frames(path, timestamps))
            random_s = sum(timed(lambda t=t, path=path: decode_frames(path, [timestamps[t]]))[0] for t in picks)
            row = {
                "codec": codec,
                "size": args.size,
                "frames": count,
                "file_mb": round(path.stat().st_size / 1e6, 2),
                "encode_fps": round(count / encode_s, 1),
                "pyav_episode_fps": round(count / whole_s, 1),
                "pyav_random_ms": round(1000 * random_s / len(picks), 1),
                "mean_abs_error": round(float(np.abs(decoded.astype(np.int16) - frames).mean()), 2),
            }
            if args.torchcodec:
                tc_s, tc = timed(lambda path=path: torchcodec_decode(path, timestamps))
                tc_random = sum(
                    timed(lambda t=t, path=path: torchcodec_decode(path, [timestamps[t]]))[0] for t in picks
                )
                row["torchcodec_episode_fps"] = round(count / tc_s, 1)
                row["torchcodec_random_ms"] = round(1000 * tc_random / len(picks), 1)
                row["torchcodec_equals_pyav"] = bool(np.array_equal(tc.transpose(0, 2, 3, 1), decoded))
            print(" ".join(f"{key}={value}" for key, value in row.items()))
            results.append(row)
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f}")
    print(json.dumps({"results": results, "loadavg_before": load_before[0], "loadavg_after": load_after[0]}))


if __name__ == "__main__":
    main()
