"""Parity of our SmolVLA with LeRobot 0.4.4 on the same random weights (the other half of parity_reference.py).

Loads the directory that benchmarks/parity_reference.py wrote in .venv-reference (LeRobot's own checkpoint,
processor and tokenizer files) with `SmolVLAPolicy.from_pretrained(DIR)`, whose tensor mapping is strict (a missing,
unexpected or wrongly shaped tensor fails; only the unused lm_head is accepted and not loaded), feeds the same
observation to `predict_chunk` (uint8 images, raw state, task, noise) and compares:

- the preprocessing: token ids and mask, normalised state (must be equal / float-equal);
- intermediate stages of our cached inference against what LeRobot computed during its call: prefix embeddings,
  every layer's keys/values as the expert reads them (post-RoPE VLM keys and values at the valid prefix positions; in
  the cross-attention layers after the expert's 320->320 re-projection, applied here to LeRobot's keys/values), the
  velocity of every Euler step (step k fed with LeRobot's own x_t of that step, so each step is compared alone);
- the final chunk, float32 (the check) and bfloat16 (informative, bf16 tolerance).

Deviations are printed as max |ours - LeRobot| and relative to the spread (std) of LeRobot's value; for the chunk
also relative to the spread of what the network adds to the noise (the displacement, in normalised units): the
stricter measure, since the noise alone would otherwise dominate the spread.

float32 tolerance: 1e-4 of the displacement's spread. Both sides compute the same float32 formulas; they differ
only in summation order and kernels (SDPA with grouped-query attention vs LeRobot's eager attention on expanded
heads, the cached cross-attention re-projection, the MKL/oneDNN blocking), which changes results by a few float32
rounding steps (1e-7 relative) per operation, compounded through 12 vision + 16 VLM + 16 expert layers and 10
Euler steps: ~1e-6 of the spread is expected. Any difference in formula (mask, RoPE position, scaling, time embedding,
normalisation) moves the result by far more than 1e-4. bfloat16: 5 % of the displacement's spread, as the tests use.

Exit status: 0 when the float32 chunk is within tolerance and the preprocessing matches, 1 otherwise.

Usage: python benchmarks/check_parity.py DIR [--threads T] [--no-bf16] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

F32_TOLERANCE = 1e-4
BF16_TOLERANCE = 0.05
INPUTS_FILE = "parity_inputs.safetensors"
REFERENCE_FILE = "parity_reference.safetensors"


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file."""
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}  # noqa: SIM118 (not a dict)


def deviation(ours: Tensor, ref: Tensor, spread_of: Tensor | None = None) -> dict[str, float]:
    """max |ours - ref| and that relative to the std of `spread_of` (default: ref), in float64."""
    ours, ref = ours.detach().double().cpu(), ref.detach().double().cpu()
    if ours.shape != ref.shape:
        raise ValueError(f"shape mismatch: ours {tuple(ours.shape)}, reference {tuple(ref.shape)}")
    spread = (ref if spread_of is None else spread_of.double().cpu()).std().item()
    max_abs = (ours - ref).abs().max().item()
    return {"max_abs": max_abs, "rel_spread": max_abs / spread if spread > 0 else float("inf")}


def observation(inputs: dict[str, Tensor]) -> tuple[list[np.ndarray], np.ndarray, Tensor]:
    """Images (HxWx3 uint8 each), raw state and noise as our `predict_chunk` takes them."""
    images = [img.numpy() for img in inputs["images"]]
    return images, inputs["state"].numpy(), inputs["noise"][0]


def stage_deviations(policy, inputs: dict[str, Tensor], task: str, ref: dict[str, Tensor]) -> dict[str, dict]:
    """Deviations of our intermediate stages (float32 policy) from LeRobot's, each stage fed LeRobot's own input
    where it has one, so that a mismatch points at the first stage that differs."""
    model = policy.model
    images, state, noise = observation(inputs)
    pixels, image_mask, tokens, token_mask, state_t = policy.prepare(images, state, task)
    out: dict[str, dict] = {}
    with torch.inference_mode():
        prefix = model.embed_prefix(pixels, image_mask, tokens, token_mask, state_t)
        valid = ref["prefix_pad_mask"][0]
        if not torch.equal(prefix.pad_mask[0].cpu(), valid):
            out["prefix_pad_mask"] = {"equal": False}
        out["prefix_embeddings"] = deviation(prefix.embeddings, ref["prefix_embeddings"])
        cache = model.build_cache(prefix)
        lp = cache.prefix_len
        key_dev, value_dev = [], []
        for i, layer in enumerate(model.expert.layers):
            # LeRobot's cache: (B, L, KVH, D) VLM keys (post-RoPE) / values; padding positions are never attended.
            k_ref, v_ref = ref[f"key_{i:02d}"][:, valid], ref[f"value_{i:02d}"][:, valid]
            k_ours = cache.keys[i][:, :, :lp].transpose(1, 2)[:, valid.to(cache.keys[i].device)]
            v_ours = cache.values[i][:, :, :lp].transpose(1, 2)[:, valid.to(cache.values[i].device)]
            if model.config.is_cross_attention_layer(i):
                # Ours holds the expert's re-projection (once per chunk): apply the same projection to LeRobot's.
                n = k_ref.shape[1]
                k_ref = layer.self_attn.k_proj(k_ref.reshape(1, n, -1)).view(k_ref.shape)
                v_ref = layer.self_attn.v_proj(v_ref.reshape(1, n, -1)).view(v_ref.shape)
            key_dev.append(deviation(k_ours, k_ref))
            value_dev.append(deviation(v_ours, v_ref))
        out["vlm_keys_worst_layer"] = max(key_dev, key=lambda d: d["rel_spread"])
        out["vlm_values_worst_layer"] = max(value_dev, key=lambda d: d["rel_spread"])
        # Velocity of each Euler step from LeRobot's own x_t and t of that step (the reference's time rule).
        x = noise[None].clone()
        dt = -1.0 / model.config.num_steps
        worst = None
        for k in range(model.config.num_steps):
            t = torch.tensor(1.0 + k * dt, dtype=torch.float32).expand(1)
            v_ref = ref[f"velocity_{k:02d}"]
            dev = deviation(model.cached_velocity(cache, x, t), v_ref)
            if k == 0:
                out["velocity_t1"] = dev
            worst = dev if worst is None or dev["rel_spread"] > worst["rel_spread"] else worst
            x = x + dt * v_ref
        out["velocity_worst_step"] = worst
    return out


