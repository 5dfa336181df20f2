"""Launch the SO-100 driver alone: robot_state_publisher, the ros2_control controller manager with
so100_driver/So100Hardware (or mock hardware, or the STS3215 bus emulator) and the controllers.

    ros2 launch so100_driver so100_driver.launch.py port:=/dev/ttyACM0 \
        calibration_file:=$HOME/.cache/huggingface/lerobot/calibration/robots/so100_follower/my_arm.json
    ros2 launch so100_driver so100_driver.launch.py use_mock_hardware:=true
    ros2 launch so100_driver so100_driver.launch.py use_emulator:=true

command_controllers picks the active command set: forward (forward_position_controller, what the
SmolVLA executor publishes to), trajectory (joint_trajectory_controller) or arm_gripper
(arm_trajectory_controller + gripper_controller). The other sets are loaded inactive.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, TimerAction
from launch.conditions import IfCondition
from launch.substitutions import Command, FindExecutable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

COMMAND_SETS = {
    "forward": ["forward_position_controller"],
    "trajectory": ["joint_trajectory_controller"],
    "arm_gripper": ["arm_trajectory_controller", "gripper_controller"],
}
# Where the emulator links its pseudo-terminal, so the URDF can name a fixed port.
EMULATOR_PORT = "/tmp/so100_bus"


def _controllers(context):
    choice = LaunchConfiguration("command_controllers").perform(context)
    if choice not in COMMAND_SETS:
        raise ValueError(f"command_controllers must be one of {sorted(COMMAND_SETS)}, got {choice!r}")
    active = ["joint_state_broadcaster", *COMMAND_SETS[choice]]
    inactive = [name for key, names in COMMAND_SETS.items() if key != choice for name in names]
    manager = ["--controller-manager", "/controller_manager"]
    return [
        Node(package="controller_manager", executable="spawner", arguments=[*active, *manager], output="screen"),
        Node(
            package="controller_manager",
            executable="spawner",
            arguments=[*inactive, "--inactive", *manager],
            output="screen",
        ),
    ]


def _description(context):
    use_emulator = LaunchConfiguration("use_emulator").perform(context).lower() == "true"
    port = EMULATOR_PORT if use_emulator else LaunchConfiguration("port").perform(context)
    xacro_file = PathJoinSubstitution([FindPackageShare("so100_driver"), "urdf", "so100.urdf.xacro"])
    robot_description = ParameterValue(
        Command(
            [
                FindExecutable(name="xacro"),
                " ",
                xacro_file,
                " use_mock_hardware:=",
                LaunchConfiguration("use_mock_hardware"),
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
    # The emulator must own its pseudo-terminal before the hardware opens the port.
    delayed = [TimerAction(period=1.0, actions=[control_node])] if use_emulator else [control_node]
    return [state_publisher, *delayed, *_controllers(context)]


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
            Node(
                package="so100_driver",
                executable="sts_bus_emulator",
                arguments=["--link", EMULATOR_PORT],
                condition=IfCondition(LaunchConfiguration("use_emulator")),
                output="screen",
            ),
            OpaqueFunction(function=_description),
        ]
    )
