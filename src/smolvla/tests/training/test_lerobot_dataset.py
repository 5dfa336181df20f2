"""LeRobotDataset v3 in: a dataset written in-test reads back frame-exactly at its timestamps, through the same
sample builder as bags; a hub id resolves offline through the cache; broken datasets name the file and episode."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from lerobot_files import (
    CAMERAS,
    FPS,
    TASKS,
    action_value,
    edit_info,
    frame,
    state_value,
    write_v3,
)

from smolvla.robot_interface import SO100_JOINT_NAMES
from smolvla.training import EpisodeDataset
from smolvla.training.lerobot_dataset import DatasetError, LeRobotDataset, open_dataset
from smolvla.training.video import VideoError, decode_frames


@pytest.fixture(scope="module")
def v3(tmp_path_factory):
    return write_v3(tmp_path_factory.mktemp("v3") / "dataset")


@pytest.fixture
def v3_copy(v3, tmp_path):
    return shutil.copytree(v3, tmp_path / "dataset")


def test_episodes_read_back_frame_exactly_at_their_timestamps(v3):
    dataset = LeRobotDataset(v3)
    assert dataset.fps == FPS and dataset.camera_keys == CAMERAS and list(dataset.episodes) == [0, 1]
    assert dataset.interface is None  # recorded by LeRobot: the units are the user's to give
    for e, length in enumerate((12, 9)):
        episode = dataset.episode(e, SO100_JOINT_NAMES)
        assert len(episode) == length and episode.task == TASKS[e] and episode.episode_index == e
        # The dataset's float32 timestamps, k / fps, in ns.
        stamps = (np.arange(length) / FPS).astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(episode.times, np.round(stamps * 1e9).astype(np.int64))
        for k in range(length):
            # Reordered from the dataset's `wrist_roll.pos, ...` names; the action of frame k is the command sent
            # after observing it, the first action of the chunk, as a bag's frame k holds.
            np.testing.assert_array_equal(episode.state[k], state_value(e, k))
            np.testing.assert_array_equal(episode.actions[k], action_value(e, k))
            for c in range(len(CAMERAS)):
                # The second episode lies after the first in the same video file: from_timestamp shifts it.
                np.testing.assert_array_equal(episode.images[c][episode.image_index[k, c]], frame(e, k, c))


def test_the_sample_builder_is_the_bags_one(v3):
    """Chunks, padding and camera slots come from EpisodeDataset, as for bags: one definition of a sample."""
    episode = LeRobotDataset(v3).episode(1, SO100_JOINT_NAMES, cameras=[CAMERAS[1]])
    sample = EpisodeDataset([episode], chunk_size=5, n_slots=2, image_size=(24, 32), camera_slots=(1,))[6]
    assert sample["image_mask"].tolist() == [False, True] and sample["task"] == TASKS[1]
    assert sample["action_is_pad"].tolist() == [False, False, False, True, True]
    torch.testing.assert_close(
        sample["actions"][:3], torch.from_numpy(np.stack([action_value(1, k) for k in (6, 7, 8)]))
    )
    torch.testing.assert_close(sample["images"][1], torch.from_numpy(frame(1, 6, 1)).permute(2, 0, 1).float() / 255)


def test_decoding_uses_lerobots_tolerance(v3):
    video = v3 / "videos" / CAMERAS[0] / "chunk-000" / "file-000.mp4"
    near = decode_frames(video, [5 / FPS + 0.9e-4])  # within 1e-4 s of frame 5
    np.testing.assert_array_equal(near[0], frame(0, 5, 0))
    with pytest.raises(VideoError, match=rf"{video}: no frame within 0.0001 s of 1 timestamp\(s\): 0.1668"):
        decode_frames(video, [5 / FPS + 1.5e-4])


def test_hub_id_resolves_through_the_cache_offline(v3, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    repo = cache / "datasets--someone--so100_cube"
    commit = "1" * 40
    shutil.copytree(v3, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    dataset = open_dataset("someone/so100_cube")
    assert dataset.root == repo / "snapshots" / commit and len(dataset.episodes) == 2
    with pytest.raises(Exception, match="(?i)offline|cache|local"):
        open_dataset("someone/not-cached")


def test_unknown_codebase_version_is_refused(tmp_path):
    root = write_v3(tmp_path / "old", (3,), version="v2.1")
    with pytest.raises(DatasetError, match=rf"{root / 'meta' / 'info.json'}: codebase_version 'v2.1' is not supported"):
        LeRobotDataset(root)


def test_missing_video_file_names_file_and_episode(v3_copy):
    video = v3_copy / "videos" / CAMERAS[1] / "chunk-000" / "file-000.mp4"
    video.unlink()
    dataset = LeRobotDataset(v3_copy)
    with pytest.raises(DatasetError, match=rf"{video}: episode 0, camera {CAMERAS[1]}: missing video file"):
        dataset.episode(0, SO100_JOINT_NAMES)


def test_timestamps_out_of_range_name_file_and_episode(v3_copy):
    path = v3_copy / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(path)
    key = f"videos/{CAMERAS[0]}/to_timestamp"
    shortened = table.column(key).to_numpy().copy()
    shortened[1] -= 3 / FPS  # the metadata says episode 1's segment ends 3 frames before its last frame
    pq.write_table(table.set_column(table.column_names.index(key), key, pa.array(shortened)), path)
    dataset = LeRobotDataset(v3_copy)
    dataset.episode(0, SO100_JOINT_NAMES)
    video = v3_copy / "videos" / CAMERAS[0] / "chunk-000" / "file-000.mp4"
    with pytest.raises(DatasetError, match=rf"{video}: episode 1, camera {CAMERAS[0]}: timestamps out of range"):
        dataset.episode(1, SO100_JOINT_NAMES)


def test_frames_beyond_the_video_name_file_and_episode(v3_copy):
    """Metadata that is consistent but a video that is too short: the decoder finds no frame for the end."""
    root = v3_copy
    from lerobot_files import HEIGHT, WIDTH

    from smolvla.training.video import VideoWriter

    video = root / "videos" / CAMERAS[0] / "chunk-000" / "file-000.mp4"
    with VideoWriter(video, FPS, HEIGHT, WIDTH, "lossless") as writer:
        for k in range(15):  # episode 1 starts at frame 12 and has 9
            writer.write(frame(0, k, 0))
    with pytest.raises(DatasetError, match=rf"episode 1, camera {CAMERAS[0]}: {video}: no frame within 0.0001 s"):
        LeRobotDataset(root).episode(1, SO100_JOINT_NAMES)


def test_feature_shape_mismatch_names_file_and_episode(v3_copy):
    edit_info(v3_copy, lambda info: info["features"][CAMERAS[0]].update(shape=[48, 64, 3]))
    video = v3_copy / "videos" / CAMERAS[0] / "chunk-000" / "file-000.mp4"
    with pytest.raises(DatasetError, match=rf"{video}: episode 0, .*feature shape mismatch: frames are 24x32"):
        LeRobotDataset(v3_copy).episode(0, SO100_JOINT_NAMES)
    names = [*(f"j{i}.pos" for i in range(7))]
    edit_info(v3_copy, lambda info: info["features"]["observation.state"].update(shape=[7], names=names))
    data = v3_copy / "data" / "chunk-000" / "file-000.parquet"
    with pytest.raises(DatasetError, match=rf"{data}: episode 1: feature shape mismatch: observation.state of frame 0"):
        LeRobotDataset(v3_copy).episode(1, SO100_JOINT_NAMES)


def test_joints_the_dataset_does_not_have_are_named(v3):
    with pytest.raises(DatasetError, match=r"episode 0: observation.state has no value for the joints \['elbow'\]"):
        LeRobotDataset(v3).episode(0, ("shoulder_pan", "elbow"))
