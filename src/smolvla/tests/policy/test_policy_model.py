"""SmolVLA network behaviour on a tiny model: attention semantics, caching, dtypes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smolvla.policy import SmolVLAPolicy
from smolvla.policy.modeling import attend, chunked_vision_attention, make_attention_mask


def _prefix_and_suffix_masks(n_prefix_valid: int, n_prefix_pad: int, n_actions: int):
    pad = torch.tensor([[True] * n_prefix_valid + [False] * n_prefix_pad + [True] + [True] * n_actions])
    ar = torch.tensor([[0] * (n_prefix_valid + n_prefix_pad) + [1] + [1] * n_actions])
    return make_attention_mask(pad, ar)[0]


def test_attention_mask_semantics():
    n_valid, n_pad, n_act = 5, 2, 4
    mask = _prefix_and_suffix_masks(n_valid, n_pad, n_act)
    state = n_valid + n_pad
    actions = list(range(state + 1, state + 1 + n_act))
    # Images and language see each other (bidirectionally) but neither the state nor any action.
    assert mask[:n_valid, :n_valid].all()
    assert not mask[:n_valid, state:].any()
    # The state sees every valid prefix token and itself, no action.
    assert mask[state, :n_valid].all() and mask[state, state]
    assert not mask[state, actions].any()
    # Actions see the valid prefix and the state, and earlier actions only (causal).
    for k, a in enumerate(actions):
        assert mask[a, :n_valid].all() and mask[a, state]
        assert mask[a, actions[: k + 1]].all()
        assert not mask[a, actions[k + 1 :]].any()
    # Padding is invisible to everyone else; a padding query only sees itself (no empty softmax row).
    others = [*range(n_valid), state, *actions]
    assert not mask[others][:, n_valid:state].any()
    for p in range(n_valid, state):
        assert mask[p].nonzero().flatten().tolist() == [p]


def test_grouped_query_attention_matches_eager_reference():
    """attend() (SDPA with GQA) equals the reference's eager attention: K/V heads repeated, float32 softmax,
    masked logits set to the float32 minimum."""
    gen = torch.Generator().manual_seed(0)
    b, lq, lk, h, kvh, d = 2, 7, 11, 6, 2, 16
    q = torch.randn(b, lq, h, d, generator=gen)
    k = torch.randn(b, lk, kvh, d, generator=gen)
    v = torch.randn(b, lk, kvh, d, generator=gen)
    mask = torch.rand(b, lq, lk, generator=gen) > 0.4
    mask[..., 0] = True
    k_rep = k.repeat_interleave(h // kvh, dim=2).transpose(1, 2)
    v_rep = v.repeat_interleave(h // kvh, dim=2).transpose(1, 2)
    logits = q.transpose(1, 2) @ k_rep.transpose(2, 3) * d**-0.5
    logits = torch.where(mask[:, None], logits, torch.finfo(torch.float32).min)
    expected = (logits.softmax(-1) @ v_rep).transpose(1, 2).reshape(b, lq, h * d)
    got = attend(q, k.transpose(1, 2), v.transpose(1, 2), mask[:, None])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_chunked_vision_attention_matches_sdpa():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 40, 16, generator=gen) * 2 for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2)
    module = torch.nn.Module().eval()
    got, _ = chunked_vision_attention(module, q, k, v, None, scaling=0.25)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # In bf16 its error stays of the order of SDPA's own bf16 error (the logits are rounded to bf16 once).
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    got_bf16 = chunked_vision_attention(module, qb, kb, vb, None, scaling=0.25)[0].float()
    sdpa_bf16 = torch.nn.functional.scaled_dot_product_attention(qb, kb, vb).transpose(1, 2).float()
    ours, theirs = (got_bf16 - expected).abs(), (sdpa_bf16 - expected).abs()
    assert ours.mean() < 2 * theirs.mean() and ours.max() < 3 * theirs.max()


def test_cached_sampling_equals_uncached(tiny_policy, observation, noise):
    inputs = tiny_policy.prepare(*observation(1))
    with torch.inference_mode():
        prefix = tiny_policy.model.embed_prefix(*inputs)
        cached = tiny_policy.model.sample_actions(prefix, noise, use_cache=True)
        uncached = tiny_policy.model.sample_actions(prefix, noise, use_cache=False)
    assert cached.abs().max() > 0.1  # a real output, not a degenerate one
    torch.testing.assert_close(cached, uncached, atol=2e-5, rtol=1e-4)


def test_flow_times_are_those_of_lerobot_0_4_4(tiny_policy, noise):
    """t = 1 + k * dt computed in float64 and rounded to float32, as LeRobot 0.4.4 steps it; accumulating dt in
    float32 (older LeRobot) gives 0.79999995 for 0.8 and moved the parity check's chunk by 1e-5 of its spread."""
    seen = []

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return torch.ones_like(x)

    n = tiny_policy.config.num_steps
    out = tiny_policy.model.integrate(velocity, noise)
    expected = [torch.tensor(1.0 + k * (-1.0 / n), dtype=torch.float32).expand(1) for k in range(n)]
    assert len(seen) == n
    for got, want in zip(seen, expected, strict=True):
        assert torch.equal(got, want), (got, want)
    real = tiny_policy.action_dim
    torch.testing.assert_close(out[..., :real], noise[..., :real] - 1.0)
    torch.testing.assert_close(out[..., real:], torch.zeros_like(out[..., real:]), atol=1e-6, rtol=0)


