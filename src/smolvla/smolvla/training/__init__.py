"""Fine-tuning SmolVLA on rosbag2 episodes recorded from the running system; plain Python, imports no ROS.

- `bags`: read one episode (a `ros2 bag record` directory, sqlite3 or mcap) with `rosbags`;
- `dataset`: align it on a fixed frame grid, action chunks with padding, normalisation statistics;
- `trainer`: SmolVLA's fine-tuning recipe and checkpoints in the published layout;
- `cli`: the `smolvla-train` command.

Needs the `train` extra (`rosbags`). See docs/training.md.
"""

from .bags import BagError, Recording, Topics
from .dataset import Episode, EpisodeDataset, dataset_statistics, load_episode
from .trainer import TrainConfig, Trainer, train

__all__ = [
    "BagError",
    "Episode",
    "EpisodeDataset",
    "Recording",
    "Topics",
    "TrainConfig",
    "Trainer",
    "dataset_statistics",
    "load_episode",
    "train",
]
