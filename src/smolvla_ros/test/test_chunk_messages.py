import numpy as np
import pytest
from rclpy.serialization import serialize_message

from smolvla_ros.chunk_messages import (
    actions_from_trajectory,
    actions_to_trajectory,
    chunk_from_msg,
    chunk_to_msg,
    duration_to_seconds,
    max_chunk_message_bytes,
    seconds_to_duration,
    seconds_to_time,
    time_to_seconds,
)

NAMES = ["shoulder_pan", "shoulder_lift", "gripper"]


def make(actions):
    return chunk_to_msg(
        actions,
        NAMES,
        request_id=4,
        chunk_id=9,
        first_tick=31,
        control_period=0.02,
        capture_stamp=seconds_to_time(5.25),
        inference_latency=0.4,
        instruction="stack",
    )


def test_round_trip_keeps_values_and_tick_convention():
    actions = np.arange(12, dtype=float).reshape(4, 3) / 7
    msg = make(actions)
    assert [duration_to_seconds(p.time_from_start) for p in msg.trajectory.points] == pytest.approx(
        [0.0, 0.02, 0.04, 0.06]
    )
    data = chunk_from_msg(msg)
    np.testing.assert_array_equal(data.actions, actions)
    assert data.joint_names == tuple(NAMES)
    assert (data.request_id, data.chunk_id, data.first_tick) == (4, 9, 31)
    assert data.control_period == pytest.approx(0.02)
    assert data.capture_time == pytest.approx(5.25)
    assert data.instruction == "stack"


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="shape"):
        make(np.zeros((4, 2)))
    msg = make(np.zeros((3, 3)))
    msg.trajectory.points[1].positions = [0.0, 0.0]
    with pytest.raises(ValueError, match=r"3 joint names but points with \[2, 3\]"):
        chunk_from_msg(msg)
    msg.trajectory.points = []
    with pytest.raises(ValueError, match="no trajectory points"):
        chunk_from_msg(msg)


def test_time_conversions():
    assert time_to_seconds(seconds_to_time(1.999999999)) == pytest.approx(1.999999999)
    d = seconds_to_duration(-0.25)
    assert (d.sec, d.nanosec) == (-1, 750_000_000)
    assert duration_to_seconds(d) == pytest.approx(-0.25)


def test_previous_actions_round_trip_including_none():
    actions = np.arange(6, dtype=float).reshape(2, 3) / 3
    names, back = actions_from_trajectory(actions_to_trajectory(actions, NAMES, 0.02))
    assert names == tuple(NAMES)
    np.testing.assert_array_equal(back, actions)
    names, empty = actions_from_trajectory(actions_to_trajectory(np.zeros((0, 3)), NAMES, 0.02))
    assert empty.shape == (0, 3)


def test_the_size_bound_holds_every_chunk_of_at_most_max_points_and_refuses_far_longer_ones():
    """The executor refuses a chunk message by its serialized size before converting it: a chunk of max_points
    points with every array filled, long names and the longest instruction fits; ten times as many points do not."""
    names = [f"joint_{'x' * 100}_{j}" for j in range(len(NAMES))]
    msg = chunk_to_msg(
        np.zeros((200, len(names))),
        names,
        request_id=2**63 - 1,
        chunk_id=2**63 - 1,
        first_tick=2**63 - 1,
        control_period=0.02,
        capture_stamp=seconds_to_time(5.25),
        inference_latency=0.4,
        instruction="ü" * 512,
    )
    for point in msg.trajectory.points:
        point.velocities = point.accelerations = point.effort = [1.0] * len(names)
    bound = max_chunk_message_bytes(200, len(names))
    assert len(serialize_message(msg)) <= bound
    msg.trajectory.points = msg.trajectory.points * 10
    assert len(serialize_message(msg)) > bound
