"""Episode recorder node `smolvla_recorder`: rosbag2 episodes for `smolvla-train` without `ros2 bag`.

Thin ROS wiring around smolvla.recording.EpisodeWriter. It subscribes to the topics training reads (the cameras,
the joint states, the commands) with raw=True, so each message reaches the bag as the CDR bytes the middleware
delivered, stamped with its receive time (system clock, as `ros2 bag record` does). One bag per episode in
`output_dir/episode_NNNN/` with a `task.txt`; services `~/start_episode` and `~/stop_episode` (std_srvs/Trigger)
start and close episodes, `~/discard_episode` drops the open one (nothing stays on disk: a failed demonstration
never reaches training), `autostart` starts the first one at once. Ctrl-C, SIGTERM and node shutdown close the
open episode properly (node_runner calls close() while the context is still up). Parameters: config/recorder.yaml,
docs/ros-graph.md.
"""

from __future__ import annotations

import time

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from smolvla.camera_mapping import entry_topics
from smolvla.recording import (
    STORAGES,
    EpisodeWriter,
    RecordingError,
    check_output_dir,
    check_task,
    check_topic_name,
)
from smolvla_ros.node_runner import run_node

NODE_NAME = "smolvla_recorder"
ACTION_TYPES = {"position": Float64MultiArray, "trajectory": JointTrajectory, "joint_state": JointState}

PARAMETERS: dict[str, object] = {
    "output_dir": "",
    "task": "",
    "autostart": True,
    "storage": "mcap",
    "camera_topics": ["/camera/front/image_raw", "/camera/wrist/image_raw"],
    "joint_state_topic": "/joint_states",
    "action_topic": "/forward_position_controller/commands",
    "action_type": "position",
}

# Best effort receives from best-effort publishers (the simulated cameras) and reliable ones (drivers) alike; the
# deep queue absorbs a moment in which the writer flushes a storage chunk instead of dropping samples.
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
# The executor publishes its commands reliably; every one of them is an action label.
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)


def msgtype_name(message_class: type) -> str:
    """The ROS 2 type name of a generated message class, e.g. sensor_msgs.msg.Image -> "sensor_msgs/msg/Image"."""
    return f"{message_class.__module__.split('.')[0]}/msg/{message_class.__name__}"


class RecorderNode(Node):
    """The recorder node (module docstring). Raises RecordingError for unusable parameters."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.output_dir = check_output_dir(p["output_dir"])
        if p["storage"] not in STORAGES:
            raise RecordingError(f"storage must be one of {sorted(STORAGES)}, got {p['storage']!r}")
        if p["action_type"] not in ACTION_TYPES:
            raise RecordingError(f"action_type must be one of {sorted(ACTION_TYPES)}, got {p['action_type']!r}")
        self.storage = p["storage"]
        # The policy's camera entries work here too (NAME=TOPIC or topics): the recorder records their topics.
        cameras = list(entry_topics(p["camera_topics"]))
        if not cameras:
            raise RecordingError("camera_topics is empty: training needs at least one camera")
        # CompressedImage on topics ending in /compressed: the image_transport naming the policy node uses too.
        classes = {topic: CompressedImage if topic.rstrip("/").endswith("/compressed") else Image for topic in cameras}
        classes[p["joint_state_topic"]] = JointState
        classes[p["action_topic"]] = ACTION_TYPES[p["action_type"]]
        if len(classes) != len(cameras) + 2:
            raise RecordingError(
                f"camera, joint-state and action topics must all differ, got {cameras} and "
                f"{[p['joint_state_topic'], p['action_topic']]}"
            )
        for topic in classes:
            check_topic_name(topic)
        self.topics = {topic: msgtype_name(cls) for topic, cls in classes.items()}
        self._task()  # refuse an invalid task at start, not at the first episode
        self._episode: EpisodeWriter | None = None

        for topic, cls in classes.items():
            qos = COMMAND_QOS if topic == p["action_topic"] else SENSOR_QOS
            self.create_subscription(cls, topic, lambda data, t=topic: self._on_message(t, data), qos, raw=True)
        self.create_service(Trigger, "~/start_episode", self._on_start)
        self.create_service(Trigger, "~/stop_episode", self._on_stop)
        self.create_service(Trigger, "~/discard_episode", self._on_discard)
        listed = ", ".join(f"{topic} ({msgtype})" for topic, msgtype in self.topics.items())
        self.get_logger().info(f"recording {listed} into {self.output_dir} ({self.storage})")
        if p["autostart"]:
            self.start_episode()

    def _task(self) -> str | None:
        """The task parameter (read at every start, so a changed parameter applies to the next episode)."""
        task = str(self.get_parameter("task").value).strip()
        if not task:
            return None
        return check_task(task)

    def _on_message(self, topic: str, data: bytes) -> None:
        # Receive time, not a header stamp: one clock for every topic (commands have no header); see bags.py.
        stamp = time.time_ns()
        episode = self._episode
        if episode is not None and episode.write(topic, data, stamp) and sum(episode.counts.values()) == 1:
            self.get_logger().info(f"{episode.name}: every topic has sent a message; writing from now on")

    def start_episode(self) -> str:
        """Open the next episode; returns what happened. RecordingError when one is open or it cannot start."""
        if self._episode is not None:
            raise RecordingError(f"already recording {self._episode.name}")
        task = self._task()
        self._episode = EpisodeWriter(self.output_dir, self.topics, task=task, storage=self.storage)
        message = f"recording {self._episode.name}" + (f", task {task!r}" if task else ", no task.txt")
        self.get_logger().info(message)
        return message

    def stop_episode(self) -> str:
        """Close the open episode under its final name; returns what happened. RecordingError when none is open."""
        if self._episode is None:
            raise RecordingError("no episode is being recorded")
        episode, self._episode = self._episode, None
        closed = episode.close()
        if closed.path is None:
            message = f"{episode.name}: nothing kept, no message on {', '.join(closed.silent_topics)}"
            self.get_logger().warning(message)
            return message
        counts = ", ".join(f"{topic} {count}" for topic, count in closed.counts.items())
        message = f"closed {closed.path} (messages: {counts})"
        self.get_logger().info(message)
        return message

    def discard_episode(self) -> str:
        """Drop the open episode (nothing of it is kept); returns what happened. RecordingError when none is open."""
        if self._episode is None:
            raise RecordingError("no episode is being recorded")
        episode, self._episode = self._episode, None
        episode.discard()
        message = f"discarded {episode.name}"
        self.get_logger().info(message)
        return message

    def _on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer(self.start_episode, response)

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer(self.stop_episode, response)

    def _on_discard(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer(self.discard_episode, response)

    def _answer(self, action, response: Trigger.Response) -> Trigger.Response:
        try:
            response.message = action()
            response.success = True
        except (RecordingError, OSError) as error:  # a full disk is reported to the caller, the node keeps running
            response.success = False
            response.message = str(error)
            self.get_logger().error(response.message)
        return response

    def close(self) -> None:
        """Close the open episode (Ctrl-C, SIGTERM, shutdown): what was recorded is kept under its final name."""
        if self._episode is not None:
            self.stop_episode()


def main(args: list[str] | None = None) -> int:
    """Entry point of `recorder_node`."""
    return run_node(RecorderNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
