"""`smolvla_chaos` (`make chaos`): inject faults and hostile input into the real graph and judge how it copes.

Starts the real nodes, each in its own process over real DDS: the simulated arm, a policy (the scripted expert, or
SmolVLA with a tiny random checkpoint for the camera cases) and the executor. Then runs cases one after another,
each bounded in time and count: malformed and hostile joint states, camera frames, rogue chunks, request and
service floods, invalid parameters, and process faults. Every command the executor publishes goes through
smolvla.command_audit.CommandAudit (NaN, joint limits, velocity and acceleration limits read from the running
executor). After each fault the case waits for the graph to recover: commands flowing and a chunk accepted by the
executor (the policy graph: a chunk for one of the executor's own requests), within the case's deadline (2 s after
the fault ended; documented longer ones for process restarts). Ends with one JSON line of figures; exit status 0
only when every case passed.

    smolvla_chaos            # the whole suite (about 3-4 minutes)
    smolvla_chaos --quick    # the bounded subset that `make test` runs
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from smolvla.command_audit import CaseResult, CommandAudit, CommandLimits, summary
from smolvla.robot_interface import SO100_JOINT_NAMES
from smolvla_msgs.msg import ActionChunk, ChunkRequest, ExecutorStatus, PolicyStatus
from smolvla_msgs.srv import SetInstruction
from smolvla_ros.chunk_messages import chunk_to_msg, seconds_to_time
from smolvla_ros.launcher import NodeSpec, find_config, find_executable
from smolvla_ros.parameters import set_parameters_request

JOINTS = list(SO100_JOINT_NAMES)
RATE = 30.0
CHUNK = 30
RECOVERY = 2.0  # seconds after a fault ends within which the graph must recover
# A restarted policy process: start-up (imports, model load, warm-up; 20-60 s for the tiny SmolVLA on a loaded 2-core
# machine), then the executor's request_timeout (10 s) for the request the killed process never answered.
RESTART_RECOVERY = 90.0
OK = int.from_bytes(DiagnosticStatus.OK)  # levels are bytes in the message
DIAGNOSED = ("policy", "executor")  # the nodes whose /diagnostics every case checks
MAX_TICK_GAP = 0.1  # seconds: 3 control periods, the longest the executor may go without a tick during a fault
TICK_WINDOW = 1.0  # seconds from the start of a fault over which its ticks are watched, however short the fault
SETTLE = 60.0  # seconds a case that did not recover in time gets to settle before the next case starts
ROGUE_IDS = 10**12  # request ids of injected requests and chunks (the executor counts its own from 1)
FRONT, WRIST = "/camera/front/image_raw", "/camera/wrist/image_raw/compressed"


# ---- the graph's processes ------------------------------------------------------------------------------------------


class Processes:
    """The graph's node processes by label, each in its own session and logging into one directory."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.specs: dict[str, NodeSpec] = {}
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, spec: NodeSpec) -> None:
        self.specs[spec.name] = spec
        log = (self.log_dir / f"{spec.name}.log").open("ab")
        self.running[spec.name] = subprocess.Popen(
            spec.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **spec.env}
        )

    def restart(self, label: str) -> None:
        self.start(self.specs[label])

    def dead(self) -> list[str]:
        """Labels of the processes that exited, with their exit codes."""
        return [f"{label} (exit {p.returncode})" for label, p in self.running.items() if p.poll() is not None]

    def signal(self, label: str, signum: int) -> None:
        os.kill(self.running[label].pid, signum)

    def stop_all(self, timeout: float = 10.0) -> dict[str, int]:
        codes = {}
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGINT)
        for label, process in self.running.items():
            try:
                codes[label] = process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                codes[label] = process.wait()
        return codes


# ---- the observer: watches the graph and injects ------------------------------------------------------------------


@dataclass
class Watch:
    """What the observer saw (updated from the spin thread)."""

    last_command: float = 0.0
    chunks_received: int = 0
    own_requests: dict[int, float] = field(default_factory=dict)  # executor request id -> when seen
    ok_statuses: list[tuple[float, int]] = field(default_factory=list)  # (when, request id)
    failed_requests: list[float] = field(default_factory=list)  # when the policy refused one of the executor's
    # (when, level, message) per node: "policy" (SmolVLA or expert) and "executor"
    diagnostics: dict[str, list[tuple[float, int, str]]] = field(default_factory=lambda: {n: [] for n in DIAGNOSED})
    ticks: list[float] = field(default_factory=list)  # the executor's tick times (its tick log's stamps)
    state: np.ndarray | None = None
    rogue_statuses: dict[int, PolicyStatus] = field(default_factory=dict)  # answers to injected requests


