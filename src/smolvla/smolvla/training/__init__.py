"""Fine-tuning SmolVLA on rosbag2 episodes recorded from the running system or on LeRobotDatasets v3; plain Python,
imports no ROS.

- `bags`: read one episode (a `ros2 bag record` directory, sqlite3 or mcap) with `rosbags`;
- `dataset`: align it on a fixed frame grid (`Episode`), action chunks with padding, normalisation statistics;
- `lerobot_dataset` / `lerobot_writer`: LeRobotDataset v3 into `Episode`s, and `Episode`s into one; `video`: its mp4s;
- `sources`: what a run reads (bags or datasets), with camera mapping, joint units and frame rate;
- `trainer`: SmolVLA's fine-tuning recipe and checkpoints in the published layout, one process or several;
- `distributed`: the processes of a `torchrun` run; `resume`: the training state a run continues from;
- `cli`, `convert`: the `smolvla-train` and `smolvla-convert` commands.

Needs the `train` extra (`rosbags`, `av`, `pyarrow`). See docs/training.md.
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
