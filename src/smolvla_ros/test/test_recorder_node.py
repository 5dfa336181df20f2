"""The recorder node in its own process over real DDS; this test process publishes cameras (raw and compressed),
joint states and commands, and drives episodes through the recorder's services (start, stop, discard)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PilImage
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from smolvla.training import Recording, Topics, load_episode

pytestmark = pytest.mark.ros

CONFIG = Path(__file__).resolve().parents[3] / "config" / "recorder.yaml"
FRONT = "/camera/front/image_raw"
WRIST = "/camera/wrist/image_raw/compressed"
JOINT_STATES = "/joint_states"
COMMANDS = "/forward_position_controller/commands"
TOPICS = Topics(cameras=(FRONT, WRIST))
JOINTS = list(TOPICS.joint_names)
TASK = "stack the red block"
RATE = 30.0


def start_recorder(processes, output_dir: Path, **overrides):
    params = {"output_dir": str(output_dir), "task": TASK, "camera_topics": f'["{FRONT}", "{WRIST}"]', **overrides}
    argv = [sys.executable, "-m", "smolvla_ros.recorder_node", "--ros-args", "--params-file", str(CONFIG)]
    for name, value in params.items():
        argv += ["-p", f"{name}:={value}"]
    return processes.start("recorder", argv)


class Robot:
    """Publishes every input at RATE while `publishing`; message i carries i (joint positions i + 0.01 j, commands
    100 + i + 0.01 j, image pixels i % 256) so the bags show exactly which messages arrived."""

    def __init__(self, ros) -> None:
        self.node = ros.node("recorder_test_robot")
        self.publishing = False
        self.sent = 0
        self.front = self.node.create_publisher(Image, FRONT, qos_profile_sensor_data)  # as the simulated arm
        self.wrist = self.node.create_publisher(CompressedImage, WRIST, qos_profile_sensor_data)
        self.states = self.node.create_publisher(JointState, JOINT_STATES, 10)  # as the sim and ros2_control
        self.commands = self.node.create_publisher(Float64MultiArray, COMMANDS, 10)  # as the executor
        self.start = self.node.create_client(Trigger, "/smolvla_recorder/start_episode")
        self.stop = self.node.create_client(Trigger, "/smolvla_recorder/stop_episode")
        self.node.create_timer(1.0 / RATE, self.publish)
        png = io.BytesIO()
        PilImage.fromarray(np.full((24, 32, 3), 50, np.uint8)).save(png, format="PNG")
        self.png = list(png.getvalue())

    def matched(self) -> bool:
        publishers = (self.front, self.wrist, self.states, self.commands)
        return all(p.get_subscription_count() > 0 for p in publishers) and self.start.service_is_ready()

    def publish(self) -> None:
        if not self.publishing:
            return
        i = self.sent
        self.front.publish(Image(height=24, width=32, encoding="rgb8", step=96, data=[i % 256] * (24 * 96)))
        self.wrist.publish(CompressedImage(format="png", data=self.png))
        values = (i + 0.01 * np.arange(len(JOINTS))).tolist()
        self.states.publish(JointState(name=JOINTS, position=values))
        self.commands.publish(Float64MultiArray(data=[100 + v for v in values]))
        self.sent += 1

    def burst(self, ros, seconds: float) -> range:
        """Publish for `seconds`, then let the last messages arrive; the indices published."""
        first = self.sent
        self.publishing = True
        ros.spin_for(seconds)
        self.publishing = False
        ros.spin_for(0.5)
        return range(first, self.sent)


def recorded_indices(bag: Path) -> dict[str, list[int]]:
    """Which messages (by index) each topic of the bag holds, read with smolvla.training."""
    with Recording(bag, TOPICS) as recording:
        return {
            JOINT_STATES: np.rint(recording.joint_states().values[:, 0]).astype(int).tolist(),
            COMMANDS: np.rint(recording.actions().values[:, 0] - 100).astype(int).tolist(),
            FRONT: [int(image[0, 0, 0]) for _, image in recording.images(FRONT, range(10**6))],
            WRIST: list(range(len(recording.image_stamps(WRIST)))),
        }


def test_episodes_by_service_and_autostart_discard_and_the_open_one_is_closed_on_sigint(ros, processes, tmp_path):
    output = tmp_path / "episodes"
    recorder = start_recorder(processes, output)  # autostart: true in config/recorder.yaml
    robot = Robot(ros)
    ros.wait_for(robot.matched, 20.0, "the recorder's subscriptions and services")

    # Episode 1 (autostarted): a few first messages may go before DDS has matched both ways; after that, none.
    first = robot.burst(ros, 2.0)
    answer = ros.call(robot.stop, Trigger.Request())
    assert answer.success, answer.message
    assert "episode_0001" in answer.message
    # A discarded episode (what smolvla_demo does with a failed one) leaves nothing, and its number is reused.
    answer = ros.call(robot.start, Trigger.Request())
    assert answer.success and "episode_0002" in answer.message, answer.message
    robot.burst(ros, 0.5)
    cli = subprocess.run(
        [sys.executable, "-m", "smolvla_ros.episode", "discard"], capture_output=True, text=True, timeout=30
    )
    assert cli.returncode == 0 and cli.stdout.strip() == "done: discarded episode_0002", cli.stdout + cli.stderr
    assert sorted(p.name for p in output.iterdir()) == ["episode_0001"]
    # Episode 2, started with the command-line client; stopped by Ctrl-C.
    cli = subprocess.run(
        [sys.executable, "-m", "smolvla_ros.episode", "start"], capture_output=True, text=True, timeout=30
    )
    assert cli.returncode == 0 and cli.stdout.startswith("done: recording episode_0002"), cli.stdout + cli.stderr
    answer = ros.call(robot.start, Trigger.Request())
    assert not answer.success and answer.message == "already recording episode_0002"  # one episode at a time
    second = robot.burst(ros, 1.5)
    assert processes.stop(recorder) == 0

    assert sorted(p.name for p in output.iterdir()) == ["episode_0001", "episode_0002"]  # no partial left
    # Episode 1 (autostarted) may miss its first messages to DDS discovery, episode 2 at most each topic's first
    # one (the bag starts when every topic has sent: a topic whose first message arrived before another's is
    # written from its second). After that, nothing is lost, up to the last message before the stop and SIGINT.
    for name, published, least in (
        ("episode_0001", first, 0.75 * len(first)),
        ("episode_0002", second, len(second) - 1),
    ):
        indices = recorded_indices(output / name)
        for topic in (JOINT_STATES, COMMANDS):
            assert len(indices[topic]) >= least, (name, topic, len(indices[topic]), len(published))
            assert indices[topic] == list(published)[-len(indices[topic]) :], (name, topic)  # contiguous to the end
        count = len(indices[FRONT])
        assert count >= least and indices[FRONT] == [i % 256 for i in published][-count:], name
        assert len(indices[WRIST]) >= least, name

    for name in ("episode_0001", "episode_0002"):
        episode = load_episode(output / name, TOPICS)
        assert episode.task == TASK and len(episode) > 30
        assert episode.images[1].shape[1:] == (24, 32, 3)
        assert set(np.rint(episode.actions[:, 0] - 100).astype(int)) <= set(first) | set(second)
    logs = processes.logs()
    assert "episode_0001: every topic has sent a message" in logs and f"closed {output / 'episode_0002'}" in logs


def test_output_dir_that_is_a_file_fails_with_a_clear_error(processes, tmp_path):
    not_a_dir = tmp_path / "episodes"
    not_a_dir.write_text("a file")
    recorder = start_recorder(processes, not_a_dir)
    assert recorder.wait(20.0) == 2
    assert f"output directory {not_a_dir} is not a directory" in processes.logs()
