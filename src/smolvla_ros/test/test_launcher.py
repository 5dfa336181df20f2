"""The launcher with real child processes: log forwarding, Ctrl-C/SIGTERM shutdown, kill after timeout, failures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from rosbags.rosbag2 import Reader

from smolvla_ros.launcher import (
    GraphOptions,
    Launcher,
    NodeSpec,
    executor_output,
    find_config,
    find_executable,
    format_parameter,
    graph_nodes,
    graph_plan,
    main,
)

# A child that behaves like a node: says hello, then idles until SIGINT, which it acknowledges before exiting 0.
NODE_LIKE = textwrap.dedent(
    """
    import signal, sys, time
    name = sys.argv[1]
    def on_sigint(*_):
        print(f"{name} got SIGINT", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGINT, on_sigint)
    print(f"hello from {name} args={sys.argv[2:]}", flush=True)
    print(f"{name} to stderr", file=sys.stderr, flush=True)
    while True:
        time.sleep(0.05)
    """
)
STUBBORN = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('ignoring', flush=True)\n" + (
    "while True: time.sleep(0.05)"
)


def node_like(name: str, **kwargs) -> NodeSpec:
    return NodeSpec(name=name, command=(sys.executable, "-c", NODE_LIKE, name), **kwargs)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no line with {text!r} in {self.lines}"
            time.sleep(0.02)


def test_format_parameter_keeps_types_for_rcl_yaml():
    assert format_parameter(30.0) == "30.0"
    assert format_parameter(3) == "3"
    assert format_parameter(True) == "true"
    assert format_parameter("yes") == '"yes"'  # stays a string, not a YAML boolean
    assert format_parameter("pick up the cube") == '"pick up the cube"'
    assert format_parameter(["/a", "/b"]) == '["/a", "/b"]'
    with pytest.raises(ValueError, match="mixes types"):
        format_parameter([1, "a"])
    with pytest.raises(TypeError):
        format_parameter({"a": 1})


def test_argv_appends_ros_arguments():
    spec = NodeSpec("policy", ("policy_node",), params_file=Path("/c/policy.yaml"), parameters={"control_rate": 30.0})
    assert spec.argv() == ["policy_node", "--ros-args", "--params-file", "/c/policy.yaml", "-p", "control_rate:=30.0"]
    assert NodeSpec("x", ("prog", "arg")).argv() == ["prog", "arg"]


def test_forwards_logs_with_prefix_and_stops_with_sigint():
    lines = Lines()
    launcher = Launcher([node_like("alpha"), node_like("b")], output=lines, stop_timeout=5)
    launcher.start()
    lines.wait_for("[alpha ] hello from alpha")
    lines.wait_for("[b     ] hello from b")
    lines.wait_for("[alpha ] alpha to stderr")
    assert sorted(launcher.running()) == ["alpha", "b"]
    assert launcher.wait(timeout=0.2) is None  # nothing died
    exits = launcher.stop()
    assert all(e.clean and e.returncode == 0 for e in exits.values()), exits
    assert any(line == "[alpha ] alpha got SIGINT" for line in lines.lines)
    assert any(line == "[b     ] b got SIGINT" for line in lines.lines)
    assert launcher.running() == []
    assert launcher.stop() is exits  # idempotent


def test_process_ignoring_sigint_is_killed_after_timeout():
    lines = Lines()
    launcher = Launcher(
        [node_like("ok"), NodeSpec("stubborn", (sys.executable, "-c", STUBBORN))], output=lines, stop_timeout=0.5
    )
    launcher.start()
    lines.wait_for("[stubborn] ignoring")
    lines.wait_for("[ok      ] hello from ok")
    start = time.monotonic()
    exits = launcher.stop()
    assert time.monotonic() - start < 5
    assert exits["ok"].clean
    assert exits["stubborn"].killed and exits["stubborn"].returncode == -signal.SIGKILL
    assert any("stubborn did not exit after SIGINT; killing it" in line for line in lines.lines)


def test_required_process_exit_is_reported_and_optional_one_ignored():
    lines = Lines()
    specs = [
        NodeSpec("optional", (sys.executable, "-c", "print('bye')"), required=False),
        node_like("steady"),
        NodeSpec("crashy", (sys.executable, "-c", "import time, sys; time.sleep(1.0); sys.exit(3)")),
    ]
    with Launcher(specs, output=lines, stop_timeout=5) as launcher:
        ended = launcher.wait(timeout=20)
        assert ended is not None and ended.name == "crashy" and ended.returncode == 3
        assert "steady" in launcher.running()
    assert any("optional exited with code 0 (not required" in line for line in lines.lines)
    assert any("required node crashy exited with code 3" in line for line in lines.lines)
    assert launcher.running() == []


def test_missing_executable_stops_what_was_started():
    lines = Lines()
    launcher = Launcher([node_like("first"), NodeSpec("missing", ("/nonexistent/node",))], output=lines)
    with pytest.raises(FileNotFoundError):
        launcher.start()
    assert launcher.running() == []
    assert any("cannot start missing" in line for line in lines.lines)


RUN_SCRIPT = textwrap.dedent(
    """
    import sys
    from smolvla_ros.launcher import Launcher, NodeSpec
    node = sys.argv[1]
    required_exit = sys.argv[2] == "crash"
    specs = [NodeSpec("n1", (sys.executable, "-c", node, "n1")), NodeSpec("n2", (sys.executable, "-c", node, "n2"))]
    if required_exit:
        specs.append(NodeSpec("dies", (sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(7)")))
    if sys.argv[2] == "stubborn":
        specs.append(NodeSpec("stubborn", (sys.executable, "-c", sys.argv[3])))
    sys.exit(Launcher(specs, stop_timeout=0.5).run())
    """
)


def start_run_script(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, NODE_LIKE, *args], stdout=subprocess.PIPE)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_stops_all_on_ctrl_c_or_sigterm(signum):
    process = start_run_script("normal")
    seen = []
    for raw in process.stdout:
        seen.append(raw.decode().rstrip())
        if sum(line.startswith(("[n1    ] hello from", "[n2    ] hello from")) for line in seen) == 2:
            break
    process.send_signal(signum)
    out, _ = process.communicate(timeout=20)
    text = "\n".join(seen) + "\n" + out.decode()
    assert process.returncode == 0, text
    assert "[n1    ] n1 got SIGINT" in text and "[n2    ] n2 got SIGINT" in text
    assert "n1 exited with code 0" in text and "n2 exited with code 0" in text


def test_run_fails_when_a_node_has_to_be_killed():
    process = start_run_script("stubborn", STUBBORN)
    ready = set()
    for raw in process.stdout:
        line = raw.decode()
        prefixes = ("[stubborn] ignoring", "[n1      ] hello", "[n2      ] hello")
        ready |= {prefix for prefix in prefixes if line.startswith(prefix)}
        if len(ready) == 3:
            break
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 1, out.decode()
    assert "not stopped cleanly: stubborn" in out.decode()


def test_run_fails_when_a_required_node_dies():
    result = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT, NODE_LIKE, "crash"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 7, result.stdout + result.stderr
    assert "required node dies exited with code 7" in result.stdout
    assert "n1 got SIGINT" in result.stdout and "n2 got SIGINT" in result.stdout


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    for name in ("sim.yaml", "policy.yaml", "expert.yaml", "executor.yaml", "recorder.yaml"):
        (tmp_path / name).write_text("{}\n")
    return tmp_path


def test_graph_nodes_maps_options_to_executables_files_and_overrides(config_dir):
    specs = graph_nodes(
        GraphOptions(
            sim=True,
            checkpoint="lerobot/smolvla_base",
            instruction="pick up the cube",
            g=0.6,
            mode="async",
            control_rate=30,
            chunk_size=20,
            cameras=("/camera/front/image_raw", "/camera/wrist/image_raw"),
            config_dir=config_dir,
            extra={"executor": {"max_velocity": 1.5}},
        )
    )
    assert [s.name for s in specs] == ["robot", "policy", "executor"]
    robot, policy, executor = specs
    assert Path(robot.command[0]).name == "sim_arm_node" and robot.params_file == config_dir / "sim.yaml"
    assert Path(policy.command[0]).name == "policy_node" and policy.params_file == config_dir / "policy.yaml"
    assert policy.parameters == {
        "instruction": "pick up the cube",
        "checkpoint": "lerobot/smolvla_base",
        "camera_topics": ["/camera/front/image_raw", "/camera/wrist/image_raw"],
    }
    assert executor.parameters == {
        "control_rate": 30.0,
        "chunk_size": 20,
        "mode": "async",
        "threshold": 0.6,
        "max_velocity": 1.5,
    }
    expert = graph_nodes(GraphOptions(policy="expert", chunk_size=50, config_dir=config_dir))
    assert [Path(s.command[0]).name for s in expert] == ["expert_policy_node", "executor_node"]
    assert expert[0].parameters == {"chunk_size": 50} and expert[0].params_file == config_dir / "expert.yaml"


def test_record_adds_the_recorder_with_an_absolute_directory_the_task_and_the_cameras(config_dir, monkeypatch):
    monkeypatch.chdir(config_dir)
    cameras = ("/cam/front/image_raw", "/cam/wrist/image_raw/compressed")
    specs = graph_nodes(
        GraphOptions(sim=True, policy="expert", record_dir=Path("episodes"), task="stack", config_dir=config_dir)
    )
    assert [s.name for s in specs] == ["robot", "policy", "executor", "recorder"]
    recorder = specs[-1]
    assert Path(recorder.command[0]).name == "recorder_node" and recorder.params_file == config_dir / "recorder.yaml"
    assert recorder.parameters == {"output_dir": str(config_dir / "episodes"), "task": "stack"}
    plan = graph_plan(GraphOptions(record_dir=Path("/data/eps"), instruction="pick", cameras=cameras))[-1]
    assert plan.parameters == {"output_dir": "/data/eps", "task": "pick", "camera_topics": list(cameras)}
    assert graph_plan(GraphOptions(record_dir=Path("/d")))[-1].parameters == {"output_dir": "/d"}  # file's task


def test_executor_chunk_size_follows_a_local_checkpoint(tmp_path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"type": "smolvla", "chunk_size": 30}))
    executor = graph_plan(GraphOptions(checkpoint=str(checkpoint)))[-1]
    assert executor.parameters == {"chunk_size": 30}
    given = graph_plan(GraphOptions(checkpoint=str(checkpoint), chunk_size=20))[-1]
    assert given.parameters == {"chunk_size": 20}  # an explicit size wins
    hub = graph_plan(GraphOptions(checkpoint="lerobot/smolvla_base"))[-1]
    assert hub.parameters == {}  # nothing to read locally: the executor's parameter file decides
    (checkpoint / "config.json").write_text("not json")
    assert graph_plan(GraphOptions(checkpoint=str(checkpoint)))[-1].parameters == {}


def test_the_control_rate_follows_the_checkpoint_and_another_rate_is_refused(tmp_path):
    from smolvla.robot_interface import so100_interface

    ours = tmp_path / "ours"
    ours.mkdir()
    so100_interface(("observation.image",), fps=15.0).save(ours)
    robot, policy, executor = graph_plan(GraphOptions(sim=True, checkpoint=str(ours)))
    assert robot.parameters == {"control_rate": 15.0} and executor.parameters == {"control_rate": 15.0}
    assert "control_rate" not in policy.parameters and "fps" not in policy.parameters  # the node reads the file
    assert graph_plan(GraphOptions(checkpoint=str(ours), control_rate=15))[-1].parameters == {"control_rate": 15.0}
    with pytest.raises(ValueError, match=r"control rate 30 Hz differs from the checkpoint's 15 fps: .* 2 times"):
        graph_plan(GraphOptions(checkpoint=str(ours), control_rate=30))

    lerobot = tmp_path / "lerobot"  # no robot_interface.json: the units and rate come from the options
    lerobot.mkdir()
    policy, executor = graph_plan(
        GraphOptions(
            checkpoint=str(lerobot),
            joint_units="lerobot_degrees",
            fps=20.0,
            calibration_file="arm.json",
            cameras=("front=/cam/front", "wrist=none"),
            record_dir=tmp_path / "eps",
        )
    )[:2]
    assert policy.parameters == {
        "checkpoint": str(lerobot),
        "joint_units": "lerobot_degrees",
        "calibration_file": str(Path("arm.json").absolute()),
        "fps": 20.0,
        "camera_topics": ["front=/cam/front", "wrist=none"],
    }
    assert executor.parameters == {"control_rate": 20.0}
    recorder = graph_plan(GraphOptions(checkpoint=str(lerobot), cameras=("front=/a", "b=none"), record_dir=tmp_path))
    assert recorder[-1].parameters["camera_topics"] == ["/a"]  # the recorder records the mapped topics
    with pytest.raises(ValueError, match="differs from the checkpoint's 20 fps"):
        graph_plan(GraphOptions(checkpoint=str(lerobot), fps=20.0, control_rate=10.0))
    resampled = GraphOptions(
        checkpoint=str(lerobot), fps=20.0, control_rate=10.0, extra={"executor": {"resample_chunks": True}}
    )
    assert graph_plan(resampled)[-1].parameters == {"control_rate": 10.0, "resample_chunks": True}


def test_graph_plan_names_the_nodes_as_their_parameter_files_do():
    plan = graph_plan(GraphOptions(sim=True, record_dir=Path("episodes")))
    assert [(p.label, p.node_name, p.params_file) for p in plan] == [
        ("robot", "so101_sim", "sim.yaml"),
        ("policy", "smolvla_policy", "policy.yaml"),
        ("executor", "smolvla_executor", "executor.yaml"),
        ("recorder", "smolvla_recorder", "recorder.yaml"),
    ]
    for p in plan:  # each repository parameter file is keyed by the node name the plan gives
        assert list(yaml.safe_load(find_config(p.params_file).read_text())) == [p.node_name]


@pytest.mark.parametrize(
    "options, message",
    [
        (GraphOptions(policy="oracle"), "policy must be one of"),
        (GraphOptions(mode="fast"), "mode must be one of"),
        (GraphOptions(g=1.5), "g must be within"),
        (GraphOptions(control_rate=0), "control rate must be positive"),
        (GraphOptions(chunk_size=0), "chunk size must be at least 1"),
        (GraphOptions(cameras=()), "give at least one camera"),
        (GraphOptions(fps=0.0), "fps must be positive"),
        (GraphOptions(extra={"camera": {"x": 1}}), "nodes not in this graph"),
        (GraphOptions(extra={"recorder": {"task": "x"}}), "nodes not in this graph"),
        (GraphOptions(task="stack"), "only used when recording"),
        (GraphOptions(mode="sync", g=0.5), "g is not used in mode sync"),
        (GraphOptions(mode="continuous", g=0.5), "g is not used in mode continuous"),
        (GraphOptions(output="velocity"), "output must be one of"),
        (GraphOptions(sim=True, output="trajectory"), "simulated arm has no trajectory controller"),
    ],
)
def test_graph_nodes_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        graph_nodes(options)


def test_executor_output_follows_the_driver_command_controllers():
    assert executor_output("forward") == "position"
    assert executor_output("trajectory") == "trajectory"
    with pytest.raises(ValueError, match="arm_gripper is for MoveIt"):
        executor_output("arm_gripper")
    # The output is an executor override; g stays usable where it means something.
    executor = graph_plan(GraphOptions(output=executor_output("trajectory"), mode="auto", g=0.5))[-1]
    assert executor.parameters == {"output": "trajectory", "mode": "auto", "threshold": 0.5}
    assert graph_plan(GraphOptions())[-1].parameters == {}  # nothing given: the file's output


def test_cli_print_commands_dry_run_and_errors(config_dir, capsys):
    argv = ["--sim", "--policy", "expert", "--config-dir", str(config_dir), "--instruction", "stack"]
    argv.append("--print-commands")
    assert main([*argv, "--set", "executor.max_velocity=1.5", "--set", "robot.render=false"]) == 0
    out = capsys.readouterr().out
    assert "robot: " in out and "sim_arm_node --ros-args --params-file" in out and "render:=false" in out
    assert 'instruction:="stack"' in out and "max_velocity:=1.5" in out and "recorder: " not in out
    assert "dry_run" not in out
    assert main([*argv, "--dry-run"]) == 0  # the executor publishes to its dry-run topic only
    assert "executor_node --ros-args" in (out := capsys.readouterr().out) and "dry_run:=true" in out
    assert main([*argv, "--record", str(config_dir / "eps"), "--task", "stack it"]) == 0
    out = capsys.readouterr().out
    assert f"recorder_node --ros-args --params-file {config_dir / 'recorder.yaml'}" in out
    assert f'output_dir:="{config_dir / "eps"}"' in out and 'task:="stack it"' in out
    assert main(["-g", "2", "--config-dir", str(config_dir)]) == 2
    assert "g must be within" in capsys.readouterr().err
    assert main(["--mode", "sync", "-g", "0.5", "--config-dir", str(config_dir)]) == 2
    assert "g is not used in mode sync" in capsys.readouterr().err
    assert main(["--output", "trajectory", "--config-dir", str(config_dir), "--print-commands"]) == 0
    assert 'output:="trajectory"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--set", "nodot=1"])


@pytest.mark.ros
def test_smolvla_launch_runs_the_simulated_graph_and_stops_it_cleanly_on_ctrl_c(ros, tmp_path):
    from std_msgs.msg import Float64MultiArray

    from smolvla_msgs.msg import ActionChunk

    commands, chunks = [], []
    node = ros.node("launch_probe")
    node.create_subscription(Float64MultiArray, "/forward_position_controller/commands", commands.append, 10)
    node.create_subscription(ActionChunk, "/smolvla/action_chunk", chunks.append, 10)
    log_path = tmp_path / "smolvla_launch.log"
    episodes = tmp_path / "episodes"
    # Cameras at a low rate: the expert does not look at them, the recorder needs them (a bag starts when every
    # recorded topic has sent a message).
    argv = [find_executable("smolvla_launch"), "--sim", "--policy", "expert", "--set", "robot.camera_rate=5.0"]
    argv += ["--record", str(episodes)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            ros.wait_for(lambda: len(chunks) >= 2 and len(commands) >= 60, 90.0, "chunks and commands from the graph")
            ros.wait_for(lambda: "writing from now on" in log_path.read_text(), 30.0, "the recorder to start its bag")
            ros.spin_for(2.0)  # a bag of a few seconds, however late the recorder started on a loaded machine
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)
    out = log_path.read_text()
    assert process.returncode == 0, out
    for label in ("robot", "policy", "executor", "recorder"):
        assert f"[launch  ] {label} exited with code 0" in out, out
    assert "[executor] " in out and "[policy  ] " in out and "[robot   ] " in out
    assert "killing" not in out
    # The recorder's episode was closed on Ctrl-C (test_recorder_node checks its contents message by message).
    with Reader(episodes / "episode_0001") as bag:
        counts = {topic: info.msgcount for topic, info in bag.topics.items()}
    assert counts["/joint_states"] > 100 and counts["/forward_position_controller/commands"] > 30, counts
    assert counts["/camera/front/image_raw"] > 0 and counts["/camera/wrist/image_raw"] > 0, counts
    assert (
        episodes / "episode_0001" / "task.txt"
    ).read_text().strip() == "pick up the cube and place it on the green target"
