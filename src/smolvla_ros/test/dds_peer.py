"""Peer process for test_dds_interfaces: publishes one known ActionChunk and serves SetInstruction."""

import rclpy
from builtin_interfaces.msg import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from trajectory_msgs.msg import JointTrajectoryPoint

from smolvla.instruction import check_instruction
from smolvla_msgs.msg import ActionChunk
from smolvla_msgs.srv import SetInstruction


def make_chunk() -> ActionChunk:
    chunk = ActionChunk()
    chunk.header.stamp.sec = 12
    chunk.header.stamp.nanosec = 345
    chunk.chunk_id = 7
    chunk.request_id = 3
    chunk.first_tick = 101
    chunk.control_period = Duration(sec=0, nanosec=33_333_333)
    chunk.trajectory.joint_names = ["shoulder_pan", "gripper"]
    for k in range(4):
        point = JointTrajectoryPoint(positions=[0.1 * k, -0.5 * k])
        point.time_from_start = Duration(sec=0, nanosec=33_333_333 * k)
        chunk.trajectory.points.append(point)
    chunk.inference_latency = 1.25
    chunk.instruction = "pick up the cube"
    return chunk


class Peer(Node):
    def __init__(self) -> None:
        super().__init__("dds_peer")
        self.publisher = self.create_publisher(ActionChunk, "action_chunk", 10)
        self.create_service(SetInstruction, "set_instruction", self.on_set_instruction)
        self.create_timer(0.1, lambda: self.publisher.publish(make_chunk()))

    def on_set_instruction(self, request, response):
        check = check_instruction(request.instruction)
        response.accepted = check.accepted
        response.message = check.message
        return response


def main() -> None:
    rclpy.init()
    node = Peer()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C: rclpy's own handler may have shut the context down first
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
