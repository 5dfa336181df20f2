"""SmolVLA pre/post-processing as published: images, instruction tokens, state/action normalisation.

- Images: HxWx3 uint8 RGB -> float [0, 1] -> resized with padding to the vision tower's size keeping the aspect
  ratio (bilinear, align_corners=False, padding on the left and top) -> [-1, 1].
- Instruction: "\\n"-terminated, tokenised with the backbone's tokenizer, truncated to `tokenizer_max_length`,
  right-padded (to that length for smolvla_base).
- State and action: MEAN_STD, (x - mean) / (std + 1e-8), with statistics that travel with the checkpoint in
  LeRobot's processor files (`policy_preprocessor*.safetensors`, `policy_postprocessor*.safetensors`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import load_file, save_file
from torch import Tensor

from .configuration import SmolVLAConfig

#: LeRobot's epsilon of the MEAN_STD normaliser.
NORM_EPS = 1e-8
PREPROCESSOR_JSON = "policy_preprocessor.json"
POSTPROCESSOR_JSON = "policy_postprocessor.json"


def resize_with_pad(images: Tensor, height: int, width: int, pad_value: float = 0.0) -> Tensor:
    """Resize (B, C, H, W) to fit (height, width) keeping the aspect ratio; pad the left and top with `pad_value`.

    This is the published rule: ratio = max(W / width, H / height), new size = int(H / ratio) x int(W / ratio),
    bilinear interpolation without corner alignment, then padding before the image (left/top) only.
    """
    if images.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), got shape {tuple(images.shape)}")
    cur_h, cur_w = images.shape[2:]
    ratio = max(cur_w / width, cur_h / height)
    new_h, new_w = int(cur_h / ratio), int(cur_w / ratio)
    resized = F.interpolate(images, size=(new_h, new_w), mode="bilinear", align_corners=False)
    pad_h, pad_w = max(0, height - new_h), max(0, width - new_w)
    return F.pad(resized, (pad_w, 0, pad_h, 0), value=pad_value)


def image_to_tensor(image: np.ndarray, name: str) -> Tensor:
    """(1, 3, H, W) float32 in [0, 1] from an HxWx3 uint8 RGB array; anything else is refused."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"camera {name!r}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"camera {name!r}: expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255.0)


def preprocess_images(images: Sequence[np.ndarray | None], config: SmolVLAConfig) -> tuple[Tensor, Tensor]:
    """(1, C, 3, S, S) images in [-1, 1] and the (1, C) mask of present cameras, one slot per configured camera.

    A missing camera (None) gets an all -1 image and a False mask, as the reference builds it. At least one camera
    must be present.
    """
    if len(images) != config.n_cameras:
        raise ValueError(f"expected {config.n_cameras} images ({', '.join(config.camera_names)}), got {len(images)}")
    height, width = config.resize_imgs_with_padding
    out = torch.full((1, config.n_cameras, 3, height, width), -1.0)
    mask = torch.zeros(1, config.n_cameras, dtype=torch.bool)
    for i, (name, image) in enumerate(zip(config.camera_names, images, strict=True)):
        if image is None:
            continue
        out[0, i] = resize_with_pad(image_to_tensor(image, name), height, width)[0] * 2.0 - 1.0
        mask[0, i] = True
    if not bool(mask.any()):
        raise ValueError("all cameras are missing; at least one image is required")
    return out, mask


def instruction_text(instruction: str) -> str:
    """The prompt as the model was trained on it: terminated by a newline."""
    return instruction if instruction.endswith("\n") else instruction + "\n"


def tokenize(tokenizer, instructions: Sequence[str], config: SmolVLAConfig) -> tuple[Tensor, Tensor]:
    """Token ids and attention mask (B, L), newline-terminated, truncated and right-padded as configured."""
    encoded = tokenizer(
        [instruction_text(s) for s in instructions],
        padding=config.pad_language_to,
        padding_side="right",
        truncation=True,
        max_length=config.tokenizer_max_length,
        return_tensors="pt",
    )
    return encoded["input_ids"], encoded["attention_mask"].bool()


def pad_vector(x: Tensor, dim: int) -> Tensor:
    """Zero-pad the last dimension to `dim`."""
    if x.shape[-1] > dim:
        raise ValueError(f"vector of size {x.shape[-1]} exceeds the model's {dim}")
    return F.pad(x, (0, dim - x.shape[-1]))


