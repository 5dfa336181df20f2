# Source this file from the repository root's shell: `source env.sh`.
# It puts the workspace's virtual environment (ROS 2 Jazzy wheels, torch, the project's packages) and the colcon
# install space on the path, so that rclpy, smolvla_msgs and the project's commands work. Created by `make setup`.
_smolvla_ws="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
_smolvla_venv="$_smolvla_ws/.venv"

if [ ! -x "$_smolvla_venv/bin/python" ]; then
  echo "env.sh: no virtual environment at $_smolvla_venv; run 'make setup' first" >&2
else
  _smolvla_prepend() {  # _smolvla_prepend VAR VALUE: put VALUE first in VAR unless it is there already
    case ":${!1-}:" in
      *":$2:"*) ;;
      *) export "$1=$2${!1:+:${!1}}" ;;
    esac
  }
  export VIRTUAL_ENV="$_smolvla_venv"
  _smolvla_prepend PATH "$_smolvla_venv/bin"
  # The venv prefix plays the part of /opt/ros/jazzy; it has no local_setup.*, so colcon cannot chain it.
  _smolvla_prepend AMENT_PREFIX_PATH "$_smolvla_venv"
  _smolvla_prepend CMAKE_PREFIX_PATH "$_smolvla_venv"
  # C++ executables (the driver's tools and tests) need the libraries the wheels bundle; Python gets them from
  # the wheels' bootstrapper.
  for _smolvla_libs in "$_smolvla_venv"/lib/python3*/site-packages/ros_*.libs; do
    [ -d "$_smolvla_libs" ] && _smolvla_prepend LD_LIBRARY_PATH "$_smolvla_libs"
  done
  _smolvla_prepend LD_LIBRARY_PATH "$_smolvla_venv/lib"
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
  # Keep DDS on this machine unless the user asked otherwise (set SUBNET to reach a robot on the network).
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  if [ -f "$_smolvla_ws/install/setup.bash" ] && [ -n "${BASH_VERSION:-}" ]; then
    # shellcheck source=/dev/null
    source "$_smolvla_ws/install/setup.bash"
    # The nodes and commands of smolvla_ros (policy_node, smolvla_launch, ...), as `ros2 run` would find them.
    _smolvla_prepend PATH "$_smolvla_ws/install/smolvla_ros/lib/smolvla_ros"
  fi
  unset -f _smolvla_prepend
fi
unset _smolvla_ws _smolvla_venv _smolvla_libs
