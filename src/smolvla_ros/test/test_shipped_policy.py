"""The checkpoint shipped with the package: what it is, and the learned policy placing the cube on a held-out seed
through the real graph (simulated SO-101 in lock-step, the SmolVLA policy node, the executor), run by
`smolvla_eval_policy` as `make eval-policy` runs it."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from smolvla.policy import SmolVLAPolicy
from smolvla.robot_interface import SO100_FPS, SO100_JOINT_NAMES
from smolvla.sim.task import FIRST_HELD_OUT_SEED
from smolvla_ros.launcher import find_executable
from smolvla_ros.shipped import EVALUATION_FILE, shipped_checkpoint

#: Held-out scenes (never a demonstration's). The shipped checkpoint placed all four in each of three runs of
#: make eval-policy and in make eval-sim. The policy samples its chunks from noise and the executor's requests follow
#: the wall clock, so no episode repeats bit for bit. One of these four must be placed (at the checkpoint's rate of
#: 0.75 through the graph, all four would fail together about once in 250 runs; on these scenes far less often),
#: which a policy whose samples or units disagree with the executor never does.
SEEDS = (1011, 1012, 1013, 1014)
EVAL_TIMEOUT = 240  # seconds; pytest's own timeout (pytest.ini) is 300


def nodes_log(path: Path) -> str:
    """The end of the evaluation's node log, for a failure message."""
    return path.read_text()[-6000:] if path.exists() else ""


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
def test_the_shipped_policy_places_cubes_on_held_out_seeds_through_the_real_graph(tmp_path):
    log = tmp_path / "nodes.log"
    argv = [find_executable("smolvla_eval_policy"), "--seeds", str(len(SEEDS)), "--first-seed", str(SEEDS[0])]
    argv += ["--lockstep", "--timeout", "45", "--aggregation", "latest_only", "--log", str(log)]
    # Four episodes take at most 4 x 45 s of lock-step time. Past EVAL_TIMEOUT the evaluation is interrupted like
    # Ctrl-C, so that it stops its nodes (they run in sessions of their own) and the failure shows their log.
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=EVAL_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
        pytest.fail(f"no result after {EVAL_TIMEOUT} s:\n{stdout}{stderr}\n{nodes_log(log)}")
    out = stdout + stderr
    assert process.returncode == 0, out + nodes_log(log)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["checkpoint"] == str(shipped_checkpoint())
    assert summary["mode"] == "async" and summary["lockstep"] and summary["aggregation"] == "latest_only"
    assert [e["seed"] for e in summary["per_episode"]] == list(SEEDS) and min(SEEDS) >= FIRST_HELD_OUT_SEED
    assert summary["success_rate"] > 0, out + nodes_log(log)
    assert summary["median_chunk_latency_s"] > 0
