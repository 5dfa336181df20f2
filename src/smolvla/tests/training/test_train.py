"""Fine-tuning: the recipe's schedule, a real optimisation of the tiny model on bag data, and `smolvla-train` end to
end (bags in, a checkpoint out that loads back and predicts)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from rosbag_files import FRONT, WRIST
from torch.utils.data import default_collate

from smolvla.policy import SmolVLAPolicy, make_tiny_checkpoint
from smolvla.policy.scratch import COMPACT_SIZES, compact_config, compact_policy
from smolvla.robot_interface import SO100_JOINT_NAMES, RobotInterface
from smolvla.training import EpisodeDataset, Topics, TrainConfig, Trainer, dataset_statistics, load_episode
from smolvla.training.augment import Augmentation
from smolvla.training.cli import main
from smolvla.training.trainer import learning_rate

TOPICS = Topics(cameras=(FRONT, WRIST))
TASK = "pick up the cube"


@pytest.fixture(scope="module")
def tiny_two_cameras(tmp_path_factory):
    """A tiny checkpoint with two image slots, 6 joints, chunk 10, and no robot interface (as LeRobot writes)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny2"), n_cameras=2, chunk_size=10, seed=1, units=None)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = TrainConfig(steps=100, warmup_steps=10)
    assert learning_rate(0, config) == pytest.approx(1e-4 / 11)
    assert learning_rate(9, config) == pytest.approx(1e-4 * 10 / 11)
    assert learning_rate(10, config) == pytest.approx(1e-4)
    assert learning_rate(99, config) == pytest.approx(2.5e-6)
    decay = [learning_rate(step, config) for step in range(10, 100)]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    # Default warm-up: LeRobot's 1000 of 30000 steps, scaled to shorter runs.
    assert TrainConfig(steps=20_000).warmup == 666 and TrainConfig(steps=90_000).warmup == 1000
    assert TrainConfig(steps=10).warmup == 0
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(steps=10, warmup_steps=10)


def test_optimising_a_fixed_batch_lowers_the_loss_and_trains_only_the_expert_side(tiny_two_cameras, bags):
    policy = SmolVLAPolicy.from_pretrained(tiny_two_cameras)
    episode = load_episode(bags / "episode_0", TOPICS, task=TASK)
    policy.normalizer = dataset_statistics([episode])
    dataset = EpisodeDataset([episode], chunk_size=10, n_slots=2, image_size=policy.config.resize_imgs_with_padding)
    batch = default_collate([dataset[k] for k in (0, 7, 14, 25)])
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 10, policy.config.max_action_dim, generator=gen)
    time = torch.tensor([0.2, 0.4, 0.6, 0.8])
    vision_before = policy.model.vlm.vision_model.state_dict()["embeddings.patch_embedding.weight"].clone()
    proj_before = policy.model.action_out_proj.weight.detach().clone()

    trainer = Trainer(policy, TrainConfig(steps=25, lr=1e-3, warmup_steps=0))
    losses = [trainer.train_step(batch, noise=noise, time=time) for _ in range(25)]

    assert losses[-1] < 0.5 * losses[0], losses
    assert torch.equal(policy.model.vlm.vision_model.state_dict()["embeddings.patch_embedding.weight"], vision_before)
    assert not torch.equal(policy.model.action_out_proj.weight, proj_before)
    assert trainer.step == 25


def test_smolvla_train_writes_checkpoints_that_load_and_predict(tiny_two_cameras, bags, tmp_path, caplog):
    output = tmp_path / "run"
    caplog.set_level(logging.INFO)
    status = main(
        [
            str(bags),  # a directory of bags
            "--checkpoint",
            str(tiny_two_cameras),
            "--output",
            str(output),
            "--task",
            TASK,
            "--cameras",
            FRONT,
            WRIST,
            "--steps",
            "4",
            "--batch-size",
            "4",
            "--save-every",
            "2",
            "--log-every",
            "2",
        ]
    )
    assert status == 0
    assert sorted(p.name for p in output.iterdir()) == [
        "dataset_stats.json",
        "last",
        "losses.json",
        "losses.png",
        "step_000002",
        "step_000004",
        "train_config.json",
    ]
    assert "step 2/4 loss" in caplog.text and "step 4/4 loss" in caplog.text
    last = output / "last"
    assert last.is_symlink() and last.resolve() == (output / "step_000004").resolve()  # a link, not a second copy
    assert (last / "model.safetensors").read_bytes() == (output / "step_000004" / "model.safetensors").read_bytes()
    assert (last / "model.safetensors").read_bytes() != (tiny_two_cameras / "model.safetensors").read_bytes()

    episodes = [
        load_episode(bags / "episode_0", TOPICS, task=TASK),
        load_episode(bags / "episode_1", TOPICS, task=TASK),
    ]
    expected = dataset_statistics(episodes)
    policy = SmolVLAPolicy.from_pretrained(last)
    # The bags' radians at the sampled frame rate, whatever the starting checkpoint said (here: nothing).
    assert policy.robot_interface == RobotInterface(
        SO100_JOINT_NAMES, ("radians",) * 6, 30.0, ("observation.image", "observation.image2")
    )
    for name in ("state_mean", "state_std", "action_mean", "action_std"):
        torch.testing.assert_close(getattr(policy.normalizer, name), getattr(expected, name))
    stats = json.loads((output / "dataset_stats.json").read_text())
    np.testing.assert_allclose(stats["action"]["mean"], expected.action_mean.numpy(), rtol=1e-6)
    assert stats["frames"] == sum(len(e) for e in episodes)
    assert [e["task"] for e in stats["episodes"]] == [TASK, "put the cube on the target"]

    images = [episodes[0].images[0][0], episodes[0].images[1][0]]
    chunk = policy.predict_chunk(images, episodes[0].state[0], TASK)
    assert chunk.shape == (10, 6) and np.isfinite(chunk).all()


