"""Training samples from recorded episodes: one frame per control tick, action chunks, normalisation statistics.

A sample means exactly what the executor does with the model's output (`smolvla.async_inference.core`): the
observation captured at tick k yields the chunk for ticks k + 1 ... k + n. So:

- **Frames are the ticks of whoever commanded the arm**: frame k is command message k (the executor publishes one
  per control tick; a leader arm or teleoperation node one per its own period). Its capture time t_k is the
  command's stamp (`bags`): on the executor's tick log (`tick_topic`) exactly its tick's capture time, the time
  its chunk requests carry; for Float64MultiArray commands (no header) their log time, which follows the capture
  by the publish-to-record delay (under a millisecond on an idle machine, more under load: an image rendered in
  between is then shown one tick early). The commands' rate must be `fps` (within 20 %): chunks are played at
  the executor's control rate.
- **Inputs of frame k**: for each camera and for the joint state, the newest sample *stamped* at or before t_k
  (header stamps, by `smolvla.observation.sample_stamp`), as the policy node selects its inputs for a chunk
  request's capture time; never a later sample, which would show the model the future. Frames start at the first
  command at or after the instant every input has a sample and end at the earliest of the inputs' last samples.
- **Actions of frame k**: commands k + 1, k + 2, ...: the chunk starts at the tick after the observation. The
  command of tick k itself is already in force when the observation is taken and is not part of the label.
- Every sample used must be at most `max_age` (default 0.25 s, the policy node's `max_sample_age`) older than its
  frame, and consecutive commands at most `max_age` apart. A gap (a camera that stalled, an executor that stopped
  commanding) is an error naming the bag, topic and time rather than silently skipped frames: a skipped frame would
  put a time jump inside the action chunks of the frames before it.
- A sample: the images of every camera slot of the checkpoint (slots beyond the recorded cameras are masked, as in
  the policy node), the state of frame k, the actions of frames k .. k + chunk_size - 1 (commands k + 1 ...
  k + chunk_size) and the task text. Past the episode's last frame the chunk repeats the last action and
  `action_is_pad` is True (the loss ignores those).

An episode's decoded images are in memory while it is read (one per camera message used, about width x height x 3
bytes each); `EpisodeDataset` keeps them resized to the model's input, in memory or in a frame cache on disk.
"""

from __future__ import annotations

import copy
import ctypes
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..instruction import check_instruction
from ..policy.processing import Normalizer, image_to_tensor, resize_with_pad
from .bags import TASK_FILE, BagError, Recording, Topics, read_task_file

DEFAULT_FPS = 30.0
DEFAULT_MAX_AGE = 0.25
#: Smallest standard deviation the statistics keep (joint units, radians here: 0.06 degrees).
MIN_STD = 1e-3


@dataclass
class Episode:
    """One recorded episode on the frame grid.

    path: the bag, or the LeRobotDataset (`smolvla.training.lerobot_dataset`) with `episode_index` its episode's
    index there. times (K,) int64 ns, the frames' capture times (their commands' stamps; a dataset's timestamps);
    images: per camera the decoded frames used (M_c, H, W, 3) uint8, image_index (K, C) the one each frame shows,
    image_stamps (K, C) its stamp; state (K, D) the joint state of frame k and actions (K, A) the command of the
    tick after frame k (the first action of the chunk frame k's observation yields; a dataset's `action` of frame
    k), float32, joint-name order.
    """

    path: Path
    task: str
    times: np.ndarray
    images: tuple[np.ndarray, ...]
    image_index: np.ndarray
    image_stamps: np.ndarray
    state: np.ndarray
    actions: np.ndarray
    episode_index: int | None = None

    def __len__(self) -> int:
        return len(self.times)


def _newest_at_or_before(
    recording: Recording, topic: str, stamps: np.ndarray, times: np.ndarray, max_age_ns: int
) -> np.ndarray:
    """Index of the newest stamp at or before each time; an error naming the first time whose sample is too old."""
    index = np.searchsorted(stamps, times, side="right") - 1  # >= 0: times start when every topic has a sample
    age = times - stamps[index]
    stale = np.flatnonzero(age > max_age_ns)
    if stale.size:
        k = int(stale[0])
        raise BagError(
            f"{recording.path}: {topic} has no sample within {max_age_ns / 1e9:.3f} s before the frame at "
            f"{recording.seconds(int(times[k])):.3f} s (newest is {age[k] / 1e9:.3f} s old): the recording has a gap"
        )
    return index


