#!/usr/bin/env bash
# Create or update the workspace's virtual environment at .venv: pinned ROS 2 Jazzy wheels, colcon, torch (CPU),
# the project's Python packages; then patch the wheels' CMake exports. Safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating virtual environment .venv"
  "$PYTHON" -m venv .venv
fi
# The bootstrapper the ROS wheels install re-executes Python with LD_LIBRARY_PATH set; skip that for pip.
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
echo "setup: installing pinned requirements (requirements/lock.txt)"
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements/lock.txt
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e src/smolvla
.venv/bin/python tools/patch_ros_wheels.py .venv
