"""The simulated arm over DDS, and a closed loop through the real executor node with the expert as the policy."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from smolvla.sim.scene import JOINT_NAMES
from smolvla_ros.launcher import GraphOptions, Launcher, NodeSpec, find_config, find_executable, graph_nodes
from smolvla_ros.parameters import set_parameters_request
from smolvla_ros.sim_session import SimSession

pytestmark = pytest.mark.ros


def test_sim_arm_node_publishes_cameras_and_state_follows_commands_and_resets(ros, tmp_path):
    spec = NodeSpec(
        "robot",
        (find_executable("sim_arm_node"),),
        params_file=find_config("sim.yaml"),
        parameters={"seed": 4, "image_width": 128, "image_height": 96},
    )
    node = ros.node("sim_probe")
    states: list[JointState] = []
    images: dict[str, Image] = {}
    node.create_subscription(JointState, "/joint_states", states.append, 10)
    for camera in ("front", "wrist"):
        node.create_subscription(
            Image, f"/camera/{camera}/image_raw", lambda m, c=camera: images.__setitem__(c, m), qos_profile_sensor_data
        )
    command = node.create_publisher(Float64MultiArray, "/forward_position_controller/commands", 10)
    reset = node.create_client(Trigger, "/so101_sim/reset")
    with open(tmp_path / "sim.log", "w") as log, Launcher([spec], output=log):
        ros.wait_for(lambda: len(images) == 2 and states, 60.0, "camera images and joint states")
        for image in images.values():
            assert (image.encoding, image.height, image.width, image.step) == ("rgb8", 96, 128, 384)
            assert abs(time.time() - (image.header.stamp.sec + image.header.stamp.nanosec * 1e-9)) < 5.0
        assert list(states[-1].name) == list(JOINT_NAMES)
        goal = [0.3, -0.4, 0.6, 0.4, 0.2, 0.5]
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            command.publish(Float64MultiArray(data=goal))
            ros.spin_for(0.1)
            if np.max(np.abs(np.asarray(states[-1].position) - goal)) < 0.08:
                break
        assert np.max(np.abs(np.asarray(states[-1].position) - goal)) < 0.08, states[-1].position
        response = ros.call(reset, Trigger.Request())
        assert response.success and response.message.startswith("seed 4:"), response.message
        ros.spin_for(0.5)
        assert np.max(np.abs(np.asarray(states[-1].position[:5]))) < 0.05  # back home
        # Seeds are checked when set (a negative one crashed the node at the next reset) and wrap after the last.
        parameters = node.create_client(SetParameters, "/so101_sim/set_parameters")
        refused = ros.call(parameters, set_parameters_request({"seed": -1})).results[0]
        assert not refused.successful and "seed must be between 0 and 4294967295" in refused.reason
        assert "read-only" in ros.call(parameters, set_parameters_request({"state_rate": 1e-300})).results[0].reason
        assert ros.call(parameters, set_parameters_request({"seed": 2**32 - 1})).results[0].successful
        assert ros.call(reset, Trigger.Request()).message.startswith("seed 4294967295:")
        assert ros.call(reset, Trigger.Request()).message.startswith("seed 0:")


def test_closed_loop_expert_executor_sim_places_cubes(tmp_path):
    options = GraphOptions(
        sim=True,
        policy="expert",
        mode="async",
        g=0.7,
        extra={"robot": {"seed": 0, "respawn_delay": -1.0, "camera_rate": 0.0}, "policy": {"latency": 0.3}},
    )
    log_path = tmp_path / "graph.log"
    results = []
    try:
        with open(log_path, "w") as log, Launcher(graph_nodes(options), output=log) as launcher, SimSession() as s:
            s.wait_ready(timeout=60.0)
            for _ in range(2):
                start, scene = s.start_episode()
                results.append((scene, s.wait_placement(start, timeout=35.0)))
            assert set(launcher.running()) == {"robot", "policy", "executor"}
    finally:
        print(log_path.read_text()[-6000:])
    # Measured: each seed is placed in 7-9 s on an idle machine; the limit leaves room for a loaded CI machine.
    assert all(took is not None for _, took in results), results
