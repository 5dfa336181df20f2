"""Simulated SO-101 arm (MuJoCo, headless) with a pick-and-place task and a scripted joint-space expert.

Plain Python without ROS: smolvla_ros.sim_arm_node and smolvla_ros.expert_policy_node wrap these classes.
"""

import os

# Headless rendering. MuJoCo picks its GL backend when it is first imported, so this runs before any submodule
# (all of which import mujoco); set MUJOCO_GL yourself (e.g. osmesa) to choose another backend.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