def load_episode(
    path: str | Path,
    topics: Topics,
    *,
    task: str | None = None,
    fps: float = DEFAULT_FPS,
    max_age: float = DEFAULT_MAX_AGE,
) -> Episode:
    """Read one bag and align it on the frame grid (module docstring). The task is the bag's `task.txt` if it has
    one, else `task`; neither is an error."""
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    if not (math.isfinite(max_age) and max_age > 0):
        raise ValueError(f"max_age must be positive, got {max_age}")
    path = Path(path)
    with Recording(path, topics) as recording:
        episode_task = read_task_file(path)
        if episode_task is None:
            if task is None:
                raise BagError(f"{path}: no task: give one for the run or write it into {path / TASK_FILE}")
            check = check_instruction(task)
            if not check.accepted:
                raise ValueError(f"task: {check.message}")
            episode_task = check.instruction
        state = recording.joint_states()
        actions = recording.actions()
        commands = actions.stamps
        if len(commands) >= 2:
            period = float(np.median(np.diff(commands))) / 1e9
            if not 0.8 <= period * fps <= 1.25:
                raise BagError(
                    f"{recording.path}: {actions.topic} comes at {1 / max(period, 1e-9):.1f} Hz, not the frame rate "
                    f"{fps:g} Hz: each command is one tick, and chunks are played at the control rate"
                )
        raw_stamps = [recording.image_stamps(topic) for topic in topics.cameras]
        orders = [np.argsort(stamps, kind="stable") for stamps in raw_stamps]
        image_stamps = [stamps[order] for stamps, order in zip(raw_stamps, orders, strict=True)]
        inputs = [*zip(topics.cameras, image_stamps, strict=True), (state.topic, state.stamps)]
        first = max(int(stamps[0]) for _, stamps in inputs)
        last = min(int(stamps[-1]) for _, stamps in inputs)
        # Frame k is command k; it needs command k + 1 as its label.
        frames = np.flatnonzero((commands[:-1] >= first) & (commands[:-1] <= last))
        if frames.size == 0:
            raise BagError(
                f"{recording.path}: no command falls where every input has a sample (inputs from "
                f"{recording.seconds(first):.3f} s to {recording.seconds(last):.3f} s, commands from "
                f"{recording.seconds(int(commands[0])):.3f} s to {recording.seconds(int(commands[-1])):.3f} s)"
            )
        frames = np.arange(frames[0], frames[-1] + 1)
        times = commands[frames]
        max_age_ns = round(max_age * 1e9)
        gaps = np.flatnonzero(commands[frames + 1] - times > max_age_ns)
        if gaps.size:
            k = int(frames[gaps[0]])
            raise BagError(
                f"{recording.path}: {actions.topic} has no command within {max_age:.3f} s after the one at "
                f"{recording.seconds(int(commands[k])):.3f} s: the recording has a gap"
            )
        state_index = _newest_at_or_before(recording, state.topic, state.stamps, times, max_age_ns)
        images, image_index, chosen_stamps = [], [], []
        for topic, stamps, order in zip(topics.cameras, image_stamps, orders, strict=True):
            chosen = _newest_at_or_before(recording, topic, stamps, times, max_age_ns)
            # Decode each message once, however many frames show it.
            used = np.unique(chosen)
            decoded = dict(recording.images(topic, order[used].tolist()))
            frames_used = [decoded[int(message)] for message in order[used]]
            shapes = sorted({frame.shape for frame in frames_used})
            if len(shapes) != 1:
                raise BagError(f"{recording.path}: camera {topic} changes its image size within the episode: {shapes}")
            images.append(np.stack(frames_used))
            image_index.append(np.searchsorted(used, chosen))
            chosen_stamps.append(stamps[chosen])
    return Episode(
        path=path,
        task=episode_task,
        times=times,
        images=tuple(images),
        image_index=np.stack(image_index, axis=1),
        image_stamps=np.stack(chosen_stamps, axis=1),
        state=state.values[state_index].astype(np.float32),
        actions=actions.values[frames + 1].astype(np.float32),
    )