class Observer:
    """An rclpy node spun on its own thread: records the graph's traffic, audits commands, publishes faults."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("smolvla_chaos", context=self.context)
        self.watch = Watch()
        self.audit: CommandAudit | None = None
        self._unaudited: list[tuple[str, list[float]]] = []  # commands before the executor's limits were known
        self._lock = threading.Lock()
        self.case = "start"
        self.case_unsafe = 0
        n = self.node
        n.create_subscription(Float64MultiArray, "/forward_position_controller/commands", self._on_command, 100)
        n.create_subscription(ExecutorStatus, "/smolvla/executor_status", self._on_executor_status, 10)
        n.create_subscription(ChunkRequest, "/smolvla/chunk_request", self._on_request, 100)
        n.create_subscription(PolicyStatus, "/smolvla/policy_status", self._on_status, 100)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        n.create_subscription(JointState, "/smolvla/executor_ticks", self._on_tick, 100)
        n.create_subscription(JointState, "/joint_states", self._on_state, qos_profile_sensor_data)
        n.create_subscription(Image, "/camera/wrist/image_raw", self._republish_jpeg, qos_profile_sensor_data)
        self.states = n.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.front = n.create_publisher(Image, FRONT, qos_profile_sensor_data)
        self.wrist = n.create_publisher(CompressedImage, WRIST, qos_profile_sensor_data)
        self.chunks = n.create_publisher(ActionChunk, "/smolvla/action_chunk", 10)
        self.requests = n.create_publisher(ChunkRequest, "/smolvla/chunk_request", 10)
        self.set_instruction = n.create_client(SetInstruction, "/smolvla/set_instruction")
        self.reset = n.create_client(Trigger, "/so101_sim/reset")
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(n)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="chaos-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self._executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    # -- recording --
    def start_audit(self, limits: CommandLimits) -> None:
        """Audit every command from now on, and those received before the limits were known."""
        with self._lock:
            self.audit = CommandAudit(limits)
            for case, command in self._unaudited:
                self.audit.observe(command, case)
            self._unaudited.clear()

    def _on_command(self, msg: Float64MultiArray) -> None:
        self.watch.last_command = time.monotonic()
        with self._lock:
            if self.audit is None:
                self._unaudited.append((self.case, list(msg.data)))
            elif self.audit.observe(msg.data, self.case):
                self.case_unsafe += 1

    def _on_executor_status(self, msg: ExecutorStatus) -> None:
        self.watch.chunks_received = msg.chunks_received

    def _on_request(self, msg: ChunkRequest) -> None:
        if msg.request_id < ROGUE_IDS:
            self.watch.own_requests[msg.request_id] = time.monotonic()

    def _on_status(self, msg: PolicyStatus) -> None:
        if msg.request_id in self.watch.own_requests:
            if msg.ok:
                self.watch.ok_statuses.append((time.monotonic(), msg.request_id))
            else:
                self.watch.failed_requests.append(time.monotonic())
        elif msg.request_id >= ROGUE_IDS:
            self.watch.rogue_statuses[msg.request_id] = msg

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            node = "executor" if status.name.startswith("smolvla_executor") else "policy"
            if node == "executor" or status.name.startswith(("smolvla_policy", "expert_policy")):
                self.watch.diagnostics[node].append((time.monotonic(), int.from_bytes(status.level), status.message))

    def _on_tick(self, msg: JointState) -> None:
        self.watch.ticks.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    def _on_state(self, msg: JointState) -> None:
        if list(msg.name) == JOINTS and len(msg.position) == len(JOINTS):
            self.watch.state = np.array(msg.position)

    def _republish_jpeg(self, msg: Image) -> None:
        # The wrist camera as a JPEG CompressedImage (image_transport's naming), so that garbage JPEG and PNG data
        # reaches the policy on a compressed topic next to real frames.
        from PIL import Image as PILImage

        if msg.encoding != "rgb8" or len(msg.data) != msg.height * msg.step:
            return
        array = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
        buffer = io.BytesIO()
        PILImage.fromarray(array.reshape(msg.height, msg.width, 3)).save(buffer, format="JPEG")
        self.wrist.publish(CompressedImage(header=msg.header, format="jpeg", data=buffer.getvalue()))

    # -- helpers for cases --
    def now(self):
        return seconds_to_time(time.time())

    def call(self, client, request, timeout: float = 5.0):
        """A service call from the case thread (the spin thread completes it); None after a timeout."""
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        return future.result() if future.done() else None

    def parameters(self, node_name: str, names: list[str]) -> dict[str, object]:
        """The values of those of `names` the node has declared (one request each: an undeclared name empties the
        whole answer)."""
        client = self.node.create_client(GetParameters, f"/{node_name}/get_parameters")
        values: dict[str, object] = {}
        try:
            for name in names:
                response = self.call(client, GetParameters.Request(names=[name]), timeout=10.0)
                if response is not None and len(response.values) == 1 and response.values[0].type != 0:
                    values[name] = parameter_value_to_python(response.values[0])
        finally:
            self.node.destroy_client(client)
        return values

    def set_parameter(self, node_name: str, name: str, value: object):
        client = self.node.create_client(SetParameters, f"/{node_name}/set_parameters")
        try:
            response = self.call(client, set_parameters_request({name: value}))
        finally:
            self.node.destroy_client(client)
        return None if response is None else response.results[0]

    def latest_request(self) -> int:
        return max(self.watch.own_requests, default=0)


# ---- cases --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A fault: inject(observer) sends the bad input within a bounded time and returns how many bad inputs it sent
    (and findings, e.g. an accepted invalid parameter). deadline: seconds after inject returns for recovery."""

    name: str
    inject: Callable[[Observer, Processes], tuple[int, list[str]]]
    deadline: float = RECOVERY
    graph: str = "expert"  # expert or smolvla
    quick: bool = False
    # Nodes ("policy", "executor") whose diagnostics must leave OK during the fault; the policy's only when it refused
    # one of the executor's requests then (bad frames interleaved with good ones may leave it serving every request).
    not_ok: tuple[str, ...] = ()
    diagnostics_settle: float = 3.0  # seconds after recovery within which every node's must be OK again


