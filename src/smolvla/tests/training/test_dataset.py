"""Episodes from real rosbag2 files: reading, frame alignment, action chunks, statistics, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbag_files import (
    ACTION,
    FRONT,
    JOINTS,
    MS,
    T0,
    WRIST,
    action_value,
    default_streams,
    front_rgb,
    state_value,
    ticks,
    wrist_rgb,
    write_bag,
)

from smolvla.training import BagError, EpisodeDataset, Topics, dataset_statistics, load_episode
from smolvla.training.dataset import MIN_STD

TOPICS = Topics(cameras=(FRONT, WRIST))
TASK = "pick up the cube"


def _newest_at_or_before(stamps: list[int], t: int) -> int:
    """Index of the newest stamp <= t, by the definition (a linear scan)."""
    return max(i for i, stamp in enumerate(stamps) if stamp <= t)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_frames_are_the_command_ticks_and_labels_start_at_the_next_tick(tmp_path, storage):
    bag = write_bag(tmp_path / "ep", storage=storage)
    streams = default_streams()
    episode = load_episode(bag, TOPICS, task=TASK)

    # Frames: the commands (one per control tick) from the first one at which every input has a sample (the
    # wrist camera starts at 30 ms: command 0 at 40 ms) to the first input to end (the wrist camera, 930 ms).
    commands = streams[ACTION]
    first_end = min(streams[topic][-1] for topic in (FRONT, WRIST, JOINTS))
    assert episode.times.tolist() == [t for t in commands if t <= first_end]
    assert len(episode) == 27 and episode.task == TASK

    for k, t in enumerate(episode.times.tolist()):
        i = _newest_at_or_before(streams[JOINTS], t)
        np.testing.assert_allclose(episode.state[k], state_value(i), rtol=1e-6)  # reordered from shuffled names
        # The observation captured at tick k yields the chunk for ticks k + 1 ...: its first action is the
        # command of the next tick, never the one already in force.
        np.testing.assert_allclose(episode.actions[k], action_value(k + 1), rtol=1e-6)
        for c, (topic, colour) in enumerate(((FRONT, front_rgb), (WRIST, wrist_rgb))):
            j = _newest_at_or_before(streams[topic], t)
            assert episode.image_stamps[k, c] == streams[topic][j]
            image = episode.images[c][episode.image_index[k, c]]
            assert image.shape == (24, 32, 3) and image.dtype == np.uint8
            assert tuple(image[5, 7]) == colour(j)  # bgr8 and PNG both come out RGB

    # Hand-checked frames: frame 1 is the command at 73.3 ms, which sees the state of 70 ms; the 10 Hz wrist
    # camera is shown for three frames.
    np.testing.assert_allclose(episode.state[1], state_value(7), rtol=1e-6)
    wrist_shown = [int(episode.images[1][episode.image_index[k, 1]][0, 0, 0]) for k in range(7)]
    assert wrist_shown == [0, 0, 0, 1, 1, 1, 2]
    # Each wrist message is decoded once however many frames show it.
    assert len(episode.images[1]) == len(np.unique(episode.image_index[:, 1]))


def test_inputs_are_placed_at_their_header_stamps_not_their_receive_times(tmp_path):
    """Two clocks: a camera whose frames reach the recorder 50 ms after capture. The policy node selects frames by
    header stamp, so a frame's image is the newest *captured* at or before its tick, as at run time; a joint state
    with an empty header falls back to its receive time, as in the policy node."""
    delay = 50 * MS
    bag = write_bag(tmp_path / "ep", header_delays={FRONT: delay, JOINTS: None})
    streams = default_streams()
    episode = load_episode(bag, TOPICS, task=TASK)
    captured = [t - delay for t in streams[FRONT]]
    for k, t in enumerate(episode.times.tolist()):
        j = _newest_at_or_before(captured, t)
        assert episode.image_stamps[k, 0] == captured[j]
        assert tuple(episode.images[0][episode.image_index[k, 0]][5, 7]) == front_rgb(j)
        np.testing.assert_allclose(episode.state[k], state_value(_newest_at_or_before(streams[JOINTS], t)))
    # By receive time the frame at 140 ms would show image 3 (received at 120 ms); captured by then: image 5
    # (captured at 136.7 ms, received at 186.7 ms).
    k = episode.times.tolist().index(commands_at(140))
    assert tuple(episode.images[0][episode.image_index[k, 0]][5, 7]) == front_rgb(5)


def commands_at(ms: float) -> int:
    """Log time of the command tick at `ms` (commands every 33.3 ms from 40 ms)."""
    return min(default_streams()[ACTION], key=lambda t: abs(t - (T0 + ms * MS)))


def test_commands_at_another_rate_than_the_frame_rate_are_refused(tmp_path):
    bag = write_bag(tmp_path / "ep")
    with pytest.raises(BagError, match=rf"{ACTION} comes at 30.0 Hz, not the frame rate 50 Hz"):
        load_episode(bag, TOPICS, task=TASK, fps=50)


def test_trajectory_actions_are_reordered_by_joint_name(tmp_path):
    bag = write_bag(tmp_path / "ep", storage="mcap", trajectory=True)
    episode = load_episode(bag, TOPICS, task=TASK)
    for k in range(len(episode)):
        np.testing.assert_allclose(episode.actions[k], action_value(k + 1), rtol=1e-6)


def test_chunks_are_padded_with_the_last_action_past_the_episode_end(tmp_path):
    episode = load_episode(write_bag(tmp_path / "ep"), TOPICS, task=TASK)
    dataset = EpisodeDataset([episode], chunk_size=10, n_slots=3, image_size=(16, 16))
    assert len(dataset) == len(episode) == 27

    first = dataset[0]
    assert not first["action_is_pad"].any()
    torch.testing.assert_close(first["actions"], torch.from_numpy(episode.actions[:10]))
    assert first["images"].shape == (3, 3, 16, 16) and first["images"].dtype == torch.float32
    assert first["image_mask"].tolist() == [True, True, False]  # third slot: no camera, masked
    assert float(first["images"][2].abs().max()) == 0.0
    assert first["task"] == TASK and first["state"].shape == (6,)

    near_end = dataset[24]  # frames 24, 25, 26 are real
    assert near_end["action_is_pad"].tolist() == [False] * 3 + [True] * 7
    torch.testing.assert_close(near_end["actions"][:3], torch.from_numpy(episode.actions[24:27]))
    last = torch.from_numpy(episode.actions[-1])
    assert all(torch.equal(row, last) for row in near_end["actions"][3:])

    final = dataset[26]
    assert final["action_is_pad"].tolist() == [False] + [True] * 9
    assert all(torch.equal(row, last) for row in final["actions"])


def test_cameras_land_in_the_slots_of_their_names(tmp_path):
    """A checkpoint that lists its wrist camera first gets the wrist topic's images in that slot, whatever order
    the cameras are given in (the mapping the policy node uses)."""
    from smolvla.camera_mapping import map_cameras

    features = ("observation.images.wrist", "observation.images.side", "observation.images.front")
    mapping = map_cameras([f"front={FRONT}", "side=none", f"wrist={WRIST}"], features)
    assert mapping.streams == (WRIST, FRONT) and mapping.slots == (0, 2)
    bag = write_bag(tmp_path / "ep")
    episode = load_episode(bag, Topics(cameras=mapping.streams), task=TASK)
    sample = EpisodeDataset([episode], chunk_size=4, n_slots=3, image_size=(16, 16), camera_slots=mapping.slots)[5]
    in_order = EpisodeDataset([load_episode(bag, TOPICS, task=TASK)], chunk_size=4, n_slots=3, image_size=(16, 16))[5]
    assert sample["image_mask"].tolist() == [True, False, True]
    torch.testing.assert_close(sample["images"][0], in_order["images"][1])  # wrist
    torch.testing.assert_close(sample["images"][2], in_order["images"][0])  # front
    assert not torch.equal(in_order["images"][0], in_order["images"][1])
    with pytest.raises(ValueError, match="must give 2 distinct image slots"):
        EpisodeDataset([episode], chunk_size=4, n_slots=3, image_size=(16, 16), camera_slots=(1, 1))


def test_images_are_resized_as_the_model_resizes(tmp_path):
    """Pre-resizing to the model's size makes the model's own resize a no-op, so training sees what inference
    sees (preprocess_images resizes the raw image once)."""
    from smolvla.policy.processing import resize_with_pad

    episode = load_episode(write_bag(tmp_path / "ep"), TOPICS, task=TASK)
    images = EpisodeDataset([episode], chunk_size=4, n_slots=2, image_size=(40, 40))[3]["images"]
    again = resize_with_pad(images, 40, 40)
    torch.testing.assert_close(again, images, rtol=0, atol=0)
    # 32x24 fits 40 wide -> 40x30, padded on top with 10 rows of zeros.
    assert float(images[:, :, :10].abs().max()) == 0.0 and float(images[:, :, 10:].min()) > 0.0


def test_statistics_are_mean_and_std_over_all_frames(tmp_path):
    streams = default_streams(600.0)
    episodes = [
        load_episode(write_bag(tmp_path / "a"), TOPICS, task=TASK),
        load_episode(write_bag(tmp_path / "b", streams, storage="mcap"), TOPICS, task=TASK),
    ]
    stats = dataset_statistics(episodes)
    state = np.concatenate([e.state for e in episodes]).astype(np.float64)
    actions = np.concatenate([e.actions for e in episodes]).astype(np.float64)
    assert len(state) == 27 + 15
    for got, expected in (
        (stats.state_mean, state.mean(0)),
        (stats.state_std, state.std(0)),
        (stats.action_mean, actions.mean(0)),
        (stats.action_std, actions.std(0)),
    ):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    # Every joint moves alike here: the spread of the first one by hand.
    first_states = [
        state_value(_newest_at_or_before(s, t))[0]
        for e, s in zip(episodes, (default_streams()[JOINTS], streams[JOINTS]), strict=True)
        for t in e.times.tolist()
    ]
    assert stats.state_std[0].item() == pytest.approx(np.std(first_states), rel=1e-6)


def test_a_joint_that_never_moved_gets_a_floored_std(tmp_path):
    episode = load_episode(write_bag(tmp_path / "a"), TOPICS, task=TASK)
    episode.state[:, 4] = 0.25  # the wrist roll was left alone
    episode.actions[:, 4] = 0.25
    stats = dataset_statistics([episode])
    assert stats.state_std[4].item() == pytest.approx(MIN_STD) and stats.action_std[4].item() == pytest.approx(MIN_STD)
    assert stats.state_mean[4].item() == pytest.approx(0.25)
    assert stats.state_std[0].item() > MIN_STD  # moving joints keep their own spread
    np.testing.assert_allclose(stats.state_std[0].item(), episode.state[:, 0].astype(np.float64).std(), rtol=1e-6)


def test_task_file_in_the_bag_overrides_the_run_task(tmp_path):
    bag = write_bag(tmp_path / "ep")
    with pytest.raises(BagError, match="no task"):
        load_episode(bag, TOPICS)
    (bag / "task.txt").write_text("  stack the red\nblock \n")
    assert load_episode(bag, TOPICS, task=TASK).task == "stack the red block"
    (bag / "task.txt").write_text("   ")
    with pytest.raises(BagError, match="task.txt: instruction is empty"):
        load_episode(bag, TOPICS, task=TASK)


def test_missing_topic_names_bag_and_topic(tmp_path):
    streams = default_streams()
    del streams[WRIST]
    bag = write_bag(tmp_path / "ep", streams)
    with pytest.raises(BagError, match=rf"{bag}: camera topic {WRIST} is not in the bag"):
        load_episode(bag, TOPICS, task=TASK)
    with pytest.raises(BagError, match=r"action topic /other/commands is not in the bag"):
        load_episode(bag, Topics(cameras=(FRONT,), action="/other/commands"), task=TASK)


def test_wrong_message_type_is_refused(tmp_path):
    bag = write_bag(tmp_path / "ep")
    with pytest.raises(BagError, match=rf"camera topic {JOINTS} has type sensor_msgs/msg/JointState"):
        load_episode(bag, Topics(cameras=(JOINTS,), joint_state="/other"), task=TASK)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_unreadable_bag_names_the_bag(tmp_path, storage):
    bag = write_bag(tmp_path / "ep", storage=storage)
    storage_file = next(p for p in bag.iterdir() if p.name != "metadata.yaml")
    storage_file.write_bytes(b"this is not a bag" * 100)
    with pytest.raises(BagError, match=rf"{bag}: cannot (open the bag|read topic)"):
        load_episode(bag, TOPICS, task=TASK)
    with pytest.raises(BagError, match="not a rosbag2 bag directory"):
        load_episode(tmp_path, TOPICS, task=TASK)


def test_input_older_than_max_age_is_an_error_naming_topic_and_time(tmp_path):
    streams = default_streams()
    # The front camera stalls from 400 to 800 ms.
    streams[FRONT] = [t for t in streams[FRONT] if not T0 + 400 * MS < t < T0 + 800 * MS]
    bag = write_bag(tmp_path / "ep", streams)
    with pytest.raises(BagError, match=rf"{FRONT} has no sample within 0.250 s before the frame at 0.640 s"):
        load_episode(bag, TOPICS, task=TASK)
    # A larger max age accepts the gap.
    assert len(load_episode(bag, TOPICS, task=TASK, max_age=0.5)) == 27


def test_inputs_that_never_overlap_are_refused(tmp_path):
    streams = default_streams()
    streams[ACTION] = ticks(2000, 1000 / 30, 2500)
    bag = write_bag(tmp_path / "ep", streams)
    with pytest.raises(BagError, match="no command falls where every input has a sample"):
        load_episode(bag, TOPICS, task=TASK)


def test_reading_leaves_the_bag_unchanged(tmp_path):
    bag = write_bag(tmp_path / "ep", storage="sqlite3")
    (bag / "task.txt").write_text(TASK)

    def digest():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(bag.iterdir())}

    before = digest()
    load_episode(bag, TOPICS)
    assert digest() == before


def test_command_of_the_wrong_length_names_topic_and_message(tmp_path):
    bag = write_bag(tmp_path / "ep")
    five = Topics(
        cameras=(FRONT,), joint_names=("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "gripper")
    )
    with pytest.raises(BagError, match=rf"{ACTION} message 0 at 0.040 s: command has 6 values, expected one per joint"):
        load_episode(bag, five, task=TASK)


def _rss_anon() -> int:
    """Bytes of the process's anonymous resident memory (its heap: not the page cache of mapped files)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))


