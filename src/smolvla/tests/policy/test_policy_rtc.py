"""Real-time chunking guidance on the tiny model: soft mask, frozen prefix, zero weights, the true VJP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smolvla.policy import SmolVLAPolicy
from smolvla.policy.rtc import ChunkGuidance, guidance_weight, guided_velocity, prefix_weights

DELAY = 3


def test_prefix_weights_follow_the_paper():
    w = prefix_weights(10, 3, 7).double()
    assert w[:3].tolist() == [1.0, 1.0, 1.0]
    assert w[7:].tolist() == [0.0, 0.0, 0.0]
    soft = w[3:7]
    assert torch.all(soft < 1) and torch.all(soft > 0) and torch.all(soft[1:] < soft[:-1])
    c = (7 - 3) / (7 - 3 + 1)  # first soft index: c = (H - s - d) / (H - s - d + 1)
    assert soft[0].item() == pytest.approx(c * math.expm1(c) / math.expm1(1.0), rel=1e-6)
    assert prefix_weights(10, 12, 4).tolist() == [1.0] * 4 + [0.0] * 6  # delay past the overlap: all frozen
    assert prefix_weights(10, 0, 0).abs().sum() == 0
    with pytest.raises(ValueError):
        prefix_weights(10, -1, 4)


def test_guidance_weight_is_the_clipped_paper_schedule():
    assert guidance_weight(1.0, 5.0) == 5.0  # tau = 0: unbounded, clipped
    assert guidance_weight(0.5, 5.0) == pytest.approx(2.0)  # (0.25 + 0.25) / 0.25
    assert guidance_weight(0.7, 5.0) == pytest.approx((0.3**2 + 0.7**2) / (0.3 * 0.7))
    assert guidance_weight(0.1, 5.0) == 5.0 and guidance_weight(0.1, 20.0) == pytest.approx(0.82 / 0.09)
    assert all(guidance_weight(1.0 - k / 10, 5.0) <= 5.0 for k in range(10))


@pytest.fixture()
def case(tiny_policy, observation, noise):
    """An observation, its unguided chunk, and previous actions (from another state and noise) for the ticks
    3 .. 9 of that chunk, so they disagree with the unguided chunk."""
    images, state, instruction = observation(7)
    other_noise = torch.randn(noise.shape, generator=torch.Generator().manual_seed(11))
    previous = tiny_policy.predict_chunk(images, state + 0.5, instruction, noise=other_noise)[DELAY:]
    unguided = tiny_policy.predict_chunk(images, state, instruction, noise=noise)
    return images, state, instruction, unguided, previous


def _frozen_error(policy: SmolVLAPolicy, case, noise, **kwargs) -> tuple[float, float]:
    images, state, instruction, unguided, previous = case
    guided = policy.predict_chunk(
        images, state, instruction, noise=noise, previous_actions=previous, delay=DELAY, **kwargs
    )
    before = np.abs(unguided[:DELAY] - previous[:DELAY]).max()
    return np.abs(guided[:DELAY] - previous[:DELAY]).max() / before, before


def test_guidance_reproduces_the_frozen_prefix(tiny_policy, case, noise):
    error, before = _frozen_error(tiny_policy, case, noise)
    assert before > 1.0  # the two chunks really disagree
    assert error < 0.05, error
    # A larger clip pulls harder.
    assert _frozen_error(tiny_policy, case, noise, max_guidance_weight=10.0)[0] < error


def test_guidance_reproduces_the_frozen_prefix_in_bfloat16(tiny_dir, case, noise):
    bf16 = SmolVLAPolicy.from_pretrained(str(tiny_dir), dtype="bfloat16")
    assert _frozen_error(bf16, case, noise)[0] < 0.05


def test_guided_cached_and_uncached_agree(tiny_policy, case, noise):
    images, state, instruction, _, previous = case
    guidance = tiny_policy.chunk_guidance(previous, DELAY)
    with torch.inference_mode():
        prefix = tiny_policy.model.embed_prefix(*tiny_policy.prepare(images, state, instruction))
        cached = tiny_policy.model.sample_actions(prefix, noise, guidance=guidance)
        uncached = tiny_policy.model.sample_actions(prefix, noise, guidance=guidance, use_cache=False)
    torch.testing.assert_close(cached, uncached, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_zero_weights_give_the_unguided_chunk_exactly(tiny_dir, case, noise, dtype):
    policy = SmolVLAPolicy.from_pretrained(str(tiny_dir), dtype=dtype)
    images, state, instruction, _, previous = case
    guidance = policy.chunk_guidance(previous, DELAY)
    zero = ChunkGuidance(guidance.target, torch.zeros_like(guidance.weights), guidance.max_weight)
    with torch.inference_mode():
        prefix = policy.model.embed_prefix(*policy.prepare(images, state, instruction))
        unguided = policy.model.sample_actions(prefix, noise)
        guided = policy.model.sample_actions(prefix, noise, guidance=zero)
    assert torch.equal(guided, unguided)
    # No previous actions (an older executor, or an empty queue): unguided sampling.
    np.testing.assert_array_equal(
        policy.predict_chunk(images, state, instruction, noise=noise, previous_actions=np.zeros((0, 6))),
        policy.predict_chunk(images, state, instruction, noise=noise),
    )


def test_correction_is_the_true_vector_jacobian_product(tiny_policy, case, noise):
    """The correction c = e^T J, J the Jacobian of A_hat = x - t v(x): checked against Jacobian-vector products
    computed independently (central differences) along random directions u, <c, u> = <e, J u>; and it differs
    from the identity shortcut (J = I) LeRobot uses."""
    images, state, instruction, _, previous = case
    guidance = tiny_policy.chunk_guidance(previous, DELAY)
    model = tiny_policy.model
    with torch.no_grad():
        cache = model.build_cache(model.embed_prefix(*tiny_policy.prepare(images, state, instruction)))

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model.cached_velocity(cache.detached(), x, t)

    t = torch.full((1,), 0.6)
    x = noise * 0.6
    _, correction = guided_velocity(velocity, x, t, guidance)
    with torch.no_grad():
        error = (guidance.target - (x - 0.6 * velocity(x, t))) * guidance.weights

    def predicted(x_in: torch.Tensor) -> torch.Tensor:
        return x_in - 0.6 * velocity(x_in, t)

    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        u = torch.randn(x.shape, generator=gen)
        with torch.no_grad():
            ju = (predicted(x + 1e-2 * u) - predicted(x - 1e-2 * u)) / 2e-2
        assert (correction * u).sum().item() == pytest.approx((error * ju).sum().item(), rel=1e-2)
    difference = (correction - error).abs().max() / error.abs().max()
    assert difference > 0.05, difference
    # The correction reaches the padded action dims of x (they feed the network), where the error is 0; and no
    # tick after the overlap: action token j sees no later token, so J is block lower triangular in time.
    action_dim = tiny_policy.action_dim
    assert error[..., action_dim:].abs().max() == 0 and correction[..., action_dim:].abs().max() > 1e-3
    assert correction[:, 7:].abs().max() <= 1e-6 * correction.abs().max()


def test_previous_actions_are_validated(tiny_policy, case, noise):
    images, state, instruction, _, previous = case
    # Previous actions past the chunk's length have no action of the chunk to guide: ignored.
    longer = np.concatenate([previous, np.ones((9, 6))])
    np.testing.assert_array_equal(
        tiny_policy.predict_chunk(images, state, instruction, noise=noise, previous_actions=longer, delay=DELAY),
        tiny_policy.predict_chunk(images, state, instruction, noise=noise, previous_actions=longer[:10], delay=DELAY),
    )
    with pytest.raises(ValueError, match="previous actions must have shape"):
        tiny_policy.predict_chunk(images, state, instruction, previous_actions=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        tiny_policy.predict_chunk(images, state, instruction, previous_actions=np.full((4, 6), np.nan))
    with pytest.raises(ValueError, match="delay"):
        tiny_policy.predict_chunk(images, state, instruction, previous_actions=previous, delay=-1)
