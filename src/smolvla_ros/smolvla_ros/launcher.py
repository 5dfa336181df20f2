"""Start the smolvla_ros graph without `ros2 launch`: one process per node, forwarded logs, orderly shutdown.

launch/launch_ros are not installable on machines without a ROS 2 install, so this module starts the same node
executables with the same parameter files as launch/so100_async.launch.py. Every node runs in its own process (the
executor's control timer must not share an interpreter, and its GIL, with the model) and in its own session, so a
Ctrl-C in the terminal reaches only the launcher, which then stops the nodes in order: SIGINT to each (what Ctrl-C
would send), SIGKILL to whatever has not exited after a timeout. If a required node exits on its own, the launcher
stops the others and exits non-zero.

Python API (used by the demo, the evaluation, the benchmarks and the tests):

    specs = graph_nodes(GraphOptions(sim=True, policy="expert"))
    with Launcher(specs) as launcher:
        launcher.wait(timeout=10.0)

Command line: `smolvla_launch --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from smolvla.camera_mapping import entry_topics
from smolvla.model_dtype import DTYPE_CHOICES
from smolvla.robot_interface import INTERFACE_FILE, RobotInterface

PACKAGE = "smolvla_ros"

#: Exit codes that mean "stopped because it was asked to": 0, killed by SIGINT/SIGTERM, or the shell convention 128+n.
_CLEAN_STOP_CODES = {0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM}


@dataclass(frozen=True)
class NodeSpec:
    """One process to start.

    name: label used as the log prefix and in messages.
    command: the program and its own arguments (e.g. [path of policy_node]); ROS arguments are appended.
    params_file: ROS 2 parameter file passed with --params-file.
    parameters: per-process parameter overrides (-p name:=value), applied after the file.
    required: when a required process exits by itself, the whole graph is stopped and the launcher fails.
    env: extra environment variables for this process.
    """

    name: str
    command: tuple[str, ...]
    params_file: Path | None = None
    parameters: Mapping[str, object] = field(default_factory=dict)
    required: bool = True
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """The full command line: command, then --ros-args with the parameter file and overrides (if any)."""
        ros_args: list[str] = []
        if self.params_file is not None:
            ros_args += ["--params-file", str(self.params_file)]
        for name, value in self.parameters.items():
            ros_args += ["-p", f"{name}:={format_parameter(value)}"]
        return [*self.command, *(["--ros-args", *ros_args] if ros_args else [])]


def format_parameter(value: object) -> str:
    """Format a parameter override for `-p name:=value`, which rcl parses as YAML.

    JSON is valid YAML and keeps types explicit: strings stay strings even when they look like numbers or
    booleans ("1", "yes"), floats keep their decimal point (a double parameter refuses an integer), lists become
    YAML sequences.
    """
    if isinstance(value, bool | int | float | str):
        return json.dumps(value)
    if isinstance(value, Sequence):
        items = list(value)
        kinds = {type(item) for item in items}
        if len(kinds) > 1:
            raise ValueError(f"parameter list mixes types {sorted(k.__name__ for k in kinds)}: {items!r}")
        return json.dumps(items)
    raise TypeError(f"unsupported parameter value {value!r} of type {type(value).__name__}")


def find_executable(name: str) -> str:
    """Path of an installed node executable (install/smolvla_ros/lib/smolvla_ros is on PATH after `source env.sh`)."""
    found = shutil.which(name)
    if found is None:
        try:
            from ament_index_python.packages import get_package_prefix

            candidate = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / name
        except (ImportError, LookupError, ValueError):
            candidate = None
        if candidate is None or not os.access(candidate, os.X_OK):
            raise FileNotFoundError(
                f"node executable {name!r} not found on PATH nor in the {PACKAGE} install; "
                "run `source env.sh` in the workspace (after `make setup`)"
            )
        found = str(candidate)
    return found


def config_dirs(explicit: Path | None = None) -> list[Path]:
    """Where parameter files are looked up, in order: an explicit directory, the installed share directory of
    smolvla_ros, then the source checkout's config/ (which holds files added since the last colcon build)."""
    dirs = []
    if explicit is not None:
        dirs.append(Path(explicit))
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)) / "config")
    except (ImportError, LookupError, ValueError):
        pass
    # With the symlink/egg-link install this module lives in src/smolvla_ros/smolvla_ros/ of the checkout.
    dirs.append(Path(__file__).resolve().parents[3] / "config")
    return dirs


