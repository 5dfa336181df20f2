"""Data-parallel training and resumption: two gloo processes under torchrun train the weights one process trains
with the same global batch; gradient accumulation equals the whole batch; a run stopped and resumed ends where the
uninterrupted one does; training states that cannot continue a run are refused with the reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from rosbag_files import FRONT, WRIST
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from smolvla.policy.scratch import compact_config, compact_policy
from smolvla.training import EpisodeDataset, Topics, TrainConfig, Trainer, dataset_statistics, load_episode
from smolvla.training.cli import main
from smolvla.training.resume import OPTIMIZER_GROUPS, OPTIMIZER_TENSORS, STATE_DIR, TRAINING_STEP
from smolvla.training.trainer import StepBatches

TASK = "pick up the cube"
#: A small from-scratch run: 32x32 images, chunk 10, a learning rate high enough that steps change the weights.
RUN = [
    "--from-scratch",
    "--image-size",
    "32",
    "--chunk-size",
    "10",
    "--task",
    TASK,
    "--cameras",
    FRONT,
    WRIST,
    "--batch-size",
    "8",
    "--lr",
    "3e-3",
    "--warmup-steps",
    "0",
    "--augment",
    "--no-progress",
    "--threads",
    "1",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread, as in the torchrun processes: on a loaded 2-core machine two threads per step are many times
    slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _weights(step_dir):
    return load_file(str(step_dir / "model.safetensors"))


def _assert_close_tensors(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=lambda m, name=name: f"{name}: {m}", **tolerance)


def test_two_gloo_processes_train_what_one_process_trains(bags, tmp_path):
    """torchrun --nproc_per_node 2 on the CPU (gloo): rank 0 reads the bags into the frame cache, rank 1 reads the
    cache, each computes half of every batch of 8; the weights after 3 steps equal a one-process run's."""
    args = [str(bags), *RUN, "--steps", "3", "--save-every", "0", "--log-every", "1"]
    assert main([*args, "--output", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "smolvla.training.cli", *args, "--output", str(tmp_path / "two")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes x 1 micro-batches of 4" in result.stderr
    assert result.stderr.count("step 3/3 loss") == 1  # rank 0 alone logs
    two = tmp_path / "two"
    assert sorted(p.name for p in two.iterdir()) == [
        "dataset_stats.json",
        "last",
        "losses.json",
        "losses.png",
        "step_000003",
        "train_config.json",
    ]  # written once, and the frame cache removed
    one = tmp_path / "one"
    # Adam's first moments (proportional to the gradients) agree to float rounding; the weights within 3 % of the
    # largest step (lr 3e-3): where a gradient is about 0, Adam's step follows its rounding.
    _assert_close_tensors(_state(two / "step_000003")[1], _state(one / "step_000003")[1], rtol=1e-4, atol=1e-7)
    _assert_close_tensors(_weights(two / "step_000003"), _weights(one / "step_000003"), rtol=0, atol=1e-4)
    losses = [json.loads((run / "losses.json").read_text())["train"] for run in (one, two)]
    assert [step for step, _ in losses[0]] == [1, 2, 3]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-5, atol=0)


def test_an_indivisible_global_batch_is_refused(bags, tmp_path, capsys):
    args = [str(bags), *RUN, "--steps", "2", "--output", str(tmp_path / "a")]
    assert main([*args, "--grad-accum", "3"]) == 2
    assert "--batch-size 8 does not split into 1 processes x --grad-accum 3" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.fixture(scope="module")
def episode(bags):
    return load_episode(bags / "episode_0", Topics(cameras=(FRONT, WRIST)), task=TASK)


def _trainer(episode, **settings) -> tuple[Trainer, EpisodeDataset]:
    config = compact_config(((3, 24, 32), (3, 24, 32)), chunk_size=10, image_size=32)
    policy = compact_policy(config, dataset_statistics([episode]), seed=0)
    dataset = EpisodeDataset([episode], chunk_size=10, n_slots=2, image_size=config.resize_imgs_with_padding)
    train_config = TrainConfig(steps=10, batch_size=8, lr=3e-3, warmup_steps=0, augment=True, **settings)
    return Trainer(policy, train_config), dataset


def test_gradient_accumulation_of_two_half_batches_equals_the_whole_batch(episode):
    whole, dataset = _trainer(episode)
    halves, _ = _trainer(episode, grad_accum=2)
    losses = []
    for trainer in (whole, halves):
        sampler = StepBatches(len(dataset), 8, seed=0, accumulation=trainer.config.grad_accum)
        batches = iter(DataLoader(dataset, batch_sampler=sampler))
        losses.append([])
        for _ in range(3):
            micro = [next(batches) for _ in range(trainer.config.grad_accum)]
            assert [len(b["state"]) for b in micro] == [8 // trainer.config.grad_accum] * len(micro)
            losses[-1].append(trainer.train_step(micro))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=0)  # the loss of the whole batch
    # Adam's first moment is proportional to the gradient (the step itself is not: Adam divides the scale out).
    moments = [{k: v["exp_avg"] for k, v in t.optimizer.state_dict()["state"].items()} for t in (whole, halves)]
    _assert_close_tensors(moments[1], moments[0], rtol=1e-4, atol=1e-7)
    a, b = whole.policy.model.state_dict(), halves.policy.model.state_dict()
    # Within 3 % of the largest step (lr 3e-3): where a gradient is about 0, Adam's step follows its rounding.
    _assert_close_tensors(a, b, rtol=0, atol=1e-4)
    untrained = _trainer(episode)[0].policy.model.state_dict()
    assert not torch.equal(a["action_out_proj.weight"], untrained["action_out_proj.weight"])


def test_the_data_order_is_the_same_however_a_step_is_split():
    one = iter(StepBatches(20, 8, seed=3))
    split = [iter(StepBatches(20, 8, seed=3, rank=r, world_size=2, accumulation=2)) for r in range(2)]
    for _ in range(5):  # over three epochs of 2 steps (20 frames, the ragged 4 dropped)
        whole = next(one)
        parts = [next(split[r]) for r in range(2) for _ in range(2)]
        assert sum(parts, []) == whole and all(len(p) == 2 for p in parts)
    resumed = iter(StepBatches(20, 8, seed=3, start_step=3))
    again = iter(StepBatches(20, 8, seed=3))
    assert next(resumed) == [next(again) for _ in range(4)][-1]


def _state(step_dir):
    return _weights(step_dir), load_file(str(step_dir / STATE_DIR / OPTIMIZER_TENSORS))


def test_a_resumed_run_ends_where_the_uninterrupted_one_does(bags, tmp_path):
    """A run of 4 steps stopped after its step 2 (its output as it was then: step_000002 and the losses so far),
    resumed to 4: the same weights and optimizer state as the run that was not stopped."""
    args = [str(bags), *RUN, "--steps", "4", "--save-every", "2", "--log-every", "1"]
    whole = tmp_path / "whole"
    assert main([*args, "--output", str(whole)]) == 0
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    shutil.copytree(whole / "step_000002", stopped / "step_000002")
    for name in ("losses.json", "train_config.json", "dataset_stats.json"):
        shutil.copy(whole / name, stopped / name)  # losses.json also holds steps 3 and 4: they are dropped
    # Resume from the step directory; the output defaults to the run's own directory.
    assert main([args[0], "--resume", str(stopped / "step_000002"), *args[2:]]) == 0
    weights, optimizer = _state(stopped / "step_000004")
    expected_weights, expected_optimizer = _state(whole / "step_000004")
    _assert_close_tensors(weights, expected_weights, rtol=0, atol=0)
    _assert_close_tensors(optimizer, expected_optimizer, rtol=0, atol=0)
    assert (stopped / "last").resolve() == (stopped / "step_000004").resolve()
    assert json.loads((stopped / "losses.json").read_text()) == json.loads((whole / "losses.json").read_text())
    position = json.loads((stopped / "step_000004" / STATE_DIR / TRAINING_STEP).read_text())
    frames = position["frames"]
    assert position == {
        "step": 4,
        "seed": 0,
        "batch_size": 8,
        "frames": frames,
        "epoch": 4 // (frames // 8),
        "position": 4 % (frames // 8),
    }
    assert (stopped / "train_config.resume_step_000002.json").is_file()
    assert not (stopped / "frame_cache").exists()


def test_training_states_that_cannot_continue_the_run_are_refused(bags, tmp_path, capsys):
    args = [str(bags), *RUN, "--steps", "2", "--save-every", "2", "--log-every", "1"]
    run = tmp_path / "run"
    assert main([*args, "--output", str(run)]) == 0
    step = run / "step_000002"

    def resume(*more: str, at=step) -> str:
        assert main([args[0], "--resume", str(at), *args[2:-6], "--steps", "4", *more]) == 2
        return capsys.readouterr().err

    assert "is at step 2, not before --steps 2: nothing left to train" in resume("--steps", "2")
    assert "the run trained with batch_size 8, this one has 4 (--batch-size)" in resume("--batch-size", "4")
    assert "the run trained with seed 0, this one has 1 (--seed)" in resume("--seed", "1")
    assert main([str(bags / "episode_0"), "--resume", str(step), *args[2:-6], "--steps", "4"]) == 2
    assert "its normalisation statistics are not those of this data" in capsys.readouterr().err
    # A damaged or incomplete state, and one of another model, each name the file.
    broken = tmp_path / "broken"
    shutil.copytree(step, broken)
    (broken / STATE_DIR / OPTIMIZER_GROUPS).unlink()
    assert f"{broken / STATE_DIR} lacks {OPTIMIZER_GROUPS}" in resume(at=broken)
    shutil.rmtree(broken / STATE_DIR)
    assert "no training_state/ in it; only the step directories smolvla-train writes" in resume(at=broken)
    medium = tmp_path / "medium"
    assert main([*args, "--model-size", "medium", "--output", str(medium)]) == 0
    shutil.copytree(medium / "step_000002" / STATE_DIR, broken / STATE_DIR)
    assert "a training state of another model" in resume(at=broken)
    (broken / STATE_DIR / TRAINING_STEP).write_text("{not json")
    assert f"{broken / STATE_DIR / TRAINING_STEP} cannot be read as JSON" in resume(at=broken)
    assert "not a checkpoint directory (no config.json)" in resume(at=tmp_path)
