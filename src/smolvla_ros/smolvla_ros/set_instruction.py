"""`smolvla_set_instruction "TEXT"`: change the policy's instruction from a shell without the ros2 CLI.

Calls the SetInstruction service and prints the policy's answer; the exit code is 0 when the instruction was
accepted, 1 when it was refused or no policy answered.
"""

from __future__ import annotations

import argparse

from smolvla_msgs.srv import SetInstruction
from smolvla_ros.service_call import call_service_cli

DEFAULT_SERVICE = "/smolvla/set_instruction"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `smolvla_set_instruction`."""
    parser = argparse.ArgumentParser(prog="smolvla_set_instruction", description=__doc__.split("\n\n")[0])
    parser.add_argument("instruction", help="the task in natural language, e.g. 'stack the red block'")
    parser.add_argument("--service", default=DEFAULT_SERVICE, help=f"service name ({DEFAULT_SERVICE})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the policy (10)")
    args = parser.parse_args(argv)

    return call_service_cli(
        SetInstruction,
        args.service,
        SetInstruction.Request(instruction=args.instruction),
        lambda r: (r.accepted, ("accepted: " if r.accepted else "refused: ") + r.message),
        node_name="smolvla_set_instruction",
        server="policy",
        timeout=args.timeout,
    )


if __name__ == "__main__":
    raise SystemExit(main())
