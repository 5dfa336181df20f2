"""Checkpoints in the published `lerobot/smolvla_base` layout, and SmolVLM2 backbone weights.

A SmolVLA checkpoint directory holds `config.json` (LeRobot's policy config), `model.safetensors` (tensor names
as in LeRobot, e.g. `model.vlm_with_expert.lm_expert.layers.0.self_attn.q_proj.weight`) and the normaliser
statistics in LeRobot's processor files. Checkpoints written here add the tokenizer files and
`smolvla_backbone.json` (the backbone's hyper-parameters) so that they load with no network; LeRobot ignores both.

Names are mapped explicitly between the published layout and `SmolVLAModel`'s modules (see `PUBLISHED_PREFIXES`);
a file that does not match fails with the missing, unexpected and wrongly shaped tensor names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .configuration import SMOLVLM2_500M_ID, BackboneConfig, SmolVLAConfig
from .modeling import SmolVLAModel

CONFIG_JSON = "config.json"
WEIGHTS = "model.safetensors"
BACKBONE_JSON = "smolvla_backbone.json"

#: Published name prefix -> module prefix in SmolVLAModel. Checked in order; the last entry covers the
#: state/action projections, which sit directly under `model.`.
PUBLISHED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.vlm_with_expert.vlm.model.", "vlm."),
    ("model.vlm_with_expert.lm_expert.", "expert."),
    ("model.", ""),
)
#: Published tensors SmolVLA never uses: the VLM's language-model head. Accepted when present, not required.
UNUSED_PUBLISHED = ("model.vlm_with_expert.vlm.lm_head.weight",)
#: Prefix LeRobot writes for torch.compile'd models; read as `model.`.
COMPILED_PREFIX = "model._orig_mod."

# Files of a checkpoint repository worth downloading (no optimizer states, no media).
_CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "tokenizer*", "*.model", "*.jinja"]


class CheckpointMismatchError(ValueError):
    """The tensors of a checkpoint do not match the model; the message lists every offending name."""

    def __init__(self, source: str, missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> None:
        self.missing, self.unexpected, self.wrong_shape = missing, unexpected, wrong_shape
        parts = [f"checkpoint {source} does not match the SmolVLA architecture of its config:"]
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", wrong_shape)):
            if names:
                parts.append(f"{len(names)} {label} tensor(s):\n  " + "\n  ".join(names))
        super().__init__("\n".join(parts))


def internal_to_published(name: str) -> str:
    """Published tensor name of a `SmolVLAModel` state-dict entry."""
    for published, internal in PUBLISHED_PREFIXES:
        if name.startswith(internal):
            return published + name[len(internal) :]
    raise KeyError(name)  # unreachable: the last prefix is empty


def resolve_repo(name_or_path: str | Path, patterns: list[str] | None = None, repo_type: str = "model") -> Path:
    """A local directory as is, or a hub repo id downloaded with huggingface_hub (honours HF_HOME, the cache and
    HF_HUB_OFFLINE; offline, only what is already cached is used). repo_type: "model" (checkpoints, by default
    only `_CHECKPOINT_PATTERNS`) or "dataset" (give the patterns)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_path)
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") != 1:
        raise FileNotFoundError(f"{text!r} is neither an existing directory nor a hub repo id (owner/name)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=text, repo_type=repo_type, allow_patterns=patterns or _CHECKPOINT_PATTERNS))


def read_tensor_shapes(files: Iterable[Path]) -> dict[str, tuple[tuple[int, ...], Path]]:
    """Name -> (shape, file) of every tensor in the safetensors files, without loading them."""
    out: dict[str, tuple[tuple[int, ...], Path]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                out[key] = (tuple(f.get_slice(key).get_shape()), file)
    return out


def match_tensors(
    source: str,
    available: dict[str, tuple[tuple[int, ...], Path]],
    expected: dict[str, tuple[int, ...]],
    optional: Iterable[str] = (),
) -> None:
    """Raise CheckpointMismatchError unless `available` holds exactly the `expected` names and shapes
    (plus any of the `optional` names)."""
    optional = set(optional)
    missing = sorted(set(expected) - set(available))
    unexpected = sorted(set(available) - set(expected) - optional)
    wrong = sorted(
        f"{k}: checkpoint {list(available[k][0])}, model {list(shape)}"
        for k, shape in expected.items()
        if k in available and available[k][0] != tuple(shape)
    )
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(source, missing, unexpected, wrong)


def load_tensors(model: torch.nn.Module, mapping: dict[str, tuple[str, Path]]) -> None:
    """Copy tensors into the model: internal name -> (name in file, file). Dtype converts on copy."""
    params = dict(model.state_dict(keep_vars=True))
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for internal, (key, file) in mapping.items():
        by_file.setdefault(file, []).append((internal, key))
    with torch.no_grad():
        for file, pairs in by_file.items():
            with safe_open(str(file), framework="pt") as f:
                for internal, key in pairs:
                    params[internal].copy_(f.get_tensor(key))


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint` reads: the pieces SmolVLAPolicy is assembled from."""

    config: SmolVLAConfig
    raw_config: dict
    model: SmolVLAModel
    directory: Path
    unused_tensors: dict[str, tuple[str, Path]]


def read_backbone_config(directory: Path, vlm_model_name: str) -> BackboneConfig:
    """The backbone hyper-parameters: `smolvla_backbone.json` when the checkpoint has one, SmolVLM2-500M's
    published values for its hub id, otherwise the backbone repository's own config.json."""
    local = directory / BACKBONE_JSON
    if local.is_file():
        return BackboneConfig.from_dict(json.loads(local.read_text()))
    if vlm_model_name == SMOLVLM2_500M_ID:
        return BackboneConfig()
    backbone_dir = resolve_repo(vlm_model_name, ["config.json"])
    return BackboneConfig.from_hf_config(json.loads((backbone_dir / "config.json").read_text()))


def new_model(config: SmolVLAConfig, dtype: torch.dtype) -> SmolVLAModel:
    """A model with uninitialised weights (to be loaded), VLM and expert in `dtype`."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights

    with no_init_weights():
        model = SmolVLAModel(config)
    model.set_dtype(dtype)
    return model


def read_config(directory: Path) -> tuple[SmolVLAConfig, dict]:
    """The policy config of a checkpoint directory and config.json's raw content, without touching the weights."""
    config_path = directory / CONFIG_JSON
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: not a SmolVLA checkpoint directory")
    raw = json.loads(config_path.read_text())
    return SmolVLAConfig.from_lerobot_dict(raw, read_backbone_config(directory, raw.get("vlm_model_name", ""))), raw


def load_checkpoint(name_or_path: str | Path, dtype: torch.dtype) -> LoadedCheckpoint:
    """Read config and weights of a checkpoint in the published layout (local directory or hub id)."""
    directory = resolve_repo(name_or_path)
    weights_path = directory / WEIGHTS
    config, raw = read_config(directory)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} is missing: not a SmolVLA checkpoint directory")
    model = new_model(config, dtype)
    available = read_tensor_shapes([weights_path])
    renamed = {
        ("model." + k[len(COMPILED_PREFIX) :] if k.startswith(COMPILED_PREFIX) else k): v for k, v in available.items()
    }
    original_key = {
        ("model." + k[len(COMPILED_PREFIX) :] if k.startswith(COMPILED_PREFIX) else k): k for k in available
    }
    expected = {internal_to_published(k): tuple(v.shape) for k, v in model.state_dict().items()}
    match_tensors(str(name_or_path), renamed, expected, optional=UNUSED_PUBLISHED)
    internal_of = {internal_to_published(k): k for k in model.state_dict()}
    load_tensors(model, {internal_of[k]: (original_key[k], weights_path) for k in expected})
    unused = {k: (original_key[k], weights_path) for k in UNUSED_PUBLISHED if k in renamed}
    return LoadedCheckpoint(config, raw, model, directory, unused)


def save_checkpoint(
    directory: Path,
    config: SmolVLAConfig,
    raw_config: dict | None,
    model: SmolVLAModel,
    extra_tensors: dict[str, Tensor] | None = None,
) -> None:
    """Write config.json, smolvla_backbone.json and model.safetensors (float32, published names)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        internal_to_published(k): v.detach().to("cpu", torch.float32).contiguous()
        for k, v in model.state_dict().items()
    }
    tensors.update({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in (extra_tensors or {}).items()})
    save_file(tensors, str(directory / WEIGHTS), metadata={"format": "pt"})
    config.save_json(directory / CONFIG_JSON, raw_config)
    (directory / BACKBONE_JSON).write_text(json.dumps(config.backbone.to_dict(), indent=2) + "\n")


def read_unused_tensors(unused: dict[str, tuple[str, Path]]) -> dict[str, Tensor]:
    """Load the published-but-unused tensors (lm_head) from their source file, to write them back on save:
    published name -> (name in the file, file)."""
    out = {}
    for name, (key, file) in unused.items():
        with safe_open(str(file), framework="pt") as f:
            out[name] = f.get_tensor(key)
    return out


# -- SmolVLM2 backbone weights ----------------------------------------------------------------------------------

#: Names in a SmolVLM(ForConditionalGeneration) checkpoint -> module prefix in SmolVLAModel.
BACKBONE_PREFIX = ("model.", "vlm.")
BACKBONE_UNUSED = ("lm_head.weight",)


def backbone_weight_files(directory: Path) -> list[Path]:
    """model.safetensors, or the shards listed in model.safetensors.index.json."""
    single = directory / WEIGHTS
    if single.is_file():
        return [single]
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / s for s in shards]
    raise FileNotFoundError(f"no model.safetensors (or index) in {directory}")


def load_backbone_weights(model: SmolVLAModel, directory: Path, source: str) -> None:
    """Copy the VLM weights of a SmolVLM2 checkpoint into `model.vlm`, keeping the first `num_vlm_layers` text
    layers (the others and the lm_head are expected in the file and ignored)."""
    available = read_tensor_shapes(backbone_weight_files(directory))
    prefix, internal_prefix = BACKBONE_PREFIX
    expected = {
        prefix + k[len(internal_prefix) :]: tuple(v.shape)
        for k, v in model.state_dict().items()
        if k.startswith(internal_prefix)
    }
    n_keep = model.config.num_vlm_layers
    dropped_layers = [
        k for k in available if k.startswith(prefix + "text_model.layers.") and int(k.split(".")[3]) >= n_keep
    ]
    match_tensors(source, available, expected, optional=[*BACKBONE_UNUSED, *dropped_layers])
    load_tensors(model, {internal_prefix + k[len(prefix) :]: (k, available[k][1]) for k in expected})