def _synthetic_episode(e: int, frames: int = 40, size: int = 64):
    from smolvla.training import Episode

    times = np.arange(frames, dtype=np.int64) * 33_333_333
    images = tuple(np.full((frames, size, size, 3), (7 * e + c) % 256, np.uint8) for c in range(2))
    index = np.repeat(np.arange(frames)[:, None], 2, axis=1)
    state = np.full((frames, 6), e, np.float32)
    return Episode(Path(f"ep{e}"), TASK, times, images, index, np.repeat(times[:, None], 2, 1), state, state + 0.5)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_memory_stays_flat_with_the_frame_cache_on_disk(tmp_path):
    """24 episodes (24 MB of decoded frames, 24 MB resized) read one at a time into a frame cache on disk, then
    every sample read twice: the process's own memory does not grow with them (the store in memory would hold at
    least the 24 MB of resized frames)."""
    import gc

    def build(count, cache):
        return EpisodeDataset(
            (_synthetic_episode(e) for e in range(count)),
            chunk_size=10,
            n_slots=2,
            image_size=(64, 64),
            frame_cache=cache,
        )

    warm = build(2, tmp_path / "warm-up")  # the first resize and sample allocate torch's own buffers
    [warm[i] for i in range(len(warm))]
    gc.collect()
    before = _rss_anon()
    dataset = build(24, tmp_path / "cache")
    for _ in range(2):
        for i in range(len(dataset)):
            sample = dataset[i]
    gc.collect()
    grown = _rss_anon() - before
    assert grown < 8e6, f"memory grew by {grown / 1e6:.1f} MB"
    assert sum(f.stat().st_size for f in (tmp_path / "cache").glob("camera_*.u8")) == 24 * 40 * 2 * 3 * 64 * 64
    assert all(episode.images == () for episode in dataset.episodes)  # decoded frames are not kept
    assert float(sample["images"][1, 0, 0, 0]) == pytest.approx((7 * 23 + 1) / 255)  # the last episode's wrist
    assert float(dataset[40 * 5]["images"][0, 0, 0, 0]) == pytest.approx(35 / 255)  # episode 5's front camera
    # Another process (a second rank of a distributed run) opens the same cache without the episodes.
    reopened = EpisodeDataset.open_cache(tmp_path / "cache")
    assert len(reopened) == len(dataset) and reopened.camera_shapes == dataset.camera_shapes
    for index in (0, 40 * 5 + 3, len(dataset) - 1):
        expected, got = dataset[index], reopened[index]
        assert got["task"] == expected["task"]
        for key in ("images", "image_mask", "state", "actions", "action_is_pad"):
            assert torch.equal(got[key], expected[key]), key
    assert [e.path for e in reopened.episodes] == [e.path for e in dataset.episodes]
    with pytest.raises(ValueError, match="frame cache .* cannot be opened"):
        EpisodeDataset.open_cache(tmp_path / "warm-up" / "missing")