def find_config(file_name: str, explicit_dir: Path | None = None) -> Path:
    """The first existing `file_name` in config_dirs(explicit_dir); FileNotFoundError naming the places tried."""
    tried = config_dirs(explicit_dir)
    for directory in tried:
        if (directory / file_name).is_file():
            return directory / file_name
    raise FileNotFoundError(f"parameter file {file_name!r} not found in: {', '.join(str(d) for d in tried)}")


@dataclass(frozen=True)
class ProcessExit:
    """How one process ended: its return code and whether it had to be killed."""

    name: str
    returncode: int | None
    killed: bool

    @property
    def clean(self) -> bool:
        """True when the process exited by itself with a normal stop code."""
        return not self.killed and self.returncode in _CLEAN_STOP_CODES


class _Child:
    """A started process with the thread that forwards its output."""

    def __init__(self, spec: NodeSpec, process: subprocess.Popen, forwarder: threading.Thread) -> None:
        self.spec = spec
        self.process = process
        self.forwarder = forwarder
        self.killed = False


class Launcher:
    """Start NodeSpecs as child processes, forward their output line by line as "[name] line", stop them cleanly.

    output: where forwarded lines and the launcher's own messages go (default: sys.stdout).
    stop_timeout: seconds the processes get to exit after SIGINT before they are killed.
    """

    def __init__(
        self,
        specs: Sequence[NodeSpec],
        *,
        output: Callable[[str], None] | IO[str] | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique, got {names}")
        self.specs = list(specs)
        self.stop_timeout = stop_timeout
        self._write = self._make_writer(output)
        self._width = max([len("launch"), *(len(name) for name in names)])
        self._children: list[_Child] = []
        # Plain flags, not threading.Event: request_stop runs in signal handlers, where taking a lock that the
        # interrupted main thread may hold would deadlock.
        self._stop_requested = False
        self._escalate = False
        self._reported: set[str] = set()
        self._exits: dict[str, ProcessExit] | None = None

    @staticmethod
    def _make_writer(output: Callable[[str], None] | IO[str] | None) -> Callable[[str], None]:
        if callable(output):
            return output
        stream = output if output is not None else sys.stdout
        lock = threading.Lock()

        def write(line: str) -> None:
            with lock:
                stream.write(line + "\n")
                stream.flush()

        return write

    def log(self, message: str) -> None:
        """Write a launcher message with the "launch" prefix."""
        self._write(f"[{'launch'.ljust(self._width)}] {message}")

    def start(self) -> None:
        """Start every process in order. If one cannot be started, the ones already started are stopped."""
        for spec in self.specs:
            env = {**os.environ, **spec.env}
            # Line-by-line forwarding needs children that do not block-buffer their output into the pipe.
            env.setdefault("PYTHONUNBUFFERED", "1")
            env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")
            argv = spec.argv()
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the nodes in order
                )
            except OSError as error:
                self.log(f"cannot start {spec.name}: {error}")
                self.stop()
                raise
            forwarder = threading.Thread(
                target=self._forward, args=(spec.name, process.stdout), name=f"log-{spec.name}", daemon=True
            )
            forwarder.start()
            self._children.append(_Child(spec, process, forwarder))
            self.log(f"started {spec.name} (pid {process.pid}): {' '.join(argv)}")

    def _forward(self, name: str, stream: IO[bytes]) -> None:
        prefix = f"[{name.ljust(self._width)}] "
        for raw in iter(stream.readline, b""):
            self._write(prefix + raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        stream.close()

    def pids(self) -> dict[str, int]:
        """Process ids of the started processes, by name."""
        return {child.spec.name: child.process.pid for child in self._children}

    def running(self) -> list[str]:
        """Names of the processes still running."""
        return [child.spec.name for child in self._children if child.process.poll() is None]

    def request_stop(self) -> None:
        """Ask wait() to return (thread- and signal-safe). A second request makes stop() kill at once."""
        if self._stop_requested:
            self._escalate = True
        self._stop_requested = True

    def wait(self, timeout: float | None = None) -> ProcessExit | None:
        """Block until a required process exits by itself (returned), a stop is requested or `timeout` passes
        (None returned). Non-required processes that exit are reported in the log and otherwise ignored."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop_requested:
            for child in self._children:
                code = child.process.poll()
                if code is None or child.spec.name in self._reported:
                    continue
                self._reported.add(child.spec.name)
                ended = ProcessExit(child.spec.name, code, killed=False)
                if child.spec.required:
                    self.log(f"required node {child.spec.name} exited with code {code}; stopping the graph")
                    return ended
                self.log(f"{child.spec.name} exited with code {code} (not required; the graph keeps running)")
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return None

    def stop(self, timeout: float | None = None) -> dict[str, ProcessExit]:
        """SIGINT every running process group, SIGKILL those still running after `timeout` (default stop_timeout)
        seconds or on a second stop request, and wait for the log forwarding to drain. Idempotent."""
        if self._exits is not None:
            return self._exits
        timeout = self.stop_timeout if timeout is None else timeout
        for child in reversed(self._children):
            if child.process.poll() is None:
                self._signal(child, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while any(child.process.poll() is None for child in self._children):
            if time.monotonic() >= deadline or self._escalate:
                for child in self._children:
                    if child.process.poll() is None:
                        self.log(f"{child.spec.name} did not exit after SIGINT; killing it")
                        child.killed = True
                        self._signal(child, signal.SIGKILL)
                break
            time.sleep(0.02)
        for child in self._children:
            child.process.wait()
            child.forwarder.join(2.0)
        self._exits = {
            child.spec.name: ProcessExit(child.spec.name, child.process.returncode, child.killed)
            for child in self._children
        }
        for ended in self._exits.values():
            state = "killed" if ended.killed else f"exited with code {ended.returncode}"
            self.log(f"{ended.name} {state}")
        return self._exits

    @staticmethod
    def _signal(child: _Child, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(child.process.pid, signum)  # the whole session: a node's own children stop too

    def run(self) -> int:
        """start(), wait until Ctrl-C/SIGTERM or a required process dies, stop(). Returns the exit status:
        the dead process's code (or 1) when a required one died; after a requested stop 0 when every process
        exited by itself with a normal stop code, else 1.
        Must be called from the main thread (it installs SIGINT and SIGTERM handlers)."""
        previous = {
            signum: signal.signal(signum, lambda *_: self.request_stop()) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.start()
            ended = self.wait()
            if ended is None:
                self.log("stop requested; stopping all nodes (Ctrl-C again to kill)")
            exits = self.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if ended is not None:
            return ended.returncode if ended.returncode and ended.returncode > 0 else 1
        unclean = [e.name for e in exits.values() if not e.clean]
        if unclean:
            self.log(f"not stopped cleanly: {', '.join(unclean)}")
            return 1
        return 0

    def __enter__(self) -> Launcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------------
# The smolvla_ros graph: which executables, parameter files and overrides.


@dataclass(frozen=True)
class GraphOptions:
    """What to start. None leaves a parameter at the value of its parameter file.

    sim: start the simulated arm (sim_arm_node, config/sim.yaml) instead of expecting a real robot's driver.
    policy: "smolvla" (policy_node, config/policy.yaml) or "expert" (expert_policy_node, config/expert.yaml).
    mode: executor mode (sync, async, continuous, auto); g: its threshold (async and auto only: sync means g = 0,
        continuous g = 1).
    output: what the executor commands: "position" (forward_position_controller) or "trajectory"
        (joint_trajectory_controller); see executor_output() for the driver's command_controllers.
    control_rate: executor (and simulated arm) rate in Hz. When None it is the checkpoint's frame rate (its
        robot_interface.json, else `fps`); a rate that differs from the checkpoint's is refused.
    chunk_size: actions per chunk (the executor's n; also the expert's); must match the checkpoint's. When None
        it is the checkpoint's config.json's chunk_size (a local directory, or a hub id already in the cache).
    cameras: the policy's camera entries (`smolvla.camera_mapping`: NAME=TOPIC, or topics in order for
        checkpoints with numbered cameras); the recorder records their topics.
    joint_units, fps, calibration_file: the policy's units (a preset or per-joint list) and frame rate for a
        checkpoint that does not state them, and the arm's LeRobot calibration file that converts LeRobot's units.
    record_dir: start the episode recorder (recorder_node, config/recorder.yaml) writing into this directory.
    task: the recorder's task text (task.txt of each episode); None: the instruction if given, else the file's.
    dry_run: the executor runs everything but publishes its commands only to its dry-run topic, never to a
        controller (check a new checkpoint's outputs before torque is on).
    extra: further overrides, {node label: {parameter: value}} (labels: robot, policy, executor, recorder).
    """

    sim: bool = False
    policy: str = "smolvla"
    checkpoint: str | None = None
    instruction: str | None = None
    mode: str | None = None
    g: float | None = None
    output: str | None = None
    control_rate: float | None = None
    chunk_size: int | None = None
    cameras: tuple[str, ...] | None = None
    joint_units: str | None = None
    fps: float | None = None
    calibration_file: str | None = None
    device: str | None = None
    dtype: str | None = None
    config_dir: Path | None = None
    record_dir: Path | None = None
    task: str | None = None
    dry_run: bool = False
    extra: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


POLICIES = ("smolvla", "expert")
MODES = ("sync", "async", "continuous", "auto")
OUTPUTS = ("position", "trajectory")
#: The executor output that drives each command set of so100_driver's launch (command_controllers).
CONTROLLER_OUTPUTS = {"forward": "position", "trajectory": "trajectory"}


def executor_output(command_controllers: str) -> str:
    """The executor's `output` for the driver's active command set; ValueError for sets it cannot drive."""
    if command_controllers not in CONTROLLER_OUTPUTS:
        raise ValueError(
            f"command_controllers:={command_controllers}: the executor commands all six joints through "
            f"{' or '.join(CONTROLLER_OUTPUTS)} (arm_gripper is for MoveIt and teleoperation)"
        )
    return CONTROLLER_OUTPUTS[command_controllers]


@dataclass(frozen=True)
class NodePlan:
    """One node of the graph before executables and files are resolved (shared with so100_async.launch.py).

    label: robot, policy, executor or recorder; executable: in smolvla_ros's lib directory; node_name: the ROS node name
    (the key in its parameter file); params_file: file name in the config directory; parameters: overrides.
    """

    label: str
    executable: str
    node_name: str
    params_file: str
    parameters: Mapping[str, object]


def checkpoint_file(checkpoint: str, name: str) -> Path | None:
    """A file of a checkpoint without downloading anything: from a local directory, or from the Hugging Face cache
    for a hub id (None when it is not there)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return path / name if (path / name).is_file() else None
    if checkpoint.count("/") != 1 or checkpoint.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(checkpoint, name)
    except (ImportError, ValueError):  # no huggingface_hub, or not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def checkpoint_chunk_size(checkpoint: str) -> int | None:
    """The chunk size in a checkpoint's config.json (LeRobot layout), or None (not available, no such field).

    Lets the executor's chunk_size follow the checkpoint when none was given: a mismatch makes the executor's
    threshold g count in the wrong unit.
    """
    config = checkpoint_file(checkpoint, "config.json")
    try:
        value = json.loads(config.read_text()).get("chunk_size") if config else None
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def checkpoint_fps(checkpoint: str) -> float | None:
    """The frame rate in a checkpoint's robot_interface.json, or None (not available; an unusable file is left
    for the policy node to refuse with its reason)."""
    found = checkpoint_file(checkpoint, INTERFACE_FILE)
    if found is None:
        return None
    try:
        return RobotInterface.load(found.parent).fps
    except ValueError:
        return None


def graph_plan(options: GraphOptions) -> list[NodePlan]:
    """Which nodes to start with which overrides: [simulated arm,] policy or expert, executor[, recorder].

    Raises ValueError for options out of range. The robot side of a real arm (the so100_driver launch) is not
    part of the plan: only `ros2 launch` can start ros2_control.
    """
    if options.policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {options.policy!r}")
    if options.mode is not None and options.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {options.mode!r}")
    if options.control_rate is not None and not options.control_rate > 0:
        raise ValueError(f"control rate must be positive, got {options.control_rate}")
    if options.g is not None and not 0.0 <= options.g <= 1.0:
        raise ValueError(f"g must be within [0, 1], got {options.g}")
    if options.g is not None and options.mode in ("sync", "continuous"):
        fixed = 0 if options.mode == "sync" else 1
        raise ValueError(f"g is not used in mode {options.mode} (which means g = {fixed}): use mode async or auto")
    if options.output is not None and options.output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {options.output!r}")
    if options.sim and options.output == "trajectory":
        raise ValueError("the simulated arm has no trajectory controller: use output position with the simulation")
    if options.chunk_size is not None and options.chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {options.chunk_size}")
    if options.cameras is not None and not options.cameras:
        raise ValueError("give at least one camera")
    if options.fps is not None and not options.fps > 0:
        raise ValueError(f"fps must be positive, got {options.fps}")
    if options.task is not None and options.record_dir is None:
        raise ValueError("a task is only used when recording: give a record directory too")

    chunk_size = options.chunk_size
    control_rate = options.control_rate
    if options.policy == "smolvla" and options.checkpoint:
        if chunk_size is None:
            chunk_size = checkpoint_chunk_size(options.checkpoint)
        # A chunk holds one action per frame of the data it was trained on: the checkpoint's rate is the rate.
        fps = checkpoint_fps(options.checkpoint) or options.fps
        resample = bool(options.extra.get("executor", {}).get("resample_chunks", False))
        if control_rate is None:
            control_rate = fps
        elif fps is not None and control_rate != fps and not resample:
            raise ValueError(
                f"control rate {control_rate:g} Hz differs from the checkpoint's {fps:g} fps: its chunks hold one "
                f"action per 1/{fps:g} s, so the arm would move {control_rate / fps:.2g} times as fast as it was "
                "trained to. Leave the control rate unset (it follows the checkpoint), or ask the executor to "
                "resample the chunks in time (executor.resample_chunks=true)"
            )
    rate = {} if control_rate is None else {"control_rate": float(control_rate)}
    chunk = {} if chunk_size is None else {"chunk_size": int(chunk_size)}
    plans: list[NodePlan] = []
    if options.sim:
        plans.append(NodePlan("robot", "sim_arm_node", "so101_sim", "sim.yaml", {**rate}))
    policy_params: dict[str, object] = {}
    if options.instruction is not None:
        policy_params["instruction"] = options.instruction
    if options.policy == "smolvla":
        for key in ("checkpoint", "device", "dtype", "joint_units"):
            if getattr(options, key) is not None:
                policy_params[key] = getattr(options, key)
        if options.calibration_file is not None:
            policy_params["calibration_file"] = str(Path(options.calibration_file).expanduser().absolute())
        if options.fps is not None:
            policy_params["fps"] = float(options.fps)
        if options.cameras is not None:
            policy_params["camera_topics"] = list(options.cameras)
        plans.append(NodePlan("policy", "policy_node", "smolvla_policy", "policy.yaml", policy_params))
    else:
        policy_params.update(rate)
        policy_params.update(chunk)
        plans.append(NodePlan("policy", "expert_policy_node", "expert_policy", "expert.yaml", policy_params))
    executor_params: dict[str, object] = {**rate, **chunk}
    if options.mode is not None:
        executor_params["mode"] = options.mode
    if options.g is not None:
        executor_params["threshold"] = float(options.g)
    if options.output is not None:
        executor_params["output"] = options.output
    if options.dry_run:
        executor_params["dry_run"] = True
    plans.append(NodePlan("executor", "executor_node", "smolvla_executor", "executor.yaml", executor_params))
    if options.record_dir is not None:
        # Absolute, so the episodes land where the user meant whatever directory the node process runs in.
        recorder_params: dict[str, object] = {"output_dir": str(Path(options.record_dir).expanduser().absolute())}
        task = options.task if options.task is not None else options.instruction
        if task is not None:
            recorder_params["task"] = task
        if options.cameras is not None:
            recorder_params["camera_topics"] = list(entry_topics(options.cameras))
        plans.append(NodePlan("recorder", "recorder_node", "smolvla_recorder", "recorder.yaml", recorder_params))

    unknown = set(options.extra) - {plan.label for plan in plans}
    if unknown:
        raise ValueError(f"overrides for nodes not in this graph: {sorted(unknown)}")
    return [
        NodePlan(p.label, p.executable, p.node_name, p.params_file, {**p.parameters, **options.extra.get(p.label, {})})
        for p in plans
    ]


def graph_nodes(options: GraphOptions) -> list[NodeSpec]:
    """graph_plan with executables and parameter files resolved: what Launcher starts."""
    return [
        NodeSpec(
            name=plan.label,
            command=(find_executable(plan.executable),),
            params_file=find_config(plan.params_file, options.config_dir),
            parameters=plan.parameters,
        )
        for plan in graph_plan(options)
    ]


def _parse_override(text: str) -> tuple[str, str, object]:
    """ "node.param=value" -> (node, param, value); the value is read as JSON when it parses, else kept a string."""
    target, sep, raw = text.partition("=")
    node, dot, param = target.partition(".")
    if not sep or not dot or not node or not param:
        raise argparse.ArgumentTypeError(f"expected NODE.PARAM=VALUE (e.g. executor.max_velocity=1.5), got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return node, param, value


def build_parser() -> argparse.ArgumentParser:
    """The smolvla_launch command line."""
    parser = argparse.ArgumentParser(
        prog="smolvla_launch",
        description="Start the SmolVLA policy, the action-queue executor and (with --sim) the simulated arm, each in "
        "its own process with its parameter file from config/. Ctrl-C stops them all.",
    )
    parser.add_argument("--sim", action="store_true", help="start the simulated SO-101 arm instead of a real robot")
    parser.add_argument("--policy", choices=POLICIES, default="smolvla", help="SmolVLA model or the scripted expert")
    parser.add_argument("--checkpoint", help="SmolVLA checkpoint: Hugging Face hub id or local directory")
    parser.add_argument("--instruction", help="initial language instruction")
    parser.add_argument("--mode", choices=MODES, help="executor mode (sync: g=0, async, continuous: g=1, auto)")
    parser.add_argument("-g", "--threshold", dest="g", type=float, help="queue threshold g in [0, 1] (async, auto)")
    parser.add_argument(
        "--output",
        choices=OUTPUTS,
        help="executor output: position (forward_position_controller) or trajectory (joint_trajectory_controller, "
        "chunks streamed as timed trajectories); match the driver's command_controllers",
    )
    parser.add_argument(
        "--control-rate", type=float, help="control rate in Hz (executor, simulated arm); default: the checkpoint's fps"
    )
    parser.add_argument("--chunk-size", type=int, help="actions per chunk (executor, expert); match the checkpoint")
    parser.add_argument(
        "--cameras",
        nargs="+",
        metavar="NAME=TOPIC",
        help="the checkpoint's cameras by name (front=/camera/front/image_raw, NAME=none to mask one), or topics "
        "in order for checkpoints with numbered cameras (observation.image, observation.image2, ...)",
    )
    parser.add_argument(
        "--joint-units",
        help="units of a checkpoint without robot_interface.json: lerobot_degrees, lerobot_range, radians, "
        "or one per joint (comma separated)",
    )
    parser.add_argument("--fps", type=float, help="frame rate of a checkpoint without robot_interface.json")
    parser.add_argument("--calibration-file", help="the arm's LeRobot calibration JSON (for LeRobot's units)")
    parser.add_argument("--device", help="torch device for the model (cpu, cuda, ...)")
    parser.add_argument(
        "--dtype", choices=DTYPE_CHOICES, help="model dtype (auto: bfloat16 where the device multiplies it natively)"
    )
    parser.add_argument("--config-dir", type=Path, help="look for parameter files here first")
    parser.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="also record episodes (rosbag2, for smolvla-train) into DIR/episode_NNNN; the first starts at once",
    )
    parser.add_argument("--task", help="task text of the recorded episodes (default: --instruction, else the file's)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        type=_parse_override,
        metavar="NODE.PARAM=VALUE",
        help="any further parameter override; NODE is robot, policy, executor or recorder (repeatable)",
    )
    parser.add_argument("--stop-timeout", type=float, default=10.0, help="seconds to wait after SIGINT before killing")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="the executor publishes its commands only to /smolvla/dry_run_command, never to the arm's controller",
    )
    parser.add_argument("--print-commands", action="store_true", help="print the command lines and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `smolvla_launch`."""
    args = build_parser().parse_args(argv)
    extra: dict[str, dict[str, object]] = {}
    for node, param, value in args.overrides:
        extra.setdefault(node, {})[param] = value
    try:
        specs = graph_nodes(
            GraphOptions(
                sim=args.sim,
                policy=args.policy,
                checkpoint=args.checkpoint,
                instruction=args.instruction,
                mode=args.mode,
                g=args.g,
                output=args.output,
                control_rate=args.control_rate,
                chunk_size=args.chunk_size,
                cameras=tuple(args.cameras) if args.cameras else None,
                joint_units=args.joint_units,
                fps=args.fps,
                calibration_file=args.calibration_file,
                device=args.device,
                dtype=args.dtype,
                config_dir=args.config_dir,
                record_dir=args.record,
                task=args.task,
                dry_run=args.dry_run,
                extra=extra,
            )
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"smolvla_launch: {error}", file=sys.stderr)
        return 2
    if args.print_commands:
        for spec in specs:
            print(f"{spec.name}: {' '.join(spec.argv())}")
        return 0
    launcher = Launcher(specs, stop_timeout=args.stop_timeout)
    if not args.sim:
        launcher.log("no --sim: expecting the robot driver to publish /joint_states and accept commands")
    return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
