"""The SmolVLA checkpoint that ships with the package: trained from scratch in simulation by this workspace's own
pipeline (`make train-demo`), for the simulated SO-101 pick-and-place scene. Its model card is its README.md."""

from __future__ import annotations

import json
from pathlib import Path

PACKAGE = "smolvla_ros"
#: Directory name of the shipped checkpoint (checkpoints/ at the repository root; share/smolvla_ros/checkpoints/).
SHIPPED_NAME = "so101_cube_scratch"
#: The held-out evaluation of the shipped checkpoint (`smolvla_eval_policy`'s JSON line), beside its weights.
EVALUATION_FILE = "evaluation.json"


def checkpoint_dirs() -> list[Path]:
    """Where the shipped checkpoint is looked for: the installed share directory, then the source checkout."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)) / "checkpoints" / SHIPPED_NAME)
    except (ImportError, LookupError, ValueError):
        pass
    dirs.append(Path(__file__).resolve().parents[3] / "checkpoints" / SHIPPED_NAME)
    return dirs


def shipped_checkpoint() -> Path:
    """The shipped checkpoint's directory; FileNotFoundError naming the places tried."""
    tried = checkpoint_dirs()
    for directory in tried:
        if (directory / "model.safetensors").is_file():
            return directory
    raise FileNotFoundError(f"the shipped checkpoint is in none of {', '.join(map(str, tried))}")


def shipped_summary() -> str:
    """One line on what the shipped checkpoint is and how well it did on held-out seeds (its evaluation.json)."""
    text = "trained from scratch in simulation (not smolvla_base)"
    path = shipped_checkpoint() / EVALUATION_FILE
    if not path.is_file():
        return text + ", not evaluated"
    result = json.loads(path.read_text())
    return (
        f"{text}; held-out success rate {result['success_rate']:.0%} over {result['episodes']} seeded scenes "
        f"(seeds from {result['per_episode'][0]['seed']}, make eval-policy)"
    )
