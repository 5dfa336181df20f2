"""smolvla.recording writes episodes that smolvla.training reads back exactly as a bag written independently."""

from __future__ import annotations

import os

import numpy as np
import pytest
from rosbag_files import (
    ACTION,
    FRONT,
    JOINTS,
    MS,
    STORAGES,
    T0,
    TS,
    WRIST,
    action_value,
    serialized_messages,
    state_value,
    wrist_rgb,
)
from rosbags.rosbag2 import Writer

from smolvla.recording import (
    EpisodeWriter,
    RecordingError,
    check_output_dir,
    check_topic_name,
    next_episode_index,
)
from smolvla.training import Topics, load_episode

TOPICS = Topics(cameras=(FRONT, WRIST))
TASK = "pick up the cube"


def record(output_dir, *, task: str | None = TASK, storage: str = "mcap"):
    """Record the default synthetic episode through EpisodeWriter, as the recorder node does; also returns the
    messages it wrote."""
    messages = serialized_messages()
    writer = EpisodeWriter(
        output_dir, {topic: msgtype for _, topic, msgtype, _ in messages}, task=task, storage=storage
    )
    written = [
        (stamp, topic, msgtype, data) for stamp, topic, msgtype, data in messages if writer.write(topic, data, stamp)
    ]
    return writer, writer.close(), written


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorded_episode_reads_back_like_an_independently_written_bag(tmp_path, storage):
    writer, closed, written = record(check_output_dir(tmp_path / "episodes"), storage=storage)
    assert closed.path == tmp_path / "episodes" / "episode_0001" and writer.name == "episode_0001"
    # Written from the first command on (40 ms, the last topic to start): the 4 joint states, the image and the
    # wrist image before it are not.
    assert written[0][0] == T0 + 40 * MS and written[0][1] == ACTION
    assert closed.counts == {JOINTS: 101 - 5, FRONT: 30 - 1, WRIST: 10 - 1, ACTION: 29}
    assert closed.silent_topics == ()
    assert (closed.path / "task.txt").read_text() == TASK + "\n"
    assert sorted(os.listdir(tmp_path / "episodes")) == ["episode_0001"]  # the partial directory is gone

    recorded = load_episode(closed.path, TOPICS)  # the task comes from task.txt
    assert recorded.task == TASK
    # Frames are command ticks from when every input has a written message (the second wrist image, at 130 ms):
    # the command at 140 ms, whose label is the next command (173.3 ms).
    assert recorded.times[0] == T0 + 140 * MS
    np.testing.assert_allclose(recorded.state[0], state_value(14), rtol=1e-6)
    np.testing.assert_allclose(recorded.actions[0], action_value(4), rtol=1e-6)
    assert tuple(recorded.images[1][recorded.image_index[0, 1]][0, 0]) == wrist_rgb(1)

    # The same messages written by rosbags directly, in the layout of `ros2 bag record`, read back identically.
    reference_path = tmp_path / "reference"
    with Writer(reference_path, version=9, storage_plugin=STORAGES[storage]) as bag:
        connections = {}
        for stamp, topic, msgtype, data in written:
            if topic not in connections:
                connections[topic] = bag.add_connection(topic, msgtype, typestore=TS)
            bag.write(connections[topic], stamp, data)
    reference = load_episode(reference_path, TOPICS, task=TASK)
    for field in ("times", "image_index", "image_stamps", "state", "actions"):
        np.testing.assert_array_equal(getattr(recorded, field), getattr(reference, field))
    for mine, theirs in zip(recorded.images, reference.images, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_numbering_continues_after_closed_and_partial_episodes_and_never_overwrites(tmp_path):
    _, first, _ = record(tmp_path)
    (tmp_path / ".episode_0002.partial").mkdir()  # left by a crash
    (tmp_path / "episode_0007_notes").mkdir()  # not an episode name
    (tmp_path / "unrelated.txt").write_text("x")
    assert next_episode_index(tmp_path) == 3
    _, second, _ = record(tmp_path, task=None)
    assert second.path.name == "episode_0003" and not (second.path / "task.txt").exists()
    assert first.path.name == "episode_0001" and (first.path / "metadata.yaml").is_file()
    assert load_episode(second.path, TOPICS, task="other task").task == "other task"


def test_open_episode_lives_under_a_partial_name_until_closed(tmp_path):
    messages = serialized_messages()
    writer = EpisodeWriter(tmp_path, {topic: msgtype for _, topic, msgtype, _ in messages}, task=TASK)
    for stamp, topic, _, data in messages[:50]:
        writer.write(topic, data, stamp)
    # What a crash at this moment leaves: no bag under the final name, and nothing smolvla-train takes for a bag.
    assert sorted(os.listdir(tmp_path)) == [".episode_0001.partial"]
    assert not (tmp_path / ".episode_0001.partial" / "episode_0001" / "metadata.yaml").exists()
    assert next_episode_index(tmp_path) == 2
    closed = writer.close()
    assert sorted(os.listdir(tmp_path)) == ["episode_0001"] and closed.path == tmp_path / "episode_0001"
    with pytest.raises(RecordingError, match="closed"):
        writer.write(FRONT, messages[0][3], messages[0][0])


def test_discarded_episode_leaves_nothing_and_its_number_is_reused(tmp_path):
    messages = serialized_messages()
    topics = {topic: msgtype for _, topic, msgtype, _ in messages}
    record(tmp_path)
    writer = EpisodeWriter(tmp_path, topics, task=TASK)
    assert writer.name == "episode_0002"
    for stamp, topic, _, data in messages[:50]:  # started: a bag is being written
        writer.write(topic, data, stamp)
    writer.discard()
    assert os.listdir(tmp_path) == ["episode_0001"]
    with pytest.raises(RecordingError, match="closed"):
        writer.write(FRONT, messages[0][3], messages[0][0])
    with pytest.raises(RecordingError, match="already closed"):
        writer.discard()
    again = EpisodeWriter(tmp_path, topics)
    assert again.name == "episode_0002"
    again.discard()


def test_bag_starts_when_every_topic_has_sent_and_an_episode_that_never_started_is_not_kept(tmp_path):
    topics = {FRONT: "sensor_msgs/msg/Image", JOINTS: "sensor_msgs/msg/JointState"}
    messages = [m for m in serialized_messages() if m[1] in topics]  # joint states from 0 ms, images from 20 ms
    writer = EpisodeWriter(tmp_path, topics)
    written = [writer.write(topic, data, stamp) for stamp, topic, _, data in messages[:5]]
    assert [topic for _, topic, _, _ in messages[:5]] == [JOINTS] * 3 + [FRONT, JOINTS]
    assert written == [False, False, False, True, True]  # from the first image on, everything is written
    closed = writer.close()
    assert closed.counts == {FRONT: 1, JOINTS: 1} and closed.silent_topics == ()
    assert closed.path == tmp_path / "episode_0001"

    writer = EpisodeWriter(tmp_path, topics)
    for stamp, topic, _, data in messages:
        if topic == FRONT:
            writer.write(topic, data, stamp)
    closed = writer.close()
    assert closed.path is None and closed.silent_topics == (JOINTS,) and closed.counts[FRONT] == 0
    assert os.listdir(tmp_path) == ["episode_0001"]


@pytest.mark.parametrize(
    ("topics", "task", "storage", "error"),
    [
        ({"camera/front": "sensor_msgs/msg/Image"}, None, "mcap", "must be a full name"),
        ({"/camera//front": "sensor_msgs/msg/Image"}, None, "mcap", "not a valid ROS 2 name"),
        ({"/camera/2d": "sensor_msgs/msg/Image"}, None, "mcap", "not a valid ROS 2 name"),
        ({"/camera/front": "sensor_msgs/msg/Nope"}, None, "mcap", "unknown message type"),
        ({}, None, "mcap", "no topics"),
        ({"/camera/front": "sensor_msgs/msg/Image"}, "  ", "mcap", "task: instruction is empty"),
        ({"/camera/front": "sensor_msgs/msg/Image"}, "a\x07b", "mcap", "control characters"),
        ({"/camera/front": "sensor_msgs/msg/Image"}, None, "bag", "storage must be one of"),
    ],
)
def test_invalid_episodes_are_refused_before_anything_is_written(tmp_path, topics, task, storage, error):
    with pytest.raises(RecordingError, match=error):
        EpisodeWriter(tmp_path, topics, task=task, storage=storage)
    assert os.listdir(tmp_path) == []


def test_topic_names(tmp_path):
    assert check_topic_name("/camera/wrist/image_raw/compressed") == "/camera/wrist/image_raw/compressed"
    for bad in ("/", "/a/", "/a b", "/a-b", ""):
        with pytest.raises(RecordingError):
            check_topic_name(bad)


def test_output_dir_is_created_and_must_be_a_writable_directory(tmp_path):
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecordingError, match="is not a directory"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(RecordingError, match="cannot be created"):
        check_output_dir(tmp_path / "file" / "sub")
    with pytest.raises(RecordingError, match="empty"):
        check_output_dir(" ")
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o500)
    if os.access(read_only, os.W_OK):  # root ignores permissions
        pytest.skip("running as root: a read-only directory is writable")
    with pytest.raises(RecordingError, match="not writable"):
        check_output_dir(read_only)
