"""Compact SmolVLA models to train from scratch: the published architecture and checkpoint layout, small sizes.

A from-scratch run cannot use smolvla_base's 450M parameters on a CPU, and it does not need SmolVLM2's language
knowledge for one fixed task. `compact_config` keeps every piece of the architecture (SigLIP-style vision tower with
pixel-shuffle connector, a SmolLM2-style text model whose layers feed an interleaved cross/self-attention action
expert, flow matching) at widths and depths that train in minutes per thousand steps on two CPU cores. The tokenizer
is the small byte-level BPE of `tiny` (any text encodes). Every parameter trains (`train_expert_only` and
`freeze_vision_encoder` off): nothing is pretrained.
"""

from __future__ import annotations

from .configuration import BackboneConfig, SmolVLAConfig
from .processing import Normalizer
from .tiny import TINY_VOCAB, make_tiny_tokenizer

#: Name written as `vlm_model_name`: no hub repository; the backbone sizes travel in smolvla_backbone.json.
SCRATCH_MODEL_NAME = "local/smolvla-compact"


def compact_backbone(image_size: int = 64, patch_size: int = 8) -> BackboneConfig:
    """Vision tower on image_size pixels (pixel shuffle 2: (image_size / patch_size / 2)^2 tokens per camera) and a
    4-layer text model of width 64."""
    return BackboneConfig(
        vision_hidden_size=48,
        vision_intermediate_size=96,
        vision_layers=2,
        vision_heads=2,
        vision_image_size=image_size,
        vision_patch_size=patch_size,
        scale_factor=2,
        text_hidden_size=64,
        text_intermediate_size=128,
        text_layers=4,
        text_heads=4,
        text_kv_heads=2,
        text_head_dim=16,
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
) -> SmolVLAConfig:
    """SmolVLAConfig of the compact model for cameras of these (3, H, W) shapes, every parameter trainable."""
    names = compact_camera_names(len(camera_shapes))
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
        num_vlm_layers=4,
        vlm_model_name=SCRATCH_MODEL_NAME,
        freeze_vision_encoder=False,
        train_expert_only=False,
        backbone=compact_backbone(image_size, patch_size),
    )


def compact_policy(config: SmolVLAConfig, normalizer: Normalizer | None = None, *, device: str = "cpu", seed: int = 0):
    """A freshly initialised policy of `config` (transformers' init for the VLM, LeRobot's for the expert)."""
    from .policy import SmolVLAPolicy

    return SmolVLAPolicy.random(config, make_tiny_tokenizer(), normalizer, device=device, seed=seed)
