"""The training loop: SmolVLA's recipe (AdamW, warm-up + cosine decay, gradient clipping) over an `EpisodeDataset`,
with checkpoints in the published layout, a held-out validation loss, a progress bar and a loss plot.

Which parameters train is the checkpoint's configuration (`SmolVLAPolicy.set_trainable`): the VLM frozen for a
fine-tune of smolvla_base, everything for a compact model from scratch (`smolvla.policy.scratch`).
Checkpoints land in OUTPUT/step_NNNNNN (every `save_every` steps and at the end) and OUTPUT/last (a symbolic link to
the newest), written by `SmolVLAPolicy.save_pretrained`: the policy node (`checkpoint:=OUTPUT/last`) and LeRobot load
them. OUTPUT/losses.json holds the training and validation losses, OUTPUT/losses.png plots them. The recipe
defaults are the paper's and the reference's (docs/training.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from ..policy import SmolVLAPolicy
from .augment import Augmentation
from .dataset import EpisodeDataset

log = logging.getLogger(__name__)

#: LeRobot's scheduler defaults (warm-up 1000 of 30000 decay steps), scaled down for shorter runs as LeRobot does.
REFERENCE_WARMUP_STEPS = 1000
REFERENCE_DECAY_STEPS = 30_000
#: Actions per chunk that the validation action error compares: a third of a second at 30 Hz, about what a chunk
#: plays before the next one takes over under asynchronous inference.
ACTION_ERROR_STEPS = 10


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are SmolVLA's fine-tuning recipe.

    warmup_steps None: 1000 x steps / 30000, at most 1000 (LeRobot scales its defaults so to shorter runs).
    save_every 0: save only at the end.
    """

    steps: int = 20_000
    batch_size: int = 64
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 1e-10
    grad_clip_norm: float = 10.0
    warmup_steps: int | None = None
    decay_lr: float = 2.5e-6
    seed: int = 0
    save_every: int = 5_000
    log_every: int = 100
    num_workers: int = 0
    #: Validation loss every this many steps (and at the end) when a validation set is given; 0: only at the end.
    val_every: int = 500
    #: At most this many validation frames (evenly spread), so a validation pass stays short.
    val_frames: int = 256
    augment: bool = False
    #: bfloat16 autocast for forward and backward (weights stay float32). Faster only where the CPU or GPU has
    #: bf16 units; measure with a few steps first.
    bf16: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "val_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("save_every", "num_workers", "val_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        for name in ("lr", "eps", "grad_clip_norm"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (math.isfinite(self.decay_lr) and 0 <= self.decay_lr <= self.lr):
            raise ValueError(f"decay_lr must be in [0, lr], got {self.decay_lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must not be negative, got {self.weight_decay}")
        if not all(0 <= beta < 1 for beta in self.betas) or len(self.betas) != 2:
            raise ValueError(f"betas must be two values in [0, 1), got {self.betas}")

    @property
    def warmup(self) -> int:
        """Warm-up steps actually used."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(REFERENCE_WARMUP_STEPS, REFERENCE_WARMUP_STEPS * self.steps // REFERENCE_DECAY_STEPS)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Learning rate of optimiser step `step` (0-based): linear warm-up from lr / (warmup + 1) to lr, then cosine
    decay from lr to decay_lr at the last step."""
    warmup = config.warmup
    if step < warmup:
        return config.lr * (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, config.steps - 1 - warmup))
    return config.decay_lr + (config.lr - config.decay_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_policy_matches(policy: SmolVLAPolicy, n_cameras: int, state_dim: int, action_dim: int) -> None:
    """Refuse data the checkpoint cannot take: more cameras than image slots, other state or action sizes."""
    problems = []
    if n_cameras > len(policy.camera_names):
        problems.append(f"{n_cameras} cameras but the checkpoint has {len(policy.camera_names)} image slots")
    if state_dim != policy.state_dim:
        problems.append(f"a state of {state_dim} joints but the checkpoint's state has {policy.state_dim}")
    if action_dim != policy.action_dim:
        problems.append(f"actions of {action_dim} joints but the checkpoint's actions have {policy.action_dim}")
    if problems:
        raise ValueError("the data does not fit the checkpoint: " + "; ".join(problems))


class Trainer:
    """Optimiser and schedule over the trainable parameters of a policy (`set_trainable`, as its config says).

    The model stays in eval mode: SmolVLA has no dropout or batch norm, so the mode changes nothing, and the frozen
    VLM is in eval mode in LeRobot too.
    """

    def __init__(self, policy: SmolVLAPolicy, config: TrainConfig) -> None:
        self.policy = policy
        self.config = config
        policy.set_trainable()
        self.parameters = [p for p in policy.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate(step, config) / config.lr
        )
        self.step = 0
        self._augment = Augmentation() if config.augment else None
        self._generator = torch.Generator().manual_seed(config.seed)

    def _autocast(self):
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.policy.device.type, dtype=torch.bfloat16)

    def _loss(self, batch: dict, images: torch.Tensor, noise: torch.Tensor | None, time: torch.Tensor | None):
        with self._autocast():
            return self.policy.compute_loss(
                images,
                batch["image_mask"],
                batch["task"],
                batch["state"],
                batch["actions"],
                batch["action_is_pad"],
                noise=noise,
                time=time,
            )

    def train_step(self, batch: dict, *, noise: torch.Tensor | None = None, time: torch.Tensor | None = None) -> float:
        """One optimiser step on a collated batch of `EpisodeDataset` samples (augmented if configured); returns
        the loss before the step. `noise` and `time` fix the flow-matching draws (tests)."""
        images = batch["images"]
        if self._augment is not None:
            images = self._augment(images, batch["image_mask"], self._generator)
        loss = self._loss(batch, images, noise, time)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.item()

    @torch.no_grad()
    def validation_loss(self, loader: DataLoader) -> float:
        """Mean loss over a validation loader, unaugmented, with flow-matching noise and times drawn from a fixed
        seed: the same number for the same weights, so successive values are comparable."""
        generator = torch.Generator().manual_seed(1_000_003)
        total, count = 0.0, 0
        chunk, dim = self.policy.chunk_size, self.policy.config.max_action_dim
        for batch in loader:
            b = batch["state"].shape[0]
            noise = torch.randn(b, chunk, dim, generator=generator).to(self.policy.device)
            # Beta(1.5, 1) as in compute_loss, by inverting its CDF t^1.5 (Beta has no generator argument).
            time = torch.rand(b, generator=generator).pow(1 / 1.5).mul(0.999).add(0.001).to(self.policy.device)
            total += self._loss(batch, batch["images"], noise, time).item() * b
            count += b
        return total / max(count, 1)

    def validation_action_error(self, loader: DataLoader) -> torch.Tensor:
        """Per joint, the mean absolute difference in the data's units (radians for this workspace's bags) between
        the chunks the policy samples for the validation frames (fixed noise, as the policy node would run it) and
        the recorded actions, over the first ACTION_ERROR_STEPS in-episode steps: how far off its commands are,
        open loop. The flow-matching loss says whether training progresses; this says whether the result can
        grasp a 4 cm cube."""
        generator = torch.Generator().manual_seed(1_000_003)
        chunk, dim = self.policy.chunk_size, self.policy.config.max_action_dim
        steps = min(ACTION_ERROR_STEPS, chunk)
        total, count = torch.zeros(self.policy.action_dim), 0
        for batch in loader:
            noise = torch.randn(batch["state"].shape[0], chunk, dim, generator=generator)
            with self._autocast():
                actions = self.policy.sample_batch(
                    batch["images"], batch["image_mask"], batch["task"], batch["state"], noise
                )
            keep = (~batch["action_is_pad"][:, :steps])[..., None].float()
            total += ((actions[:, :steps] - batch["actions"][:, :steps].float()).abs() * keep).sum((0, 1))
            count += int(keep.sum())
        return total / max(count, 1)


