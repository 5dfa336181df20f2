"""SmolVLA with asynchronous inference on an SO-100 arm (or the simulated SO-101), for `ros2 launch`.

    ros2 launch smolvla_ros so100_async.launch.py checkpoint:=<hub id or directory> port:=/dev/ttyACM0 \
        calibration_file:=<LeRobot calibration JSON>
    ros2 launch smolvla_ros so100_async.launch.py checkpoint:=<LeRobot-trained checkpoint> \
        calibration_file:=<LeRobot calibration JSON> joint_units:=lerobot_degrees fps:=30 \
        cameras:=front=/camera/front/image_raw,wrist=/camera/wrist/image_raw
    ros2 launch smolvla_ros so100_async.launch.py use_sim:=true checkpoint:=/path/to/checkpoint
    ros2 launch smolvla_ros so100_async.launch.py use_sim:=true policy:=expert g:=0.5
    ros2 launch smolvla_ros so100_async.launch.py use_sim:=true policy:=expert record_dir:=episodes
    ros2 launch smolvla_ros so100_async.launch.py use_emulator:=true policy:=expert   # driver + emulated bus

Starts the robot side (so100_driver's driver launch with ros2_control and the forward position controller, or
the simulated arm with use_sim:=true), the policy node (or the scripted expert), the action-queue executor and,
with record_dir, the episode recorder, each with its parameter file from this package's config directory. The
nodes, their names and which argument overrides which parameter come from smolvla_ros.launcher.graph_plan, the
same plan `smolvla_launch` runs on machines without ROS 2 launch, so both start the same graph. Empty arguments
keep the parameter files' values. command_controllers picks the driver's controller and the executor's output
with it (forward: position commands; trajectory: chunks streamed into joint_trajectory_controller).
Every node is required: if one exits (the policy cannot load its checkpoint, the controller manager cannot start
the hardware, ...), the whole launch stops with a message naming it and `ros2 launch` exits with status 1.
"""

import os
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare
from so100_driver.launch_arguments import flag, optional_value
from so100_driver.required_process import required_exit_handler

from smolvla_ros.launcher import GraphOptions, executor_output, graph_plan

# (name, default, description); "" = keep the value of the parameter file.
ARGUMENTS = [
    ("use_sim", "false", "true: simulated SO-101 (sim_arm_node) instead of the SO-100 driver"),
    ("policy", "smolvla", "smolvla (the model) or expert (the scripted simulation expert)"),
    ("checkpoint", "", "SmolVLA checkpoint: Hugging Face hub id or local directory"),
    ("instruction", "", "initial language instruction (later: the /smolvla/set_instruction service)"),
    (
        "cameras",
        "",
        "the checkpoint's cameras by name, comma separated: front=/camera/front/image_raw,wrist=... (NAME=none masks "
        "one); or topics in order for checkpoints with numbered cameras (observation.image, observation.image2, ...)",
    ),
    (
        "joint_units",
        "",
        "units of a checkpoint without robot_interface.json: lerobot_degrees, lerobot_range, radians or one per joint",
    ),
    ("fps", "", "frame rate of a checkpoint without robot_interface.json (the executor's control_rate follows it)"),
    ("mode", "", "executor mode: sync, async, continuous or auto"),
    ("g", "", "queue threshold g in [0, 1] (request a chunk when queue / chunk_size <= g)"),
    ("control_rate", "", "control rate in Hz (executor, simulated arm); default: the checkpoint's frame rate"),
    ("chunk_size", "", "actions per chunk (executor, expert); must match the checkpoint"),
    ("device", "", "torch device of the model: cpu, cuda, ..."),
    ("dtype", "", "model dtype: auto (bfloat16 where the device multiplies it natively), float32 or bfloat16"),
    ("config_dir", "", "directory with the parameter files (default: the installed share/smolvla_ros/config)"),
    ("record_dir", "", "also record episodes (rosbag2, for smolvla-train) into this directory; empty: no recorder"),
    ("task", "", "task text of the recorded episodes (default: instruction, else recorder.yaml's)"),
    ("dry_run", "false", "true: the executor publishes commands only to /smolvla/dry_run_command, never to the arm"),
    # Passed to so100_driver's launch when use_sim is false.
    ("port", "/dev/ttyACM0", "serial device of the SO-100 bus"),
    ("calibration_file", "", "LeRobot calibration JSON of the arm (driver; policy, for LeRobot's joint units)"),
    ("use_mock_hardware", "false", "driver with mock hardware (no arm)"),
    ("use_emulator", "false", "driver on the STS3215 bus emulator (no arm, the real driver code)"),
    (
        "command_controllers",
        "forward",
        "driver command controllers and executor output: forward (position commands) or trajectory (streamed chunks)",
    ),
]


def _graph(context):
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    def optional(name: str, convert=str):
        return optional_value(name, value(name), convert)

    sim = flag("use_sim", value("use_sim"))
    cameras = [topic.strip() for topic in value("cameras").strip("[]").split(",") if topic.strip()]
    # A ValueError raised here (a refused combination) stops the launch with its message and status 1.
    output = None if sim else executor_output(value("command_controllers"))
    options = GraphOptions(
        sim=sim,
        policy=value("policy"),
        checkpoint=optional("checkpoint"),
        instruction=optional("instruction"),
        mode=optional("mode"),
        g=optional("g", float),
        output=output,
        control_rate=optional("control_rate", float),
        chunk_size=optional("chunk_size", int),
        cameras=tuple(cameras) if cameras else None,
        joint_units=optional("joint_units"),
        fps=optional("fps", float),
        calibration_file=optional("calibration_file"),
        device=optional("device"),
        dtype=optional("dtype"),
        record_dir=optional("record_dir", Path),
        task=optional("task"),
        dry_run=flag("dry_run", value("dry_run")),
    )
    config_dir = value("config_dir") or PathJoinSubstitution([FindPackageShare("smolvla_ros"), "config"]).perform(
        context
    )
    actions = []
    if not options.sim:
        driver_launch = PathJoinSubstitution([FindPackageShare("so100_driver"), "launch", "so100_driver.launch.py"])
        actions.append(
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(driver_launch),
                launch_arguments={
                    name: LaunchConfiguration(name)
                    for name in ("port", "calibration_file", "use_mock_hardware", "use_emulator", "command_controllers")
                }.items(),
            )
        )
    for plan in graph_plan(options):
        node = Node(
            package="smolvla_ros",
            executable=plan.executable,
            name=plan.node_name,
            parameters=[os.path.join(config_dir, plan.params_file), dict(plan.parameters)],
            output="screen",
            emulate_tty=True,
        )
        # Like smolvla_launch: without any of its nodes the graph is useless; stop it all and exit non-zero.
        handler = required_exit_handler(plan.node_name, "Its last ERROR/FATAL line above says why.")
        actions += [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=handler))]
    return actions


def generate_launch_description() -> LaunchDescription:
    """The launch arguments (see ARGUMENTS) and the graph, built once the arguments are known."""
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS
            ),
            OpaqueFunction(function=_graph),
        ]
    )
