"""Compact SmolVLA models to train from scratch: the published architecture and checkpoint layout, small sizes.

A from-scratch run cannot use smolvla_base's 450M parameters on a CPU, and it does not need SmolVLM2's language
knowledge for one fixed task. `compact_config` keeps every piece of the architecture (SigLIP-style vision tower with
pixel-shuffle connector, a SmolLM2-style text model whose layers feed an interleaved cross/self-attention action
expert, flow matching) at widths and depths that train in minutes per thousand steps on two CPU cores. The tokenizer
is the small byte-level BPE of `tiny` (any text encodes). Every parameter trains (`train_expert_only` and
`freeze_vision_encoder` off): nothing is pretrained.
"""

from __future__ import annotations

from dataclasses import dataclass

from .configuration import BackboneConfig, SmolVLAConfig
from .processing import Normalizer
from .tiny import TINY_VOCAB, make_tiny_tokenizer

#: Name written as `vlm_model_name`: no hub repository; the backbone sizes travel in smolvla_backbone.json.
SCRATCH_MODEL_NAME = "local/smolvla-compact"


@dataclass(frozen=True)
class CompactSize:
    """Widths and depths of a compact model (the action expert is 0.75 x the text width, as in smolvla_base)."""

    vision_width: int
    vision_layers: int
    text_width: int
    text_layers: int = 4


#: `smolvla-train --model-size`: small (0.43 M parameters with two 64x64 cameras) trains about 2.3 times as fast
#: per step as medium (1.5 M) on a 2-core CPU (docs/training.md).
COMPACT_SIZES = {
    "small": CompactSize(vision_width=48, vision_layers=2, text_width=64),
    "medium": CompactSize(vision_width=96, vision_layers=4, text_width=128),
}


def compact_backbone(image_size: int = 64, patch_size: int = 8, size: str = "small") -> BackboneConfig:
    """Vision tower on image_size pixels (pixel shuffle 2: (image_size / patch_size / 2)^2 tokens per camera) and a
    text model of `COMPACT_SIZES[size]` (4 query heads of two key-value groups)."""
    if size not in COMPACT_SIZES:
        raise ValueError(f"model size must be one of {', '.join(COMPACT_SIZES)}, got {size!r}")
    dims = COMPACT_SIZES[size]
    return BackboneConfig(
        vision_hidden_size=dims.vision_width,
        vision_intermediate_size=2 * dims.vision_width,
        vision_layers=dims.vision_layers,
        vision_heads=max(2, dims.vision_width // 24),
        vision_image_size=image_size,
        vision_patch_size=patch_size,
        scale_factor=2,
        text_hidden_size=dims.text_width,
        text_intermediate_size=2 * dims.text_width,
        text_layers=dims.text_layers,
        text_heads=4,
        text_kv_heads=2,
        text_head_dim=dims.text_width // 4,
        vocab_size=TINY_VOCAB,
    )


def compact_camera_names(n_cameras: int) -> tuple[str, ...]:
    """Camera feature names of a compact model: smolvla_base's (observation.image, observation.image2, ...)."""
    return ("observation.image", *[f"observation.image{i + 1}" for i in range(1, n_cameras)])


def compact_config(
    camera_shapes: tuple[tuple[int, int, int], ...],
    *,
    state_dim: int = 6,
    action_dim: int = 6,
    chunk_size: int = 50,
    image_size: int = 64,
    patch_size: int = 8,
    size: str = "small",
) -> SmolVLAConfig:
    """SmolVLAConfig of the compact model for cameras of these (3, H, W) shapes, every parameter trainable."""
    names = compact_camera_names(len(camera_shapes))
    backbone = compact_backbone(image_size, patch_size, size)
    width = max(state_dim, action_dim, 8)
    return SmolVLAConfig(
        camera_names=names,
        camera_shapes=tuple(camera_shapes),
        state_dim=state_dim,
        action_dim=action_dim,
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        max_state_dim=width,
        max_action_dim=width,
        resize_imgs_with_padding=(image_size, image_size),
        tokenizer_max_length=20,
        num_vlm_layers=backbone.text_layers,
        vlm_model_name=SCRATCH_MODEL_NAME,
        freeze_vision_encoder=False,
        train_expert_only=False,
        backbone=backbone,
    )


def compact_policy(config: SmolVLAConfig, normalizer: Normalizer | None = None, *, device: str = "cpu", seed: int = 0):
    """A freshly initialised policy of `config` (transformers' init for the VLM, LeRobot's for the expert)."""
    from .policy import SmolVLAPolicy

    return SmolVLAPolicy.random(config, make_tiny_tokenizer(), normalizer, device=device, seed=seed)
