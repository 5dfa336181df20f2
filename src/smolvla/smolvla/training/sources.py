"""What a training run reads: recorded bags or LeRobotDatasets v3, as `Episode`s with the model's camera mapping,
the joints' order and units, and the frame rate.

- **Bags** (`bags`, `dataset.load_episode`): cameras are topics (`--cameras NAME=TOPIC`, the policy node's form),
  joints are this workspace's radians, the frame rate is the one asked for (default 30 fps).
- **LeRobotDatasets** (`lerobot_dataset`; a directory holding meta/info.json, or a hub dataset id): cameras are the
  dataset's camera features (`--cameras front=laptop` or `front=observation.images.laptop`; by default each of the
  model's cameras takes the dataset camera of the same name, and a model with numbered cameras, or a new one, takes
  the dataset's cameras in order), the frame rate is the dataset's. The units are those the dataset was recorded
  in: a dataset `smolvla-convert` wrote says so (meta/robot_interface.json); one LeRobot recorded does not, and the
  user gives them (`--joint-units lerobot_degrees` for LeRobot 0.4's SO-100/SO-101 recordings); training never
  guesses, as the policy node never does for checkpoints. The trained model's robot_interface.json then carries
  these units, and the policy node converts the arm's radians to them through the arm's calibration.

One run reads one kind of source: bags and datasets differ in camera naming and units.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..camera_mapping import CameraMapping, are_numbered, map_cameras, short_name
from ..robot_interface import RobotInterfaceError, parse_joint_units
from .bags import (
    DEFAULT_ACTION_TOPIC,
    DEFAULT_CAMERA_TOPICS,
    DEFAULT_JOINT_STATE_TOPIC,
    BagError,
    Topics,
    find_bags,
)
from .dataset import DEFAULT_FPS, DEFAULT_MAX_AGE, Episode, load_episode
from .lerobot_dataset import CAMERA_PREFIX, DatasetError, LeRobotDataset, is_dataset, open_dataset

log = logging.getLogger("smolvla-train")


@dataclass(frozen=True)
class DataOptions:
    """The command line's data options (`smolvla-train --help`). None: the source's own or default value."""

    joint_names: tuple[str, ...]
    cameras: tuple[str, ...] | None = None
    joint_state_topic: str = DEFAULT_JOINT_STATE_TOPIC
    action_topic: str = DEFAULT_ACTION_TOPIC
    joint_units: str | None = None
    fps: float | None = None
    max_age: float = DEFAULT_MAX_AGE
    task: str | None = None
    skip_unusable: bool = False


@dataclass
class TrainingData:
    """The episodes of a run and what they mean: `cameras` maps the model's camera features to bag topics or dataset
    camera features; joints in `joint_names` order and `joint_units`, one frame per 1 / `fps` s. episodes: read one
    at a time as they are iterated (once); labels: where each episode read so far came from; inputs: the sources'
    settings, for the run's record."""

    episodes: Iterator[Episode]
    labels: list[str]
    cameras: CameraMapping
    joint_names: tuple[str, ...]
    joint_units: tuple[str, ...]
    fps: float
    inputs: dict = field(default_factory=dict)


def find_sources(paths: Sequence[str]) -> tuple[list[Path], list[LeRobotDataset]]:
    """Bags (`bags.find_bags`) or LeRobotDatasets (directories with meta/info.json, or hub dataset ids for paths that
    do not exist); mixing the two is an error."""
    bags, datasets = [], []
    for path in paths:
        if is_dataset(path):
            datasets.append(LeRobotDataset(path))
        elif Path(path).expanduser().exists() or str(path).count("/") != 1:
            bags += find_bags([path])
        else:
            datasets.append(_hub_dataset(path))
    if bags and datasets:
        raise ValueError("give either bags or LeRobotDatasets: one run reads one kind (their cameras and units differ)")
    roots = [dataset.root.resolve() for dataset in datasets]
    if len(set(roots)) != len(roots):
        raise DatasetError("a dataset is given more than once")
    return bags, datasets


def _hub_dataset(name: str) -> LeRobotDataset:
    try:
        return open_dataset(name)
    except DatasetError:
        raise
    except Exception as error:  # huggingface_hub reports a missing or uncached repo with several exception types
        raise DatasetError(
            f"{name}: no such bag or dataset directory, and not a hub dataset that can be fetched or is cached: {error}"
        ) from None


def load_training_data(
    bags: Sequence[Path],
    datasets: Sequence[LeRobotDataset],
    options: DataOptions,
    camera_features: Sequence[str] | None,
    check: Callable[[int, int], None] | None = None,
) -> TrainingData:
    """Read every episode of the sources (`find_sources`: bags or datasets). camera_features: the model's camera
    features (None for a model still to be built: numbered features, one per camera used). check(n_cameras,
    n_joints) runs before any episode is read (a checkpoint that cannot take the data fails in seconds, not after
    decoding every frame)."""
    if datasets:
        return _from_datasets(list(datasets), options, camera_features, check)
    return _from_bags(list(bags), options, camera_features, check)


def _numbered(count: int) -> tuple[str, ...]:
    from ..policy.scratch import compact_camera_names

    return compact_camera_names(count)


