"""Real-time chunking (Black, Galliker, Levine 2025, "Real-Time Execution of Action Chunking Flow Policies").

While the robot executes the first `delay` actions of what it has queued, the next chunk is sampled with guidance
toward those queued actions ("inpainting"): at every Euler step the denoiser's prediction of the final chunk is
pulled toward the previous actions, fully over the delay (they will be executed whatever the new chunk says) and
with decaying weight over the rest of the overlap, not at all after it. No retraining.

Time convention: SmolVLA integrates t from 1 (noise) to 0 (actions), x_t = t * noise + (1 - t) * actions, and its
velocity points from the actions to the noise. The paper's tau is 1 - t, so the predicted final chunk is
A_hat = x_t - t * v, and the guided velocity is v - c(tau) * J^T [W * (Y - A_hat)] (the paper adds the correction
to a velocity pointing the other way), with J = dA_hat / dx_t taken through the denoiser: the noisy chunk requires
grad before v is computed, so the correction is the true vector-Jacobian product (LeRobot's RTC takes the gradient
after v is computed, which reduces J to the identity).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: The paper's clip of the guidance weight c(tau) (beta = 5).
DEFAULT_MAX_GUIDANCE_WEIGHT = 5.0


def prefix_weights(chunk_size: int, delay: int, overlap: int) -> Tensor:
    """The paper's soft mask W (chunk_size,) float32 over the new chunk's indices.

    overlap: how many previous actions there are (indices 0 .. overlap - 1 of the new chunk); delay: how many of
    them will be executed before the new chunk arrives. W = 1 for i < delay, W = c (e^c - 1) / (e - 1) with
    c = (overlap - i) / (overlap - delay + 1) for delay <= i < overlap, and 0 from the overlap on. A delay longer
    than the overlap freezes the whole overlap.
    """
    if chunk_size < 1 or delay < 0 or overlap < 0:
        raise ValueError(f"need chunk_size >= 1, delay >= 0, overlap >= 0; got {chunk_size}, {delay}, {overlap}")
    overlap = min(overlap, chunk_size)
    delay = min(delay, overlap)
    weights = torch.zeros(chunk_size, dtype=torch.float64)
    weights[:delay] = 1.0
    i = torch.arange(delay, overlap, dtype=torch.float64)
    c = (overlap - i) / (overlap - delay + 1)
    weights[delay:overlap] = c * torch.expm1(c) / math.expm1(1.0)
    return weights.to(torch.float32)


def guidance_weight(t: float, max_weight: float) -> float:
    """The paper's c(tau) = min(beta, (1 - tau) / (tau * r2)), r2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2), tau = 1 - t.

    In SmolVLA's time t this is ((1 - t)^2 + t^2) / (t (1 - t)): infinite at both ends, 2 at t = 0.5, clipped at
    max_weight (beta).
    """
    tau = 1.0 - t
    if tau <= 0.0 or tau >= 1.0:
        return max_weight
    r2 = (1.0 - tau) ** 2 / (tau**2 + (1.0 - tau) ** 2)
    return min(max_weight, (1.0 - tau) / (tau * r2))


@dataclass(frozen=True)
class ChunkGuidance:
    """What guided sampling pulls the new chunk toward, in the model's (normalised, padded) action space.

    target: (B, chunk, max_action_dim) float32, the previous actions Y at the new chunk's indices (anything where
        the weight is 0). weights: W broadcastable to target, float32, 0 on the padded action dims and past the
        overlap. max_weight: beta, the clip of the guidance weight.
    """

    target: Tensor
    weights: Tensor
    max_weight: float = DEFAULT_MAX_GUIDANCE_WEIGHT

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_weight) and self.max_weight >= 0):
            raise ValueError(f"max_weight must be a finite number >= 0, got {self.max_weight}")


#: velocity(x_t, t) -> v, both (B, chunk, max_action_dim) float32, t (B,).
VelocityFn = Callable[[Tensor, Tensor], Tensor]


def guided_velocity(velocity: VelocityFn, x: Tensor, t: Tensor, guidance: ChunkGuidance) -> tuple[Tensor, Tensor]:
    """One guided velocity at flow time t (B,): returns (v_guided, correction), correction = J^T [W * (Y - A_hat)].

    The velocity is computed once, with x requiring grad, and the correction is its vector-Jacobian product through
    the denoiser (torch.autograd.grad); both come back detached. With all weights 0 the correction is exactly 0 and
    v_guided is the unguided velocity. Call outside torch.inference_mode (the denoiser's inputs, e.g. a prefix cache,
    must not be inference tensors).
    """
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        v = velocity(x_in, t)
        predicted = x_in - t[:, None, None] * v
        error = (guidance.target - predicted.detach()) * guidance.weights
        (correction,) = torch.autograd.grad(predicted, x_in, grad_outputs=error)
    weight = guidance_weight(float(t[0]), guidance.max_weight)
    return v.detach() - weight * correction, correction
