"""The one way this package runs a node in its own process.

The nodes handle Ctrl-C and SIGTERM themselves instead of leaving them to rclpy: rclpy's handler shuts the
context down at once, after which a node can no longer publish, and the executor must still send its hold command
and the policy must still stop its worker. So the signal only sets a flag; the spin loop ends; callbacks stop; then
the node's own close() runs while the context is still up.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Protocol

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

EXIT_OK = 0
EXIT_CANNOT_START = 2


class ClosableNode(Protocol):
    """A node with an orderly close(): called once, after its callbacks have stopped, with the context still up."""

    def close(self) -> None: ...


def run_node(
    create: Callable[[], Node],
    name: str,
    args: list[str] | None = None,
    after_start: Callable[[Node], None] | None = None,
) -> int:
    """Create the node, spin it on one thread until Ctrl-C/SIGTERM, then close it; return the exit code.

    A node whose constructor raises (invalid parameters, unreadable checkpoint) is reported as a fatal log line
    naming the error, and the process exits with EXIT_CANNOT_START so a launcher sees the failure. One thread
    suffices for these nodes (their callbacks are short; the model runs on the policy's own worker) and guarantees
    that no callback outlives the shutdown.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        node = create()
    except Exception as error:  # noqa: BLE001 - any start-up failure ends the process with a plain message
        rclpy.logging.get_logger(name).fatal(f"cannot start: {type(error).__name__}: {error}")
        rclpy.try_shutdown()
        return EXIT_CANNOT_START
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if after_start is not None:
            after_start(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return EXIT_OK
