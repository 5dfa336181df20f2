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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler, Subset

from ..policy import SmolVLAPolicy
from .augment import Augmentation
from .dataset import EpisodeDataset
from .distributed import Distributed

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
    #: Standard deviation of Gaussian noise added to each training sample's joint state (the data's units, radians
    #: for this workspace's bags); 0: none. Mid-reach, a scripted demonstration's state already says where the arm
    #: is going, so without noise a policy can fit the actions while ignoring the images; with it, it must look.
    state_noise: float = 0.0
    #: bfloat16 autocast for forward and backward (weights stay float32). Faster only where the CPU or GPU has
    #: bf16 units; measure with a few steps first.
    bf16: bool = False
    #: Micro-batches per optimiser step (gradient accumulation); `batch_size` stays the frames of a whole step.
    grad_accum: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "val_frames", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("save_every", "num_workers", "val_every", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        for name in ("lr", "eps", "grad_clip_norm"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (math.isfinite(self.decay_lr) and 0 <= self.decay_lr <= self.lr):
            raise ValueError(f"decay_lr must be in [0, lr], got {self.decay_lr}")
        if not (math.isfinite(self.state_noise) and self.state_noise >= 0):
            raise ValueError(f"state_noise must not be negative, got {self.state_noise}")
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


def check_batch_split(batch_size: int, world_size: int, grad_accum: int) -> None:
    """Refuse a global batch that does not split evenly over the processes and their micro-batches."""
    if grad_accum < 1:
        raise ValueError(f"--grad-accum must be at least 1, got {grad_accum}")
    parts = world_size * grad_accum
    if batch_size % parts:
        raise ValueError(
            f"--batch-size {batch_size} does not split into {world_size} processes x --grad-accum {grad_accum} "
            f"micro-batches: choose a multiple of {parts}"
        )


def draw_seed(*values: int) -> int:
    """A 63-bit seed mixed from non-negative integers (seed, step, position, ...): neighbouring tuples give
    unrelated streams."""
    return int(np.random.SeedSequence(values).generate_state(1, np.uint64)[0] >> np.uint64(1))


def flow_time(uniform: torch.Tensor) -> torch.Tensor:
    """Flow-matching times from uniform draws: Beta(1.5, 1) as in `compute_loss`, by inverting its CDF t^1.5
    (torch's Beta takes no generator), scaled into [0.001, 1]."""
    return uniform.pow(1 / 1.5).mul(0.999).add(0.001)


class StepBatches(Sampler[list[int]]):
    """Frame indices of this process's micro-batches, step after step from `start_step` on, without end.

    The global batch of step s is `batch_size` frames of a permutation of the dataset seeded by (seed, epoch),
    epoch = s // steps_per_epoch (the ragged tail of each permutation is dropped, so every step has the same
    shapes). Process `rank` of `world_size` takes its contiguous share of it, cut into `accumulation`
    micro-batches. So the order of frames over a run depends on the seed and the batch size only, not on how many
    processes or micro-batches share a step, and a resumed run starts exactly where the step count says.
    """

    def __init__(
        self,
        frames: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        accumulation: int = 1,
        start_step: int = 0,
    ) -> None:
        check_batch_split(batch_size, world_size, accumulation)
        if frames < batch_size:
            raise ValueError(f"the dataset has {frames} frames, fewer than one batch of {batch_size}")
        self.frames, self.batch_size, self.seed = frames, batch_size, seed
        self.rank, self.world_size, self.accumulation = rank, world_size, accumulation
        self.start_step = start_step
        self.steps_per_epoch = frames // batch_size

    @property
    def micro_batch_size(self) -> int:
        """Frames per micro-batch of one process."""
        return self.batch_size // (self.world_size * self.accumulation)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The permutation of the frames that epoch `epoch` draws its batches from."""
        return torch.randperm(self.frames, generator=torch.Generator().manual_seed(draw_seed(self.seed, epoch)))

    def __iter__(self) -> Iterator[list[int]]:
        share = self.batch_size // self.world_size
        order, epoch = None, None
        for step in count(self.start_step):
            if step // self.steps_per_epoch != epoch:
                epoch = step // self.steps_per_epoch
                order = self.epoch_order(epoch)
            first = (step % self.steps_per_epoch) * self.batch_size + self.rank * share
            mine = order[first : first + share].tolist()
            micro = self.micro_batch_size
            for start in range(0, share, micro):
                yield mine[start : start + micro]


class _Forward(torch.nn.Module):
    """A loss function over `model`'s parameters as a module's forward: DistributedDataParallel synchronises the
    gradients of the forward passes that run through it, and `compute_loss` is not `model.forward`."""

    def __init__(self, model: torch.nn.Module, loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self._loss = loss

    def forward(self, *args) -> torch.Tensor:
        return self._loss(*args)


class Trainer:
    """Optimiser and schedule over the trainable parameters of a policy (`set_trainable`, as its config says).

    With several processes (`distributed`) the model is wrapped in DistributedDataParallel: each process computes
    the gradient of its share of the global batch and the shares are averaged before the step, so every process
    holds the same weights. The flow-matching noise, time and augmentation of a sample are drawn from a generator
    seeded by (seed, step, the sample's position in the global batch), and the loss is normalised by the
    in-episode steps of the whole global batch: a step computes the same update however the batch is split over
    processes and micro-batches (up to float rounding), and a resumed run draws what the uninterrupted one would.

    The model stays in eval mode: SmolVLA has no dropout or batch norm, so the mode changes nothing, and the frozen
    VLM is in eval mode in LeRobot too.
    """

    def __init__(self, policy: SmolVLAPolicy, config: TrainConfig, distributed: Distributed | None = None) -> None:
        self.policy = policy
        self.config = config
        self.distributed = distributed or Distributed()
        check_batch_split(config.batch_size, self.distributed.world_size, config.grad_accum)
        self.names = policy.set_trainable()
        named = dict(policy.model.named_parameters())
        self.parameters = [named[name] for name in self.names]
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate(step, config) / config.lr
        )
        self.step = 0
        self._augment = Augmentation() if config.augment else None
        self._forward: torch.nn.Module = _Forward(policy.model, self._loss)
        if self.distributed.enabled:
            device = policy.device
            # Broadcasts rank 0's weights to every process. Every trainable parameter takes part in the loss, so
            # no search for unused ones; no buffers change in training.
            self._forward = DistributedDataParallel(
                self._forward,
                device_ids=[device] if device.type == "cuda" else None,
                broadcast_buffers=False,
            )

    def _autocast(self):
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.policy.device.type, dtype=torch.bfloat16)

    def _loss(self, batch: dict, noise: torch.Tensor | None, time: torch.Tensor | None):
        with self._autocast():
            return self.policy.compute_loss(
                batch["images"],
                batch["image_mask"],
                batch["task"],
                batch["state"],
                batch["actions"],
                batch["action_is_pad"],
                noise=noise,
                time=time,
            )

    def _sample_draws(self, batch: dict, first: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Noise, time and the batch with (augmented) images and (noisy) states, of the samples at positions
        first, first + 1, ... of this step's global batch, each from its own generator."""
        chunk, dim = self.policy.chunk_size, self.policy.config.max_action_dim
        images, mask, state = batch["images"], batch["image_mask"], batch["state"]
        noise, uniform, augmented, state_noise = [], [], [], []
        for j in range(images.shape[0]):
            generator = torch.Generator().manual_seed(draw_seed(self.config.seed, self.step, first + j))
            noise.append(torch.randn(chunk, dim, generator=generator))
            uniform.append(torch.rand((), generator=generator))
            if self._augment is not None:
                augmented.append(self._augment(images[j : j + 1], mask[j : j + 1], generator))
            if self.config.state_noise > 0:
                state_noise.append(torch.randn(state.shape[1:], generator=generator) * self.config.state_noise)
        drawn = dict(batch)
        if augmented:
            drawn["images"] = torch.cat(augmented)
        if state_noise:
            drawn["state"] = state + torch.stack(state_noise).to(state.dtype)
        device = self.policy.device
        return torch.stack(noise).to(device), flow_time(torch.stack(uniform)).to(device), drawn

    def train_step(
        self,
        batch: dict | Sequence[dict],
        *,
        noise: torch.Tensor | None = None,
        time: torch.Tensor | None = None,
    ) -> float:
        """One optimiser step on this process's share of a global batch: one collated batch of `EpisodeDataset`
        samples, or `grad_accum` micro-batches (gradients accumulated, synchronised between processes once, after
        the last). Returns the loss of the whole global batch before the step. `noise` and `time` fix the
        flow-matching draws of this process's share (tests); otherwise each sample draws its own (class doc)."""
        micro = [batch] if isinstance(batch, dict) else list(batch)
        if len(micro) != self.config.grad_accum:
            raise ValueError(f"a step takes {self.config.grad_accum} micro-batches, got {len(micro)}")
        world = self.distributed.world_size
        # The loss is a mean over the global batch's in-episode steps: weight each micro-batch's mean by its share.
        counts = [float((~b["action_is_pad"].bool()).sum()) for b in micro]
        total = max(float(self.distributed.sum(torch.tensor(sum(counts), dtype=torch.float64))), 1.0)
        first = self.distributed.rank * (self.config.batch_size // world)  # of this process's share
        position = first
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), dtype=torch.float64)
        for index, part in enumerate(micro):
            size = part["state"].shape[0]
            part_noise, part_time, part = self._sample_draws(part, position)
            given = slice(position - first, position - first + size)
            if noise is not None:
                part_noise = noise[given].to(self.policy.device)
            if time is not None:
                part_time = time[given].to(self.policy.device)
            position += size
            last = index == len(micro) - 1
            sync = self._forward.no_sync() if self.distributed.enabled and not last else contextlib.nullcontext()
            with sync:
                share = self._forward(part, part_noise, part_time) * (counts[index] / total)
                # DistributedDataParallel averages the processes' gradients; the shares are meant to be summed.
                (share * world).backward()
            loss += share.detach().double().cpu()
        loss = float(self.distributed.sum(loss))
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {self.step + 1}")
        torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss

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
            time = flow_time(torch.rand(b, generator=generator)).to(self.policy.device)
            total += self._loss(batch, noise, time).item() * b
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


def save(trainer: Trainer, output: Path, frames: int) -> Path:
    """Write OUTPUT/step_NNNNNN (the checkpoint and its `training_state/`) and point the link OUTPUT/last at it;
    returns the step directory."""
    from .resume import write_training_state

    step_dir = trainer.policy.save_pretrained(output / f"step_{trainer.step:06d}")
    write_training_state(trainer, step_dir, frames)
    # A link, not a copy (the full model is 1.8 GB), swapped in by one rename: `last` always names a complete
    # checkpoint, also when a save is interrupted. Relative, so the output directory can be moved.
    staging = output / "last.partial"
    staging.unlink(missing_ok=True)
    staging.symlink_to(step_dir.name, target_is_directory=True)
    staging.replace(output / "last")
    return step_dir


def _history(output: Path, resumed_at: int | None) -> dict:
    """The loss curves a run starts with: empty, or when it resumes at step `resumed_at` those of
    OUTPUT/losses.json up to that step (a resumed run continues the curves; empty when the file is unreadable)."""
    history: dict = {"train": [], "validation": [], "action_error": []}
    if resumed_at is None:
        return history
    try:
        saved = json.loads((output / LOSSES_JSON).read_text())
    except (OSError, ValueError):
        return history
    for key in history:
        entries = saved.get(key, []) if isinstance(saved, dict) else []
        history[key] = [entry for entry in entries if isinstance(entry, list) and entry and entry[0] <= resumed_at]
    return history


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
    distributed: Distributed | None = None,
    resume: str | Path | None = None,
) -> Path:
    """Train `policy` in place on `dataset` and return OUTPUT/last.

    The policy must already carry the dataset's normalisation statistics (`dataset_statistics`). Batches are drawn
    by `StepBatches` (seeded by `config.seed`, the ragged last batch of each pass dropped, so every step has the
    same shapes). The loss is logged every `log_every` steps (mean since the previous line, with the time left);
    with a `validation` set (episodes held out of training) its loss and action error (`validation_action_error`)
    are computed every `val_every` steps and at the end. Losses go to OUTPUT/losses.json and OUTPUT/losses.png at
    every save.

    With several processes (`distributed`) each trains on its share of every batch; only rank 0 logs, validates
    and writes. `resume`: a step directory of an earlier run of this data, whose weights `policy` holds; its
    `training_state/` (`smolvla.training.resume`) restores the optimizer, schedule, generators and step, and
    training continues to `config.steps`.
    """
    from .resume import read_training_state

    output = Path(output)
    distributed = distributed or Distributed()
    main = distributed.is_main
    trainer = Trainer(policy, config, distributed)
    if resume is not None:
        read_training_state(trainer, Path(resume), len(dataset))
    else:
        torch.manual_seed(config.seed)
    start = trainer.step
    sampler = StepBatches(
        len(dataset),
        config.batch_size,
        seed=config.seed,
        rank=distributed.rank,
        world_size=distributed.world_size,
        accumulation=config.grad_accum,
        start_step=start,
    )
    if main:
        output.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers)
    if main:
        log.info(
            "training %d parameters on %d frames (%s): %d steps of %d (%d processes x %d micro-batches of %d), "
            "lr %.3g (warm-up %d steps, cosine to %.3g)%s",
            sum(p.numel() for p in trainer.parameters),
            len(dataset),
            f"validation on {min(len(validation), config.val_frames)} held-out frames"
            if validation
            else "no validation",
            config.steps,
            config.batch_size,
            distributed.world_size,
            config.grad_accum,
            sampler.micro_batch_size,
            config.lr,
            config.warmup,
            config.decay_lr,
            f", resumed at step {start} from {resume}" if resume is not None else "",
        )
    val_loader = _validation_loader(validation, config) if validation is not None and main else None
    history = _history(output, start if resume is not None else None)
    losses: list[float] = []
    started = time.monotonic()
    batches = iter(loader)
    bar = _progress_bar(config.steps, progress and main, initial=start)
    waited = computed = 0.0  # seconds waiting for batches and in optimiser steps since the last log line
    for _ in range(start, config.steps):
        lr = trainer.scheduler.get_last_lr()[0]
        before = time.perf_counter()
        micro = [next(batches) for _ in range(config.grad_accum)]
        fetched = time.perf_counter()
        loss = trainer.train_step(micro)
        waited += fetched - before
        computed += time.perf_counter() - fetched
        losses.append(loss)
        step = trainer.step
        last = step == config.steps
        if not main:
            continue
        bar.update(1)
        if step % config.log_every == 0 or last:
            elapsed = time.monotonic() - started
            mean = sum(losses) / len(losses)
            history["train"].append((step, mean))
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2g}")
            # Frames per second each side could deliver alone (all processes together): the smaller one limits
            # training.
            frames = len(losses) * config.batch_size
            per_step = elapsed / (step - start)
            log.info(
                "step %d/%d loss %.4f lr %.3g (%.2f s/step, %s left; loader %.0f frames/s, model %.0f frames/s)",
                step,
                config.steps,
                mean,
                lr,
                per_step,
                _duration(per_step * (config.steps - step)),
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
            log.info("saved %s", save(trainer, output, len(dataset)))
            (output / LOSSES_JSON).write_text(json.dumps(history, indent=1) + "\n")
            plot_losses(history, output / LOSSES_PNG)
    bar.close()
    if main:
        log.info("trained %d steps in %s", config.steps - start, _duration(time.monotonic() - started))
    return output / "last"


LOSSES_JSON = "losses.json"
LOSSES_PNG = "losses.png"


def _progress_bar(total: int, enabled: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        unit="step",
        mininterval=10.0,
        smoothing=0.05,
        dynamic_ncols=True,
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
