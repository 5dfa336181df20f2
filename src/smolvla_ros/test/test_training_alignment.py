"""A recorded training sample means exactly what the executor does with the model's output.

The real graph (simulated arm in lock-step, the expert behind the chunk interface, the executor, the recorder) runs
in its own processes; this test listens to the executor's own log of its ticks (its chunk requests: tick k and its
capture time, and its tick log: each tick's command stamped with the tick's capture time), to the chunks and to the
inputs, then builds training samples from the recorded bag with `smolvla.training` and checks, per chunk request:
- a frame of the episode has exactly the request's capture time;
- its state and images are the samples the policy node's own selection (`smolvla.observation.select_samples`) picks
  for that capture time from what this test received: by header stamp, never a later one;
- its action chunk is what the executor then played: the chunk computed for that request, from tick k + 1 on.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from smolvla.observation import SampleHistory, order_joint_positions, select_samples
from smolvla.training import Topics, load_episode
from smolvla_msgs.msg import ActionChunk, ChunkRequest
from smolvla_ros.chunk_messages import chunk_from_msg, time_to_seconds
from smolvla_ros.demo import TICK_TOPIC
from smolvla_ros.launcher import GraphOptions, Launcher, graph_nodes

pytestmark = pytest.mark.ros

CAMERAS = ("/camera/front/image_raw", "/camera/wrist/image_raw")
JOINTS = Topics().joint_names
NS = 1_000_000_000
RATE = 10.0


def _ns(seconds: float) -> int:
    return round(seconds * NS)


def test_recorded_samples_match_the_executors_ticks_and_the_chunks_it_played(ros, tmp_path):
    options = GraphOptions(
        sim=True,
        policy="expert",
        # 10 Hz: a loaded test machine still ticks on time (every command must be one tick of the frame rate).
        control_rate=RATE,
        record_dir=tmp_path / "episodes",
        task="pick up the cube and place it on the green target",
        extra={
            "robot": {"lockstep": True, "image_width": 48, "image_height": 48, "respawn_delay": -1.0, "seed": 1000},
            "policy": {"latency": 0.0},
            # latest_only and no velocity clamp: the actions the executor plays after a chunk arrives are exactly
            # that chunk's (the expert's jaw closes faster than the default gripper limit).
            "executor": {"aggregation": "latest_only", "max_velocity": 100.0, "max_acceleration": 100000.0},
            "recorder": {"action_topic": TICK_TOPIC, "action_type": "joint_state"},
        },
    )
    node = ros.node("alignment_probe")
    requests: list[ChunkRequest] = []
    chunks: dict[int, tuple[float, object]] = {}  # request id -> (receive time, chunk)
    histories = {topic: SampleHistory(topic, 3600.0, max_samples=100_000) for topic in (*CAMERAS, "/joint_states")}
    node.create_subscription(ChunkRequest, "/smolvla/chunk_request", requests.append, 100)
    node.create_subscription(
        ActionChunk, "/smolvla/action_chunk", lambda m: chunks.setdefault(m.request_id, (time.time(), m)), 100
    )
    ticks: list[JointState] = []
    node.create_subscription(JointState, TICK_TOPIC, ticks.append, 100)
    for topic in CAMERAS:
        node.create_subscription(
            Image,
            topic,
            lambda m, t=topic: histories[t].add(time_to_seconds(m.header.stamp), None),
            qos_profile_sensor_data,
        )

    def on_state(msg: JointState) -> None:
        positions = order_joint_positions(msg.name, msg.position, JOINTS)
        histories["/joint_states"].add(time_to_seconds(msg.header.stamp), positions)

    node.create_subscription(JointState, "/joint_states", on_state, qos_profile_sensor_data)
    stop = node.create_client(Trigger, "/smolvla_recorder/stop_episode")

    with Launcher(graph_nodes(options), output=lambda line: None) as launcher:
        ros.wait_for(lambda: len(requests) >= 3 and stop.service_is_ready(), 120.0, "the executor's chunk requests")
        first_request = len(requests)
        ros.wait_for(lambda: len(requests) >= first_request + 5, 60.0, "five more chunk requests")
        assert launcher.running()
        response = ros.call(stop, Trigger.Request(), timeout=20.0)
        assert response.success, response.message
        ros.spin_for(0.5)
    bag = tmp_path / "episodes" / "episode_0001"
    episode = load_episode(bag, Topics(action=TICK_TOPIC), fps=RATE, max_age=1.0)  # not a test of gaps

    frame_of = {int(t): k for k, t in enumerate(episode.times)}
    tick_times = sorted(_ns(time_to_seconds(m.header.stamp)) for m in ticks)
    checked = 0
    for request in requests:
        capture = _ns(time_to_seconds(request.capture_stamp))
        if not episode.times[0] <= capture <= episode.times[-1]:
            continue  # before the bag started or after the last frame
        # The executor's tick at which it captured this observation is a frame of the episode, at exactly that time.
        assert capture in frame_of, (capture, episode.times[:5])
        k = frame_of[capture]
        # The observation: what the policy node's selection picks for this capture time.
        selection = select_samples(list(histories.values()), capture / NS, max_age=1.0)
        assert selection.ok, selection.describe()
        for slot, topic in enumerate(CAMERAS):
            assert episode.image_stamps[k, slot] == _ns(selection.samples[topic].stamp), topic
        np.testing.assert_allclose(episode.state[k], selection.samples["/joint_states"].value, atol=1e-9)
        # The label: the chunk computed for this request, from the tick after the observation on, as the executor
        # played it (ticks that passed before the chunk arrived kept the previous chunk's actions).
        received, msg = chunks[request.request_id]
        chunk = chunk_from_msg(msg)
        assert chunk.first_tick == request.observation_tick + 1
        later = [t for t in tick_times if t > capture]
        following = [r for r in requests if r.observation_tick > request.observation_tick]
        horizon = (following[0].observation_tick - request.observation_tick) if following else len(chunk.actions)
        played = 0
        for i in range(min(horizon, len(chunk.actions), len(episode) - k, len(later))):
            if later[i] <= _ns(received) + 5_000_000:
                continue  # this tick was played before the chunk arrived
            np.testing.assert_allclose(episode.actions[k + i], chunk.actions[i], atol=1e-6, err_msg=f"tick {i}")
            played += 1
        checked += played > 0
    assert checked >= 3, f"only {checked} chunk requests could be checked"