def _burst(count: int, seconds: float, send: Callable[[int], None]) -> int:
    start = time.monotonic()
    for k in range(count):
        send(k)
        delay = start + (k + 1) * seconds / count - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return count


def _states(names: list[str], positions: list[float], stamp=None) -> JointState:
    msg = JointState(name=names, position=positions)
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def joint_state_cases() -> list[Case]:
    def send(build: Callable[[Observer, int], JointState], count: int = 50, seconds: float = 0.5):
        def inject(o: Observer, p: Processes) -> tuple[int, list[str]]:
            return _burst(count, seconds, lambda k: o.states.publish(build(o, k))), []

        return inject

    def state(o: Observer) -> list[float]:
        return (o.watch.state if o.watch.state is not None else np.zeros(6)).tolist()

    def outage_then_spoof(o: Observer, p: Processes) -> tuple[int, list[str]]:
        # The case: joint states stale beyond joint_state_timeout, then one state far outside the limits.
        p.signal("robot", signal.SIGSTOP)
        try:
            time.sleep(1.0)
            o.states.publish(_states(JOINTS, [3.0, *state(o)[1:]], o.now()))
            time.sleep(0.5)
        finally:
            p.signal("robot", signal.SIGCONT)
        return 1, []

    future = seconds_to_time(time.time() + 1e6)
    return [
        Case(
            "joint states: NaN positions", send(lambda o, k: _states(JOINTS, [float("nan")] * 6, o.now())), quick=True
        ),
        Case("joint states: wrong lengths", send(lambda o, k: _states(JOINTS, [0.0] * (k % 6), o.now()))),
        Case("joint states: unknown names", send(lambda o, k: _states([f"j{i}" for i in range(6)], [0.0] * 6))),
        Case("joint states: duplicate names", send(lambda o, k: _states(JOINTS[:5] + JOINTS[:1], state(o), o.now()))),
        Case(
            "joint states: stamped 1000 s ago",
            send(lambda o, k: _states(JOINTS, state(o), seconds_to_time(time.time() - 1000))),
            diagnostics_settle=8.0,  # WARN "refusing input samples" for 5 s after the last one
        ),
        Case(
            "joint states: stamped +1e6 s",
            send(lambda o, k: _states(JOINTS, state(o), future), count=20),
            quick=True,
            not_ok=("policy",),  # WARN "refusing input samples" for 5 s after the last one
            diagnostics_settle=8.0,
        ),
        Case("joint states: 2 kHz burst", send(lambda o, k: _states(JOINTS, state(o), o.now()), 1000, 0.5), quick=True),
        Case(
            "joint states: outside the limits",
            send(lambda o, k: _states(JOINTS, [3.0, *state(o)[1:]], o.now()), 5),
            quick=True,
        ),
        Case(
            "joint states: outage, then a state outside the limits",
            outage_then_spoof,
            quick=True,
            not_ok=("executor",),  # ERROR "no joint state for ... s", then the fault
        ),
    ]


