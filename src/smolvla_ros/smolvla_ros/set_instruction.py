"""`smolvla_set_instruction "TEXT"`: change the policy's instruction from a shell without the ros2 CLI.

Calls the SetInstruction service and prints the policy's answer; the exit code is 0 when the instruction was
accepted, 1 when it was refused or no policy answered.
"""

from __future__ import annotations

import argparse

import rclpy
from rclpy.node import Node

from smolvla_msgs.srv import SetInstruction

DEFAULT_SERVICE = "/smolvla/set_instruction"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `smolvla_set_instruction`."""
    parser = argparse.ArgumentParser(prog="smolvla_set_instruction", description=__doc__.split("\n\n")[0])
    parser.add_argument("instruction", help="the task in natural language, e.g. 'stack the red block'")
    parser.add_argument("--service", default=DEFAULT_SERVICE, help=f"service name ({DEFAULT_SERVICE})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the policy (10)")
    args = parser.parse_args(argv)

    rclpy.init()
    node = Node("smolvla_set_instruction")
    try:
        client = node.create_client(SetInstruction, args.service)
        if not client.wait_for_service(timeout_sec=args.timeout):
            print(f"no policy offers {args.service} (waited {args.timeout:g} s): is the graph running?")
            return 1
        future = client.call_async(SetInstruction.Request(instruction=args.instruction))
        rclpy.spin_until_future_complete(node, future, timeout_sec=args.timeout)
        if not future.done():
            print(f"{args.service} did not answer within {args.timeout:g} s")
            return 1
        response = future.result()
        print(("accepted: " if response.accepted else "refused: ") + response.message)
        return 0 if response.accepted else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