def dataset_statistics(episodes: Sequence[Episode]) -> Normalizer:
    """MEAN_STD statistics of state and action over every frame of the episodes (population standard deviation,
    as LeRobot computes its dataset statistics), each std at least MIN_STD.

    The floor is for a joint that never moved in the recordings (a wrist roll or gripper left alone): with its
    std of 0, normalising divides by LeRobot's epsilon of 1e-8, and the policy would see any later sensor noise
    on that joint as a huge state. The floored std is what the checkpoint stores, so LeRobot normalises alike.
    """
    if not episodes:
        raise ValueError("no episodes")
    state = np.concatenate([episode.state for episode in episodes]).astype(np.float64)
    actions = np.concatenate([episode.actions for episode in episodes]).astype(np.float64)
    return Normalizer(
        torch.from_numpy(state.mean(0)),
        torch.from_numpy(np.maximum(state.std(0), MIN_STD)),
        torch.from_numpy(actions.mean(0)),
        torch.from_numpy(np.maximum(actions.std(0), MIN_STD)),
    )


class EpisodeDataset(Dataset):
    """Every frame of the episodes as a training sample for `SmolVLAPolicy.compute_loss` (after collation):

    images (n_slots, 3, H, W) float32 in [0, 1], resized with padding to `image_size` exactly as the model resizes
    (so resizing again in the model changes nothing, and cameras of different sizes stack); image_mask (n_slots,)
    bool; state (D,) and actions (chunk_size, A) float32 raw; action_is_pad (chunk_size,) bool; task str.
    camera_slots: the image slot of each recorded camera, in the episodes' camera order (default: the first slots
    in order; `smolvla.camera_mapping.CameraMapping.slots` maps them by name); the other slots are masked.

    Each decoded frame is resized once, at construction, and kept as uint8 at the model's size (a 64x64 camera
    frame: 12 kB), so a training step does no image work but the augmentation; the resized values are rounded to
    1/255, below what a camera resolves. With `frame_cache` (a directory) the resized frames go to one file per
    camera there, read back through memory maps: the process then holds only the episode being added and the small
    per-frame arrays, whatever the number of frames (the operating system keeps what fits of the files in its page
    cache), and data-loader workers share the maps. Episodes are taken one at a time from `episodes` (an iterator
    that loads each when asked keeps one episode's decoded images in memory) and kept without their images in
    `episodes` (for the statistics). A frame cache also gets an index (the episodes without their images), from
    which `open_cache` builds the same dataset in another process (the other ranks of a distributed run) without
    reading the episodes again. `camera_shapes`: the recorded cameras' frame shapes (3, H, W), of the first episode.
    """

    def __init__(
        self,
        episodes: Iterable[Episode],
        *,
        chunk_size: int,
        n_slots: int,
        image_size: tuple[int, int],
        camera_slots: Sequence[int] | None = None,
        frame_cache: str | Path | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.n_slots = n_slots
        self.image_size = tuple(image_size)
        self.camera_slots: tuple[int, ...] = ()
        self.episodes: list[Episode] = []
        self.camera_shapes: tuple[tuple[int, int, int], ...] = ()
        self._first_image: list[tuple[int, ...]] = []  # per episode and camera: its first stored frame
        cache = _FrameStore(frame_cache, self.image_size)
        for episode in episodes:
            self._add(episode, camera_slots, cache)
        if not self.episodes:
            raise ValueError("no episodes")
        self._images = cache.finish()
        self._index_frames()
        if cache.directory is not None:
            self._write_index(cache.directory)

    def _index_frames(self) -> None:
        lengths = [len(episode) for episode in self.episodes]
        self._episode_of = np.repeat(np.arange(len(lengths)), lengths)
        self._frame_of = np.concatenate([np.arange(length) for length in lengths])

    def _write_index(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        arrays = {}
        for e, episode in enumerate(self.episodes):
            for name in _INDEXED_ARRAYS:
                arrays[f"{e}.{name}"] = np.ascontiguousarray(getattr(episode, name))
        save_file(arrays, str(directory / _INDEX_ARRAYS))
        index = {
            "chunk_size": self.chunk_size,
            "n_slots": self.n_slots,
            "image_size": list(self.image_size),
            "camera_slots": list(self.camera_slots),
            "camera_shapes": [list(shape) for shape in self.camera_shapes],
            "frames_per_camera": [len(images) for images in self._images],
            "episodes": [
                {"path": str(e.path), "task": e.task, "episode_index": e.episode_index, "first_image": list(first)}
                for e, first in zip(self.episodes, self._first_image, strict=True)
            ],
        }
        # Written last, by rename: its presence says the cache is complete.
        staging = directory / (_INDEX + ".partial")
        staging.write_text(json.dumps(index) + "\n")
        staging.replace(directory / _INDEX)

    @classmethod
    def open_cache(cls, directory: str | Path) -> EpisodeDataset:
        """The dataset whose frame cache is `directory` (written by another process), without reading any
        episode: its frames memory-mapped, its episodes (without images) from the cache's index."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        try:
            index = json.loads((directory / _INDEX).read_text())
            arrays = load_file(str(directory / _INDEX_ARRAYS))
            dataset = cls.__new__(cls)
            dataset.chunk_size = int(index["chunk_size"])
            dataset.n_slots = int(index["n_slots"])
            dataset.image_size = tuple(index["image_size"])
            dataset.camera_slots = tuple(index["camera_slots"])
            dataset.camera_shapes = tuple(tuple(shape) for shape in index["camera_shapes"])
            dataset.episodes, dataset._first_image = [], []
            for e, entry in enumerate(index["episodes"]):
                fields = {name: arrays[f"{e}.{name}"] for name in _INDEXED_ARRAYS}
                dataset.episodes.append(
                    Episode(
                        Path(entry["path"]), entry["task"], images=(), episode_index=entry["episode_index"], **fields
                    )
                )
                dataset._first_image.append(tuple(entry["first_image"]))
            shape = (3, *dataset.image_size)
            dataset._images = [
                np.memmap(directory / f"camera_{camera}.u8", np.uint8, "r", shape=(count, *shape))
                for camera, count in enumerate(index["frames_per_camera"])
            ]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"frame cache {directory} cannot be opened: {error}") from None
        dataset._index_frames()
        return dataset

    def _add(self, episode: Episode, camera_slots: Sequence[int] | None, cache: _FrameStore) -> None:
        shape = (len(episode.images), episode.state.shape[1], episode.actions.shape[1])
        if self.episodes:
            first = self.episodes[0]
            if shape != (len(self.camera_slots), first.state.shape[1], first.actions.shape[1]):
                raise ValueError(f"episodes differ in camera count / state size / action size: {episode.path}")
        else:
            n_cameras = shape[0]
            if n_cameras > self.n_slots:
                raise ValueError(f"episodes have {n_cameras} cameras but the model has {self.n_slots} image slots")
            slots = tuple(range(n_cameras) if camera_slots is None else camera_slots)
            if len(slots) != n_cameras or len(set(slots)) != n_cameras:
                raise ValueError(f"camera_slots {list(slots)} must give {n_cameras} distinct image slots")
            if not all(0 <= slot < self.n_slots for slot in slots):
                raise ValueError(f"camera_slots {list(slots)} must lie in 0..{self.n_slots - 1}")
            self.camera_slots = slots
            self.camera_shapes = tuple((3, *frames.shape[1:3]) for frames in episode.images)
        self._first_image.append(
            tuple(
                cache.add(camera, _resize_frames(frames, camera, self.image_size))
                for camera, frames in enumerate(episode.images)
            )
        )
        self.episodes.append(replace(episode, images=()))
        if cache.directory is not None:
            _release_freed_memory()

    def subset(self, episodes: Sequence[int]) -> EpisodeDataset:
        """The frames of some of the episodes (by position), sharing the resized frames."""
        part = copy.copy(self)
        keep = np.isin(self._episode_of, list(episodes))
        part._episode_of, part._frame_of = self._episode_of[keep], self._frame_of[keep]
        return part

    def __len__(self) -> int:
        return len(self._episode_of)

    def __getitem__(self, item: int) -> dict:
        e, k = int(self._episode_of[item]), int(self._frame_of[item])
        episode = self.episodes[e]
        height, width = self.image_size
        images = torch.zeros(self.n_slots, 3, height, width)
        mask = torch.zeros(self.n_slots, dtype=torch.bool)
        for camera, slot in enumerate(self.camera_slots):
            frame = self._images[camera][self._first_image[e][camera] + episode.image_index[k, camera]]
            images[slot] = torch.from_numpy(frame.astype(np.float32)).div_(255.0)
            mask[slot] = True
        steps = np.arange(k, k + self.chunk_size)
        is_pad = steps >= len(episode)
        actions = episode.actions[np.minimum(steps, len(episode) - 1)]
        return {
            "images": images,
            "image_mask": mask,
            "state": torch.from_numpy(episode.state[k]),
            "actions": torch.from_numpy(actions),
            "action_is_pad": torch.from_numpy(is_pad),
            "task": episode.task,
        }


#: The frame cache's index: the episodes without their images (JSON), and their per-frame arrays (safetensors).
_INDEX = "index.json"
_INDEX_ARRAYS = "index.safetensors"
_INDEXED_ARRAYS = ("times", "image_index", "image_stamps", "state", "actions")


def _release_freed_memory() -> None:
    """Hand the heap's free memory back to the operating system (glibc's malloc_trim; nothing elsewhere).

    Decoding and resizing an episode allocates and frees tens of MB; glibc keeps such freed blocks in its heap when
    small long-lived allocations (the episodes' state and action arrays) sit above them, so without a trim the
    process's memory grows with the number of episodes although it holds nothing more (measured: +206 MB for 2400
    frames of 64x64, -4 MB with the trim).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


class _FrameStore:
    """The resized frames (3, H, W) uint8 of every camera, appended episode by episode: in memory, or in one file
    per camera of a cache directory, mapped read-only once every episode is in."""

    def __init__(self, directory: str | Path | None, size: tuple[int, int]) -> None:
        self.directory = None if directory is None else Path(directory)
        self.size = size
        self.parts: list[list[np.ndarray]] = []
        self.counts: list[int] = []
        self.files: list = []
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def add(self, camera: int, frames: torch.Tensor) -> int:
        """Append (M, 3, H, W) uint8 frames of a camera; returns the index of the first."""
        while len(self.counts) <= camera:
            self.counts.append(0)
            self.parts.append([])
            if self.directory is not None:
                self.files.append(open(self.directory / f"camera_{len(self.files)}.u8", "wb"))  # noqa: SIM115
        first = self.counts[camera]
        array = frames.numpy()
        if self.directory is None:
            self.parts[camera].append(array)
        else:
            self.files[camera].write(array.tobytes())
        self.counts[camera] += len(array)
        return first

    def finish(self) -> list[np.ndarray]:
        """Per camera, every frame added: (N, 3, H, W) uint8 (a read-only memory map with a cache directory)."""
        shape = (3, *self.size)
        if self.directory is None:
            return [np.concatenate(parts) if parts else np.empty((0, *shape), np.uint8) for parts in self.parts]
        maps = []
        for camera, file in enumerate(self.files):
            file.close()
            maps.append(np.memmap(file.name, np.uint8, "r", shape=(self.counts[camera], *shape)))
        return maps


def _resize_frames(frames: np.ndarray, slot: int, size: tuple[int, int], batch: int = 32) -> torch.Tensor:
    """(M, 3, H, W) uint8: each HxWx3 frame resized with padding as the model resizes, in batches."""
    out = []
    for start in range(0, len(frames), batch):
        chunk = torch.cat([image_to_tensor(frame, str(slot)) for frame in frames[start : start + batch]])
        out.append(resize_with_pad(chunk, *size).mul_(255.0).round_().to(torch.uint8))
    return torch.cat(out)


def write_statistics(
    path: str | Path, normalizer: Normalizer, episodes: Sequence[Episode], joint_names: Sequence[str]
) -> Path:
    """Write the statistics a run trained with, and the frames they came from, as JSON (for people and tools; the
    checkpoint carries the same statistics in LeRobot's processor files)."""
    path = Path(path)
    report = {
        "joint_names": list(joint_names),
        "state": {"mean": normalizer.state_mean.tolist(), "std": normalizer.state_std.tolist()},
        "action": {"mean": normalizer.action_mean.tolist(), "std": normalizer.action_std.tolist()},
        "frames": sum(len(episode) for episode in episodes),
        "episodes": [_describe(episode) for episode in episodes],
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _describe(episode: Episode) -> dict:
    if episode.episode_index is None:
        return {"bag": str(episode.path), "frames": len(episode), "task": episode.task}
    return {
        "dataset": str(episode.path),
        "episode_index": episode.episode_index,
        "frames": len(episode),
        "task": episode.task,
    }
