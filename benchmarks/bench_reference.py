"""Latency of the reference SmolVLA (LeRobot 0.4.4 `SmolVLAPolicy.predict_action_chunk`) on this machine.

Measures what peer-latency.md reports, so that our policy and the reference can be timed side by side on the same
CPU: the full 450M architecture with random weights (latency does not depend on weight values), batch 1, the
smolvla_base layout (256x256 cameras `observation.image`, `observation.image2`, `observation.image3`, upsampled to
512x512; 6-D state and action; language padded to 48 tokens; chunk 50; 10 Euler steps). With `--dtype bfloat16` the
VLM runs in bfloat16 while the expert and projections stay float32, as the released smolvla_base loads; with
`--dtype float32` everything is float32. One warm-up call, then R timed calls under `torch.inference_mode` with the
same input (and the same noise) every call. Prints one JSON line: cameras, dtype, median_s, min_s, max_s, runs,
first_call_s, plus the thread count and the 1-minute load average at the end of the run.

No network: the SmolVLM2-500M backbone config, image-processor config and a byte-level tokenizer are written to a
temporary directory that `vlm_model_name` points at (load_vlm_weights=False). The tokenizer changes no amount of work,
since the language tokens are always padded to 48.

It runs in its own virtual environment, never in the workspace's .venv (lerobot pins torch < 2.11 and
transformers < 5; it is installed without its dependencies next to torch 2.13.0):

    tools/setup_reference_venv.sh
    .venv-reference/bin/python benchmarks/bench_reference.py --cameras 3 --dtype bfloat16 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

# SmolVLM2-500M-Video-Instruct (HuggingFaceTB), the backbone smolvla_base names in `vlm_model_name`.
BACKBONE_CONFIG = {
    "architectures": ["SmolVLMForConditionalGeneration"],
    "model_type": "smolvlm",
    "image_token_id": 49190,
    "scale_factor": 4,
    "tie_word_embeddings": False,
    "vocab_size": 49280,
    "vision_config": {
        "model_type": "smolvlm_vision",
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 512,
        "patch_size": 16,
    },
    "text_config": {
        "model_type": "llama",
        "hidden_size": 960,
        "intermediate_size": 2560,
        "num_hidden_layers": 32,  # the reference keeps the first `num_vlm_layers` (16) itself
        "num_attention_heads": 15,
        "num_key_value_heads": 5,
        "head_dim": 64,
        "vocab_size": 49280,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000,
        "max_position_embeddings": 8192,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
    },
}
IMAGE_PROCESSOR_CONFIG = {
    "image_processor_type": "SmolVLMImageProcessor",
    "processor_class": "SmolVLMProcessor",
    "do_convert_rgb": True,
    "do_image_splitting": True,
    "do_normalize": True,
    "do_pad": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "max_image_size": {"longest_edge": 512},
    "resample": 1,
    "rescale_factor": 1 / 255,
    "size": {"longest_edge": 2048},
}
PROCESSOR_CONFIG = {"image_seq_len": 64, "processor_class": "SmolVLMProcessor"}
#: The special tokens SmolVLM's processor and the reference read from the tokenizer.
EXTRA_SPECIAL_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "image_token": "<image>",
    "end_of_utterance_token": "<end_of_utterance>",
}
CAMERA_KEYS = ["observation.image", "observation.image2", "observation.image3"]
CAMERA_SIZE = 256
STATE_DIM = 6
ACTION_DIM = 6
TASK = "Pick up the red cube and place it in the box.\n"


def import_torchvision() -> None:
    """Import torchvision; PyPI has no CPU build, and its CUDA build's C ops cannot load next to CPU torch.

    Without them, `torchvision._meta_registrations` fails on `torchvision::nms` / `qnms`, the only two ops it
    registers unconditionally. Declaring their schemas lets the pure-Python part (transforms, which lerobot's
    import chain and transformers' SmolVLM processors use) import; none of torchvision's ops run here.
    """
    try:
        import torchvision  # noqa: F401
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        for op in ("nms", "qnms"):
            torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401


def write_backbone_dir(directory: Path) -> None:
    """Write the backbone's config, processor configs and a byte-level BPE tokenizer (256 tokens + specials)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    (directory / "config.json").write_text(json.dumps(BACKBONE_CONFIG, indent=2))
    (directory / "preprocessor_config.json").write_text(json.dumps(IMAGE_PROCESSOR_CONFIG, indent=2))
    (directory / "processor_config.json").write_text(json.dumps(PROCESSOR_CONFIG, indent=2))
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|pad|>", extra_special_tokens=EXTRA_SPECIAL_TOKENS
    )
    tokenizer.save_pretrained(directory)


def build_policy(cameras: int, dtype: torch.dtype, backbone_dir: Path) -> SmolVLAPolicy:
    """The reference SmolVLAPolicy in the smolvla_base layout with `cameras` cameras; VLM in `dtype`."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    inputs = {key: PolicyFeature(FeatureType.VISUAL, (3, CAMERA_SIZE, CAMERA_SIZE)) for key in CAMERA_KEYS[:cameras]}
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (STATE_DIM,))
    config = SmolVLAConfig(
        input_features=inputs,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        device="cpu",
        push_to_hub=False,
        vlm_model_name=str(backbone_dir),
        load_vlm_weights=False,
        pad_language_to="max_length",
        tokenizer_max_length=48,
        chunk_size=50,
        n_action_steps=50,
        num_steps=10,
    )
    policy = SmolVLAPolicy(config)
    # smolvla_base loads the VLM with from_pretrained(torch_dtype=bfloat16); the rest is built in float32.
    policy.model.vlm_with_expert.vlm.to(dtype)
    return policy.eval()


def make_batch(policy: SmolVLAPolicy, cameras: int) -> dict[str, torch.Tensor]:
    """One observation, batch 1, as lerobot's preprocessor hands it to the policy (tokens padded to 48)."""
    gen = torch.Generator().manual_seed(0)
    batch = {key: torch.rand(1, 3, CAMERA_SIZE, CAMERA_SIZE, generator=gen) for key in CAMERA_KEYS[:cameras]}
    batch["observation.state"] = torch.randn(1, STATE_DIM, generator=gen)
    tokenizer = policy.model.vlm_with_expert.processor.tokenizer
    tokens = tokenizer(TASK, padding="max_length", max_length=48, truncation=True, return_tensors="pt")
    batch["observation.language.tokens"] = tokens["input_ids"]
    batch["observation.language.attention_mask"] = tokens["attention_mask"].bool()
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, choices=(1, 2, 3), default=3)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import_torchvision()
    with tempfile.TemporaryDirectory(prefix="smolvlm2-config-") as tmp:
        write_backbone_dir(Path(tmp))
        with contextlib.redirect_stdout(sys.stderr):  # lerobot prints while it builds; stdout is the JSON line only
            policy = build_policy(args.cameras, getattr(torch, args.dtype), Path(tmp))
    batch = make_batch(policy, args.cameras)
    noise = torch.randn(1, policy.config.chunk_size, policy.config.max_action_dim)

    def call() -> float:
        start = time.perf_counter()
        actions = policy.predict_action_chunk(batch, noise=noise)
        elapsed = time.perf_counter() - start
        assert actions.shape == (1, policy.config.chunk_size, ACTION_DIM), actions.shape
        return elapsed

    with torch.inference_mode():
        first = call()
        times = [call() for _ in range(args.repeats)]
    result = {
        "cameras": args.cameras,
        "dtype": args.dtype,
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "runs": len(times),
        "first_call_s": round(first, 4),
        "threads": torch.get_num_threads(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
