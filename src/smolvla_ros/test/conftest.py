"""Fixtures for tests that talk over real DDS: an isolated ROS domain, rclpy contexts and child processes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# DDS stays on loopback, and every test gets a ROS domain of its own (see fresh_ros_domain) from 10-59, so that
# neither a concurrent run on this machine, nor the user's own graphs (domain 0 by default; make train-demo records
# in 61 and 62), nor a process an earlier test killed (Fast DDS leaves its shared-memory ports behind, keyed by
# domain) can meet a test's nodes. This must happen before any rclpy context is created.
TEST_DOMAINS = range(10, 60)
_domain_sequence = itertools.count(os.getpid())  # a concurrent run starts elsewhere in the range
os.environ["ROS_DOMAIN_ID"] = str(TEST_DOMAINS[0])
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402


class RosHarness:
    """A private rclpy context with an executor, for driving test-side nodes and waiting on conditions."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self._nodes: list[Node] = []

    def node(self, name: str) -> Node:
        """Create a node in this harness's context; it is spun by wait_for."""
        node = Node(name, context=self.context)
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Spin until condition() holds; fail the test with `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        """Spin for a fixed time (to observe that something does NOT happen)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, client, request, timeout: float = 10.0):
        """Call a service and wait for its response."""
        future = client.call_async(request)
        self.wait_for(future.done, timeout, f"a response from {client.srv_name}")
        return future.result()

    def close(self) -> None:
        for node in self._nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        rclpy.shutdown(context=self.context)


@pytest.fixture(autouse=True)
def fresh_ros_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next domain of TEST_DOMAINS for this test's rclpy contexts and child processes."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(TEST_DOMAINS[next(_domain_sequence) % len(TEST_DOMAINS)]))


@pytest.fixture
def ros() -> Iterator[RosHarness]:
    harness = RosHarness()
    yield harness
    harness.close()


class ProcessGroup:
    """Child processes started by a test, each logging to a file; all are stopped at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
        self.processes.append((process, log_path))
        return process

    def start_python(self, name: str, script: Path, *args: str) -> subprocess.Popen:
        return self.start(name, [sys.executable, str(script), *args])

    def stop(self, process: subprocess.Popen, timeout: float = 10.0) -> int:
        """SIGINT (what Ctrl-C sends), then SIGKILL if it does not exit in time; returns the exit code."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')}" for _, path in self.processes)

    def stop_all(self) -> None:
        for process, _ in self.processes:
            self.stop(process)


@pytest.fixture
def processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(group.logs())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