def chunk_cases() -> list[Case]:
    def rogue(actions_for: Callable[[Observer], np.ndarray], joints=JOINTS, tick_offset: int = 1, own: bool = True):
        def inject(o: Observer, p: Processes) -> tuple[int, list[str]]:
            request = o.latest_request() if own else ROGUE_IDS + 7
            actions = actions_for(o)
            msg = chunk_to_msg(
                actions,
                joints,
                request_id=request,
                chunk_id=ROGUE_IDS,
                first_tick=0,
                control_period=1 / RATE,
                capture_stamp=o.now(),
                inference_latency=0.0,
                instruction="rogue",
            )
            msg.first_tick = tick_offset
            o.chunks.publish(msg)
            return 1, []

        return inject

    def here(o: Observer, n: int) -> np.ndarray:
        state = o.watch.state if o.watch.state is not None else np.zeros(6)
        return np.tile(state, (n, 1))

    def empty(o: Observer, p: Processes) -> tuple[int, list[str]]:
        msg = chunk_to_msg(
            np.zeros((0, 6)),
            JOINTS,
            request_id=o.latest_request(),
            chunk_id=ROGUE_IDS,
            first_tick=0,
            control_period=1 / RATE,
            capture_stamp=o.now(),
            inference_latency=0.0,
            instruction="rogue",
        )
        o.chunks.publish(msg)
        return 1, []

    def flood(o: Observer, p: Processes) -> tuple[int, list[str]]:
        def send(k: int) -> None:
            o.chunks.publish(
                chunk_to_msg(
                    here(o, CHUNK),
                    JOINTS,
                    request_id=ROGUE_IDS + k,
                    chunk_id=ROGUE_IDS + k,
                    first_tick=1,
                    control_period=1 / RATE,
                    capture_stamp=o.now(),
                    inference_latency=0.0,
                    instruction="flood",
                )
            )

        return _burst(1000, 1.0, send), []

    return [
        Case("chunk: NaN actions", rogue(lambda o: np.full((CHUNK, 6), np.nan)), quick=True),
        Case("chunk: unknown joints", rogue(lambda o: here(o, CHUNK), joints=[*JOINTS[:5], "tail"])),
        Case("chunk: 0 points", empty),
        Case("chunk: 10,000 points", rogue(lambda o: here(o, 10_000))),
        Case("chunk: unknown request id", rogue(lambda o: here(o, CHUNK), own=False)),
        Case("chunk: first_tick 2^63-1", rogue(lambda o: here(o, CHUNK), tick_offset=2**63 - 1)),
        Case("chunk: 1 kHz flood of rogue chunks", flood),
    ]


def flood_cases() -> list[Case]:
    def requests(o: Observer, p: Processes) -> tuple[int, list[str]]:
        def send(k: int) -> None:
            o.requests.publish(ChunkRequest(request_id=ROGUE_IDS + k, observation_tick=k, capture_stamp=o.now()))

        return _burst(1000, 1.0, send), []

    def huge_tick(o: Observer, p: Processes) -> tuple[int, list[str]]:
        # first_tick = tick + 1 overflowed int64 when the chunk was published: a traceback and no status.
        request_id = ROGUE_IDS + 999_999
        o.requests.publish(ChunkRequest(request_id=request_id, observation_tick=2**63 - 1, capture_stamp=o.now()))
        deadline = time.monotonic() + RECOVERY
        while request_id not in o.watch.rogue_statuses and time.monotonic() < deadline:
            time.sleep(0.02)
        status = o.watch.rogue_statuses.get(request_id)
        if status is None or status.ok:
            return 1, [f"request with observation_tick 2^63-1 answered {status}"]
        return 1, []

    def instructions(o: Observer, p: Processes) -> tuple[int, list[str]]:
        # A flooding client loses calls beyond the service's queue (10, the ROS default); the node must stay up and
        # answer the next ordinary call.
        futures = []
        if not o.set_instruction.wait_for_service(timeout_sec=5.0):
            return 0, ["SetInstruction service not available"]
        for k in range(300):
            futures.append(o.set_instruction.call_async(SetInstruction.Request(instruction=f"flood {k}")))
            time.sleep(0.003)
        time.sleep(1.0)
        after = o.call(o.set_instruction, SetInstruction.Request(instruction="pick up the cube"), timeout=2.0)
        for future in futures:
            o.set_instruction.remove_pending_request(future)
        return 300, [] if after is not None and after.accepted else ["SetInstruction unanswered after the flood"]

    def hostile_instructions(o: Observer, p: Processes) -> tuple[int, list[str]]:
        findings = []
        # (A NUL byte does not survive the wire: DDS strings end at it.)
        for text in ("", "   ", "x" * 100_000, "stop\x07now", "\x1b[2J"):
            response = o.call(o.set_instruction, SetInstruction.Request(instruction=text))
            if response is None or response.accepted:
                findings.append(f"instruction {text[:20]!r} {'unanswered' if response is None else 'accepted'}")
        return 5, findings

    return [
        Case("request: observation_tick 2^63-1", huge_tick, quick=True),
        Case("flood: 1 kHz chunk requests with rogue ids", requests),
        Case("flood: 300 SetInstruction calls", instructions),
        Case("service: hostile instructions", hostile_instructions, quick=True),
    ]


