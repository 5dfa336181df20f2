"""The video files of a LeRobotDataset v3: frames decoded at given timestamps, and frames encoded into mp4.

Decoding and encoding go through PyAV, whose wheel carries its own FFmpeg (AV1 through dav1d, H.264 through
libx264, SVT-AV1 for encoding): a 36 MB wheel, nothing else to install. torchcodec, LeRobot's default decoder, is
not used: its PyPI wheel is built against the CUDA build of torch (it loads libtorch_cuda and libnvrtc, so it does
not load beside this workspace's CPU torch) and needs the system's FFmpeg libraries (283 MB of Debian packages).
Throughput on this machine: `benchmarks/bench_video.py`, docs/training.md ("Datasets in and out").

A frame belongs to a timestamp as in LeRobot 0.4.4 (`decode_video_frames`): the decoded frame nearest in time,
which must lie strictly closer than the tolerance (`TOLERANCE_S`, LeRobot's default `tolerance_s`); anything else
is an error naming the file and the timestamps, never a silently shifted frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import av
import numpy as np

#: LeRobot's default tolerance (s) between a requested timestamp and the decoded frame used for it.
TOLERANCE_S = 1e-4


class VideoError(ValueError):
    """A video file that cannot give the frames asked for; the message names the file."""


def decode_frames(path: str | Path, timestamps: Sequence[float], tolerance_s: float = TOLERANCE_S) -> np.ndarray:
    """The frames of the first video stream of `path` at `timestamps` (seconds in the file, ascending), as
    (N, H, W, 3) uint8 RGB: for each timestamp the frame whose presentation time is nearest, within `tolerance_s`.

    Decodes from the key frame at or before the first timestamp up to the last one, once, whatever the number of
    timestamps; only the frames asked for are converted to RGB.
    """
    path = Path(path)
    query = np.asarray(timestamps, dtype=np.float64)
    if query.ndim != 1 or query.size == 0:
        raise ValueError("timestamps must be a non-empty 1-D sequence")
    if np.any(np.diff(query) <= 0):
        raise ValueError("timestamps must be strictly ascending")
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    frames: list[np.ndarray | None] = [None] * len(query)
    error = np.full(len(query), np.inf)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start = query[0] - tolerance_s
            if start > 0:
                container.seek(max(0, int(start / stream.time_base)), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                time = float(frame.pts * stream.time_base)
                if time >= query[-1] + tolerance_s:
                    break
                # Frames are at least 2 x tolerance apart at any real frame rate: a frame serves the timestamps
                # within the tolerance of it, and each timestamp keeps the nearest such frame.
                lo, hi = np.searchsorted(query, [time - tolerance_s, time + tolerance_s], side="right")
                wanted = [i for i in range(lo, hi) if abs(query[i] - time) < min(error[i], tolerance_s)]
                if wanted:
                    rgb = frame.to_ndarray(format="rgb24")
                    for i in wanted:
                        frames[i], error[i] = rgb, abs(query[i] - time)
    except av.error.FFmpegError as failure:
        raise VideoError(f"{path}: cannot decode: {failure}") from failure
    missing = [i for i, frame in enumerate(frames) if frame is None]
    if missing:
        shown = ", ".join(f"{query[i]:.6f}" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise VideoError(
            f"{path}: no frame within {tolerance_s:g} s of {len(missing)} timestamp(s): {shown} s (the video is "
            "shorter, or its frames are not at these times)"
        )
    shapes = {frame.shape for frame in frames}
    if len(shapes) != 1:
        raise VideoError(f"{path}: the frame size changes within the video: {sorted(shapes)}")
    return np.stack(frames)


@dataclass(frozen=True)
class Codec:
    """An FFmpeg encoder with its pixel format and options; name: the format's name (LeRobot's `video.codec`)."""

    name: str
    encoder: str
    pix_fmt: str
    options: tuple[tuple[str, str], ...]


#: Encoders of `VideoWriter`: `av1` is what LeRobot 0.4.4 records with (SVT-AV1, yuv420p, crf 30, a key frame every
#: 2 frames); `h264` the same settings in H.264; `lossless` H.264 in RGB with quantiser 0, which decodes to exactly
#: the pixels written (files several times larger).
CODECS = {
    "av1": Codec("av1", "libsvtav1", "yuv420p", (("crf", "30"), ("g", "2"))),
    "h264": Codec("h264", "libx264", "yuv420p", (("crf", "30"), ("g", "2"))),
    "lossless": Codec("h264", "libx264rgb", "rgb24", (("qp", "0"), ("g", "2"))),
}


class VideoWriter:
    """One mp4 file of one camera at a fixed frame rate, written frame by frame (a context manager).

    Frame n is presented at n / fps: episodes written one after the other start at `frames / fps`, the
    `from_timestamp` of LeRobot's episode metadata.
    """

    def __init__(self, path: str | Path, fps: int, height: int, width: int, codec: str = "av1") -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown video codec {codec!r}; known: {', '.join(CODECS)}")
        spec = CODECS[codec]
        # SVT-AV1 prints its whole configuration at info level for every file; warnings and errors still show.
        os.environ.setdefault("SVT_LOG", "2")
        if spec.pix_fmt == "yuv420p" and (height % 2 or width % 2):
            raise ValueError(f"{codec} needs an even frame size, got {width}x{height}; use the lossless codec")
        self.path = Path(path)
        self.fps = fps
        self.shape = (height, width, 3)
        self.frames = 0
        #: Bytes of encoded video muxed so far (the encoder holds some frames back until it is flushed).
        self.bytes = 0
        self._container = av.open(str(self.path), "w")
        try:
            self._stream = self._container.add_stream(spec.encoder, rate=fps, options=dict(spec.options))
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, spec.pix_fmt
        except BaseException:
            self._container.close()
            raise

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame."""
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: frame of shape {frame.shape} {frame.dtype}, expected {self.shape} uint8")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames  # in the encoder's time base, 1 / fps
        self._mux(self._stream.encode(video_frame))
        self.frames += 1

    def _mux(self, packets: list) -> None:
        for packet in packets:
            self.bytes += packet.size
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self._container is None:
            return
        try:
            self._mux(self._stream.encode())
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
