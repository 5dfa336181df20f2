"""smolvla_ros: ROS 2 nodes and launch files around the ROS-free `smolvla` package."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "smolvla_ros"
# The launch and config files live at the repository root (one copy for both ways of running the graph);
# they are installed into this package's share directory so that `ros2 launch smolvla_ros ...` finds them.
ROOT = Path("..", "..")


def _files(pattern: str) -> list[str]:
    return sorted(glob(str(ROOT / pattern)))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _files("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", _files("config/*.yaml")),
        # The checkpoint trained from scratch in simulation (smolvla_ros.shipped).
        (f"share/{PACKAGE}/checkpoints/so101_cube_scratch", _files("checkpoints/so101_cube_scratch/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="smolvla_ros maintainers",
    maintainer_email="maintainers@smolvla-ros.dev",
    description="SmolVLA policy and asynchronous action-queue executor nodes for ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = smolvla_ros.policy_node:main",
            "executor_node = smolvla_ros.executor_node:main",
            "sim_arm_node = smolvla_ros.sim_arm_node:main",
            "expert_policy_node = smolvla_ros.expert_policy_node:main",
            "recorder_node = smolvla_ros.recorder_node:main",
            "smolvla_launch = smolvla_ros.launcher:main",
            "smolvla_demo = smolvla_ros.demo:main",
            "smolvla_eval_async = smolvla_ros.eval_async:main",
            "smolvla_eval_policy = smolvla_ros.eval_policy:main",
            "smolvla_eval_rtc = smolvla_ros.eval_rtc:main",
            "smolvla_set_instruction = smolvla_ros.set_instruction:main",
            "smolvla_episode = smolvla_ros.episode:main",
            "smolvla_chaos = smolvla_ros.chaos:main",
        ],
    },
)
