"""SmolVLAPolicy: loading, inference (`predict_chunk`), training loss and saving around `SmolVLAModel`."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..model_dtype import resolve_dtype
from ..robot_interface import INTERFACE_FILE, RobotInterface, RobotInterfaceError
from . import checkpoint as ckpt
from .configuration import BackboneConfig, SmolVLAConfig
from .modeling import SmolVLAModel
from .processing import Normalizer, pad_vector, preprocess_images, resize_with_pad, tokenize
from .rtc import DEFAULT_MAX_GUIDANCE_WEIGHT, ChunkGuidance, prefix_weights

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32' or 'bfloat16' (or the torch dtypes) -> torch dtype; anything else is refused."""
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")


def load_tokenizer(directory: Path | None, vlm_model_name: str):
    """The checkpoint's own tokenizer files when it has them, else the backbone's tokenizer (hub id or local
    directory, through transformers, honouring the HF cache and offline mode)."""
    from transformers import AutoTokenizer

    if directory is not None and (directory / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(directory))
    return AutoTokenizer.from_pretrained(vlm_model_name)


class SmolVLAPolicy:
    """SmolVLA ready to use: network, tokenizer and normalisation statistics on one device and dtype.

    `predict_chunk` may be called from one worker thread while other threads read the properties; concurrent calls
    are serialised by a lock.
    """

    def __init__(
        self,
        config: SmolVLAConfig,
        model: SmolVLAModel,
        tokenizer: Any,
        normalizer: Normalizer,
        *,
        device: str | torch.device = "cpu",
        raw_config: dict | None = None,
        unused_tensors: dict[str, tuple[str, Path]] | None = None,
        robot_interface: RobotInterface | None = None,
    ) -> None:
        normalizer.check(config)
        if len(tokenizer) > config.backbone.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens, more than the vocabulary of the model")
        self.config = config
        self.model = model.to(device).eval()
        self.model.select_kernels(torch.device(device))
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.device = torch.device(device)
        self._raw_config = raw_config
        self._unused_tensors = unused_tensors or {}
        self._lock = threading.Lock()
        self._token_config = config  # tokenisation settings (compile() fixes the padded length)
        self._robot_interface: RobotInterface | None = None
        self.robot_interface = robot_interface

    # -- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, device: str = "cpu", dtype: str = "float32", compile: bool = False
    ) -> SmolVLAPolicy:
        """Load a checkpoint in the published layout from a local directory or a hub repo id.

        Hub downloads go through huggingface_hub, so HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE=1 apply. `dtype`
        is the dtype of VLM and expert ('float32', 'bfloat16', or 'auto': bfloat16 where the device multiplies it
        natively, see `smolvla.model_dtype`); `compile` compiles the vision encoder and the denoising step (see
        `compile`).
        """
        if dtype == "auto":
            dtype = resolve_dtype(dtype, device).dtype
        loaded = ckpt.load_checkpoint(name_or_path, parse_dtype(dtype))
        interface = RobotInterface.load(loaded.directory)
        policy = cls(
            loaded.config,
            loaded.model,
            load_tokenizer(loaded.directory, loaded.config.vlm_model_name),
            Normalizer.load(loaded.directory, loaded.config),
            device=device,
            raw_config=loaded.raw_config,
            unused_tensors=loaded.unused_tensors,
            robot_interface=interface,
        )
        if compile:
            policy.compile()
        return policy

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str | Path,
        config: SmolVLAConfig | None = None,
        normalizer: Normalizer | None = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        seed: int = 0,
    ) -> SmolVLAPolicy:
        """A policy for training from a SmolVLM2 checkpoint alone (hub id or local directory): VLM weights from
        the backbone (first `num_vlm_layers` text layers), expert and projections freshly initialised as LeRobot
        does. `config` gives everything but the backbone, whose hyper-parameters come from its config.json;
        `normalizer` defaults to identity statistics (set the dataset's before training)."""
        directory = ckpt.resolve_repo(name_or_path)
        backbone = BackboneConfig.from_hf_config(json.loads((directory / "config.json").read_text()))
        config = (config or SmolVLAConfig()).replace(backbone=backbone, vlm_model_name=str(name_or_path))
        model = ckpt.new_model(config, torch.float32)
        torch.manual_seed(seed)
        model.init_expert_weights()
        ckpt.load_backbone_weights(model, directory, str(name_or_path))
        model.set_dtype(parse_dtype(dtype))
        normalizer = normalizer or Normalizer.identity(config.state_dim, config.action_dim)
        return cls(config, model, load_tokenizer(directory, str(name_or_path)), normalizer, device=device)

    @classmethod
    def random(
        cls,
        config: SmolVLAConfig,
        tokenizer: Any,
        normalizer: Normalizer | None = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        seed: int = 0,
    ) -> SmolVLAPolicy:
        """A policy with random weights (transformers' init for the VLM, LeRobot's for the rest)."""
        torch.manual_seed(seed)
        model = SmolVLAModel(config)
        model.init_expert_weights()
        model.set_dtype(parse_dtype(dtype))
        normalizer = normalizer or Normalizer.identity(config.state_dim, config.action_dim)
        return cls(config, model, tokenizer, normalizer, device=device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the checkpoint in the published layout (weights in float32), plus tokenizer and backbone config."""
        # Read the unused published tensors first: the target may be the directory they come from.
        return self.write_checkpoint(Path(directory), ckpt.read_unused_tensors(self._unused_tensors))

    def write_checkpoint(self, directory: Path, extra_tensors: dict[str, Tensor]) -> Path:
        """`save_pretrained` with the published-but-unused tensors (lm_head) given explicitly."""
        ckpt.save_checkpoint(directory, self.config, self._raw_config, self.model, extra_tensors)
        self.normalizer.save(directory, self.config)
        self.tokenizer.save_pretrained(str(directory))
        if self.robot_interface is not None:
            self.robot_interface.save(directory)
        else:  # the directory must not keep an older checkpoint's claim about units and rate
            (directory / INTERFACE_FILE).unlink(missing_ok=True)
        return directory

    def compile(self) -> None:
        """Compile vision encoder, VLM prefix pass and denoising step (`SmolVLAModel.compile_for_inference`).

        Inductor freezes the weights into the compiled code (prepacked for oneDNN): 3 cameras bf16 about 25 % faster
        per chunk on a 2-core CPU (docs/model.md). The first call compiles (about a minute on 2 cores; inductor's
        cache makes later processes faster) and needs a C++ compiler. Inference only; load the weights and choose
        device and dtype before compiling. Instructions are then always padded to `tokenizer_max_length` (padding
        is masked: same actions) so that no call recompiles.
        """
        self.model.compile_for_inference()
        self._token_config = self.config.replace(pad_language_to="max_length")

    # -- contract properties --------------------------------------------------------------------------------------

    @property
    def robot_interface(self) -> RobotInterface | None:
        """Joint names and units, frame rate and cameras the checkpoint was trained with (saved with it as
        robot_interface.json); None for a checkpoint that does not say (e.g. one trained with LeRobot)."""
        return self._robot_interface

    @robot_interface.setter
    def robot_interface(self, interface: RobotInterface | None) -> None:
        if interface is not None:
            check_interface_matches(interface, self.config)
        self._robot_interface = interface

    @property
    def camera_names(self) -> list[str]:
        """Image slots in the order `predict_chunk` takes them."""
        return list(self.config.camera_names)

    @property
    def state_dim(self) -> int:
        """Size of the joint state vector."""
        return self.config.state_dim

    @property
    def action_dim(self) -> int:
        """Size of one action."""
        return self.config.action_dim

    @property
    def chunk_size(self) -> int:
        """Actions per chunk."""
        return self.config.chunk_size

    @property
    def dtype(self) -> torch.dtype:
        """dtype of VLM and expert."""
        return self.model.compute_dtype

    # -- inference ------------------------------------------------------------------------------------------------

    def prepare(self, images: Sequence[np.ndarray | None], state: np.ndarray, instruction: str):
        """Validated, preprocessed model inputs on the device: images, image mask, tokens, token mask, state."""
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a string, got {type(instruction).__name__}")
        state_t = torch.as_tensor(np.asarray(state, dtype=np.float32))
        if state_t.shape != (self.state_dim,) or not torch.isfinite(state_t).all():
            raise ValueError(f"state must be {self.state_dim} finite values, got shape {tuple(state_t.shape)}")
        pixels, image_mask = preprocess_images(images, self.config)
        tokens, token_mask = tokenize(self.tokenizer, [instruction], self._token_config)
        state_t = pad_vector(self.normalizer.normalize_state(state_t), self.config.max_state_dim)[None]
        dev = self.device
        return pixels.to(dev), image_mask.to(dev), tokens.to(dev), token_mask.to(dev), state_t.to(dev)

    def check_noise(self, noise: Tensor | None) -> Tensor:
        """Noise (1, chunk, max_action_dim) float32 on the device; drawn from N(0, 1) when None."""
        shape = (1, self.chunk_size, self.config.max_action_dim)
        if noise is None:
            return torch.randn(shape, dtype=torch.float32, device=self.device)
        noise = torch.as_tensor(noise)
        if noise.shape == shape[1:]:
            noise = noise[None]
        if tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape[1:]} or {shape}, got {tuple(noise.shape)}")
        return noise.to(self.device, torch.float32)

    def predict_chunk(
        self,
        images: Sequence[np.ndarray | None],
        state: np.ndarray,
        instruction: str,
        noise: Tensor | None = None,
        *,
        previous_actions: np.ndarray | None = None,
        delay: int = 0,
        max_guidance_weight: float = DEFAULT_MAX_GUIDANCE_WEIGHT,
        padded_dims: str = "flow_to_zero",
    ) -> np.ndarray:
        """Actions (chunk_size, action_dim), float32, un-normalised, for one observation.

        images: HxWx3 uint8 RGB of any size, one per camera slot in `camera_names` order, None for a missing
        camera (masked; at least one must be present). state: (state_dim,) raw joint state. Deterministic for a
        given `noise` of shape (chunk_size, max_action_dim). padded_dims: how the padded action dims are integrated
        (`SmolVLAModel.integrate`; "model" only to compare with LeRobot 0.4.4).

        Real-time chunking (`smolvla.policy.rtc`): previous_actions (m, action_dim), raw like the actions returned,
        are the actions still to be executed before this chunk takes over, previous_actions[i] for the tick of the
        new chunk's action i (those past the chunk's length are ignored); the first `delay` of them will be
        executed while this chunk is computed. The chunk is then sampled with guidance toward them (weight clip
        `max_guidance_weight`). None, m = 0 or a weight clip of 0: unguided sampling.
        """
        inputs = self.prepare(images, state, instruction)
        noise = self.check_noise(noise)
        guidance = self.chunk_guidance(previous_actions, delay, max_guidance_weight)
        with self._lock, torch.inference_mode():
            prefix = self.model.embed_prefix(*inputs)
            x = self.model.sample_actions(prefix, noise, guidance=guidance, padded_dims=padded_dims)
        actions = self.normalizer.unnormalize_action(x[0, :, : self.action_dim].float().cpu())
        return actions.numpy().astype(np.float32, copy=False)

    def chunk_guidance(
        self, previous_actions: np.ndarray | None, delay: int, max_weight: float = DEFAULT_MAX_GUIDANCE_WEIGHT
    ) -> ChunkGuidance | None:
        """The model-space ChunkGuidance for raw previous actions (see `predict_chunk`); None when there are none."""
        if previous_actions is None:
            return None
        previous = torch.as_tensor(np.asarray(previous_actions, dtype=np.float32))
        if previous.ndim != 2 or previous.shape[1] != self.action_dim:
            raise ValueError(f"previous actions must have shape (m, {self.action_dim}), got {tuple(previous.shape)}")
        previous = previous[: self.chunk_size]
        if not torch.isfinite(previous).all():
            raise ValueError("previous actions contain NaN or infinite values")
        if isinstance(delay, bool) or not isinstance(delay, int | np.integer) or delay < 0:
            raise ValueError(f"delay must be an integer number of ticks >= 0, got {delay!r}")
        m = previous.shape[0]
        if m == 0 or max_weight == 0:
            return None
        cfg = self.config
        target = torch.zeros(1, cfg.chunk_size, cfg.max_action_dim, dtype=torch.float32)
        target[0, :m, : self.action_dim] = self.normalizer.normalize_action(previous)
        weights = torch.zeros_like(target)
        weights[0, :, : self.action_dim] = prefix_weights(cfg.chunk_size, int(delay), m)[:, None]
        return ChunkGuidance(target.to(self.device), weights.to(self.device), float(max_weight))

    # -- training -------------------------------------------------------------------------------------------------

    def set_trainable(self) -> list[str]:
        """Set requires_grad as configured and return the trainable parameter names.

        Defaults (train_expert_only): VLM frozen; expert, action/time projections and state_proj trainable.
        With train_expert_only=False the text model trains too, except the pieces that cannot influence the loss
        (the last VLM layer's query/output projections, MLP and post-attention norm, and the final norm: only that
        layer's keys/values reach the expert). freeze_vision_encoder keeps the vision tower frozen.
        """
        cfg = self.config
        last = cfg.num_vlm_layers - 1
        unused = (
            f"vlm.text_model.layers.{last}.self_attn.q_proj.",
            f"vlm.text_model.layers.{last}.self_attn.o_proj.",
            f"vlm.text_model.layers.{last}.mlp.",
            f"vlm.text_model.layers.{last}.post_attention_layernorm.",
            "vlm.text_model.norm.",
        )
        names = []
        for name, param in self.model.named_parameters():
            if name.startswith("vlm."):
                trainable = not cfg.train_expert_only and not name.startswith(unused)
                if name.startswith("vlm.vision_model.") and cfg.freeze_vision_encoder:
                    trainable = False
            elif name.startswith("state_proj."):
                trainable = cfg.train_state_proj
            else:
                trainable = True
            param.requires_grad_(trainable)
            if trainable:
                names.append(name)
        return names

    def compute_loss(
        self,
        images: Tensor,
        image_mask: Tensor,
        tasks: Sequence[str],
        state: Tensor,
        actions: Tensor,
        action_is_pad: Tensor | None = None,
        *,
        noise: Tensor | None = None,
        time: Tensor | None = None,
    ) -> Tensor:
        """Flow-matching loss of a batch (scalar); call `set_trainable` first.

        images (B, C, 3, H, W) float in [0, 1] (resized with padding here), image_mask (B, C) bool, tasks B
        strings, state (B, state_dim) and actions (B, chunk, action_dim) raw, action_is_pad (B, chunk) True for
        steps past the episode end. The loss averages (noise - actions - v)^2 over the real action dims of the
        steps inside the episode only. One joint pass over prefix and action tokens, as in training the reference.
        """
        cfg = self.config
        b = state.shape[0]
        if actions.shape != (b, cfg.chunk_size, cfg.action_dim):
            raise ValueError(f"actions must be (B, {cfg.chunk_size}, {cfg.action_dim}), got {tuple(actions.shape)}")
        if action_is_pad is None:
            action_is_pad = torch.zeros(b, cfg.chunk_size, dtype=torch.bool)
        dev = self.device
        target = pad_vector(self.normalizer.normalize_action(actions.float()), cfg.max_action_dim).to(dev)
        if noise is None:
            noise = torch.randn_like(target)
        if time is None:
            time = torch.distributions.Beta(1.5, 1.0).sample((b,)).to(dev) * 0.999 + 0.001
        t = time[:, None, None]
        x_t = t * noise + (1 - t) * target
        u_t = noise - target
        prefix = self._batch_prefix(images, image_mask, tasks, state)
        v_t = self.model.forward_velocity(prefix, x_t, time)
        return flow_matching_loss(v_t, u_t, action_is_pad.to(dev), cfg.action_dim)

    @torch.inference_mode()
    def sample_batch(
        self, images: Tensor, image_mask: Tensor, tasks: Sequence[str], state: Tensor, noise: Tensor
    ) -> Tensor:
        """Raw actions (B, chunk, action_dim) sampled for a batch in `compute_loss`'s layout from noise (B, chunk,
        max_action_dim): what `predict_chunk` returns for each observation, in one batched pass (the validation
        action error of training)."""
        x = self.model.sample_actions(self._batch_prefix(images, image_mask, tasks, state), noise.to(self.device))
        return self.normalizer.unnormalize_action(x[..., : self.action_dim].float().cpu())

    def _batch_prefix(self, images: Tensor, image_mask: Tensor, tasks: Sequence[str], state: Tensor):
        cfg, dev = self.config, self.device
        h, w = cfg.resize_imgs_with_padding
        pixels = resize_with_pad(images.flatten(0, 1).float(), h, w).unflatten(0, images.shape[:2]) * 2.0 - 1.0
        tokens, token_mask = tokenize(self.tokenizer, list(tasks), cfg)
        state_n = pad_vector(self.normalizer.normalize_state(state.float()), cfg.max_state_dim)
        return self.model.embed_prefix(
            pixels.to(dev), image_mask.to(dev), tokens.to(dev), token_mask.to(dev), state_n.to(dev)
        )


def check_interface_matches(interface: RobotInterface, config: SmolVLAConfig) -> None:
    """Raise RobotInterfaceError unless the interface has one joint per state and action dimension and names
    exactly the model's camera features."""
    problems = []
    n = len(interface.joint_names)
    if n != config.state_dim or n != config.action_dim:
        problems.append(f"{n} joints, but the model's state has {config.state_dim} and its actions {config.action_dim}")
    if set(interface.cameras) != set(config.camera_names):
        problems.append(f"cameras {list(interface.cameras)}, but the model's are {list(config.camera_names)}")
    if problems:
        raise RobotInterfaceError("the robot interface does not fit the model: " + "; ".join(problems))


def flow_matching_loss(v_t: Tensor, u_t: Tensor, action_is_pad: Tensor, action_dim: int) -> Tensor:
    """Mean squared error over the real action dims of the in-episode steps.

    v_t, u_t (B, chunk, max_action_dim); action_is_pad (B, chunk). Padded steps and the zero-padded dims
    contribute nothing, and the mean is taken over the entries that count (0 when none do).
    """
    err = (u_t[..., :action_dim] - v_t[..., :action_dim]).pow(2)
    keep = (~action_is_pad.bool())[..., None].to(err.dtype)
    count = keep.sum() * action_dim
    return (err * keep).sum() / count.clamp(min=1)