def test_smolvla_train_refuses_data_the_checkpoint_cannot_take(bags, tmp_path, capsys):
    one_camera = make_tiny_checkpoint(tmp_path / "tiny1", n_cameras=1, chunk_size=10)
    args = [str(bags / "episode_0"), "--checkpoint", str(one_camera), "--task", TASK, "--cameras", FRONT, WRIST]
    assert main([*args, "--output", str(tmp_path / "a")]) == 2
    assert "2 camera topics for a checkpoint with 1 cameras: image (observation.image)" in capsys.readouterr().err
    five_joints = ["--joint-names", "shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "gripper"]
    assert main([*args[:-1], "--output", str(tmp_path / "b"), *five_joints]) == 2
    assert "a state of 5 joints but the checkpoint's state has 6" in capsys.readouterr().err
    assert main([*args[:-2], "/camera/side/image_raw", "--output", str(tmp_path / "c")]) == 2
    assert f"{bags / 'episode_0'}: camera topic /camera/side/image_raw is not in the bag" in capsys.readouterr().err
    assert main([*args[:-1], "--output", str(bags / "episode_0" / "out")]) == 2
    assert "bags and datasets are never written to" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (bags / "episode_0" / "out").exists()


@pytest.mark.parametrize("size", list(COMPACT_SIZES))
def test_from_scratch_training_steps_lower_the_held_out_validation_loss(bags, size):
    """The from-scratch path: a freshly initialised compact SmolVLA of each size trains every parameter (vision
    tower included) with augmentation, and a few steps lower the loss on an episode it never trained on."""
    train_episode = load_episode(bags / "episode_0", TOPICS, task=TASK)
    held_out = load_episode(bags / "episode_1", TOPICS, task=TASK)
    config = compact_config(((3, 24, 32), (3, 24, 32)), chunk_size=10, image_size=32, size=size)
    policy = compact_policy(config, dataset_statistics([train_episode]), seed=0)
    trainable = set(policy.set_trainable())
    assert {"vlm.vision_model.embeddings.patch_embedding.weight", "state_proj.weight"} <= trainable
    datasets = [
        EpisodeDataset([e], chunk_size=10, n_slots=2, image_size=config.resize_imgs_with_padding)
        for e in (train_episode, held_out)
    ]
    train_config = TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=0, augment=True, seed=0)
    trainer = Trainer(policy, train_config)
    validation = torch.utils.data.DataLoader(datasets[1], batch_size=8)
    before = trainer.validation_loss(validation)
    assert trainer.validation_loss(validation) == before  # fixed draws: comparable from step to step
    error_before = trainer.validation_action_error(validation)
    assert error_before.shape == (policy.action_dim,)
    assert torch.equal(trainer.validation_action_error(validation), error_before)
    loader = torch.utils.data.DataLoader(
        datasets[0], batch_size=8, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0)
    )
    vision_before = policy.model.vlm.vision_model.embeddings.patch_embedding.weight.detach().clone()
    batches = iter(loader)
    for _ in range(train_config.steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        trainer.train_step(batch)
    after = trainer.validation_loss(validation)
    assert after < 0.7 * before, (before, after)
    error_after = trainer.validation_action_error(validation)
    # Measured with the per-sample draws of `Trainer` (seed 0): 0.75 x (small) and 0.72 x (medium) after 30 steps.
    assert error_after.mean() < 0.8 * error_before.mean(), (error_before, error_after)
    assert not torch.equal(policy.model.vlm.vision_model.embeddings.patch_embedding.weight, vision_before)


def test_augmentation_shifts_and_jitters_present_cameras_only():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4, 2, 3, 16, 16)
    images[:, 1] = 0.0
    mask = torch.tensor([[True, False]] * 4)
    out = Augmentation(shift=2)(images, mask, gen)
    assert out.shape == images.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out[:, 1], images[:, 1])  # an absent camera stays blank
    assert not torch.allclose(out[:, 0], images[:, 0])
    # Without jitter a shift moves the picture by whole pixels: some shift of the input equals the output.
    plain = Augmentation(shift=2, brightness=0.0, contrast=0.0, channel_gain=0.0)(images, mask, gen)
    for b in range(4):
        padded = torch.nn.functional.pad(images[b, 0][None], (2, 2, 2, 2), mode="replicate")[0]
        crops = [padded[:, y : y + 16, x : x + 16] for y in range(5) for x in range(5)]
        assert any(torch.allclose(plain[b, 0], crop, atol=1e-6) for crop in crops)


