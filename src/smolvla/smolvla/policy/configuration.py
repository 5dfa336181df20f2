"""SmolVLA configuration: the published defaults of `lerobot/smolvla_base`, validated, with small variants for tests.

Two dataclasses: `BackboneConfig` holds the SmolVLM2 hyper-parameters (vision tower, connector, text model), which
the published `config.json` does not carry (LeRobot reads them from the backbone's hub repository); `SmolVLAConfig`
holds the policy itself and reads/writes LeRobot's `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Hub id of the backbone of smolvla_base.
SMOLVLM2_500M_ID = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"


@dataclass(frozen=True)
class BackboneConfig:
    """Hyper-parameters of the SmolVLM2 backbone; the defaults are those of SmolVLM2-500M-Video-Instruct.

    `text_layers` is the depth of the published text model (32); SmolVLA keeps only its first
    `SmolVLAConfig.num_vlm_layers` layers.
    """

    vision_hidden_size: int = 768
    vision_intermediate_size: int = 3072
    vision_layers: int = 12
    vision_heads: int = 12
    vision_image_size: int = 512
    vision_patch_size: int = 16
    vision_layer_norm_eps: float = 1e-6
    scale_factor: int = 4
    text_hidden_size: int = 960
    text_intermediate_size: int = 2560
    text_layers: int = 32
    text_heads: int = 15
    text_kv_heads: int = 5
    text_head_dim: int = 64
    vocab_size: int = 49280
    rms_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value <= 0:
                raise ValueError(f"BackboneConfig.{f.name} must be positive, got {value}")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError("vision_hidden_size must be divisible by vision_heads")
        if self.vision_image_size % self.vision_patch_size:
            raise ValueError("vision_image_size must be a multiple of vision_patch_size")
        side = self.vision_image_size // self.vision_patch_size
        if side % self.scale_factor:
            raise ValueError(f"patches per side ({side}) must be divisible by scale_factor ({self.scale_factor})")
        if self.text_heads % self.text_kv_heads:
            raise ValueError("text_heads must be a multiple of text_kv_heads")

    @property
    def image_tokens(self) -> int:
        """Visual tokens per camera after the pixel shuffle (64 for SmolVLM2 at 512x512)."""
        return (self.vision_image_size // self.vision_patch_size) ** 2 // self.scale_factor**2

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown backbone config keys: {unknown}")
        return cls(**data)

    @classmethod
    def from_hf_config(cls, hf: dict[str, Any]) -> BackboneConfig:
        """Read the hyper-parameters from a SmolVLM(2) `config.json` as published on the hub."""
        vision, text = hf["vision_config"], hf["text_config"]
        heads = text["num_attention_heads"]
        return cls(
            vision_hidden_size=vision["hidden_size"],
            vision_intermediate_size=vision["intermediate_size"],
            vision_layers=vision["num_hidden_layers"],
            vision_heads=vision["num_attention_heads"],
            vision_image_size=vision["image_size"],
            vision_patch_size=vision["patch_size"],
            vision_layer_norm_eps=vision.get("layer_norm_eps", 1e-6),
            scale_factor=hf.get("scale_factor", 2),
            text_hidden_size=text["hidden_size"],
            text_intermediate_size=text["intermediate_size"],
            text_layers=text["num_hidden_layers"],
            text_heads=heads,
            text_kv_heads=text.get("num_key_value_heads", heads),
            text_head_dim=text.get("head_dim") or text["hidden_size"] // heads,
            vocab_size=text["vocab_size"],
            rms_norm_eps=text.get("rms_norm_eps", 1e-5),
        )


def expert_intermediate_size(hidden: int, ffn_multiplier: int = 4, multiple_of: int = 256) -> int:
    """MLP width of the action expert as LeRobot derives it from the expert width (720 -> 2048)."""
    size = int(ffn_multiplier * int(2 * hidden / 3))
    return multiple_of * ((size + multiple_of - 1) // multiple_of)


_DEFAULT_CAMERAS = ("observation.image", "observation.image2", "observation.image3")


@dataclass(frozen=True)
class SmolVLAConfig:
    """The SmolVLA policy; the defaults reproduce `lerobot/smolvla_base` (3 cameras, 6-D state and action).

    Small variants (cameras, dims, chunk size, steps, layer counts, widths) are made by changing fields; all
    combinations are checked on construction. Only the published attention mode (cross-attention expert, no
    image special tokens, no fixed prefix length) is implemented; other values are refused.
    """

    camera_names: tuple[str, ...] = _DEFAULT_CAMERAS
    camera_shapes: tuple[tuple[int, int, int], ...] = ((3, 256, 256),) * 3
    state_name: str = "observation.state"
    state_dim: int = 6
    action_dim: int = 6
    chunk_size: int = 50
    n_action_steps: int = 50
    num_steps: int = 10
    max_state_dim: int = 32
    max_action_dim: int = 32
    resize_imgs_with_padding: tuple[int, int] = (512, 512)
    empty_cameras: int = 0
    tokenizer_max_length: int = 48
    pad_language_to: str = "max_length"
    vlm_model_name: str = SMOLVLM2_500M_ID
    num_vlm_layers: int = 16
    num_expert_layers: int = 0
    self_attn_every_n_layers: int = 2
    expert_width_multiplier: float = 0.75
    min_period: float = 4e-3
    max_period: float = 4.0
    freeze_vision_encoder: bool = True
    train_expert_only: bool = True
    train_state_proj: bool = True
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera_names", tuple(self.camera_names))
        object.__setattr__(self, "camera_shapes", tuple(tuple(s) for s in self.camera_shapes))
        object.__setattr__(self, "resize_imgs_with_padding", tuple(self.resize_imgs_with_padding))
        if not self.camera_names:
            raise ValueError("at least one camera is required")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"camera names must be unique: {self.camera_names}")
        if len(self.camera_shapes) != len(self.camera_names):
            raise ValueError("camera_shapes must have one (C, H, W) entry per camera")
        for shape in self.camera_shapes:
            if len(shape) != 3 or shape[0] != 3 or min(shape) <= 0:
                raise ValueError(f"camera shape must be (3, H, W), got {shape}")
        checks = {
            "state_dim": (1, self.max_state_dim),
            "action_dim": (1, self.max_action_dim),
            "chunk_size": (1, 10_000),
            "n_action_steps": (1, self.chunk_size),
            "num_steps": (1, 10_000),
            "tokenizer_max_length": (1, 100_000),
            "num_vlm_layers": (1, self.backbone.text_layers),
            "self_attn_every_n_layers": (1, 10_000),
        }
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        if self.empty_cameras < 0 or self.empty_cameras > len(self.camera_names) - 1:
            raise ValueError("empty_cameras must be in [0, number of cameras - 1]")
        if self.num_expert_layers > 0 and self.num_expert_layers != self.num_vlm_layers:
            raise ValueError(
                "an expert with fewer layers than the VLM is not implemented: num_expert_layers must be <= 0 "
                f"(same depth as the VLM) or equal to num_vlm_layers, got {self.num_expert_layers}"
            )
        if self.pad_language_to not in ("max_length", "longest"):
            raise ValueError(f"pad_language_to must be 'max_length' or 'longest', got {self.pad_language_to!r}")
        height, width = self.resize_imgs_with_padding
        if (height, width) != (self.backbone.vision_image_size,) * 2:
            raise ValueError(
                f"resize_imgs_with_padding {self.resize_imgs_with_padding} must equal the vision tower's input "
                f"size {self.backbone.vision_image_size}"
            )
        if not 0.0 < self.expert_width_multiplier <= 4.0:
            raise ValueError("expert_width_multiplier must be in (0, 4]")
        if self.expert_hidden_size <= 0:
            raise ValueError("expert_width_multiplier gives an empty expert")
        if not 0.0 < self.min_period < self.max_period or not math.isfinite(self.max_period):
            raise ValueError("need 0 < min_period < max_period")
        if self.expert_hidden_size % 2:
            raise ValueError("the expert width must be even (sinusoidal time embedding)")

    # Derived sizes.
    @property
    def n_cameras(self) -> int:
        """Number of image slots."""
        return len(self.camera_names)

    @property
    def expert_hidden_size(self) -> int:
        """Width of the action expert (720 for smolvla_base)."""
        return int(self.backbone.text_hidden_size * self.expert_width_multiplier)

    @property
    def expert_intermediate_size(self) -> int:
        """MLP width of the action expert (2048 for smolvla_base)."""
        return expert_intermediate_size(self.expert_hidden_size)

    def is_cross_attention_layer(self, layer: int) -> bool:
        """True for the layers whose expert only cross-attends to the VLM's K/V (odd layers by default)."""
        return layer % self.self_attn_every_n_layers != 0

    # LeRobot config.json.
    def lerobot_features(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """LeRobot's input_features (cameras, then state) and output_features (action)."""
        inputs: dict[str, Any] = {
            name: {"type": "VISUAL", "shape": list(shape)}
            for name, shape in zip(self.camera_names, self.camera_shapes, strict=True)
        }
        inputs[self.state_name] = {"type": "STATE", "shape": [self.state_dim]}
        return inputs, {"action": {"type": "ACTION", "shape": [self.action_dim]}}

    def to_lerobot_dict(self, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """LeRobot's `config.json` content; keys of `base` (a loaded config) that this class does not model are kept."""
        out: dict[str, Any] = dict(_LEROBOT_DEFAULTS if base is None else base)
        out["input_features"], out["output_features"] = self.lerobot_features()
        for f in dataclasses.fields(self):
            if f.name in _NOT_IN_LEROBOT:
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["type"] = "smolvla"
        return out

    @classmethod
    def from_lerobot_dict(cls, data: dict[str, Any], backbone: BackboneConfig | None = None) -> SmolVLAConfig:
        """Read LeRobot's `config.json` (draccus layout: features with "VISUAL"/"STATE"/"ACTION" types)."""
        if data.get("type", "smolvla") != "smolvla":
            raise ValueError(f"not a SmolVLA config: type={data.get('type')!r}")
        for key, supported in (("attention_mode", "cross_attn"), ("add_image_special_tokens", False)):
            if data.get(key, supported) != supported:
                raise ValueError(f"config {key}={data[key]!r} is not supported (only {supported!r})")
        if data.get("prefix_length", -1) > 0:
            raise ValueError("a fixed prefix_length is not supported")
        if data.get("adapt_to_pi_aloha") or data.get("use_delta_joint_actions_aloha"):
            raise ValueError("the Aloha adaptations are not supported")
        norm = {k: str(v).upper() for k, v in data.get("normalization_mapping", {}).items()}
        expected_norm = {"VISUAL": "IDENTITY", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
        if norm and norm != expected_norm:
            raise ValueError(f"normalization_mapping {norm} is not supported (only {expected_norm})")
        inputs = data.get("input_features") or {}
        cameras = [(k, v) for k, v in inputs.items() if str(v.get("type", "")).upper() == "VISUAL"]
        states = [(k, v) for k, v in inputs.items() if str(v.get("type", "")).upper() == "STATE"]
        outputs = (data.get("output_features") or {}).values()
        actions = [v for v in outputs if str(v.get("type", "")).upper() == "ACTION"]
        if not cameras or len(states) != 1 or len(actions) != 1:
            raise ValueError("config needs at least one VISUAL input, exactly one STATE input and one ACTION output")
        kwargs: dict[str, Any] = {
            "camera_names": tuple(k for k, _ in cameras),
            "camera_shapes": tuple(tuple(v["shape"]) for _, v in cameras),
            "state_name": states[0][0],
            "state_dim": int(states[0][1]["shape"][0]),
            "action_dim": int(actions[0]["shape"][0]),
        }
        for f in dataclasses.fields(cls):
            if f.name in kwargs or f.name in _NOT_IN_LEROBOT or f.name not in data:
                continue
            value = data[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
        if backbone is not None:
            kwargs["backbone"] = backbone
        return cls(**kwargs)

    def replace(self, **changes: Any) -> SmolVLAConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def save_json(self, path: Path, base: dict[str, Any] | None = None) -> None:
        """Write LeRobot's config.json."""
        path.write_text(json.dumps(self.to_lerobot_dict(base), indent=4) + "\n")


# Fields modelled here that LeRobot's config does not have (or that are written as features).
_NOT_IN_LEROBOT = {"camera_names", "camera_shapes", "state_name", "state_dim", "action_dim", "backbone"}

# LeRobot fields this implementation does not use, with the values smolvla_base ships; written so that
# checkpoints saved here load in LeRobot.
_LEROBOT_DEFAULTS: dict[str, Any] = {
    "type": "smolvla",
    "n_obs_steps": 1,
    "normalization_mapping": {"VISUAL": "IDENTITY", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"},
    "device": "cpu",
    "use_amp": False,
    "push_to_hub": False,
    "repo_id": None,
    "private": None,
    "tags": None,
    "license": None,
    "adapt_to_pi_aloha": False,
    "use_delta_joint_actions_aloha": False,
    "use_cache": True,
    "optimizer_lr": 1e-4,
    "optimizer_betas": [0.9, 0.95],
    "optimizer_eps": 1e-8,
    "optimizer_weight_decay": 1e-10,
    "optimizer_grad_clip_norm": 10.0,
    "scheduler_warmup_steps": 1000,
    "scheduler_decay_steps": 30000,
    "scheduler_decay_lr": 2.5e-6,
    "load_vlm_weights": True,
    "add_image_special_tokens": False,
    "attention_mode": "cross_attn",
    "prefix_length": 0,
}