@dataclass
class Normalizer:
    """MEAN_STD statistics of the state and the action (float32 tensors of their real dims)."""

    state_mean: Tensor
    state_std: Tensor
    action_mean: Tensor
    action_std: Tensor

    def __post_init__(self) -> None:
        for name in ("state_mean", "state_std", "action_mean", "action_std"):
            value = torch.as_tensor(getattr(self, name), dtype=torch.float32).flatten()
            if not torch.isfinite(value).all():
                raise ValueError(f"normalisation statistic {name} has non-finite values")
            setattr(self, name, value)
        if self.state_mean.shape != self.state_std.shape or self.action_mean.shape != self.action_std.shape:
            raise ValueError("mean and std shapes differ")
        if (self.state_std < 0).any() or (self.action_std < 0).any():
            raise ValueError("negative standard deviation")

    @classmethod
    def identity(cls, state_dim: int, action_dim: int) -> Normalizer:
        """Statistics that leave values unchanged (mean 0, std 1)."""
        return cls(torch.zeros(state_dim), torch.ones(state_dim), torch.zeros(action_dim), torch.ones(action_dim))

    def normalize_state(self, state: Tensor) -> Tensor:
        """(state - mean) / (std + eps)."""
        return (state - self.state_mean) / (self.state_std + NORM_EPS)

    def normalize_action(self, action: Tensor) -> Tensor:
        """(action - mean) / (std + eps), the training target space."""
        return (action - self.action_mean) / (self.action_std + NORM_EPS)

    def unnormalize_action(self, action: Tensor) -> Tensor:
        """Inverse of `normalize_action`."""
        return action * (self.action_std + NORM_EPS) + self.action_mean

    def check(self, config: SmolVLAConfig) -> None:
        """Refuse statistics whose sizes do not match the configured state/action dims."""
        if self.state_mean.numel() != config.state_dim or self.action_mean.numel() != config.action_dim:
            raise ValueError(
                f"normalisation statistics have state/action sizes {self.state_mean.numel()}/"
                f"{self.action_mean.numel()}, the config says {config.state_dim}/{config.action_dim}"
            )

    # LeRobot's processor files.
    def save(self, directory: Path, config: SmolVLAConfig) -> None:
        """Write LeRobot's `policy_preprocessor.json`/`policy_postprocessor.json` with their statistics files."""
        features, action_feature = config.lerobot_features()
        norm_map = {"VISUAL": "IDENTITY", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
        stats = {
            f"{config.state_name}.mean": self.state_mean,
            f"{config.state_name}.std": self.state_std,
            "action.mean": self.action_mean,
            "action.std": self.action_std,
        }
        pre_file = "policy_preprocessor_step_5_normalizer_processor.safetensors"
        post_file = "policy_postprocessor_step_0_unnormalizer_processor.safetensors"
        save_file({k: v.contiguous() for k, v in stats.items()}, str(directory / pre_file))
        save_file({k: v.contiguous() for k, v in stats.items() if k.startswith("action.")}, str(directory / post_file))
        pre = {
            "name": "policy_preprocessor",
            "steps": [
                {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
                {"registry_name": "to_batch_processor", "config": {}},
                {"registry_name": "smolvla_new_line_processor", "config": {}},
                {
                    "registry_name": "tokenizer_processor",
                    "config": {
                        "max_length": config.tokenizer_max_length,
                        "task_key": "task",
                        "padding_side": "right",
                        "padding": config.pad_language_to,
                        "truncation": True,
                        "tokenizer_name": config.vlm_model_name,
                    },
                },
                {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}},
                {
                    "registry_name": "normalizer_processor",
                    "config": {"eps": NORM_EPS, "features": {**features, **action_feature}, "norm_map": norm_map},
                    "state_file": pre_file,
                },
            ],
        }
        post = {
            "name": "policy_postprocessor",
            "steps": [
                {
                    "registry_name": "unnormalizer_processor",
                    "config": {"eps": NORM_EPS, "features": action_feature, "norm_map": norm_map},
                    "state_file": post_file,
                },
                {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}},
            ],
        }
        (directory / PREPROCESSOR_JSON).write_text(json.dumps(pre, indent=2) + "\n")
        (directory / POSTPROCESSOR_JSON).write_text(json.dumps(post, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, config: SmolVLAConfig) -> Normalizer:
        """Read the statistics from LeRobot's processor files in `directory` (state from the preprocessor's
        normaliser step, action from the postprocessor's unnormaliser step)."""
        state = _step_stats(directory, PREPROCESSOR_JSON, "normalizer_processor")
        action = _step_stats(directory, POSTPROCESSOR_JSON, "unnormalizer_processor")
        try:
            normalizer = cls(
                state[f"{config.state_name}.mean"],
                state[f"{config.state_name}.std"],
                action["action.mean"],
                action["action.std"],
            )
        except KeyError as exc:
            raise ValueError(f"normalisation statistics in {directory} lack {exc.args[0]!r}") from None
        normalizer.check(config)
        return normalizer


def _step_stats(directory: Path, json_name: str, registry_name: str) -> dict[str, Tensor]:
    path = directory / json_name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint carries no normalisation statistics")
    pipeline = json.loads(path.read_text())
    for step in pipeline.get("steps", []):
        if step.get("registry_name") == registry_name and "state_file" in step:
            return load_file(str(directory / step["state_file"]))
    raise ValueError(f"{path} has no {registry_name} step with statistics")