def test_padded_action_dims_follow_the_training_path_not_the_untrained_velocity(tiny_dir, observation, noise):
    """The loss ignores the padded action dims (test_loss_ignores_padded_action_dims); inference ignores the
    network's velocity there too: they move along x_t = t * noise to their zero target, as in training, so changing
    what the network predicts for them changes no action. LeRobot 0.4.4's way ("model") integrates it."""
    policy = SmolVLAPolicy.from_pretrained(str(tiny_dir))  # its own copy: the weights are changed below
    inputs = policy.prepare(*observation(2))
    real = policy.action_dim
    with torch.inference_mode():
        prefix = policy.model.embed_prefix(*inputs)
        trajectory = []
        cache = policy.model.build_cache(prefix)

        def velocity(x, t):
            trajectory.append((float(t[0]), x[..., real:].clone()))
            return policy.model.cached_velocity(cache, x, t)

        x = policy.model.integrate(velocity, noise)
        for t, padded in trajectory:  # what the expert saw in the padded dims: t * noise, as in training
            torch.testing.assert_close(padded, t * noise[..., real:], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(x[..., real:], torch.zeros_like(x[..., real:]), atol=1e-6, rtol=0)

        base = policy.predict_chunk(*observation(2), noise=noise)
        reference = policy.predict_chunk(*observation(2), noise=noise, padded_dims="model")
        policy.model.action_out_proj.bias[real:] += 3.0  # another untrained velocity in the padded dims
        np.testing.assert_array_equal(policy.predict_chunk(*observation(2), noise=noise), base)
        moved = policy.predict_chunk(*observation(2), noise=noise, padded_dims="model")
    assert np.abs(moved - reference).max() > 1e-3


def test_vision_tower_gives_every_patch_its_own_position(tiny_policy):
    """SmolVLA's images fill the whole patch grid, so patch i must get position embedding i. transformers 4.55.1 to
    4.57.x (the versions LeRobot 0.4.4 runs on) shift the ids by one patch in float32 (transformers issue #41190,
    found here by benchmarks/check_parity.py); this guards the transformers installed with the project."""
    embeddings = tiny_policy.model.vlm.vision_model.embeddings
    bb = tiny_policy.config.backbone
    side = bb.vision_image_size // bb.vision_patch_size
    pixels = torch.randn(1, 3, bb.vision_image_size, bb.vision_image_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got = embeddings(pixel_values=pixels, patch_attention_mask=torch.ones(1, side, side, dtype=torch.bool))
        patches = embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)
        expected = patches + embeddings.position_embedding.weight[None]
    torch.testing.assert_close(got, expected)


def _velocity(policy: SmolVLAPolicy, inputs, x_t: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        prefix = policy.model.embed_prefix(*inputs)
        return policy.model.forward_velocity(prefix, x_t, torch.tensor([0.7]))


def test_action_tokens_are_causal(tiny_policy, observation, noise):
    """Changing action token j changes the velocity of tokens >= j only."""
    inputs = tiny_policy.prepare(*observation(2))
    j = tiny_policy.chunk_size // 2
    base = _velocity(tiny_policy, inputs, noise)
    changed = noise.clone()
    changed[:, j] += 1.0
    moved = _velocity(tiny_policy, inputs, changed)
    torch.testing.assert_close(moved[:, :j], base[:, :j], atol=1e-6, rtol=0)
    assert (moved[:, j:] - base[:, j:]).abs().amax(dim=-1).min() > 1e-6


def test_images_and_language_cannot_see_the_state(tiny_policy, observation):
    """The cached keys of image and language tokens do not depend on the state; the state token's do, and so does
    the action output."""
    images, state, instruction = observation(3)
    a = tiny_policy.prepare(images, state, instruction)
    b = tiny_policy.prepare(images, state + 1.0, instruction)
    with torch.inference_mode():
        cache_a = tiny_policy.model.build_cache(tiny_policy.model.embed_prefix(*a))
        cache_b = tiny_policy.model.build_cache(tiny_policy.model.embed_prefix(*b))
    lp = cache_a.prefix_len
    for layer in range(1, tiny_policy.config.num_vlm_layers):
        if tiny_policy.config.is_cross_attention_layer(layer):
            continue  # keys re-projected by the expert: same dependence, checked on the self-attention layers
        ka, kb = cache_a.keys[layer][:, :, :lp], cache_b.keys[layer][:, :, :lp]
        torch.testing.assert_close(ka[:, :, : lp - 1], kb[:, :, : lp - 1], atol=0, rtol=0)
        assert (ka[:, :, lp - 1] - kb[:, :, lp - 1]).abs().max() > 1e-4


def test_missing_camera_is_masked_not_seen(tiny_policy, observation, noise):
    """With a camera missing, its image content cannot matter, and the result differs from seeing it."""
    images, state, instruction = observation(4)
    other = [images[0], np.full_like(images[1], 200)]
    missing = tiny_policy.predict_chunk([images[0], None], state, instruction, noise=noise)
    present = tiny_policy.predict_chunk(images, state, instruction, noise=noise)
    present_other = tiny_policy.predict_chunk(other, state, instruction, noise=noise)
    assert np.abs(present - present_other).max() > 1e-4
    assert np.abs(missing - present).max() > 1e-4
    # The reference runs the vision tower on an all -1 image and masks its tokens; skipping it is equivalent.
    pixels, mask, tokens, token_mask, state_t = tiny_policy.prepare([images[0], None], state, instruction)
    with torch.inference_mode():
        model = tiny_policy.model
        prefix = model.embed_prefix(pixels, mask, tokens, token_mask, state_t)
        n_img = tiny_policy.config.backbone.image_tokens
        prefix.embeddings[:, n_img : 2 * n_img] = model.embed_images(pixels[:, 1])
        with_embedding = model.sample_actions(prefix, noise)
    expected = tiny_policy.normalizer.unnormalize_action(with_embedding[0, :, : tiny_policy.action_dim])
    np.testing.assert_allclose(missing, expected.numpy(), atol=1e-5)


def test_predict_chunk_contract(tiny_policy, observation, noise):
    images, state, instruction = observation(5)
    a = tiny_policy.predict_chunk(images, state, instruction, noise=noise)
    b = tiny_policy.predict_chunk(images, state, instruction, noise=noise[0])
    assert a.shape == (tiny_policy.chunk_size, tiny_policy.action_dim) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    c = tiny_policy.predict_chunk(images, state, instruction)
    assert np.abs(a - c).max() > 1e-4  # fresh noise when none is given
    with pytest.raises(ValueError, match="all cameras are missing"):
        tiny_policy.predict_chunk([None, None], state, instruction)
    with pytest.raises(ValueError, match="expected 2 images"):
        tiny_policy.predict_chunk(images[:1], state, instruction)
    with pytest.raises(ValueError, match="uint8"):
        tiny_policy.predict_chunk([images[0].astype(np.float32), None], state, instruction)
    with pytest.raises(ValueError, match="state must be"):
        tiny_policy.predict_chunk(images, state[:3], instruction)
    with pytest.raises(ValueError, match="noise must have shape"):
        tiny_policy.predict_chunk(images, state, instruction, noise=torch.zeros(3, 3))


def test_bfloat16_within_tolerance_of_float32(tiny_dir, tiny_policy, observation, noise):
    """bf16 (VLM and expert) stays within 5 % of the float32 result, measured on what the network adds to the noise
    (the integrated velocity, in the normalised action space); a changed state moves it far more than that."""
    bf16 = SmolVLAPolicy.from_pretrained(str(tiny_dir), dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16
    norm = tiny_policy.normalizer
    start = noise[0, :, : tiny_policy.action_dim].numpy()

    def displacement(actions: np.ndarray) -> np.ndarray:
        return (actions - norm.action_mean.numpy()) / norm.action_std.numpy() - start

    for seed in range(3):
        images, state, instruction = observation(seed)
        ref = displacement(tiny_policy.predict_chunk(images, state, instruction, noise=noise))
        got = displacement(bf16.predict_chunk(images, state, instruction, noise=noise))
        other = displacement(tiny_policy.predict_chunk(images, state + 1.0, instruction, noise=noise))
        error = np.abs(got - ref).max() / ref.std()
        assert error < 0.05, error
        assert np.abs(other - ref).max() / ref.std() > 4 * error


def test_compiled_policy_within_tolerance_and_never_recompiles(tiny_dir, tiny_policy, observation, noise):
    """compile=True (frozen weights) stays within bf16 tolerance of float32, and after the first call neither a
    missing camera nor an instruction of another length recompiles (a recompile stalls the policy for as long as
    the first call)."""
    compiled = SmolVLAPolicy.from_pretrained(str(tiny_dir), dtype="bfloat16", compile=True)
    norm = tiny_policy.normalizer
    start = noise[0, :, : tiny_policy.action_dim].numpy()

    def displacement(actions: np.ndarray) -> np.ndarray:
        return (actions - norm.action_mean.numpy()) / norm.action_std.numpy() - start

    images, state, _ = observation(6)
    cases = [
        (images, "pick up the red cube"),
        ([None, images[1]], "go"),
        ([images[0], None], "pick up the red cube and put it in the blue bowl on the left"),
    ]
    for i, (cameras, instruction) in enumerate(cases):
        no_recompile = torch._dynamo.config.patch(error_on_recompile=i > 0)
        with no_recompile:
            got = compiled.predict_chunk(cameras, state, instruction, noise=noise)
        ref = displacement(tiny_policy.predict_chunk(cameras, state, instruction, noise=noise))
        error = np.abs(displacement(got) - ref).max() / ref.std()
        assert error < 0.05, (i, error)
    # Real-time chunking on the compiled model: guided (its steps run the expert eagerly), still no recompile,
    # and the frozen prefix reproduced as in eager float32 (tests/policy/test_policy_rtc.py).
    other = tiny_policy.predict_chunk(images, state + 0.5, "go", noise=-noise)[3:]
    unguided = tiny_policy.predict_chunk(images, state, "go", noise=noise)
    with torch._dynamo.config.patch(error_on_recompile=True):
        guided = compiled.predict_chunk(images, state, "go", noise=noise, previous_actions=other, delay=3)
    assert np.abs(guided[:3] - other[:3]).max() < 0.05 * np.abs(unguided[:3] - other[:3]).max()
