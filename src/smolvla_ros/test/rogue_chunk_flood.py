"""Peer process for the executor's flood test: once the executor subscribes to /smolvla/action_chunk, publishes
rogue chunks (request ids the executor never sent, one in a hundred 10,000 points long) at the given rate for the
given seconds, then prints how many it sent and the wall-clock times it started and stopped.

At a set rate, not as fast as it can: on two cores an unpaced loop takes a core whose speed decides the load, so
the same test would ask a different thing of the executor on each machine.

A process of its own, as a rogue publisher would be: flooding from the test process would starve that process's
own arm and policy of the interpreter, which is not what the test is about."""

import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time

from smolvla_msgs.msg import ActionChunk
from smolvla_ros.chunk_messages import chunk_to_msg

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
Q0 = np.array([0.1, -0.2, 0.3, 0.0, 0.5, 0.2])


def rogue_chunk(points: int, request_id: int) -> ActionChunk:
    return chunk_to_msg(
        np.tile(Q0, (points, 1)),
        JOINTS,
        request_id=request_id,
        chunk_id=request_id,
        first_tick=1,
        control_period=1 / 30,
        capture_stamp=Time(),
        inference_latency=0.0,
        instruction="rogue",
    )


def main(seconds: float, rate: float) -> None:
    rclpy.init()
    node = rclpy.create_node("rogue_publisher")
    pub = node.create_publisher(ActionChunk, "/smolvla/action_chunk", 10)
    # Messages published before discovery are lost: flood only once the executor has matched this publisher.
    deadline = time.monotonic() + 10.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    short, long = rogue_chunk(20, 10**9), rogue_chunk(10_000, 10**9 + 1)
    sent, start = 0, time.time()
    begin = time.monotonic()
    while (now := time.monotonic()) < begin + seconds:
        if now < begin + sent / rate:
            time.sleep(begin + sent / rate - now)
            continue
        pub.publish(long if sent % 100 == 0 else short)
        sent += 1
    print(f"sent {sent} {start:.6f} {time.time():.6f}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]))
