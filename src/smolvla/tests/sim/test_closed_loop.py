"""smolvla-eval-sim: the executor's real control loop against MuJoCo, chunks a fixed number of ticks late."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smolvla.async_inference.parameters import build_control_loop
from smolvla.policy import make_tiny_checkpoint
from smolvla.sim.arm import SimArm
from smolvla.sim.closed_loop import EXECUTOR_PARAMS, load_executor_params, main, policy_source, run_episode
from smolvla.sim.expert import ExpertObservation, PickPlaceExpert

LATENCY = 4


def _expert_source(arm: SimArm, latency: int):
    expert = PickPlaceExpert(arm.model)
    requests = []

    def answer(images, state, request):
        assert len(images) == 2 and images[0].ndim == 3
        scene = arm.scene_state()
        obs = ExpertObservation(state, scene.cube_position, scene.target_position, scene.cube_yaw)
        requests.append(request)
        return expert.chunk(obs, 50, request.observation_tick, latency)

    return answer, requests


@pytest.mark.parametrize("seed", [0, 3])
def test_the_expert_places_the_cube_through_the_executor_loop(seed):
    params = load_executor_params()
    loop = build_control_loop(params)
    with SimArm(seed=seed) as arm:
        answer, requests = _expert_source(arm, LATENCY)
        result = run_episode(loop, arm, answer, LATENCY, 30.0, seed)
    assert result.success, result
    assert result.gated == 0 and result.idle_ticks == 0
    status = loop.queue.status()
    assert status.chunks_received == result.chunks == len(requests) - (status.in_flight > 0)
    # Each chunk joins the queue LATENCY ticks after its request, before that tick's command: the actions for the
    # LATENCY - 1 ticks in between have been played from the queue and are dropped (the first chunk found the
    # queue empty, and with tick_clock "action" the ticks it waited did not pass).
    assert status.actions_dropped_late == (LATENCY - 1) * (result.chunks - 1)


def test_parameters_come_from_the_executor_file_with_overrides(tmp_path):
    params = load_executor_params(overrides={"aggregation": "rtc", "threshold": 0.5})
    assert EXECUTOR_PARAMS.name == "executor.yaml"
    assert params["aggregation"] == "rtc" and params["threshold"] == 0.5
    assert params["control_rate"] == 30.0
    with pytest.raises(FileNotFoundError, match="--executor-params"):
        load_executor_params(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("units", "fps", "message"),
    [
        ("lerobot_degrees", 30.0, "not radians"),
        (None, 30.0, "no robot_interface.json"),
        ("radians", 15.0, "control period"),
    ],
)
def test_a_checkpoint_that_does_not_fit_the_simulation_is_refused(tmp_path, units, fps, message):
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny", n_cameras=2, chunk_size=10, units=units, fps=fps)
    with pytest.raises(ValueError, match=message):
        policy_source(str(checkpoint), "pick", 1.0 / 30.0)


def test_the_cli_runs_a_checkpoint_and_ends_with_a_json_line(tmp_path, capsys):
    checkpoint = make_tiny_checkpoint(
        tmp_path / "tiny",
        n_cameras=2,
        chunk_size=10,
        camera_names=("observation.images.wrist", "observation.images.front"),
    )
    assert main([str(checkpoint), "--seeds", "1", "--first-seed", "1000", "--timeout", "1", "--g", "0.5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["episodes"] == 1 and summary["g"] == 0.5 and summary["latency_ticks"] == 3
    episode = summary["per_episode"][0]
    # Random weights: every chunk is used or refused by the executor's gate, and the episode ran its second.
    assert episode["seed"] == 1000 and episode["chunks"] + episode["gated"] >= 1
    assert lines[-2].startswith("seed 1000: FAILED")
    assert np.isclose(summary["success_rate"], 0.0)
