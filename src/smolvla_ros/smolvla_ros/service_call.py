"""One service call from a command-line tool, without the ros2 CLI (which the PyPI wheels do not include)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.node import Node


def call_service_cli(
    srv_type: Any,
    service: str,
    request: Any,
    outcome: Callable[[Any], tuple[bool, str]],
    *,
    node_name: str,
    server: str,
    timeout: float,
) -> int:
    """Call `service` once in a fresh ROS context, print what happened and return the exit code.

    `outcome(response)` says whether the server did it and what to print; the exit code is 0 when it did, 1 when it
    refused, no `server` (a word for the user: "policy", "recorder") offered the service within `timeout` seconds,
    or it did not answer within another `timeout`.
    """
    rclpy.init()
    node = Node(node_name)
    try:
        client = node.create_client(srv_type, service)
        if not client.wait_for_service(timeout_sec=timeout):
            print(f"no {server} offers {service} (waited {timeout:g} s): is it running?")
            return 1
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
        if not future.done():
            print(f"{service} did not answer within {timeout:g} s")
            return 1
        ok, text = outcome(future.result())
        print(text)
        return 0 if ok else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