def chunk_deviation(policy, inputs: dict[str, Tensor], task: str, ref: dict[str, Tensor]) -> dict[str, float]:
    """Our `predict_chunk` against LeRobot's pipeline output: un-normalised actions, relative to their spread, and
    (normalised) relative to the spread of the displacement from the noise."""
    images, state, noise = observation(inputs)
    # LeRobot integrates the network's own velocity in the padded action dims; ours follows the training path there
    # by default (docs/model.md), so compare like with like.
    actions = torch.from_numpy(policy.predict_chunk(images, state, task, noise=noise, padded_dims="model"))
    action_dim = actions.shape[-1]
    raw = deviation(actions, ref["actions"][0])
    ours_n = policy.normalizer.normalize_action(actions)
    displacement = ref["actions_normalized"][0] - noise[:, :action_dim]
    norm = deviation(ours_n, ref["actions_normalized"][0], spread_of=displacement)
    return {
        "max_abs": raw["max_abs"],
        "rel_spread": raw["rel_spread"],
        "normalized_max_abs": norm["max_abs"],
        "rel_displacement_spread": norm["rel_spread"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="what benchmarks/parity_reference.py wrote")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 comparison")
    parser.add_argument("--json", action="store_true", help="print one JSON line of all results at the end")
    args = parser.parse_args(argv)

    from smolvla.policy import SmolVLAPolicy
    from smolvla.policy.checkpoint import UNUSED_PUBLISHED, WEIGHTS
    from smolvla.policy.processing import tokenize

    torch.set_num_threads(args.threads)
    inputs, meta = read_safetensors(args.directory / INPUTS_FILE)
    ref, versions = read_safetensors(args.directory / REFERENCE_FILE)
    task = meta["task"]
    print(
        f"reference: lerobot {versions.get('lerobot')}, transformers {versions.get('transformers')}, "
        f"torch {versions.get('torch')}; task {task!r}; vision positions: {meta.get('vision_positions')}"
    )
    results: dict[str, object] = {"reference_versions": versions}
    ok = True

    policy = SmolVLAPolicy.from_pretrained(args.directory, dtype="float32")
    with safe_open(str(args.directory / WEIGHTS), framework="pt") as f:
        unused = [k for k in UNUSED_PUBLISHED if k in f.keys()]  # noqa: SIM118 (not a dict)
    print(f"loaded {args.directory} (strict tensor mapping; present but unused: {unused or 'none'})")

    # Preprocessing must agree exactly: same token ids and mask, same normalised state.
    tokens, token_mask = tokenize(policy.tokenizer, [task], policy.config)
    same_tokens = torch.equal(tokens, inputs["lang_tokens"]) and torch.equal(token_mask, inputs["lang_mask"])
    state_n = policy.normalizer.normalize_state(inputs["state"])
    state_dev = deviation(state_n, inputs["state_normalized"][0])
    results["tokens_equal"], results["normalized_state"] = same_tokens, state_dev
    print(f"tokens and mask equal: {same_tokens} ({int(token_mask.sum())} of {tokens.shape[1]} tokens valid)")
    print(f"normalised state: max abs {state_dev['max_abs']:.2e}")
    ok &= same_tokens and state_dev["rel_spread"] < 1e-6

    stages = stage_deviations(policy, inputs, task, ref)
    results["stages_float32"] = stages
    for name, dev in stages.items():
        text = ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}" for k, v in dev.items())
        print(f"float32 stage {name}: {text}")

    f32 = chunk_deviation(policy, inputs, task, ref)
    results["chunk_float32"] = f32
    f32_ok = f32["rel_displacement_spread"] < F32_TOLERANCE
    ok &= f32_ok
    print(
        f"float32 chunk: max abs {f32['max_abs']:.2e} = {f32['rel_spread']:.2e} of the output spread, "
        f"{f32['rel_displacement_spread']:.2e} of the displacement spread (tolerance {F32_TOLERANCE:.0e}): "
        f"{'OK' if f32_ok else 'FAIL'}"
    )
    del policy

    if not args.no_bf16:
        policy = SmolVLAPolicy.from_pretrained(args.directory, dtype="bfloat16")
        bf16 = chunk_deviation(policy, inputs, task, ref)
        results["chunk_bfloat16"] = bf16
        bf16_ok = bf16["rel_displacement_spread"] < BF16_TOLERANCE
        print(
            f"bfloat16 chunk: max abs {bf16['max_abs']:.2e} = {bf16['rel_spread']:.2%} of the output spread, "
            f"{bf16['rel_displacement_spread']:.2%} of the displacement spread (tolerance {BF16_TOLERANCE:.0%}): "
            f"{'OK' if bf16_ok else 'outside bf16 tolerance'}"
        )
        ok &= bf16_ok
    results["ok"] = ok
    print("PARITY OK" if ok else "PARITY FAILED")
    if args.json:
        print(json.dumps(results))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
