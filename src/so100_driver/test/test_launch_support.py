"""The ROS-free helpers of the launch files: required processes stop the launch non-zero, arguments are named.

`ros2 launch` itself is not installable here; the launch service calls `OnProcessExit` callbacks with an event that
carries `returncode` and the launch context that carries `is_shutdown`, and turns an exception raised there into
"Caught exception in launch ...: <message>", a shutdown and exit status 1. These tests drive the callback with the
return codes of real processes.
"""

import ast
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from so100_driver.launch_arguments import LaunchArgumentError, choice, flag, optional_value
from so100_driver.required_process import RequiredProcessError, describe_returncode, required_exit_handler

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "so100_driver.launch.py"


def _returncode(code: str) -> int:
    return subprocess.run([sys.executable, "-c", code], check=False).returncode


def _exit(returncode: int, shutting_down: bool = False):
    return SimpleNamespace(returncode=returncode), SimpleNamespace(is_shutdown=shutting_down)


def test_a_required_process_that_dies_stops_the_launch_with_its_reason():
    # What ros2_control_node does when the hardware fails (no core file left behind).
    aborted = _returncode("import os, resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); os.abort()")
    handler = required_exit_handler("ros2_control_node (controller manager)", "Check port:=.")
    with pytest.raises(RequiredProcessError) as failure:
        handler(*_exit(aborted))
    assert str(failure.value) == (
        "required process ros2_control_node (controller manager) was killed by SIGABRT; stopping the launch. "
        "Check port:=."
    )
    with pytest.raises(RequiredProcessError, match="policy exited with code 2"):
        required_exit_handler("policy")(*_exit(_returncode("raise SystemExit(2)")))


def test_a_required_process_exiting_by_itself_with_code_0_still_fails_the_launch():
    # The graph is useless without it, whatever its code (smolvla_launch exits non-zero then too).
    with pytest.raises(RequiredProcessError, match="exited with code 0"):
        required_exit_handler("executor")(*_exit(_returncode("pass")))


def test_exits_during_shutdown_are_expected():
    handler = required_exit_handler("executor")
    assert handler(*_exit(-signal.SIGINT, shutting_down=True)) is None
    assert handler(*_exit(1, shutting_down=True)) is None  # another process failed first: one message, not many


def test_a_one_shot_job_fails_the_launch_only_when_it_fails():
    spawner = required_exit_handler("spawner", finishes=True)
    assert spawner(*_exit(0)) is None
    with pytest.raises(RequiredProcessError, match="spawner exited with code 1"):
        spawner(*_exit(1))


def test_return_codes_are_described():
    assert describe_returncode(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_returncode(-99) == "was killed by signal 99"
    assert describe_returncode(3) == "exited with code 3"


def test_arguments_are_named_in_errors():
    assert flag("use_emulator", "True") is True and flag("use_emulator", "0") is False
    with pytest.raises(LaunchArgumentError, match="use_emulator:=maybe must be true or false"):
        flag("use_emulator", "maybe")
    assert choice("command_controllers", " trajectory ", ("forward", "trajectory")) == "trajectory"
    with pytest.raises(LaunchArgumentError, match="command_controllers:=bogus must be one of forward, trajectory"):
        choice("command_controllers", "bogus", ("forward", "trajectory"))
    assert optional_value("control_rate", "", float) is None
    assert optional_value("control_rate", "30", float) == 30.0
    with pytest.raises(LaunchArgumentError, match="control_rate:=abc is not a number"):
        optional_value("control_rate", "abc", float)
    with pytest.raises(LaunchArgumentError, match="chunk_size:=5.5 is not an integer"):
        optional_value("chunk_size", "5.5", int)


def test_the_driver_launch_makes_its_processes_required():
    tree = ast.parse(LAUNCH_FILE.read_text())
    required = {
        call.args[0].id
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "_required" and call.args
        if isinstance(call.args[0], ast.Name)
    }
    assert {"control_node", "state_publisher", "emulator", "node"} <= required  # node: each spawner
