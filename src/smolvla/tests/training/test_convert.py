"""LeRobotDataset v3 out: `smolvla-convert` writes bags as a dataset whose samples are the bags' samples."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import torch
from rosbag_files import FRONT, WRIST

from smolvla.robot_interface import SO100_JOINT_NAMES, RobotInterface
from smolvla.training import EpisodeDataset, Topics, load_episode
from smolvla.training.convert import main
from smolvla.training.lerobot_dataset import LeRobotDataset

TASK = "pick up the cube"
CAMERAS = [f"front={FRONT}", f"wrist={WRIST}"]


def _samples(episodes):
    dataset = EpisodeDataset(episodes, chunk_size=8, n_slots=3, image_size=(24, 32), camera_slots=(0, 2))
    return [dataset[i] for i in range(len(dataset))]


def _convert(bags, output, codec):
    args = [str(bags), "--output", str(output), "--task", TASK, "--cameras", *CAMERAS, "--video-codec", codec]
    assert main(args) == 0
    return LeRobotDataset(output)


def test_bag_to_v3_to_samples_equals_bag_to_samples(bags, tmp_path):
    dataset = _convert(bags, tmp_path / "v3", "lossless")
    topics = Topics(cameras=(FRONT, WRIST))
    from_bags = [load_episode(bags / f"episode_{e}", topics, task=TASK) for e in (0, 1)]
    from_v3 = [dataset.episode(e, SO100_JOINT_NAMES) for e in (0, 1)]
    assert [len(e) for e in from_v3] == [len(e) for e in from_bags] == [27, 18]
    for bag_sample, v3_sample in zip(_samples(from_bags), _samples(from_v3), strict=True):
        assert bag_sample.keys() == v3_sample.keys()
        for key, value in bag_sample.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, v3_sample[key]), key
            else:
                assert value == v3_sample[key]
    # Frame k is at k / fps: the frame grid, not the bag's (slightly irregular) tick times.
    np.testing.assert_allclose(from_v3[1].times / 1e9, np.arange(18) / 30, atol=1e-6)

    # What LeRobot reads: the format facts of info.json, tasks as the pandas index, LeRobot's statistics.
    info = json.loads((dataset.root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 30 and info["total_frames"] == 45
    assert info["features"]["observation.state"]["names"] == list(SO100_JOINT_NAMES)
    assert info["features"]["observation.images.front"]["shape"] == [24, 32, 3]
    tasks = pq.read_table(dataset.root / "meta" / "tasks.parquet")
    pandas_meta = json.loads(tasks.schema.metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["__index_level_0__"]
    assert tasks.column("__index_level_0__").to_pylist() == [TASK, "put the cube on the target"]
    stats = json.loads((dataset.root / "meta" / "stats.json").read_text())
    actions = np.concatenate([e.actions for e in from_bags]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], actions.std(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["q50"], np.quantile(actions, 0.5, axis=0), rtol=1e-6)
    assert stats["action"]["count"] == [45] and np.shape(stats["observation.images.front"]["mean"]) == (3, 1, 1)
    assert dataset.interface == RobotInterface(
        SO100_JOINT_NAMES, ("radians",) * 6, 30.0, ("observation.images.front", "observation.images.wrist")
    )


def test_lerobots_own_codec_keeps_the_frames_close(bags, tmp_path):
    """AV1 at LeRobot's settings is lossy: same frames and timing, pixels within a few levels."""
    dataset = _convert(bags, tmp_path / "v3", "av1")
    bag = load_episode(bags / "episode_0", Topics(cameras=(FRONT, WRIST)), task=TASK)
    episode = dataset.episode(0, SO100_JOINT_NAMES)
    np.testing.assert_array_equal(episode.actions, bag.actions)
    for c in range(2):
        shown = bag.images[c][bag.image_index[:, c]].astype(np.int16)
        assert np.abs(episode.images[c].astype(np.int16) - shown).mean() < 3.0


def test_convert_refuses_what_it_cannot_write(bags, tmp_path, capsys):
    assert main([str(bags), "--output", str(tmp_path / "a"), "--cameras", FRONT]) == 2
    assert "give NAME=TOPIC" in capsys.readouterr().err
    assert (
        main([str(bags), "--output", str(tmp_path / "b"), "--task", TASK, "--cameras", *CAMERAS, "--fps", "29.5"]) == 2
    )
    assert "LeRobotDataset needs a whole number of frames per second, got 29.5" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    assert main([str(bags), "--output", str(tmp_path / "c"), "--task", TASK, "--cameras", *CAMERAS]) == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err
    assert main([str(bags / "episode_0"), "--output", str(bags / "episode_0" / "v3"), "--cameras", *CAMERAS]) == 2
    assert "bags are never written to" in capsys.readouterr().err


def test_episodes_past_the_video_file_size_start_new_files(bags, tmp_path, monkeypatch):
    """LeRobot's layout: a video file that reached video_files_size_in_mb takes no further episode; the reader
    follows the file indices."""
    import smolvla.training.lerobot_writer as writer

    monkeypatch.setattr(writer, "VIDEO_FILE_MB", 0)
    dataset = _convert(bags, tmp_path / "v3", "lossless")
    assert [entry.videos["observation.images.front"].file_index for entry in dataset.episodes.values()] == [0, 1]
    assert dataset.episodes[1].videos["observation.images.front"].from_timestamp == 0.0
    bag = load_episode(bags / "episode_1", Topics(cameras=(FRONT, WRIST)), task=TASK)
    episode = dataset.episode(1, SO100_JOINT_NAMES)
    for c in range(2):
        np.testing.assert_array_equal(episode.images[c], bag.images[c][bag.image_index[:, c]])
