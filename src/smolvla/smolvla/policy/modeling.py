"""SmolVLA network: SmolVLM2 backbone (first N text layers) interleaved with the action expert, flow matching.

Layout of the modules (`SmolVLAModel`), mapped one to one onto the published tensor names by `checkpoint.py`:

- `vlm`: transformers' `SmolVLMModel` (vision tower, pixel-shuffle connector, Llama text model cut to
  `num_vlm_layers` layers; no `lm_head`). Only its modules' weights are used: the forward passes below are written
  here because SmolVLA interleaves the text layers with the expert layers.
- `expert`: the action expert, a Llama stack `expert_width_multiplier` times narrower with the same heads; in the
  cross-attention layers (odd by default) its k/v projections map the VLM layer's keys/values (320 -> 320).
- `state_proj`, `action_in_proj`, `action_out_proj`, `action_time_mlp_in`, `action_time_mlp_out`.

Attention follows the big_vision "ar" convention: prefix tokens (images, language) get 0, the state token 1, every
action token 1 more than the previous, and a query sees the valid keys whose cumulative value is not larger than its
own. Inference runs the VLM once over the prefix, keeps every layer's post-RoPE keys/values, projects the
cross-attention layers' keys/values through the expert once per chunk, then integrates the flow with Euler steps
running only the expert.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from transformers import AttentionInterface, SmolVLMConfig, SmolVLMModel

from .configuration import SmolVLAConfig
from .rtc import ChunkGuidance, guided_velocity

#: RoPE base of SmolVLA's layers (the backbone's own config says 100000; the published model uses 10000).
ROPE_BASE = 10_000.0


def build_backbone_hf_config(config: SmolVLAConfig) -> SmolVLMConfig:
    """transformers' SmolVLMConfig for the backbone, cut to `num_vlm_layers` text layers, built locally."""
    bb = config.backbone
    hf = SmolVLMConfig(
        vision_config={
            "hidden_size": bb.vision_hidden_size,
            "intermediate_size": bb.vision_intermediate_size,
            "num_hidden_layers": bb.vision_layers,
            "num_attention_heads": bb.vision_heads,
            "image_size": bb.vision_image_size,
            "patch_size": bb.vision_patch_size,
            "layer_norm_eps": bb.vision_layer_norm_eps,
        },
        text_config={
            "model_type": "llama",
            "hidden_size": bb.text_hidden_size,
            "intermediate_size": bb.text_intermediate_size,
            "num_hidden_layers": config.num_vlm_layers,
            "num_attention_heads": bb.text_heads,
            "num_key_value_heads": bb.text_kv_heads,
            "head_dim": bb.text_head_dim,
            "vocab_size": bb.vocab_size,
            "rms_norm_eps": bb.rms_norm_eps,
            "rope_theta": ROPE_BASE,
        },
        scale_factor=bb.scale_factor,
    )
    hf._attn_implementation = "sdpa"
    hf.vision_config._attn_implementation = "sdpa"
    return hf


def chunked_vision_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[Tensor, None]:
    """Vision-tower attention for bfloat16 on CPU (transformers attention interface, (B, H, L, D) inputs).

    Without AMX, PyTorch's CPU flash-attention kernel runs the 1024-token SigLIP attention at about a third of the
    speed of plain bf16 matrix products. This computes one head at a time with two bf16 GEMMs and a softmax
    computed in float32, so the (L, L) scores stay small enough to be reused from the allocator and the caches.
    The logits are rounded to bf16 by the first GEMM (the fused kernel keeps them in float32): an error of the
    order of bf16 rounding. Masked or training calls fall back to SDPA.
    """
    if attention_mask is not None or (dropout and module.training) or query.requires_grad:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return per_head_attention(query, key, value, float(scale)), None