def _from_bags(
    bags: list[Path], options: DataOptions, features: Sequence[str] | None, check: Callable[[int, int], None] | None
) -> TrainingData:
    fps = DEFAULT_FPS if options.fps is None else options.fps
    entries = options.cameras or DEFAULT_CAMERA_TOPICS
    cameras = map_cameras(entries, features or _numbered(len(entries)))
    units = ("radians",) * len(options.joint_names)
    if options.joint_units and parse_joint_units(options.joint_units, len(options.joint_names)) != units:
        raise ValueError("bags hold this workspace's radians; --joint-units applies to LeRobotDatasets")
    topics = Topics(cameras.streams, options.joint_state_topic, options.action_topic, options.joint_names)
    if check:
        check(len(topics.cameras), len(topics.joint_names))
    labels: list[str] = []

    def episodes() -> Iterator[Episode]:
        for bag in bags:
            try:
                episode = load_episode(bag, topics, task=options.task, fps=fps, max_age=options.max_age)
            except BagError as error:
                if not options.skip_unusable:
                    raise
                log.warning("left out: %s", error)
                continue
            log.info("%s: %d frames (%.1f s), task %r", bag, len(episode), len(episode) / fps, episode.task)
            labels.append(str(bag))
            yield episode

    inputs = {
        "topics": {
            "cameras": dict(zip(cameras.features, cameras.topics, strict=True)),
            "joint_state": topics.joint_state,
            "action": topics.action,
        },
        "max_age": options.max_age,
    }
    return TrainingData(episodes(), labels, cameras, topics.joint_names, units, fps, inputs)


def _dataset_camera(name: str, dataset: LeRobotDataset) -> str:
    for key in (name, CAMERA_PREFIX + name):
        if key in dataset.camera_keys:
            return key
    raise DatasetError(
        f"{dataset.root}: no camera {name!r}; its cameras are {', '.join(map(short_name, dataset.camera_keys))}. Map "
        "the model's cameras onto them with --cameras NAME=DATASET_CAMERA (NAME=none to leave one out)"
    )


def _dataset_units(dataset: LeRobotDataset, given: tuple[str, ...] | None, joints: tuple[str, ...]) -> tuple[str, ...]:
    stored = None
    if dataset.interface is not None:
        by_name = dict(zip(dataset.interface.joint_names, dataset.interface.joint_units, strict=True))
        missing = [joint for joint in joints if joint not in by_name]
        if missing:
            raise DatasetError(f"{dataset.root}: its robot_interface.json has no units for the joints {missing}")
        stored = tuple(by_name[joint] for joint in joints)
    if stored is not None and given is not None and stored != given:
        raise DatasetError(
            f"{dataset.root}: --joint-units gives {list(given)}, but the dataset says it holds {list(stored)} "
            "(meta/robot_interface.json); leave --joint-units out"
        )
    units = stored or given
    if units is None:
        raise DatasetError(
            f"{dataset.root} does not say which joint units it holds (LeRobot records none), and --joint-units is not "
            "given. Refusing to guess: a model trained on other units than the arm is driven in moves it wrongly. "
            "Give --joint-units lerobot_degrees (LeRobot 0.4 SO-100/SO-101 recordings, body joints in degrees), "
            "lerobot_range (recorded with use_degrees=False), or one unit per joint"
        )
    return units


def _from_datasets(
    datasets: list[LeRobotDataset],
    options: DataOptions,
    features: Sequence[str] | None,
    check: Callable[[int, int], None] | None,
) -> TrainingData:
    joints = options.joint_names
    fps = datasets[0].fps
    for dataset in datasets:
        if dataset.fps != fps:
            raise DatasetError(
                f"{dataset.root} is at {dataset.fps:g} fps, {datasets[0].root} at {fps:g}: one rate a run"
            )
    if options.fps is not None and options.fps != fps:
        raise DatasetError(f"--fps {options.fps:g}, but {datasets[0].root} was recorded at {fps:g} fps")
    try:
        given = None if options.joint_units is None else parse_joint_units(options.joint_units, len(joints))
    except RobotInterfaceError as error:
        raise ValueError(str(error)) from None
    units = {_dataset_units(dataset, given, joints) for dataset in datasets}
    if len(units) != 1:
        raise DatasetError(f"the datasets hold different joint units {sorted(units)}: train on one kind at a time")
    first = datasets[0]
    if options.cameras:
        entries = options.cameras
    elif features is None or are_numbered(features):
        entries = first.camera_keys  # numbered model cameras take the dataset's in order
    else:
        entries = tuple(f"{short_name(f)}={short_name(f)}" for f in features)
    cameras = map_cameras(entries, features or _numbered(len(entries)))
    keys = [tuple(_dataset_camera(name, dataset) for name in cameras.streams) for dataset in datasets]
    if check:
        check(len(cameras.streams), len(joints))
    labels: list[str] = []

    def episodes() -> Iterator[Episode]:
        for dataset, dataset_keys in zip(datasets, keys, strict=True):
            for index in dataset.episodes:
                try:
                    episode = dataset.episode(index, joints, dataset_keys)
                except DatasetError as error:
                    if not options.skip_unusable:
                        raise
                    log.warning("left out: %s", error)
                    continue
                log.info("%s episode %d: %d frames, task %r", dataset.root, index, len(episode), episode.task)
                labels.append(f"{dataset.root}#{index}")
                yield episode

    resolved = dict(zip(cameras.streams, keys[0], strict=True))
    inputs = {
        "datasets": [str(dataset.root) for dataset in datasets],
        "cameras": {
            feature: None if name is None else resolved[name]
            for feature, name in zip(cameras.features, cameras.topics, strict=True)
        },
    }
    return TrainingData(episodes(), labels, cameras, joints, units.pop(), fps, inputs)
