"""Launch the SO-100 driver alone: robot_state_publisher, the ros2_control controller manager with
so100_driver/So100Hardware (or mock hardware, or the STS3215 bus emulator) and the controllers.

    ros2 launch so100_driver so100_driver.launch.py port:=/dev/ttyACM0 \
        calibration_file:=$HOME/.cache/huggingface/lerobot/calibration/robots/so100_follower/my_arm.json
    ros2 launch so100_driver so100_driver.launch.py use_mock_hardware:=true
    ros2 launch so100_driver so100_driver.launch.py use_emulator:=true

command_controllers picks the active command set: forward (forward_position_controller, what the
SmolVLA executor publishes to), trajectory (joint_trajectory_controller) or arm_gripper
(arm_trajectory_controller + gripper_controller). The other sets are loaded inactive.

The controller manager, robot_state_publisher and the emulator are required: if one exits (e.g. the hardware
cannot be configured because the port is wrong or no arm is plugged in), the whole launch stops with a message
naming it and what to check, and `ros2 launch` exits with status 1. So does a spawner that fails.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, TimerAction
from launch.event_handlers import OnProcessExit
from launch.substitutions import Command, FindExecutable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from so100_driver.launch_arguments import LaunchArgumentError, choice, flag
from so100_driver.required_process import required_exit_handler

COMMAND_SETS = {
    "forward": ["forward_position_controller"],
    "trajectory": ["joint_trajectory_controller"],
    "arm_gripper": ["arm_trajectory_controller", "gripper_controller"],
}
# Where the emulator links its pseudo-terminal, so the URDF can name a fixed port.
EMULATOR_PORT = "/tmp/so100_bus"


def _required(action, label: str, hint: str = "", *, finishes: bool = False) -> RegisterEventHandler:
    return RegisterEventHandler(
        OnProcessExit(target_action=action, on_exit=required_exit_handler(label, hint, finishes=finishes))
    )


def _controllers(context):
    selected = choice("command_controllers", LaunchConfiguration("command_controllers").perform(context), COMMAND_SETS)
    active = ["joint_state_broadcaster", *COMMAND_SETS[selected]]
    inactive = [name for key, names in COMMAND_SETS.items() if key != selected for name in names]
    manager = ["--controller-manager", "/controller_manager"]
    spawners = [
        Node(package="controller_manager", executable="spawner", arguments=[*active, *manager], output="screen"),
        Node(
            package="controller_manager",
            executable="spawner",
            arguments=[*inactive, "--inactive", *manager],
            output="screen",
        ),
    ]
    hint = "A controller could not be loaded or switched: see the spawner's and the controller manager's errors above."
    return [*spawners, *(_required(node, "spawner", hint, finishes=True) for node in spawners)]


def _description(context):
    use_mock = flag("use_mock_hardware", LaunchConfiguration("use_mock_hardware").perform(context))
    use_emulator = flag("use_emulator", LaunchConfiguration("use_emulator").perform(context))
    if use_mock and use_emulator:
        raise LaunchArgumentError("use_mock_hardware:=true and use_emulator:=true exclude each other: pick one")
    port = EMULATOR_PORT if use_emulator else LaunchConfiguration("port").perform(context)
    xacro_file = PathJoinSubstitution([FindPackageShare("so100_driver"), "urdf", "so100.urdf.xacro"])
    robot_description = ParameterValue(
        Command(
            [
                FindExecutable(name="xacro"),
                " ",
                xacro_file,
                f" use_mock_hardware:={str(use_mock).lower()}",
                f" port:={port}",
                " calibration_file:=",
                LaunchConfiguration("calibration_file"),
            ]
        ),
        value_type=str,
    )
    controllers_file = LaunchConfiguration("controllers_file")
    control_node = Node(
        package="controller_manager",
        executable="ros2_control_node",
        parameters=[controllers_file],
        # Jazzy's controller manager takes the URDF from robot_state_publisher's topic.
        remappings=[("~/robot_description", "/robot_description")],
        output="screen",
    )
    state_publisher = Node(
        package="robot_state_publisher",
        executable="robot_state_publisher",
        parameters=[{"robot_description": robot_description}],
        output="screen",
    )
    hardware = "mock hardware" if use_mock else f"the SO-100 on {port}"
    manager_hint = (
        f"The controller manager could not start {hardware}: the first ERROR above says why (e.g. 'cannot open "
        "serial port', 'no reply to PING', 'Failed to set the initial state of the component'). Check port:= and "
        "the arm's power, or run without an arm: use_mock_hardware:=true or use_emulator:=true "
        "(see Troubleshooting in docs/so100-driver.md)."
    )
    actions = [
        state_publisher,
        _required(state_publisher, "robot_state_publisher", "Check the URDF (xacro) errors above."),
        _required(control_node, "ros2_control_node (controller manager)", manager_hint),
    ]
    if use_emulator:
        emulator = Node(
            package="so100_driver",
            executable="sts_bus_emulator",
            arguments=["--link", EMULATOR_PORT],
            output="screen",
        )
        # The emulator must own its pseudo-terminal before the hardware opens the port.
        actions += [
            emulator,
            _required(emulator, "sts_bus_emulator", f"The emulated bus on {EMULATOR_PORT} is gone."),
            TimerAction(period=1.0, actions=[control_node]),
        ]
    else:
        actions.append(control_node)
    return [*actions, *_controllers(context)]


def generate_launch_description() -> LaunchDescription:
    """Arguments: port, calibration_file, use_mock_hardware, use_emulator, controllers_file, command_controllers."""
    return LaunchDescription(
        [
            DeclareLaunchArgument("port", default_value="/dev/ttyACM0", description="serial device of the bus"),
            DeclareLaunchArgument(
                "calibration_file", default_value="", description="LeRobot calibration JSON ('' = servos as they are)"
            ),
            DeclareLaunchArgument(
                "use_mock_hardware", default_value="false", description="mock_components/GenericSystem, no arm"
            ),
            DeclareLaunchArgument(
                "use_emulator", default_value="false", description=f"run sts_bus_emulator on {EMULATOR_PORT}"
            ),
            DeclareLaunchArgument(
                "controllers_file",
                default_value=PathJoinSubstitution([FindPackageShare("so100_driver"), "config", "controllers.yaml"]),
            ),
            DeclareLaunchArgument(
                "command_controllers", default_value="forward", description="forward | trajectory | arm_gripper"
            ),
            OpaqueFunction(function=_description),
        ]
    )
