"""Reference side of the parity check: a LeRobot 0.4.4 SmolVLA checkpoint with random weights, and its outputs.

Runs in .venv-reference (LeRobot 0.4.4, see tools/setup_reference_venv.sh), never in the workspace's .venv; the
other side is benchmarks/check_parity.py, which loads the directory written here with our implementation and
compares. Nothing is downloaded: the reference is built by `bench_reference.build_policy` from a local SmolVLM2-500M
config and byte-level tokenizer (the real weights cannot be fetched here; the same architecture with shared random
weights is the next best check).

What it writes to DIR, all with LeRobot's own code:

- the checkpoint in the published layout: `policy.save_pretrained` (config.json, model.safetensors), the
  pre/post-processor pipelines of `make_smolvla_pre_post_processors` with random normalisation statistics
  (`policy_preprocessor.json` + its normaliser statistics, `policy_postprocessor.json` + its unnormaliser
  statistics), and the tokenizer the reference used (tokenizer.json ...). `vlm_model_name` is then set to the
  backbone's hub id, as in the published smolvla_base (the local backbone directory is temporary).
- `parity_inputs.safetensors`: one observation (3 cameras of 256x256x3 uint8, a 6-D state, noise (1, 50, 32)), the
  task in the metadata, and what LeRobot's preprocessor made of it (tokens, attention mask, normalised state).
- `parity_reference.safetensors`: LeRobot's inference path on it (`prepare_observation_for_inference` ->
  preprocessor -> `predict_action_chunk(noise=...)` -> postprocessor): the actions (un-normalised) and the chunk as
  `predict_action_chunk` returns it (normalised), plus intermediate stages recorded during that same call: the
  prefix embeddings and pad mask, every layer's VLM keys/values (post-RoPE keys) and the velocity of each of the
  10 Euler steps.

Vision position ids: the transformers LeRobot 0.4.4 runs on (4.57) shifts them in float32 (see
`use_full_grid_vision_positions`); the reference's vision tower is given one position per patch, as SmolVLM2 was
trained, unless --transformers-vision-positions keeps the installed behaviour.

Weights: float32 everywhere (VLM included), every parameter drawn again from one seeded generator so that nothing
is trivially constant: matrices N(0, 1/fan_in) (variance-preserving, so that every block changes the result
visibly, unlike the real model's 0.02 init at random), biases N(0, 0.05^2), norm scales 1 + N(0, 0.1^2).

Usage (from the repository root):

    .venv-reference/bin/python benchmarks/parity_reference.py DIR [--seed 0] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_reference import (
    ACTION_DIM,
    CAMERA_KEYS,
    CAMERA_SIZE,
    STATE_DIM,
    build_policy,
    import_torchvision,
    write_backbone_dir,
)
from safetensors.torch import save_file

#: The backbone smolvla_base names; written into the saved config in place of the temporary local directory.
BACKBONE_HUB_ID = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
#: Without the trailing newline, so that LeRobot's newline step and ours are both exercised.
PARITY_TASK = "Pick up the red cube and place it in the box."
INPUTS_FILE = "parity_inputs.safetensors"
REFERENCE_FILE = "parity_reference.safetensors"


def randomize_parameters(module: torch.nn.Module, seed: int) -> None:
    """Draw every parameter again from one seeded generator (order: `named_parameters`).

    Matrices (Linear, Embedding, Conv) N(0, 1/fan_in); biases N(0, 0.05^2); norm scales 1 + N(0, 0.1^2). LeRobot and
    transformers initialise biases and norms to constants, which would leave their loading and use unchecked.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * param[0].numel() ** -0.5)
            elif name.endswith(".bias"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
            elif "norm" in name:
                param.copy_(1.0 + torch.randn(param.shape, generator=gen) * 0.1)
            else:  # a parameter kind this rule does not know: better to stop than to leave it untested
                raise ValueError(f"no randomisation rule for parameter {name} {tuple(param.shape)}")


def use_full_grid_vision_positions(policy: torch.nn.Module) -> None:
    """Give every patch its own position embedding, as SmolVLM2 was trained and as transformers 5 computes them.

    transformers 4.55.1 - 4.57.x (LeRobot 0.4.4 needs >= 4.57.1, < 5) compute the vision position ids with
    `i / n * (1 - 1e-6)` in the pixels' dtype and bucketize: in float32 every row and column index i >= 1 lands in
    bucket i - 1 (positions 0, 0, 1, ..., 30 per axis), in bfloat16 the factor rounds to 1 and the ids are right.
    The regression is transformers issue #41190, fixed by PR #41374 for transformers 5. So LeRobot's float32 path
    differs from its bf16 path (the way smolvla_base runs) and from the trained model. SmolVLA always feeds full
    512x512 grids (resize with padding, no patch mask), for which the right ids are 0 .. num_patches - 1: this
    replaces the embedding lookup of the reference's vision tower by exactly that (a no-op where transformers is
    right). The tensor and its name are unchanged.
    """
    table = policy.model.vlm_with_expert.get_vlm_model().vision_model.embeddings.position_embedding

    def full_grid(position_ids: torch.Tensor) -> torch.Tensor:
        ids = torch.arange(position_ids.shape[-1], device=position_ids.device).expand_as(position_ids)
        return torch.nn.functional.embedding(ids, table.weight)

    table.forward = full_grid


def random_stats(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """MEAN_STD statistics of state and action, random but fixed (so that normalisation is exercised)."""
    gen = torch.Generator().manual_seed(seed + 1)
    return {
        "observation.state": {
            "mean": torch.randn(STATE_DIM, generator=gen) * 0.5,
            "std": torch.rand(STATE_DIM, generator=gen) + 0.5,
        },
        "action": {
            "mean": torch.randn(ACTION_DIM, generator=gen) * 0.5,
            "std": torch.rand(ACTION_DIM, generator=gen) + 0.5,
        },
    }


def set_backbone_name(path: Path) -> None:
    """Point the saved config (and the preprocessor's tokenizer step) at the backbone's hub id, as published."""
    data = json.loads(path.read_text())
    if "vlm_model_name" in data:
        data["vlm_model_name"] = BACKBONE_HUB_ID
    for step in data.get("steps", []):
        if step.get("registry_name") == "tokenizer_processor":
            step["config"]["tokenizer_name"] = BACKBONE_HUB_ID
    path.write_text(json.dumps(data, indent=2) + "\n")


class Recorder:
    """Wraps three methods of the reference's VLAFlowMatching instance to keep what they return during one
    `predict_action_chunk` call (nothing is computed twice; the computation is untouched)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.prefix: tuple[torch.Tensor, ...] | None = None
        self.kv: dict[int, dict[str, torch.Tensor]] | None = None
        self.velocities: list[torch.Tensor] = []
        embed_prefix, vlm_forward, denoise_step = model.embed_prefix, model.vlm_with_expert.forward, model.denoise_step

        def record_prefix(*args, **kwargs):
            self.prefix = embed_prefix(*args, **kwargs)
            return self.prefix

        def record_kv(*args, **kwargs):
            out = vlm_forward(*args, **kwargs)
            if kwargs.get("fill_kv_cache"):
                self.kv = {i: dict(layer) for i, layer in out[1].items()}
            return out

        def record_velocity(*args, **kwargs):
            v_t = denoise_step(*args, **kwargs)
            self.velocities.append(v_t.clone())
            return v_t

        # Instance attributes shadow the methods; sample_actions calls them through `self`.
        model.embed_prefix = record_prefix
        model.vlm_with_expert.forward = record_kv
        model.denoise_step = record_velocity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="output directory (created)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--transformers-vision-positions",
        action="store_true",
        help="keep the vision position ids of the installed transformers (shifted in float32 with 4.55.1-4.57.x; "
        "see use_full_grid_vision_positions) instead of one position per patch",
    )
    args = parser.parse_args()

    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import_torchvision()
    import lerobot
    import transformers
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
    from lerobot.policies.utils import prepare_observation_for_inference

    out = args.directory
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smolvlm2-config-") as tmp:
        write_backbone_dir(Path(tmp))
        with contextlib.redirect_stdout(sys.stderr):  # lerobot prints while it builds
            policy = build_policy(len(CAMERA_KEYS), torch.float32, Path(tmp))
            randomize_parameters(policy, args.seed)
            if not args.transformers_vision_positions:
                use_full_grid_vision_positions(policy)
            preprocessor, postprocessor = make_smolvla_pre_post_processors(policy.config, random_stats(args.seed))
        policy.save_pretrained(out)
        preprocessor.save_pretrained(out)
        postprocessor.save_pretrained(out)
        policy.model.vlm_with_expert.processor.tokenizer.save_pretrained(out)
    for name in ("config.json", "policy_preprocessor.json"):
        set_backbone_name(out / name)

    # One observation as a robot hands it to LeRobot: HxWx3 uint8 images, float32 state, the task string.
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, size=(len(CAMERA_KEYS), CAMERA_SIZE, CAMERA_SIZE, 3), dtype=np.uint8)
    state = rng.normal(size=STATE_DIM).astype(np.float32)
    shape = (1, policy.config.chunk_size, policy.config.max_action_dim)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed + 2))
    observation = {key: images[i] for i, key in enumerate(CAMERA_KEYS)}
    observation["observation.state"] = state

    recorder = Recorder(policy.model)
    with torch.inference_mode():
        batch = preprocessor(prepare_observation_for_inference(observation, torch.device("cpu"), PARITY_TASK))
        policy.reset()
        chunk = policy.predict_action_chunk(batch, noise=noise.clone())
        actions = postprocessor(chunk)

    save_file(
        {
            "images": torch.from_numpy(images),
            "state": torch.from_numpy(state),
            "noise": noise,
            "lang_tokens": batch["observation.language.tokens"].contiguous(),
            "lang_mask": batch["observation.language.attention_mask"].bool().contiguous(),
            "state_normalized": batch["observation.state"].contiguous(),
        },
        str(out / INPUTS_FILE),
        metadata={
            "task": PARITY_TASK,
            "camera_keys": json.dumps(CAMERA_KEYS),
            "seed": str(args.seed),
            "vision_positions": "transformers" if args.transformers_vision_positions else "full_grid",
        },
    )
    prefix_embs, prefix_pad, _ = recorder.prefix
    tensors = {
        "actions": actions.contiguous(),
        "actions_normalized": chunk.contiguous(),
        "prefix_embeddings": prefix_embs.contiguous(),
        "prefix_pad_mask": prefix_pad.contiguous(),
    }
    for i, layer in recorder.kv.items():
        tensors[f"key_{i:02d}"] = layer["key_states"].contiguous()
        tensors[f"value_{i:02d}"] = layer["value_states"].contiguous()
    for k, v_t in enumerate(recorder.velocities):
        tensors[f"velocity_{k:02d}"] = v_t.contiguous()
    versions = {"lerobot": lerobot.__version__, "torch": torch.__version__, "transformers": transformers.__version__}
    save_file(tensors, str(out / REFERENCE_FILE), metadata=versions)
    print(json.dumps({"directory": str(out), **versions, "actions_shape": list(actions.shape)}))


if __name__ == "__main__":
    main()
