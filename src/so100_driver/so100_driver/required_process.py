"""A `ros2 launch` whose required process exits stops as a whole, says why, and exits non-zero.

launch_ros only offers `Shutdown`, which stops everything but lets `ros2 launch` exit 0, and a controller
manager that dies at start leaves the rest of the graph (robot_state_publisher, retrying spawners, the policy
and executor waiting for joint states) running forever. `required_exit_handler` gives an `OnProcessExit` callback
that raises `RequiredProcessError`: the launch service logs "Caught exception in launch ...: <message>", shuts
everything down and makes `ros2 launch` exit with status 1. Exits while the launch is already shutting down
(Ctrl-C, another process failed first) are expected and change nothing.

No import of launch: the callback only reads `event.returncode` and `context.is_shutdown`, so the logic runs and
is tested without a ROS 2 install.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any


class RequiredProcessError(RuntimeError):
    """A required process exited while the launch was running; the message says which, how and what to check."""


def describe_returncode(returncode: int) -> str:
    """'exited with code 2', 'was killed by SIGABRT' (negative codes are signals, as subprocess reports them)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def exit_failure(
    label: str, returncode: int, shutting_down: bool, hint: str = "", *, finishes: bool = False
) -> str | None:
    """The failure message when the required process `label` ended with `returncode`, or None when that exit is
    expected: the launch was already shutting down (Ctrl-C, or another required process failed first), or the
    process `finishes` (a one-shot job such as a controller spawner) and succeeded."""
    if shutting_down or (finishes and returncode == 0):
        return None
    message = f"required process {label} {describe_returncode(returncode)}; stopping the launch"
    return f"{message}. {hint}" if hint else message


def required_exit_handler(label: str, hint: str = "", *, finishes: bool = False) -> Callable[[Any, Any], None]:
    """An `OnProcessExit(on_exit=...)` callback for a process the launch cannot run without.

    label names the process in the message; hint says what to check (e.g. the serial port); finishes: the
    process is a one-shot job whose exit with code 0 is its success.
    """

    def on_exit(event: Any, context: Any) -> None:
        failure = exit_failure(label, event.returncode, context.is_shutdown, hint, finishes=finishes)
        if failure is not None:
            raise RequiredProcessError(failure)

    return on_exit