def parameter_cases(policy_node: str) -> list[Case]:
    invalid = {
        "smolvla_executor": [
            ("threshold", 7.0),
            ("mode", "bogus"),
            ("control_rate", -5.0),
            ("control_rate", 1e-300),
            ("diagnostics_rate", 1e-300),
            ("status_rate", 1e-300),
            ("chunk_size", 0),
            ("max_in_flight", -1),
        ],
        "so101_sim": [("seed", -1), ("state_rate", 1e-300), ("image_width", 0)],
        "expert_policy": [("latency", -1.0), ("instruction", ""), ("chunk_size", 0), ("control_rate", 0.0)],
        "smolvla_policy": [
            ("instruction", ""),
            ("device", "cuda"),
            ("max_sample_age", -1.0),
            ("error_log_interval", float("nan")),
        ],
    }

    def refused(node: str):
        def inject(o: Observer, p: Processes) -> tuple[int, list[str]]:
            findings = []
            for name, value in invalid[node]:
                result = o.set_parameter(node, name, value)
                if result is None:
                    findings.append(f"{node}: set {name} unanswered")
                elif result.successful:
                    findings.append(f"{node}: invalid {name} = {value!r} accepted")
            if node == "so101_sim" and o.call(o.reset, Trigger.Request()) is None:
                findings.append("so101_sim: reset after the invalid seed unanswered")  # seed -1 + reset crashed it
            return len(invalid[node]), findings

        return inject

    return [
        Case(f"parameters: invalid values on {node}", refused(node), quick=True)
        for node in ("smolvla_executor", "so101_sim", policy_node)
    ]


def process_cases(policy_label: str = "policy") -> list[Case]:
    def stop_arm(o: Observer, p: Processes) -> tuple[int, list[str]]:
        p.signal("robot", signal.SIGSTOP)
        time.sleep(1.5)
        p.signal("robot", signal.SIGCONT)
        return 1, []

    def kill_policy(o: Observer, p: Processes) -> tuple[int, list[str]]:
        p.signal(policy_label, signal.SIGKILL)
        p.running[policy_label].wait(10)
        time.sleep(1.0)  # the executor holds without a policy
        p.restart(policy_label)
        return 1, []

    return [
        Case("process: simulated arm SIGSTOP 1.5 s, SIGCONT", stop_arm, not_ok=("executor",)),
        Case(
            "process: policy SIGKILL, restarted",
            kill_policy,
            deadline=RESTART_RECOVERY,
            not_ok=("executor",),  # WARN "starving"
            diagnostics_settle=10.0,  # the restarted policy's first diagnostics follow its warm-up
        ),
    ]