def save(policy: SmolVLAPolicy, output: Path, step: int) -> Path:
    """Write OUTPUT/step_NNNNNN and point the link OUTPUT/last at it; returns the step directory."""
    step_dir = policy.save_pretrained(output / f"step_{step:06d}")
    # A link, not a copy (the full model is 1.8 GB), swapped in by one rename: `last` always names a complete
    # checkpoint, also when a save is interrupted. Relative, so the output directory can be moved.
    staging = output / "last.partial"
    staging.unlink(missing_ok=True)
    staging.symlink_to(step_dir.name, target_is_directory=True)
    staging.replace(output / "last")
    return step_dir


def _batches(loader: DataLoader) -> Iterator[dict]:
    while True:
        yield from loader


def _validation_loader(dataset: EpisodeDataset, config: TrainConfig) -> DataLoader:
    count = min(len(dataset), config.val_frames)
    frames = torch.linspace(0, len(dataset) - 1, count).round().long().unique().tolist()
    return DataLoader(Subset(dataset, frames), batch_size=config.batch_size, shuffle=False)


def plot_losses(history: dict, path: Path) -> Path:
    """Training loss (mean per log interval), validation loss and validation action error (mean over joints, right
    axis) against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    if history["train"]:
        steps, losses = zip(*history["train"], strict=True)
        axes.plot(steps, losses, label="training (mean per log interval)")
    if history["validation"]:
        steps, losses = zip(*history["validation"], strict=True)
        axes.plot(steps, losses, "o-", label="validation (held-out episodes)")
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("flow-matching loss")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    if history.get("action_error"):
        steps, errors = zip(*history["action_error"], strict=True)
        right = axes.twinx()
        right.plot(steps, [sum(e) / len(e) for e in errors], "s--", color="tab:red", label="validation action error")
        right.set_ylabel(f"action error, first {ACTION_ERROR_STEPS} actions (data units)")
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    axes.legend(handles, labels)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def train(
    policy: SmolVLAPolicy,
    dataset: EpisodeDataset,
    config: TrainConfig,
    output: str | Path,
    validation: EpisodeDataset | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Train `policy` in place on `dataset` and return OUTPUT/last.

    The policy must already carry the dataset's normalisation statistics (`dataset_statistics`). Batches are drawn
    shuffled (seeded by `config.seed`) with the ragged last batch of each pass dropped, so every step has the same
    shapes. The loss is logged every `log_every` steps (mean since the previous line, with the time left); with a
    `validation` set (episodes held out of training) its loss and action error (`validation_action_error`) are
    computed every `val_every` steps and at the end.
    Losses go to OUTPUT/losses.json and OUTPUT/losses.png at every save.
    """
    output = Path(output)
    if len(dataset) < config.batch_size:
        raise ValueError(f"the dataset has {len(dataset)} frames, fewer than one batch of {config.batch_size}")
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(config.seed),
        num_workers=config.num_workers,
    )
    trainer = Trainer(policy, config)
    log.info(
        "training %d parameters on %d frames (%s): %d steps of %d, lr %.3g (warm-up %d steps, cosine to %.3g)",
        sum(p.numel() for p in trainer.parameters),
        len(dataset),
        f"validation on {min(len(validation), config.val_frames)} held-out frames" if validation else "no validation",
        config.steps,
        config.batch_size,
        config.lr,
        config.warmup,
        config.decay_lr,
    )
    val_loader = _validation_loader(validation, config) if validation is not None else None
    history: dict = {"train": [], "validation": [], "action_error": []}
    losses: list[float] = []
    started = time.monotonic()
    batches = _batches(loader)
    bar = _progress_bar(config.steps, progress)
    waited = computed = 0.0  # seconds waiting for batches and in optimiser steps since the last log line
    for _ in range(config.steps):
        lr = trainer.scheduler.get_last_lr()[0]
        before = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        loss = trainer.train_step(batch)
        waited += fetched - before
        computed += time.perf_counter() - fetched
        losses.append(loss)
        step = trainer.step
        bar.update(1)
        last = step == config.steps
        if step % config.log_every == 0 or last:
            elapsed = time.monotonic() - started
            mean = sum(losses) / len(losses)
            history["train"].append((step, mean))
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2g}")
            # Frames per second each side could deliver alone: the smaller one limits training.
            frames = len(losses) * config.batch_size
            log.info(
                "step %d/%d loss %.4f lr %.3g (%.2f s/step, %s left; loader %.0f frames/s, model %.0f frames/s)",
                step,
                config.steps,
                mean,
                lr,
                elapsed / step,
                _duration(elapsed / step * (config.steps - step)),
                frames / max(waited, 1e-9),
                frames / max(computed, 1e-9),
            )
            losses.clear()
            waited = computed = 0.0
        if val_loader is not None and (last or (config.val_every and step % config.val_every == 0)):
            val = trainer.validation_loss(val_loader)
            error = trainer.validation_action_error(val_loader)
            history["validation"].append((step, val))
            history["action_error"].append((step, error.tolist()))
            log.info(
                "step %d validation loss %.4f; action error %.4f (first %d actions, per joint %s)",
                step,
                val,
                error.mean(),
                ACTION_ERROR_STEPS,
                " ".join(f"{e:.3f}" for e in error.tolist()),
            )
        if last or (config.save_every and step % config.save_every == 0):
            log.info("saved %s", save(policy, output, step))
            (output / LOSSES_JSON).write_text(json.dumps(history, indent=1) + "\n")
            plot_losses(history, output / LOSSES_PNG)
    bar.close()
    log.info("trained %d steps in %s", config.steps, _duration(time.monotonic() - started))
    return output / "last"


LOSSES_JSON = "losses.json"
LOSSES_PNG = "losses.png"


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="step", mininterval=10.0, smoothing=0.05, dynamic_ncols=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
