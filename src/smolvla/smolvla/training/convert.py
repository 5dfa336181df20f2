"""`smolvla-convert`: recorded rosbag2 episodes into a LeRobotDataset v3 that LeRobot and `smolvla-train` read.

    smolvla-convert episodes/ --output datasets/cube --task "pick up the cube"
    smolvla-convert episodes/ --output datasets/cube --video-codec lossless   # frames exactly as in the bags

Each episode is aligned on the frame grid by the same code training uses (`smolvla.training.dataset.load_episode`),
so the dataset holds exactly the frames, states, actions and tasks `smolvla-train` would train on from the bags
(with `--video-codec lossless`; the default AV1 is LeRobot's own, lossy, encoding). See docs/training.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..camera_mapping import MASKED, short_name, split_entry
from ..robot_interface import RobotInterface
from .bags import DEFAULT_ACTION_TOPIC, DEFAULT_JOINT_NAMES, DEFAULT_JOINT_STATE_TOPIC, BagError, Topics, find_bags
from .dataset import DEFAULT_FPS, DEFAULT_MAX_AGE, Episode, load_episode
from .lerobot_writer import write_dataset
from .video import CODECS

log = logging.getLogger("smolvla-convert")

#: The workspace's cameras by name (config/policy.yaml's topics).
DEFAULT_CAMERAS = ("front=/camera/front/image_raw", "wrist=/camera/wrist/image_raw")


def parse_cameras(entries: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`NAME=TOPIC` entries -> (names, topics); every camera needs a name (it becomes observation.images.NAME)."""
    names, topics = [], []
    for entry in entries:
        name, topic = split_entry(entry)
        if not name or not topic or topic == MASKED:
            raise ValueError(f"camera {entry!r}: give NAME=TOPIC (the dataset feature observation.images.NAME)")
        names.append(short_name(name))
        topics.append(topic)
    if len(set(names)) != len(names):
        raise ValueError(f"camera names repeat: {names}")
    return tuple(names), tuple(topics)


def build_parser() -> argparse.ArgumentParser:
    """The command line of smolvla-convert."""
    parser = argparse.ArgumentParser(
        prog="smolvla-convert",
        description="Write rosbag2 episodes (one bag per episode) as a LeRobotDataset v3. See docs/training.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bags", nargs="+", help="bag directories, or directories holding bag directories")
    parser.add_argument("--output", required=True, type=Path, help="new directory of the dataset")
    parser.add_argument("--task", help="task text of every bag without a task.txt of its own")
    parser.add_argument(
        "--cameras", nargs="+", default=list(DEFAULT_CAMERAS), metavar="NAME=TOPIC", help="cameras by feature name"
    )
    parser.add_argument("--joint-state-topic", default=DEFAULT_JOINT_STATE_TOPIC, help="sensor_msgs/JointState")
    parser.add_argument("--action-topic", default=DEFAULT_ACTION_TOPIC, help="the commands (as smolvla-train)")
    parser.add_argument("--joint-names", nargs="+", default=list(DEFAULT_JOINT_NAMES), help="state and action order")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frame rate (a whole number for LeRobot)")
    parser.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE, help="oldest input (s) a frame may use")
    parser.add_argument("--video-codec", choices=sorted(CODECS), default="av1", help="av1: LeRobot's; lossless: exact")
    parser.add_argument("--robot-type", default="so100_follower", help="info.json's robot_type")
    parser.add_argument("--skip-unusable", action="store_true", help="leave out (and log) bags that cannot be used")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for unusable input, with the reason on stderr)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        names, topics = parse_cameras(args.cameras)
        bag_topics = Topics(topics, args.joint_state_topic, args.action_topic, tuple(args.joint_names))
        bags = find_bags(args.bags)
        for bag in bags:
            if args.output.resolve() == bag.resolve() or bag.resolve() in args.output.resolve().parents:
                raise ValueError(f"output {args.output} is inside the bag {bag}; bags are never written to")
        # The bags hold this workspace's radians.
        interface = RobotInterface(bag_topics.joint_names, ("radians",) * len(bag_topics.joint_names), args.fps, names)

        def episodes() -> Iterator[Episode]:
            for bag in bags:
                try:
                    episode = load_episode(bag, bag_topics, task=args.task, fps=args.fps, max_age=args.max_age)
                except BagError as error:
                    if not args.skip_unusable:
                        raise
                    log.warning("left out: %s", error)
                    continue
                log.info("%s: %d frames, task %r", bag, len(episode), episode.task)
                yield episode

        write_dataset(
            episodes(),
            args.output,
            interface=interface,
            codec=args.video_codec,
            robot_type=args.robot_type,
        )
    except (BagError, ValueError, FileNotFoundError) as error:
        print(f"smolvla-convert: error: {error}", file=sys.stderr)
        return 2
    log.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
