"""Tiny SmolVLA checkpoints built locally (random weights, small byte-level BPE tokenizer) for tests and demos.

They use the published layout and tensor naming scheme with small widths: 64x64 vision input (16 visual tokens per
camera), 4 text/expert layers (both self- and cross-attention layers), GQA 3:1 like the real model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..robot_interface import SO100_FPS, so100_interface
from .configuration import BackboneConfig, SmolVLAConfig

#: Text the tiny tokenizer's merges are learned from (robot instructions, so common words become single tokens).
_CORPUS = [
    "pick up the red cube and place it in the bowl",
    "put the green block on the plate",
    "move the arm to the left and open the gripper",
    "grasp the yellow ball, then drop it into the box",
    "stack the blue cube on top of the red cube",
    "push the cup to the right side of the table",
    "close the drawer and return to the home position",
]
TINY_VOCAB = 384
PAD_TOKEN = "<|pad|>"


def tiny_backbone() -> BackboneConfig:
    """A SmolVLM2-shaped backbone small enough for a forward pass in milliseconds."""
    return BackboneConfig(
        vision_hidden_size=32,
        vision_intermediate_size=64,
        vision_layers=2,
        vision_heads=2,
        vision_image_size=64,
        vision_patch_size=8,
        scale_factor=2,
        text_hidden_size=48,
        text_intermediate_size=96,
        text_layers=4,
        text_heads=3,
        text_kv_heads=1,
        text_head_dim=16,
        vocab_size=TINY_VOCAB,
    )


def tiny_config(
    *, n_cameras: int = 1, state_dim: int = 6, action_dim: int = 6, chunk_size: int = 10, **changes
) -> SmolVLAConfig:
    """SmolVLAConfig of the tiny model; `changes` override further fields."""
    names = tuple(["observation.image", *[f"observation.image{i + 1}" for i in range(1, n_cameras)]])
    fields = {
        "camera_names": names,
        "camera_shapes": ((3, 256, 256),) * n_cameras,
        "state_dim": state_dim,
        "action_dim": action_dim,
        "chunk_size": chunk_size,
        "n_action_steps": chunk_size,
        "max_state_dim": 8,
        "max_action_dim": 8,
        "resize_imgs_with_padding": (64, 64),
        "tokenizer_max_length": 16,
        "num_vlm_layers": 4,
        "vlm_model_name": "local/tiny-smolvlm",
        "backbone": tiny_backbone(),
    }
    if max(state_dim, action_dim) > 8:
        fields["max_state_dim"] = fields["max_action_dim"] = max(state_dim, action_dim)
    fields.update(changes)
    return SmolVLAConfig(**fields)


def make_tiny_tokenizer():
    """A byte-level BPE tokenizer (any text encodes) trained on a fixed corpus: deterministic, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=[PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD_TOKEN)


def make_tiny_checkpoint(
    directory: str | Path,
    *,
    n_cameras: int = 1,
    state_dim: int = 6,
    action_dim: int = 6,
    chunk_size: int = 10,
    seed: int = 0,
    camera_names: Sequence[str] | None = None,
    units: str | None = "radians",
    fps: float = SO100_FPS,
) -> Path:
    """Write a tiny random SmolVLA checkpoint in the published layout (config.json, model.safetensors with the
    unused lm_head too, normaliser statistics, tokenizer) and return its directory.

    camera_names: the camera features (default observation.image, observation.image2, ...). units: the joint units
    of its robot interface (a preset or per-joint list; six SO-100 joints at `fps`), or None for no
    robot_interface.json, like a checkpoint trained with LeRobot.

    `SmolVLAPolicy.from_pretrained(directory)` loads it with no network; a chunk takes a few milliseconds. The
    normalisation statistics are random but fixed by `seed`, so that normalisation is exercised.
    """
    from .policy import SmolVLAPolicy
    from .processing import Normalizer

    directory = Path(directory)
    config = tiny_config(n_cameras=n_cameras, state_dim=state_dim, action_dim=action_dim, chunk_size=chunk_size)
    if camera_names is not None:
        config = config.replace(camera_names=tuple(camera_names))
    interface = None if units is None else so100_interface(config.camera_names, units=units, fps=fps)
    gen = torch.Generator().manual_seed(seed)
    normalizer = Normalizer(
        state_mean=torch.randn(state_dim, generator=gen) * 0.5,
        state_std=torch.rand(state_dim, generator=gen) + 0.5,
        action_mean=torch.randn(action_dim, generator=gen) * 0.5,
        action_std=torch.rand(action_dim, generator=gen) + 0.5,
    )
    policy = SmolVLAPolicy.random(config, make_tiny_tokenizer(), normalizer, seed=seed)
    policy.robot_interface = interface
    # Variance-preserving weights (std 1/sqrt(fan_in)) instead of the real model's 0.02: at these widths the small
    # init would make every output nearly the input noise, and tests could not see what the network does.
    with torch.no_grad():
        for module in policy.model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5, generator=gen)
    bb = config.backbone
    lm_head = torch.randn(bb.vocab_size, bb.text_hidden_size, generator=gen) * 0.02
    # The published file also carries the VLM's (unused) language-model head: write one like it.
    return policy.write_checkpoint(directory, {"model.vlm_with_expert.vlm.lm_head.weight": lm_head})
