"""Training objective: flow-matching loss with the episode padding mask and the real action dims only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smolvla.policy import SmolVLAPolicy, flow_matching_loss


def _batch(policy: SmolVLAPolicy, batch: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    cfg = policy.config
    images = torch.rand(batch, cfg.n_cameras, 3, 48, 80, generator=gen)
    image_mask = torch.ones(batch, cfg.n_cameras, dtype=torch.bool)
    image_mask[1, 1] = False
    state = torch.randn(batch, cfg.state_dim, generator=gen)
    actions = torch.randn(batch, cfg.chunk_size, cfg.action_dim, generator=gen)
    is_pad = torch.zeros(batch, cfg.chunk_size, dtype=torch.bool)
    is_pad[0, -3:] = True
    noise = torch.randn(batch, cfg.chunk_size, cfg.max_action_dim, generator=gen)
    time = torch.tensor([0.3, 0.8])
    tasks = ["pick up the cube", "open the drawer"]
    return images, image_mask, tasks, state, actions, is_pad, noise, time


@pytest.fixture()
def trainable_policy(tiny_dir) -> SmolVLAPolicy:
    policy = SmolVLAPolicy.from_pretrained(str(tiny_dir))
    policy.set_trainable()
    return policy


def _loss(policy, images, image_mask, tasks, state, actions, is_pad, noise, time):
    return policy.compute_loss(images, image_mask, tasks, state, actions, is_pad, noise=noise, time=time)


def test_loss_ignores_steps_past_the_episode_end(trainable_policy):
    images, image_mask, tasks, state, actions, is_pad, noise, time = _batch(trainable_policy)
    with torch.no_grad():
        base = _loss(trainable_policy, images, image_mask, tasks, state, actions, is_pad, noise, time)
        changed = actions.clone()
        changed[0, -3:] += 5.0  # padded steps of sample 0
        same = _loss(trainable_policy, images, image_mask, tasks, state, changed, is_pad, noise, time)
        unmasked = _loss(trainable_policy, images, image_mask, tasks, state, changed, None, noise, time)
        changed[0, 0] += 5.0  # a real step
        moved = _loss(trainable_policy, images, image_mask, tasks, state, changed, is_pad, noise, time)
    assert same == base
    assert unmasked > base + 1.0 and moved > base + 1.0


def test_loss_ignores_padded_action_dims(trainable_policy):
    """The zero-padded action dims (6..7 of 8 here) do not count: changing what the model predicts there leaves
    the loss unchanged."""
    batch = _batch(trainable_policy)
    dim = trainable_policy.action_dim
    with torch.no_grad():
        base = _loss(trainable_policy, *batch)
        trainable_policy.model.action_out_proj.bias[dim:] += 3.0
        padded_dims = _loss(trainable_policy, *batch)
        trainable_policy.model.action_out_proj.bias[:dim] += 3.0
        real_dims = _loss(trainable_policy, *batch)
    assert padded_dims == base
    assert real_dims > base * 1.5


def test_loss_is_the_mean_over_counted_entries():
    gen = torch.Generator().manual_seed(0)
    v, u = torch.randn(2, 4, 8, generator=gen), torch.randn(2, 4, 8, generator=gen)
    is_pad = torch.tensor([[False, False, True, True], [False, False, False, False]])
    expected = torch.cat([(u - v)[0, :2, :5], (u - v)[1, :, :5]]).pow(2).mean()
    torch.testing.assert_close(flow_matching_loss(v, u, is_pad, 5), expected)
    all_pad = torch.ones(2, 4, dtype=torch.bool)
    assert flow_matching_loss(v, u, all_pad, 5) == 0


def test_default_freeze_trains_expert_and_projections_only(trainable_policy):
    names = trainable_policy.set_trainable()
    assert names and not any(n.startswith("vlm.") for n in names)
    assert "state_proj.weight" in names and "expert.layers.1.self_attn.k_proj.weight" in names
    loss = _loss(trainable_policy, *_batch(trainable_policy))
    loss.backward()
    for name, param in trainable_policy.model.named_parameters():
        assert (param.grad is not None) == param.requires_grad, name
        if param.requires_grad:
            assert param.grad.abs().sum() > 0, name


def test_partial_vlm_training_freezes_exactly_the_unused_parameters(tiny_dir):
    """With train_expert_only=False every trainable parameter gets a gradient and every frozen VLM text parameter
    is one that cannot influence the loss (the freeze patterns match real names)."""
    policy = SmolVLAPolicy.from_pretrained(str(tiny_dir))
    policy.config = policy.config.replace(train_expert_only=False)
    names = set(policy.set_trainable())
    assert "vlm.text_model.layers.0.self_attn.q_proj.weight" in names
    assert "vlm.text_model.layers.3.self_attn.k_proj.weight" in names
    assert "vlm.text_model.layers.3.mlp.up_proj.weight" not in names
    assert not any(n.startswith("vlm.vision_model.") for n in names)
    _loss(policy, *_batch(policy)).backward()
    for name, param in policy.model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        elif name.startswith("vlm.text_model."):
            assert param.grad is None, name


def test_a_few_steps_reduce_the_loss(trainable_policy):
    batch = _batch(trainable_policy, seed=1)
    params = [p for p in trainable_policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = _loss(trainable_policy, *batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_a_batch_samples_what_predict_chunk_returns_for_each_observation(tiny_policy, observation, noise):
    """The training's validation action error samples in batches (`sample_batch`): each row is the chunk the
    policy node would get for that observation from the same noise."""
    rows = [observation(seed) for seed in (1, 2)]
    images = torch.stack(
        [torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in imgs]) for imgs, _, _ in rows]
    )
    mask = torch.ones(2, len(tiny_policy.camera_names), dtype=torch.bool)
    state = torch.from_numpy(np.stack([s for _, s, _ in rows]))
    batch_noise = torch.cat([noise, -noise])
    sampled = tiny_policy.sample_batch(images, mask, [task for _, _, task in rows], state, batch_noise)
    for row, (imgs, s, task) in enumerate(rows):
        expected = tiny_policy.predict_chunk(imgs, s, task, batch_noise[row])
        np.testing.assert_allclose(sampled[row].numpy(), expected, atol=1e-4)
