"""What a run needs beyond the weights to continue where it stopped: `STEP_DIR/training_state/`.

Written next to each checkpoint (`OUTPUT/step_NNNNNN/training_state/`) and read by `smolvla-train --resume
OUTPUT/step_NNNNNN`. Tensors go to safetensors, everything else to JSON; no pickle (a checkpoint directory is
something people download and share):

- `optimizer_state.safetensors`: AdamW's per-parameter tensors (`<parameter name>.<exp_avg|exp_avg_sq|step>`);
- `optimizer_param_groups.json`: its hyper-parameters, and the trainable parameters by name and shape;
- `scheduler_state.json`: the learning-rate schedule's position;
- `rng_state.safetensors`: torch's global generator (and the GPU's) of rank 0;
- `training_step.json`: the step, and what fixes the data order and the per-sample draws from there (seed, global
  batch size, frame count: `trainer.StepBatches` and `Trainer` derive everything else from the step), with the
  pass over the data (`epoch`) and the next batch in it (`position`) that follow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from .trainer import Trainer

STATE_DIR = "training_state"
OPTIMIZER_TENSORS = "optimizer_state.safetensors"
OPTIMIZER_GROUPS = "optimizer_param_groups.json"
SCHEDULER_STATE = "scheduler_state.json"
RNG_STATE = "rng_state.safetensors"
TRAINING_STEP = "training_step.json"
FILES = (OPTIMIZER_TENSORS, OPTIMIZER_GROUPS, SCHEDULER_STATE, RNG_STATE, TRAINING_STEP)


class ResumeError(ValueError):
    """A training state that cannot continue this run (missing, damaged, or of another model or data)."""


def write_training_state(trainer: Trainer, step_dir: Path, frames: int) -> Path:
    """Write the optimizer, schedule, generator and step of `trainer` into STEP_DIR/training_state/; `frames`: the
    training frames of the run (a resumed run must have the same)."""
    directory = Path(step_dir) / STATE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    state = trainer.optimizer.state_dict()
    tensors = {}
    for index, name in enumerate(trainer.names):
        for key, value in state["state"].get(index, {}).items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    save_file(tensors, str(directory / OPTIMIZER_TENSORS))
    groups = [{**group, "betas": list(group["betas"])} for group in state["param_groups"]]
    parameters = {name: list(param.shape) for name, param in zip(trainer.names, trainer.parameters, strict=True)}
    _write_json(directory / OPTIMIZER_GROUPS, {"param_groups": groups, "parameters": parameters})
    scheduler = {key: value for key, value in trainer.scheduler.state_dict().items() if key != "lr_lambdas"}
    _write_json(directory / SCHEDULER_STATE, scheduler)
    rng = {"torch": torch.get_rng_state()}
    if trainer.policy.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(trainer.policy.device)
    save_file(rng, str(directory / RNG_STATE))
    config = trainer.config
    epoch, position = divmod(trainer.step, frames // config.batch_size)
    _write_json(
        directory / TRAINING_STEP,
        {
            "step": trainer.step,
            "seed": config.seed,
            "batch_size": config.batch_size,
            "frames": frames,
            "epoch": epoch,
            "position": position,
        },
    )
    return directory


def read_training_state(trainer: Trainer, step_dir: Path, frames: int) -> None:
    """Restore what `write_training_state` wrote into `trainer` (whose policy holds that step's weights already);
    ResumeError, naming the file, when something is missing or does not fit this model, settings or data."""
    directory = Path(step_dir) / STATE_DIR
    if not directory.is_dir():
        raise ResumeError(f"{step_dir} has no {STATE_DIR}/: not a step directory of a smolvla-train run")
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise ResumeError(f"{directory} lacks {', '.join(missing)}")
    step_info = _read_json(directory / TRAINING_STEP)
    config = trainer.config
    step = step_info.get("step")
    if not isinstance(step, int) or step < 1:
        raise ResumeError(f"{directory / TRAINING_STEP}: step must be a positive integer, got {step!r}")
    for key, expected, option in (
        ("seed", config.seed, "--seed"),
        ("batch_size", config.batch_size, "--batch-size"),
        ("frames", frames, "the training frames"),
    ):
        if step_info.get(key) != expected:
            raise ResumeError(
                f"{directory / TRAINING_STEP}: the run trained with {key} {step_info.get(key)!r}, this one has "
                f"{expected} ({option}): resume with the same data, seed and batch size"
            )
    if [step_info.get("epoch"), step_info.get("position")] != list(divmod(step, frames // config.batch_size)):
        raise ResumeError(
            f"{directory / TRAINING_STEP}: epoch {step_info.get('epoch')!r} and position "
            f"{step_info.get('position')!r} do not follow from step {step}, {frames} frames and batch "
            f"{config.batch_size}"
        )
    if step >= config.steps:
        raise ResumeError(f"{step_dir} is at step {step}, not before --steps {config.steps}: nothing left to train")

    groups = _read_json(directory / OPTIMIZER_GROUPS)
    saved = groups.get("parameters")
    current = {name: list(param.shape) for name, param in zip(trainer.names, trainer.parameters, strict=True)}
    if not isinstance(saved, dict) or list(saved) != list(current):
        names = set(saved) if isinstance(saved, dict) else set()
        raise ResumeError(
            f"{directory / OPTIMIZER_GROUPS}: the optimizer state is of other trainable parameters (missing here: "
            f"{sorted(names - set(current))[:3]}, not there: {sorted(set(current) - names)[:3]}); "
            "a training state of another model"
        )
    wrong = [name for name in current if saved[name] != current[name]]
    if wrong:
        raise ResumeError(
            f"{directory / OPTIMIZER_GROUPS}: shapes differ from the model's, e.g. {wrong[0]} {saved[wrong[0]]} vs "
            f"{current[wrong[0]]}; a training state of another model"
        )
    try:
        tensors = load_file(str(directory / OPTIMIZER_TENSORS))
    except (SafetensorError, OSError) as error:
        raise ResumeError(f"{directory / OPTIMIZER_TENSORS} cannot be read: {error}") from None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for index, (name, param) in enumerate(zip(trainer.names, trainer.parameters, strict=True)):
        entries = {
            key: tensors.pop(f"{name}.{key}") for key in ("step", "exp_avg", "exp_avg_sq") if f"{name}.{key}" in tensors
        }
        if not entries:
            continue
        if set(entries) != {"step", "exp_avg", "exp_avg_sq"}:
            raise ResumeError(f"{directory / OPTIMIZER_TENSORS}: {name} lacks part of its AdamW state")
        for key in ("exp_avg", "exp_avg_sq"):
            if entries[key].shape != param.shape:
                raise ResumeError(
                    f"{directory / OPTIMIZER_TENSORS}: {name}.{key} has shape {tuple(entries[key].shape)}, the "
                    f"parameter {tuple(param.shape)}"
                )
        state[index] = entries
    if tensors:
        raise ResumeError(
            f"{directory / OPTIMIZER_TENSORS}: tensors of no trainable parameter, e.g. {next(iter(tensors))}"
        )
    param_groups = groups.get("param_groups")
    if not isinstance(param_groups, list) or len(param_groups) != len(trainer.optimizer.param_groups):
        raise ResumeError(f"{directory / OPTIMIZER_GROUPS}: param_groups do not match the optimizer's")
    for group in param_groups:
        if not isinstance(group, dict) or not isinstance(group.get("betas"), list):
            raise ResumeError(f"{directory / OPTIMIZER_GROUPS}: a parameter group without betas")
        group["betas"] = tuple(group["betas"])
    try:
        trainer.optimizer.load_state_dict({"state": state, "param_groups": param_groups})
    except (ValueError, KeyError, TypeError) as error:
        raise ResumeError(f"{directory / OPTIMIZER_GROUPS}: {error}") from None

    scheduler = _read_json(directory / SCHEDULER_STATE)
    if scheduler.get("last_epoch") != step:
        raise ResumeError(f"{directory / SCHEDULER_STATE}: last_epoch {scheduler.get('last_epoch')!r}, step {step}")
    trainer.scheduler.load_state_dict({**scheduler, "lr_lambdas": [None] * len(trainer.optimizer.param_groups)})
    lr = trainer.scheduler.get_last_lr()[0]
    if not math.isfinite(lr):
        raise ResumeError(f"{directory / SCHEDULER_STATE}: learning rate {lr}")

    try:
        rng = load_file(str(directory / RNG_STATE))
    except (SafetensorError, OSError) as error:
        raise ResumeError(f"{directory / RNG_STATE} cannot be read: {error}") from None
    if "torch" not in rng:
        raise ResumeError(f"{directory / RNG_STATE} lacks the torch generator state")
    try:
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and trainer.policy.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], trainer.policy.device)
    except RuntimeError as error:
        raise ResumeError(f"{directory / RNG_STATE}: {error}") from None
    trainer.step = step


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResumeError(f"{path} cannot be read as JSON: {error}") from None
    if not isinstance(value, dict):
        raise ResumeError(f"{path} must hold a JSON object")
    return value