def test_smolvla_train_on_a_lerobot_dataset_records_its_units_and_cameras(tiny_two_cameras, tmp_path, capsys):
    """A LeRobot SO-100 dataset (degrees, its own camera names) trains through the same sample builder; the
    checkpoint says which units it was trained in, and which dataset camera fed which slot."""
    from lerobot_files import CAMERAS, write_v3

    from smolvla.training.lerobot_dataset import LeRobotDataset

    root = write_v3(tmp_path / "so100_cube")
    args = [str(root), "--checkpoint", str(tiny_two_cameras), "--steps", "1", "--batch-size", "4", "--no-progress"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 2
    assert "does not say which joint units it holds" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "b"), "--joint-units", "lerobot_degrees", "--fps", "10"]) == 2
    assert "--fps 10, but" in capsys.readouterr().err

    output = tmp_path / "run"
    cameras = ["--cameras", "image=phone", "image2=laptop"]
    assert main([*args, "--output", str(output), "--joint-units", "lerobot_degrees", *cameras]) == 0
    policy = SmolVLAPolicy.from_pretrained(output / "last")
    assert policy.robot_interface == RobotInterface(
        SO100_JOINT_NAMES,
        ("degrees",) * 5 + ("range_0_100",),
        30.0,
        ("observation.image", "observation.image2"),
    )
    run = json.loads((output / "train_config.json").read_text())
    assert run["cameras"] == {"observation.image": CAMERAS[1], "observation.image2": CAMERAS[0]}
    assert run["episodes"] == [f"{root}#0", f"{root}#1"] and run["joint_units"][0] == "degrees"
    dataset = LeRobotDataset(root)
    expected = dataset_statistics([dataset.episode(e, SO100_JOINT_NAMES) for e in (0, 1)])
    torch.testing.assert_close(policy.normalizer.action_mean, expected.action_mean)


def test_state_noise_perturbs_the_training_state_only_reproducibly_and_leaves_the_batch_alone(bags, monkeypatch):
    """`state_noise`: the loss of a training step sees each sample's joint state plus N(0, sigma^2) noise of its own
    (the same for the same seed and step), the validation loss sees the recorded state, and the batch is not
    modified in place."""
    episode = load_episode(bags / "episode_0", TOPICS, task=TASK)
    config = compact_config(((3, 24, 32), (3, 24, 32)), chunk_size=10, image_size=32)
    dataset = EpisodeDataset([episode], chunk_size=10, n_slots=2, image_size=config.resize_imgs_with_padding)
    batch = default_collate([dataset[i] for i in range(len(dataset))])
    recorded = batch["state"].clone()
    seen: list[torch.Tensor] = []

    def policy_seeing_states(sigma: float) -> SmolVLAPolicy:
        policy = compact_policy(config, dataset_statistics([episode]), seed=0)
        compute_loss = policy.compute_loss

        def spy(images, image_mask, tasks, state, *args, **kwargs):
            seen.append(state.detach().clone())
            return compute_loss(images, image_mask, tasks, state, *args, **kwargs)

        monkeypatch.setattr(policy, "compute_loss", spy)
        return policy

    for sigma in (0.0, 0.1, 0.1):
        trainer = Trainer(policy_seeing_states(sigma), TrainConfig(steps=2, batch_size=len(dataset), state_noise=sigma))
        trainer.train_step(batch)
    assert torch.equal(batch["state"], recorded)
    clean, noisy, again = seen
    assert torch.equal(clean, recorded)
    assert torch.equal(noisy, again)
    offsets = noisy - recorded
    assert 0.08 < float(offsets.std()) < 0.12 and abs(float(offsets.mean())) < 0.03
    assert not torch.equal(offsets[0], offsets[1])  # each sample its own draw
    trainer.validation_loss(torch.utils.data.DataLoader(dataset, batch_size=len(dataset)))
    assert torch.equal(seen[-1], recorded)
    with pytest.raises(ValueError, match="state_noise"):
        TrainConfig(state_noise=-0.1)
