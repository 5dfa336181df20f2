"""The checkpoint shipped with the package: what it is, and the learned policy driving the simulated arm through the
real graph (simulated SO-101 in lock-step, the SmolVLA policy node, the executor) on a held-out seed."""

from __future__ import annotations

import json

import pytest

from smolvla.policy import SmolVLAPolicy
from smolvla.robot_interface import SO100_FPS, SO100_JOINT_NAMES
from smolvla_ros.eval_policy import FIRST_HELD_OUT_SEED
from smolvla_ros.launcher import GraphOptions, Launcher, graph_nodes
from smolvla_ros.shipped import EVALUATION_FILE, shipped_checkpoint
from smolvla_ros.sim_session import SimSession

#: A held-out scene the shipped checkpoint placed the cube in during its evaluation (evaluation.json).
SEED = FIRST_HELD_OUT_SEED


def test_the_shipped_checkpoint_is_small_trained_from_scratch_and_describes_its_robot():
    directory = shipped_checkpoint()
    size = sum(path.stat().st_size for path in directory.iterdir())
    assert size < 30 * 2**20, f"{size / 2**20:.1f} MiB"
    assert "trained from scratch in simulation, not smolvla_base" in (directory / "README.md").read_text()
    policy = SmolVLAPolicy.from_pretrained(directory)
    interface = policy.robot_interface
    assert interface is not None and tuple(interface.joint_names) == SO100_JOINT_NAMES
    assert set(interface.joint_units) == {"radians"} and interface.fps == SO100_FPS
    assert policy.chunk_size == 50 and len(policy.camera_names) == 2
    evaluation = json.loads((directory / EVALUATION_FILE).read_text())
    assert min(e["seed"] for e in evaluation["per_episode"]) >= FIRST_HELD_OUT_SEED  # never a training seed


@pytest.mark.ros
def test_the_shipped_policy_places_the_cube_on_a_held_out_seed_in_lock_step(tmp_path):
    options = GraphOptions(
        sim=True,
        policy="smolvla",
        checkpoint=str(shipped_checkpoint()),
        extra={"robot": {"seed": SEED, "respawn_delay": -1.0, "lockstep": True}},
    )
    with (
        open(tmp_path / "nodes.log", "w") as log,
        Launcher(graph_nodes(options), output=log) as launcher,
        SimSession() as session,
    ):
        session.wait_ready(timeout=180.0)
        start, scene = session.start_episode()
        took = session.wait_placement(start, timeout=60.0)
        assert launcher.running()
    assert took is not None, f"nothing placed in 60 s ({scene}); see {tmp_path / 'nodes.log'}"
