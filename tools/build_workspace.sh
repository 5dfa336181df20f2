#!/usr/bin/env bash
# colcon build of the ROS packages under src/ against the ROS 2 wheels in .venv (or a sourced ROS 2 install).
set -eo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../env.sh
source ./env.sh
set -u
colcon build --base-paths src --symlink-install \
  --event-handlers console_cohesion- summary+ status- \
  --cmake-args -DPython3_EXECUTABLE="$(command -v python)" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