def camera_cases() -> list[Case]:
    def raw(build: Callable[[int], Image], count: int = 30, seconds: float = 1.5):
        def inject(o: Observer, p: Processes) -> tuple[int, list[str]]:
            def send(k: int) -> None:
                msg = build(k)
                msg.header.stamp = o.now()
                o.front.publish(msg)

            return _burst(count, seconds, send), []

        return inject

    def compressed(fmt: str, data: bytes, count: int = 30, seconds: float = 1.5):
        def inject(o: Observer, p: Processes) -> tuple[int, list[str]]:
            return _burst(
                count, seconds, lambda k: o.wrist.publish(CompressedImage(header=_stamped(o), format=fmt, data=data))
            ), []

        return inject

    size = 64
    return [
        Case(
            "camera: mono16 encoding",
            raw(
                lambda k: Image(height=size, width=size, encoding="mono16", step=2 * size, data=bytes(2 * size * size))
            ),
            graph="smolvla",
            not_ok=("policy",),
        ),
        Case(
            "camera: data shorter than height x step",
            raw(lambda k: Image(height=size, width=size, encoding="rgb8", step=3 * size, data=bytes(100))),
            graph="smolvla",
            not_ok=("policy",),
        ),
        Case(
            "camera: 100000 x 100000 claimed",
            raw(lambda k: Image(height=100_000, width=100_000, encoding="rgb8", step=300_000, data=b"")),
            graph="smolvla",
            not_ok=("policy",),
        ),
        Case("camera: empty frame", raw(lambda k: Image()), graph="smolvla", not_ok=("policy",)),
        Case(
            "camera: garbage JPEG",
            compressed("jpeg", b"\xff\xd8\xff" + bytes(range(256)) * 8),
            graph="smolvla",
            not_ok=("policy",),
        ),
        Case(
            "camera: garbage PNG",
            compressed("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 500),
            graph="smolvla",
            not_ok=("policy",),
        ),
        Case("camera: empty compressed frame", compressed("jpeg", b""), graph="smolvla", not_ok=("policy",)),
        Case(
            "camera: frames stamped +1e6 s",
            _future_frames,
            graph="smolvla",
            not_ok=("policy",),
            diagnostics_settle=8.0,
        ),
    ]


def _stamped(o: Observer):
    from std_msgs.msg import Header

    return Header(stamp=o.now())


def _future_frames(o: Observer, p: Processes) -> tuple[int, list[str]]:
    future = seconds_to_time(time.time() + 1e6)

    def send(k: int) -> None:
        frame = Image(height=64, width=64, encoding="rgb8", step=192, data=bytes(64 * 64 * 3))
        frame.header.stamp = future
        o.front.publish(frame)
        o.wrist.publish(CompressedImage(header=frame.header, format="jpeg", data=b"\xff\xd8"))

    return 2 * _burst(20, 0.5, send), []


# ---- running ------------------------------------------------------------------------------------------------------


def wait_recovered(o: Observer, since: float, deadline: float, graph: str) -> float | None:
    """Seconds from `since` until commands flow and the policy serves the executor again, or None."""
    chunks = o.watch.chunks_received
    while time.monotonic() - since <= deadline:
        fresh_command = time.monotonic() - o.watch.last_command < 0.2
        if graph == "expert":
            served = o.watch.chunks_received > chunks
        else:
            served = any(t > since for t, _ in o.watch.ok_statuses)
        if fresh_command and served:
            return time.monotonic() - since
        time.sleep(0.02)
    return None


def check_diagnostics(case: Case, o: Observer, fault_start: float, fault_end: float) -> list[str]:
    """Findings where /diagnostics misstate what a node can do: OK throughout a fault that stops it (case.not_ok:
    the policy's when it refused one of the executor's requests in the fault), or not OK again within
    case.diagnostics_settle seconds once the graph has recovered (every case, every node)."""
    findings = []
    window = (fault_start, fault_end + 1.0)
    refused = sum(window[0] <= t <= window[1] for t in o.watch.failed_requests)
    for node in case.not_ok:
        if node == "policy" and not refused:
            continue  # it served every request: OK is the truth
        levels = [level for t, level, _ in o.watch.diagnostics[node] if window[0] <= t <= window[1]]
        if all(level == OK for level in levels):
            why = f" while it refused {refused} requests" if node == "policy" else ""
            findings.append(f"{node} diagnostics stayed OK during the fault{why} ({len(levels)} reports)")
    settle = time.monotonic() + case.diagnostics_settle
    for node in DIAGNOSED:
        reports = o.watch.diagnostics[node]
        while time.monotonic() < settle and not (reports and reports[-1][1] == OK):
            time.sleep(0.05)
        if not reports or reports[-1][1] != OK:
            findings.append(f"{node} diagnostics not OK {case.diagnostics_settle:g} s after recovery: {reports[-1:]}")
    return findings


def control_ticks(o: Observer, start: float, end: float) -> tuple[int, float | None]:
    """The executor's ticks stamped within [start, end] (wall clock) and the longest gap between two of them."""
    stamps = [t for t in o.watch.ticks if start <= t <= end]
    return len(stamps), float(np.max(np.diff(stamps))) if len(stamps) > 1 else None


def run_case(case: Case, o: Observer, p: Processes, max_tick_gap: float) -> CaseResult:
    o.case = case.name
    o.case_unsafe = 0
    fault_start, fault_start_wall = time.monotonic(), time.time()
    count, findings = case.inject(o, p)
    fault_end, fault_end_wall = time.monotonic(), time.time()
    recovered = wait_recovered(o, fault_end, case.deadline, case.graph)
    result = CaseResult(case.name, count, case.deadline, recovered, p.dead(), o.case_unsafe, list(findings))
    # A single bad message is a fault of no duration: watch the ticks for at least TICK_WINDOW seconds from it.
    window_end = max(fault_end_wall, fault_start_wall + TICK_WINDOW)
    time.sleep(max(0.0, window_end + 0.1 - time.time()))  # until those ticks' log messages have arrived
    result.ticks, result.max_tick_gap = control_ticks(o, fault_start_wall, window_end)
    result.expected_ticks = (window_end - fault_start_wall) * RATE
    if result.max_tick_gap is None or result.max_tick_gap > max_tick_gap:
        result.findings.append(f"control tick gap {result.max_tick_gap} s during the fault (bound {max_tick_gap:g} s)")
    result.findings += check_diagnostics(case, o, fault_start, fault_end)
    for label in [d.split(" ")[0] for d in result.crashes]:
        p.restart(label)  # keep going; the crash is counted
    if result.recovered_after is None or result.crashes:
        # Let the graph settle before the next case, so that one case's failure is not counted against the next.
        settled = wait_recovered(o, time.monotonic(), SETTLE, case.graph)
        late = "never" if settled is None else f"{case.deadline + settled:.1f} s after the fault"
        result.notes.append(f"recovered {late}")
    time.sleep(0.3)  # let the case's traffic drain before the next one
    return result


def executor_limits(o: Observer) -> CommandLimits:
    """The running executor's limits: positions, velocity (rad/s) and acceleration (rad/s^2)."""
    names = ["joint_lower_limits", "joint_upper_limits", "control_rate", "max_velocity", "max_acceleration"]
    p = o.parameters("smolvla_executor", names)
    n = len(p["joint_lower_limits"])

    def per_joint(value) -> list[float]:
        return [float(value)] * n if isinstance(value, int | float) else [float(v) for v in value]

    return CommandLimits.from_rates(
        p["joint_lower_limits"],
        p["joint_upper_limits"],
        per_joint(p["max_velocity"]),
        per_joint(p["max_acceleration"]),
        p["control_rate"],
    )


@contextmanager
def graph(kind: str, log_dir: Path, checkpoint: Path | None) -> Iterator[tuple[Observer, Processes]]:
    """Start the simulated arm, the policy (expert or SmolVLA) and the executor; yield once commands flow."""
    processes = Processes(log_dir)
    cameras = 0.0 if kind == "expert" else 10.0
    processes.start(
        NodeSpec(
            "robot",
            (find_executable("sim_arm_node"),),
            find_config("sim.yaml"),
            {"camera_rate": cameras, "image_width": 96, "image_height": 96},
        )
    )
    if kind == "expert":
        processes.start(
            NodeSpec(
                "policy",
                (find_executable("expert_policy_node"),),
                find_config("expert.yaml"),
                {"chunk_size": CHUNK, "diagnostics_rate": 5.0},
            )
        )
    else:
        processes.start(
            NodeSpec(
                "policy",
                (find_executable("policy_node"),),
                find_config("policy.yaml"),
                {
                    "checkpoint": str(checkpoint),
                    "camera_topics": [FRONT, WRIST],
                    "dtype": "float32",
                    "diagnostics_rate": 5.0,
                    "torch_threads": 1,
                },
            )
        )
    executor: dict[str, object] = {"chunk_size": CHUNK, "control_rate": RATE, "diagnostics_rate": 5.0}
    if kind != "expert":
        # The tiny checkpoint's random weights give arbitrary actions, which the executor's gate on absurd chunks
        # rightly refuses; these cases are about the policy's inputs, so the gate lets its chunks through.
        executor |= {"gate_outside_fraction": 0.99, "gate_limit_margin": 100.0, "gate_max_jump": 100.0}
    processes.start(NodeSpec("executor", (find_executable("executor_node"),), find_config("executor.yaml"), executor))
    observer: Observer | None = None
    try:
        observer = Observer()
        deadline = time.monotonic() + 120.0
        while observer.parameters("smolvla_executor", ["control_rate"]) == {}:
            if time.monotonic() > deadline or processes.dead():
                raise RuntimeError(f"the graph did not start: {processes.dead()}; logs in {log_dir}")
        observer.start_audit(executor_limits(observer))
        started = wait_recovered(observer, time.monotonic(), 120.0, kind)
        if started is None:
            raise RuntimeError(f"no chunk accepted within 120 s of start; logs in {log_dir}")
        yield observer, processes
    finally:
        if observer is not None:
            observer.close()
        processes.stop_all()


def launcher_sigint_case(log_dir: Path) -> CaseResult:
    """smolvla_launch with the whole simulated graph, Ctrl-C once commands flow: every node exits 0 within 10 s."""
    result = CaseResult("process: launcher SIGINT", 1, 10.0)
    log = (log_dir / "smolvla_launch.log").open("wb")
    process = subprocess.Popen(
        [find_executable("smolvla_launch"), "--sim", "--policy", "expert", "--set", "robot.camera_rate=0.0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    observer = Observer()
    try:
        deadline = time.monotonic() + 90.0
        while time.monotonic() - observer.watch.last_command > 0.2 and time.monotonic() < deadline:
            time.sleep(0.1)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(result.deadline)
            result.recovered_after = time.monotonic() - sent
            if code != 0:
                result.findings.append(f"smolvla_launch exited {code} after Ctrl-C")
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    finally:
        observer.close()
    return result


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _row(result: CaseResult) -> CaseResult:
    recovered = "no" if result.recovered_after is None else f"{result.recovered_after:.2f}"
    gap = "-" if result.max_tick_gap is None else f"{1000 * result.max_tick_gap:.0f}"
    ticks = f"{result.ticks} ({result.expected_ticks:.0f}), {gap}"
    notes = "; ".join([*(f"crashed: {c}" for c in result.crashes), *result.findings, *result.notes])
    print(
        f"| {result.name} | {result.bad_inputs} | {recovered} / {result.deadline:g} | {ticks} | "
        f"{len(result.crashes)} | {result.unsafe} | {'pass' if result.passed else 'FAIL'} | {notes} |",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of `smolvla_chaos`: run the cases, print a table and one JSON line; 0 when every case passed."""
    parser = argparse.ArgumentParser(prog="smolvla_chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the bounded subset that make test runs")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the nodes' logs here (default: temporary)")
    parser.add_argument("--only", default=None, help="only the cases whose name contains this text")
    parser.add_argument(
        "--recovery",
        type=float,
        default=RECOVERY,
        help=f"seconds after a fault within which the graph must recover (default {RECOVERY:g}, the goal)",
    )
    parser.add_argument(
        "--max-tick-gap",
        type=float,
        default=MAX_TICK_GAP,
        help=f"longest gap (s) between two executor ticks during a fault (default {MAX_TICK_GAP:g}, the goal)",
    )
    args = parser.parse_args(argv)
    expert_cases = [
        *joint_state_cases(),
        *chunk_cases(),
        *flood_cases(),
        *parameter_cases("expert_policy"),
        *process_cases(),
    ]
    smolvla_cases = [
        dataclasses.replace(case, graph="smolvla")
        for case in [*camera_cases(), *flood_cases()[:2], *parameter_cases("smolvla_policy")[2:], *process_cases()[1:]]
    ]
    if args.quick:
        expert_cases, smolvla_cases = [c for c in expert_cases if c.quick], []
    if args.recovery != RECOVERY:
        expert_cases = [dataclasses.replace(c, deadline=max(c.deadline, args.recovery)) for c in expert_cases]
        smolvla_cases = [dataclasses.replace(c, deadline=max(c.deadline, args.recovery)) for c in smolvla_cases]
    if args.only:
        expert_cases = [c for c in expert_cases if args.only in c.name]
        smolvla_cases = [c for c in smolvla_cases if args.only in c.name]
    results: list[CaseResult] = []
    audits: list[CommandAudit] = []
    print(
        "| case | bad inputs | recovered after / deadline [s] | control ticks during the fault, at least 1 s "
        "(expected), longest gap [ms] | crashes | unsafe commands | result | notes |"
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory(prefix="smolvla-chaos-") as scratch:
        log_dir = _mkdir(args.log_dir or Path(scratch))
        if expert_cases:
            with graph("expert", _mkdir(log_dir / "expert"), None) as (observer, processes):
                results += [_row(run_case(case, observer, processes, args.max_tick_gap)) for case in expert_cases]
                audits.append(observer.audit)
        if smolvla_cases:
            from smolvla.policy import make_tiny_checkpoint

            checkpoint = make_tiny_checkpoint(Path(scratch) / "tiny", n_cameras=2, chunk_size=CHUNK)
            with graph("smolvla", _mkdir(log_dir / "smolvla"), checkpoint) as (observer, processes):
                results += [_row(run_case(case, observer, processes, args.max_tick_gap)) for case in smolvla_cases]
                audits.append(observer.audit)
        if not args.quick and (not args.only or args.only in "process: launcher SIGINT"):
            results.append(_row(launcher_sigint_case(log_dir)))
    figures = summary(results, audits)
    for audit in audits:
        for example in audit.examples:
            print(f"unsafe command: {example}")
    print(json.dumps(figures), flush=True)
    return 0 if figures["passed"] == figures["cases"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