# A custom operator so that torch.compile keeps this loop as one opaque call (its own code of the loop is slower)
# and still compiles the rest of the vision tower into one graph.
@torch.library.custom_op("smolvla::per_head_attention", mutates_args=())
def per_head_attention(query: Tensor, key: Tensor, value: Tensor, scale: float) -> Tensor:
    """Attention output (B, L, H, D) of (B, H, L, D) inputs, one head at a time (see `chunked_vision_attention`)."""
    batch, heads, length, head_dim = query.shape
    out = torch.empty(batch, length, heads, head_dim, dtype=query.dtype, device=query.device)
    for b in range(batch):
        for h in range(heads):
            scores = torch.matmul(query[b, h] * scale, key[b, h].transpose(0, 1))
            # For bf16 input the softmax kernel computes in float32 and rounds its output once: the same values
            # as a float32 softmax cast back, without materialising the float32 copy.
            probs = torch.softmax(scores, dim=-1)
            torch.matmul(probs, value[b, h], out=out[b, :, h])
    return out


@per_head_attention.register_fake
def _per_head_attention_shape(query: Tensor, key: Tensor, value: Tensor, scale: float) -> Tensor:
    batch, heads, length, head_dim = query.shape
    return query.new_empty(batch, length, heads, head_dim)


def compile_frozen(fn: Callable) -> Callable:
    """`torch.compile(fn)` for inference, with inductor's weight freezing on while it compiles.

    Freezing makes the parameters `fn` reads constants of the compiled graph: inductor prepacks the linear weights
    for oneDNN (30-80 % faster GEMMs here, most for the expert's 50-row products) and folds what depends on weights
    only. The compiled code keeps the weights it saw: compile after loading them and choosing device and dtype.
    Freezing must be on whenever `fn` (re)compiles, that is during calls; `torch.compile(options={"freezing":
    True})` left every weight unpacked with torch 2.13, hence the config patch around each call (microseconds).
    """
    import torch._inductor.config as inductor_config

    compiled = torch.compile(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with inductor_config.patch(freezing=True):
            return compiled(*args, **kwargs)

    return call


VISION_ATTENTION_CPU = "smolvla_chunked_cpu"
AttentionInterface.register(VISION_ATTENTION_CPU, chunked_vision_attention)


class RMSNorm(nn.Module):
    """Llama RMSNorm (statistics in float32, scale applied in the input dtype)."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.variance_epsilon)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm with Llama's numerics: normalise in float32, cast back, then scale."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


class ExpertAttention(nn.Module):
    """Projections of one expert attention block (no bias, like Llama)."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, kv_in: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(kv_in, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(kv_in, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)


class ExpertMLP(nn.Module):
    """SwiGLU MLP of one expert layer."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)


class ExpertLayer(nn.Module):
    """One action-expert layer; parameter names follow Llama's decoder layer."""

    def __init__(self, config: SmolVLAConfig, cross: bool) -> None:
        super().__init__()
        bb = config.backbone
        hidden = config.expert_hidden_size
        kv_in = bb.text_kv_heads * bb.text_head_dim if cross else hidden
        self.self_attn = ExpertAttention(hidden, bb.text_heads, bb.text_kv_heads, bb.text_head_dim, kv_in)
        self.mlp = ExpertMLP(hidden, config.expert_intermediate_size)
        self.input_layernorm = RMSNorm(hidden, bb.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(hidden, bb.rms_norm_eps)


class ActionExpert(nn.Module):
    """The expert stack (no token embedding) with its final norm."""

    def __init__(self, config: SmolVLAConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ExpertLayer(config, config.is_cross_attention_layer(i)) for i in range(config.num_vlm_layers)
        )
        self.norm = RMSNorm(config.expert_hidden_size, config.backbone.rms_norm_eps)


# ----------------------------------------------------------------------------------------------------------------
# Functional pieces shared by the training pass and the cached inference pass.


def make_attention_mask(pad_mask: Tensor, ar_mask: Tensor) -> Tensor:
    """2-D attention mask (B, L, L), True = may attend, from the pad mask (B, L) and the "ar" values (B, L).

    A query sees a key when both are valid and the key's cumulative "ar" value is not larger than the query's.
    Padding queries additionally see themselves, so that no row is empty (their outputs are never used, but an
    empty row would give NaN with some attention kernels).
    """
    cum = torch.cumsum(ar_mask, dim=1)
    mask = (cum[:, None, :] <= cum[:, :, None]) & pad_mask[:, None, :] & pad_mask[:, :, None]
    eye = torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device)
    return mask | eye


def rope_tables(positions: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
    """cos/sin tables (B, L, 1, head_dim/2) in float32 for RoPE at integer positions (B, L)."""
    half = head_dim // 2
    exponents = (2.0 / head_dim) * torch.arange(half, dtype=torch.float32, device=positions.device)
    radians = positions[..., None].to(torch.float32) / (ROPE_BASE**exponents)
    radians = radians[..., None, :]
    return torch.cos(radians), torch.sin(radians)


def apply_rope(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
    """Rotate (B, L, H, D) by the tables of `rope_tables` (non-interleaved halves, float32 math)."""
    cos, sin = rope
    half = x.shape[-1] // 2
    xf = x.float()
    x1, x2 = xf[..., :half], xf[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """Grouped-query attention: q (B, Lq, H, D), k/v (B, KVH, Lk, D), mask (B, 1, Lq, Lk) -> (B, Lq, H*D)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=mask, enable_gqa=True)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


def mlp(layer: nn.Module, x: Tensor) -> Tensor:
    """SwiGLU MLP of a Llama-style layer (VLM or expert)."""
    m = layer.mlp
    return m.down_proj(F.silu(m.gate_proj(x)) * m.up_proj(x))


def project_qkv(layer: nn.Module, x: Tensor, head_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """q (B, L, H, D), k and v (B, L, KVH, D) of a Llama-style self-attention layer."""
    b, n = x.shape[:2]
    attn = layer.self_attn
    return (
        attn.q_proj(x).view(b, n, -1, head_dim),
        attn.k_proj(x).view(b, n, -1, head_dim),
        attn.v_proj(x).view(b, n, -1, head_dim),
    )


def residual_block(layer: nn.Module, h: Tensor, attn_out: Tensor) -> Tensor:
    """Output projection and residual, then the MLP and its residual."""
    h = h + layer.self_attn.o_proj(attn_out)
    return h + mlp(layer, layer.post_attention_layernorm(h))


def sinusoidal_time_embedding(t: Tensor, dim: int, min_period: float, max_period: float) -> Tensor:
    """[sin | cos] embedding (B, dim) of flow times t (B,), computed in float64 as published."""
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    angle = (2 * math.pi / period)[None, :] * t[:, None].to(torch.float64)
    return torch.cat((torch.sin(angle), torch.cos(angle)), dim=1)


@dataclass
class Prefix:
    """Embedded prefix: tokens (B, Lp, d) in the compute dtype, pad mask and "ar" values (B, Lp)."""

    embeddings: Tensor
    pad_mask: Tensor
    ar_mask: Tensor


@dataclass
class ExpertCache:
    """What the expert needs from the prefix, computed once per chunk.

    Self-attention layers get a (B, KVH, Lp + Ls, D) key/value buffer whose prefix part holds the VLM's post-RoPE
    keys/values; each denoising step writes its suffix keys/values into the tail. Cross-attention layers get the
    VLM keys/values already re-projected by the expert's 320 -> 320 k/v projections.
    """

    keys: list[Tensor]
    values: list[Tensor]
    self_mask: Tensor
    cross_mask: Tensor
    self_rope: tuple[Tensor, Tensor]
    cross_rope: tuple[Tensor, Tensor]
    prefix_len: int

    def copy(self) -> ExpertCache:
        """A copy of every tensor (made outside inference mode, the copies are ordinary tensors autograd may use)."""
        return ExpertCache(
            keys=[k.clone() for k in self.keys],
            values=[v.clone() for v in self.values],
            self_mask=self.self_mask.clone(),
            cross_mask=self.cross_mask.clone(),
            self_rope=tuple(r.clone() for r in self.self_rope),
            cross_rope=tuple(r.clone() for r in self.cross_rope),
            prefix_len=self.prefix_len,
        )

    def detached(self) -> ExpertCache:
        """The same cache (same storage) with no autograd history: for guided steps, which write into it."""
        return replace(self, keys=[k.detach() for k in self.keys], values=[v.detach() for v in self.values])


class SmolVLAModel(nn.Module):
    """SmolVLA's network (LeRobot's `VLAFlowMatching`). `compute_dtype` is the dtype of VLM and expert."""

    def __init__(self, config: SmolVLAConfig) -> None:
        super().__init__()
        self.config = config
        bb = config.backbone
        self.vlm = SmolVLMModel(build_backbone_hf_config(config))
        self.expert = ActionExpert(config)
        width = config.expert_hidden_size
        self.state_proj = nn.Linear(config.max_state_dim, bb.text_hidden_size)
        self.action_in_proj = nn.Linear(config.max_action_dim, width)
        self.action_out_proj = nn.Linear(width, config.max_action_dim)
        self.action_time_mlp_in = nn.Linear(2 * width, width)
        self.action_time_mlp_out = nn.Linear(width, width)
        self.head_dim = bb.text_head_dim
        #: Run the vision tower on every camera slot (masked ones too), so that compiled graphs see one shape.
        self.static_shapes = False

    def init_expert_weights(self) -> None:
        """LeRobot's initialisation of the parts not taken from the backbone.

        Expert Llama layers: normal(0, 0.02) and unit norms (transformers' Llama init); the cross-attention k/v
        projections and the action/state projections keep PyTorch's default Linear init, as they are created
        after the expert in the reference.
        """
        for i, layer in enumerate(self.expert.layers):
            for name, module in layer.named_modules():
                if isinstance(module, nn.Linear):
                    if self.config.is_cross_attention_layer(i) and name in ("self_attn.k_proj", "self_attn.v_proj"):
                        module.reset_parameters()
                    else:
                        nn.init.normal_(module.weight, std=0.02)
                elif isinstance(module, RMSNorm):
                    nn.init.ones_(module.weight)
        nn.init.ones_(self.expert.norm.weight)
        for proj in (
            self.state_proj,
            self.action_in_proj,
            self.action_out_proj,
            self.action_time_mlp_in,
            self.action_time_mlp_out,
        ):
            proj.reset_parameters()

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype of the VLM and the expert (the small projections may stay float32)."""
        return self.expert.norm.weight.dtype

    def set_dtype(self, dtype: torch.dtype) -> None:
        """Run VLM and expert in `dtype`; state/action/time projections stay float32 (the flow is integrated in
        float32, and these layers are too small to matter for speed)."""
        self.vlm.to(dtype)
        self.expert.to(dtype)
        self.select_kernels(self.state_proj.weight.device)

    def select_kernels(self, device: torch.device) -> None:
        """Pick the vision tower's kernels for the device and dtype (call after moving the model).

        bfloat16 on CPU: chunked attention (see `chunked_vision_attention`) and the exact erf GELU instead of
        SigLIP's tanh approximation; the two differ by at most 5e-4, a sixteenth of bf16's rounding step where the
        difference peaks, and erf is several times faster on CPU. Any other case: SDPA and the published tanh GELU.
        """
        fast = device.type == "cpu" and self.compute_dtype == torch.bfloat16
        vision = self.vlm.vision_model
        vision.config._attn_implementation = VISION_ATTENTION_CPU if fast else "sdpa"
        for layer in vision.encoder.layers:
            layer.mlp.activation_fn = nn.GELU() if fast else nn.GELU(approximate="tanh")

    def compile_for_inference(self) -> None:
        """Compile the three stages of a chunk with `compile_frozen`: vision encoder, VLM prefix pass, denoising step.

        Shapes are kept static so that nothing recompiles while running (a recompile takes as long as the first
        call): the vision tower then also runs on a missing camera's image, as the reference does, and callers
        pad the language to its maximum length.
        """
        self.static_shapes = True
        encoder = self.vlm.vision_model.encoder
        encoder.forward = compile_frozen(encoder.forward)
        self.build_cache = compile_frozen(self.build_cache)
        self.cached_velocity = compile_frozen(self.cached_velocity)

    # -- prefix ---------------------------------------------------------------------------------------------------

    def embed_images(self, pixels: Tensor) -> Tensor:
        """Visual tokens (N, T, d_text) of N preprocessed images (N, 3, S, S) in [-1, 1], scaled by sqrt(d)."""
        vision = self.vlm.vision_model
        hidden = vision(pixel_values=pixels.to(self.compute_dtype)).last_hidden_state
        tokens = self.vlm.connector(hidden)
        return tokens * torch.tensor(tokens.shape[-1] ** 0.5, dtype=tokens.dtype, device=tokens.device)

    def embed_prefix(
        self, images: Tensor, image_mask: Tensor, lang_tokens: Tensor, lang_mask: Tensor, state: Tensor
    ) -> Prefix:
        """Embed the prefix `[images][language][state]`.

        images (B, C, 3, S, S) preprocessed; image_mask (B, C) False for a missing camera (its tokens are masked
        and the vision tower is not run on it); lang_tokens/lang_mask (B, Lt); state (B, max_state_dim) normalised.
        """
        if self.static_shapes:
            present = self.embed_images(images.flatten(0, 1))[image_mask.flatten()]
        else:
            present = self.embed_images(images[image_mask]) if bool(image_mask.any()) else None
        return self.assemble_prefix(present, image_mask, lang_tokens, lang_mask, state)

    def assemble_prefix(
        self, image_tokens: Tensor | None, image_mask: Tensor, lang_tokens: Tensor, lang_mask: Tensor, state: Tensor
    ) -> Prefix:
        """The prefix from the visual tokens of the present cameras (N, T, d) in `image_mask` order (B, C)."""
        b, n_cam = image_mask.shape
        dtype = self.compute_dtype
        n_img = self.config.backbone.image_tokens
        d = self.config.backbone.text_hidden_size
        img_emb = torch.zeros(b, n_cam, n_img, d, dtype=dtype, device=image_mask.device)
        if image_tokens is not None:
            img_emb[image_mask] = image_tokens.to(dtype)  # autocast may hand them over in bfloat16
        lang_emb = self.vlm.text_model.embed_tokens(lang_tokens) * math.sqrt(d)
        state_emb = self.state_proj(state.float())[:, None, :].to(dtype)
        embeddings = torch.cat((img_emb.reshape(b, n_cam * n_img, d), lang_emb.to(dtype), state_emb), dim=1)
        pad_mask = torch.cat(
            (
                image_mask[:, :, None].expand(b, n_cam, n_img).reshape(b, -1),
                lang_mask.bool(),
                torch.ones(b, 1, dtype=torch.bool, device=state.device),
            ),
            dim=1,
        )
        ar_mask = torch.zeros_like(pad_mask, dtype=torch.long)
        ar_mask[:, -1] = 1
        return Prefix(embeddings, pad_mask, ar_mask)

    # -- suffix ---------------------------------------------------------------------------------------------------

    def embed_suffix(self, noisy_actions: Tensor, t: Tensor) -> Tensor:
        """Action tokens (B, chunk, d_expert) from x_t (B, chunk, max_action_dim) and flow time t (B,)."""
        action_emb = self.action_in_proj(noisy_actions.float())
        time_emb = sinusoidal_time_embedding(
            t, action_emb.shape[-1], self.config.min_period, self.config.max_period
        ).to(action_emb.dtype)
        time_emb = time_emb[:, None, :].expand_as(action_emb)
        h = self.action_time_mlp_in(torch.cat((action_emb, time_emb), dim=2))
        h = self.action_time_mlp_out(F.silu(h))
        return h.to(self.compute_dtype)

    def suffix_masks(self, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Pad mask (all valid) and "ar" values (each action token starts a new causal block) of the suffix."""
        n = self.config.chunk_size
        ones = torch.ones(batch, n, dtype=torch.long, device=device)
        return ones.bool(), ones

    def velocity_head(self, expert_out: Tensor) -> Tensor:
        """Velocity (B, chunk, max_action_dim) in float32 from the expert's normalised output."""
        return self.action_out_proj(expert_out.float())

    # -- joint pass (training, and the uncached reference path) ------------------------------------------------------

    def forward_velocity(self, prefix: Prefix, noisy_actions: Tensor, t: Tensor) -> Tensor:
        """Velocity v(x_t, t) from one joint pass over prefix and action tokens (no cache)."""
        b, lp = prefix.pad_mask.shape
        hs = self.embed_suffix(noisy_actions, t)
        s_pad, s_ar = self.suffix_masks(b, hs.device)
        pad = torch.cat((prefix.pad_mask, s_pad), dim=1)
        mask = make_attention_mask(pad, torch.cat((prefix.ar_mask, s_ar), dim=1))[:, None]
        positions = torch.cumsum(pad.long(), dim=1) - 1
        rope_all = rope_tables(positions, self.head_dim)
        rope_prefix = tuple(r[:, :lp] for r in rope_all)
        rope_suffix = tuple(r[:, lp:] for r in rope_all)
        cross_positions = positions[:, lp:] - positions[:, lp:].min(dim=1, keepdim=True).values
        rope_cross = rope_tables(cross_positions, self.head_dim)

        hp = prefix.embeddings
        for i, (vl, el) in enumerate(zip(self.vlm.text_model.layers, self.expert.layers, strict=True)):
            qp, kp, vp = project_qkv(vl, vl.input_layernorm(hp), self.head_dim)
            qp, kp = apply_rope(qp, rope_prefix), apply_rope(kp, rope_prefix)
            xs = el.input_layernorm(hs)
            if self.config.is_cross_attention_layer(i):
                kt, vt = kp.transpose(1, 2), vp.transpose(1, 2)
                ap = attend(qp, kt, vt, mask[:, :, :lp, :lp])
                qs = apply_rope(el.self_attn.q_proj(xs).view(b, -1, qp.shape[2], self.head_dim), rope_cross)
                ke = el.self_attn.k_proj(kp.reshape(b, lp, -1)).view(b, lp, -1, self.head_dim)
                ve = el.self_attn.v_proj(vp.reshape(b, lp, -1)).view(b, lp, -1, self.head_dim)
                a_s = attend(qs, ke.transpose(1, 2), ve.transpose(1, 2), mask[:, :, lp:, :lp])
            else:
                qs, ks, vs = project_qkv(el, xs, self.head_dim)
                qs, ks = apply_rope(qs, rope_suffix), apply_rope(ks, rope_suffix)
                a = attend(
                    torch.cat((qp, qs), 1),
                    torch.cat((kp, ks), 1).transpose(1, 2),
                    torch.cat((vp, vs), 1).transpose(1, 2),
                    mask,
                )
                ap, a_s = a[:, :lp], a[:, lp:]
            hp = residual_block(vl, hp, ap)
            hs = residual_block(el, hs, a_s)
        return self.velocity_head(self.expert.norm(hs))

    # -- cached inference -------------------------------------------------------------------------------------------

    def build_cache(self, prefix: Prefix) -> ExpertCache:
        """Run the VLM once over the prefix and keep what the denoising steps need (see `ExpertCache`)."""
        b, lp = prefix.pad_mask.shape
        n = self.config.chunk_size
        mask = make_attention_mask(prefix.pad_mask, prefix.ar_mask)[:, None]
        positions = torch.cumsum(prefix.pad_mask.long(), dim=1) - 1
        rope_prefix = rope_tables(positions, self.head_dim)
        layers = self.vlm.text_model.layers
        keys: list[Tensor] = []
        values: list[Tensor] = []
        hp = prefix.embeddings
        for i, (vl, el) in enumerate(zip(layers, self.expert.layers, strict=True)):
            x = vl.input_layernorm(hp)
            kp = apply_rope(vl.self_attn.k_proj(x).view(b, lp, -1, self.head_dim), rope_prefix)
            vp = vl.self_attn.v_proj(x).view(b, lp, -1, self.head_dim)
            if self.config.is_cross_attention_layer(i):
                # The expert's re-projection of this layer's VLM keys/values is the same at every step.
                ke = el.self_attn.k_proj(kp.reshape(b, lp, -1)).view(b, lp, -1, self.head_dim)
                ve = el.self_attn.v_proj(vp.reshape(b, lp, -1)).view(b, lp, -1, self.head_dim)
                keys.append(ke.transpose(1, 2).contiguous())
                values.append(ve.transpose(1, 2).contiguous())
            else:
                k_buf = kp.new_empty(b, kp.shape[2], lp + n, self.head_dim)
                v_buf = vp.new_empty(b, vp.shape[2], lp + n, self.head_dim)
                k_buf[:, :, :lp] = kp.transpose(1, 2)
                v_buf[:, :, :lp] = vp.transpose(1, 2)
                keys.append(k_buf)
                values.append(v_buf)
            if i + 1 < len(layers):  # the last layer's output is not used: only its keys/values are
                q = apply_rope(vl.self_attn.q_proj(x).view(b, lp, -1, self.head_dim), rope_prefix)
                hp = residual_block(vl, hp, attend(q, kp.transpose(1, 2), vp.transpose(1, 2), mask))

        s_pad, s_ar = self.suffix_masks(b, hp.device)
        full = make_attention_mask(torch.cat((prefix.pad_mask, s_pad), 1), torch.cat((prefix.ar_mask, s_ar), 1))
        self_mask = full[:, None, lp:, :].contiguous()
        n_valid = prefix.pad_mask.sum(dim=1, keepdim=True)
        steps = torch.arange(n, device=hp.device)[None, :]
        return ExpertCache(
            keys=keys,
            values=values,
            self_mask=self_mask,
            cross_mask=self_mask[..., :lp].contiguous(),
            self_rope=rope_tables(n_valid + steps, self.head_dim),
            cross_rope=rope_tables(steps.expand(b, n), self.head_dim),
            prefix_len=lp,
        )

    def cached_velocity(self, cache: ExpertCache, noisy_actions: Tensor, t: Tensor) -> Tensor:
        """Velocity v(x_t, t) running only the expert against the cached prefix."""
        hs = self.embed_suffix(noisy_actions, t)
        b, n = hs.shape[:2]
        lp = cache.prefix_len
        for i, el in enumerate(self.expert.layers):
            x = el.input_layernorm(hs)
            if self.config.is_cross_attention_layer(i):
                q = apply_rope(el.self_attn.q_proj(x).view(b, n, -1, self.head_dim), cache.cross_rope)
                a = attend(q, cache.keys[i], cache.values[i], cache.cross_mask)
            else:
                q, k, v = project_qkv(el, x, self.head_dim)
                q = apply_rope(q, cache.self_rope)
                cache.keys[i][:, :, lp:] = apply_rope(k, cache.self_rope).transpose(1, 2)
                cache.values[i][:, :, lp:] = v.transpose(1, 2)
                a = attend(q, cache.keys[i], cache.values[i], cache.self_mask)
            hs = residual_block(el, hs, a)
        return self.velocity_head(self.expert.norm(hs))

    def sample_actions(
        self,
        prefix: Prefix,
        noise: Tensor,
        *,
        use_cache: bool = True,
        guidance: ChunkGuidance | None = None,
        padded_dims: str = "flow_to_zero",
    ) -> Tensor:
        """Actions (B, chunk, max_action_dim) for `prefix`, from noise (B, chunk, max_action_dim).

        With `use_cache` the VLM runs once and only the expert runs per step; without, every step is a joint pass
        over prefix and actions (the training computation), which gives the same result more slowly.
        `guidance`: real-time chunking toward previous actions (`smolvla.policy.rtc`). Its steps differentiate
        through the expert, so they leave inference mode (on copies of the prefix or cache) and run the expert
        eagerly, also after `compile_for_inference` (the frozen compiled step has no backward).
        `padded_dims`: see `integrate`.
        """
        cache = self.build_cache(prefix) if use_cache else None
        if guidance is None:
            if cache is None:
                return self.integrate(lambda x, t: self.forward_velocity(prefix, x, t), noise, padded_dims=padded_dims)
            return self.integrate(lambda x, t: self.cached_velocity(cache, x, t), noise, padded_dims=padded_dims)
        with torch.inference_mode(False), torch.no_grad():
            if cache is None:
                prefix = replace(prefix, embeddings=prefix.embeddings.clone())
                return self.integrate(
                    lambda x, t: self.forward_velocity(prefix, x, t), noise.clone(), guidance, padded_dims=padded_dims
                )
            cache = cache.copy()
            eager_velocity = type(self).cached_velocity
            # Each step writes its keys/values into the cache's buffers; a detached view per step keeps one
            # step's autograd graph from reaching into the previous one's.
            return self.integrate(
                lambda x, t: eager_velocity(self, cache.detached(), x, t),
                noise.clone(),
                guidance,
                padded_dims=padded_dims,
            )

    def integrate(
        self,
        velocity: Callable[[Tensor, Tensor], Tensor],
        noise: Tensor,
        guidance: ChunkGuidance | None = None,
        *,
        padded_dims: str = "flow_to_zero",
    ) -> Tensor:
        """Euler integration of the flow from t=1 (noise) to t=0 in `num_steps` steps, in float32.

        The times are those of LeRobot 0.4.4: t = 1 + k * dt computed in float64, then rounded to float32 (k = 0 ..
        num_steps - 1), not accumulated in float32 (older LeRobot), whose t drifts by a few float32 steps: 0.79999995
        for 0.8, which moves the result by 1e-5 of its spread (benchmarks/check_parity.py). Same noise, same actions.

        The action dims past `action_dim` (padding up to `max_action_dim`) have a zero target in training and no
        loss (`flow_matching_loss`), so the network's velocity there is untrained, yet x feeds back into the expert
        at every step. With `padded_dims="flow_to_zero"` they move with the exact velocity of the training path to
        their zero target (v = noise, so x_t = t * noise): the expert sees there exactly what it saw in training.
        `"model"` integrates the network's own velocity, as LeRobot 0.4.4 does (for comparisons with it).
        With `guidance` every step uses the guided velocity of `rtc.guided_velocity`.
        """
        if padded_dims not in ("flow_to_zero", "model"):
            raise ValueError(f"padded_dims must be 'flow_to_zero' or 'model', got {padded_dims!r}")
        b = noise.shape[0]
        real = self.config.action_dim
        dt = -1.0 / self.config.num_steps
        dt_tensor = torch.tensor(dt, dtype=torch.float32, device=noise.device)
        x = noise.to(torch.float32).clone()
        padded_velocity = x[..., real:].clone()
        for k in range(self.config.num_steps):
            t = torch.tensor(1.0 + k * dt, dtype=torch.float32, device=noise.device).expand(b)
            if guidance is None:
                v = velocity(x, t)
            else:
                v, _ = guided_velocity(velocity, x, t, guidance)
            if padded_dims == "flow_to_zero":
                v = torch.cat([v[..., :real], padded_velocity], dim=-1)
            x += dt_tensor * v
        return x
