"""`smolvla_episode start|stop|discard`: start, close or drop a recorded episode from a shell without the ros2 CLI.

Calls the recorder's `start_episode` / `stop_episode` / `discard_episode` service (std_srvs/Trigger) and prints its
answer; the exit code is 0 when the recorder did it, 1 when it refused (e.g. stop with no episode open) or did not
answer.
"""

from __future__ import annotations

import argparse

from std_srvs.srv import Trigger

from smolvla_ros.recorder_node import NODE_NAME
from smolvla_ros.service_call import call_service_cli


def main(argv: list[str] | None = None) -> int:
    """Entry point of `smolvla_episode`."""
    parser = argparse.ArgumentParser(prog="smolvla_episode", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "action",
        choices=("start", "stop", "discard"),
        help="start the next episode, close the open one, or drop the open one (nothing of it is kept)",
    )
    parser.add_argument("--node", default=f"/{NODE_NAME}", help=f"the recorder node's name (/{NODE_NAME})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the recorder (10)")
    args = parser.parse_args(argv)
    service = f"{args.node.rstrip('/')}/{args.action}_episode"

    return call_service_cli(
        Trigger,
        service,
        Trigger.Request(),
        lambda r: (r.success, ("done: " if r.success else "refused: ") + r.message),
        node_name="smolvla_episode",
        server="recorder",
        timeout=args.timeout,
    )


if __name__ == "__main__":
    raise SystemExit(main())
