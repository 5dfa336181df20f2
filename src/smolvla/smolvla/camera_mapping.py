"""Which camera topic feeds which of a checkpoint's camera features, by name.

A checkpoint names its image inputs (`observation.images.front`, `observation.images.wrist`, or smolvla_base's
`observation.image`, `observation.image2`, `observation.image3`) and lists them in its own order, which differs
between checkpoints. Camera topics are therefore given by name: entries `NAME=TOPIC`, where NAME is the feature's
full name or its short name (the part after `observation.images.` / `observation.`), e.g.

    front=/camera/front/image_raw  wrist=/camera/wrist/image_raw/compressed  side=none

Every feature must be named; `NAME=none` leaves that camera out (its slot is masked, as the model was trained to
handle). The short form, bare topics in order, is accepted only where order is all a name says: checkpoints whose
features are the numbered `observation.image`, `observation.image2`, ... (smolvla_base and checkpoints fine-tuned
from it); the topics fill them in order and the remaining ones are masked. The same entries are used by the policy
node (`camera_topics`), `smolvla-train --cameras`, the recorder and `smolvla_launch --cameras`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: The topic of a camera that is deliberately left out (masked).
MASKED = "none"
_NUMBERED = re.compile(r"observation\.image\d*")
_PREFIXES = ("observation.images.", "observation.")


class CameraMappingError(ValueError):
    """Camera entries that do not fit the checkpoint; the message lists the names the checkpoint expects."""


def short_name(feature: str) -> str:
    """`observation.images.front` -> `front`, `observation.image2` -> `image2`."""
    for prefix in _PREFIXES:
        if feature.startswith(prefix) and len(feature) > len(prefix):
            return feature[len(prefix) :]
    return feature


def split_entry(entry: str) -> tuple[str | None, str]:
    """`NAME=TOPIC` -> (NAME, TOPIC); a bare topic -> (None, topic). Whitespace around either part is dropped."""
    name, sep, topic = entry.partition("=")
    if not sep:
        return None, entry.strip()
    return name.strip(), topic.strip()


def entry_topics(entries: Sequence[str]) -> tuple[str, ...]:
    """The topics of camera entries in either form, without the masked ones (what a recorder subscribes to)."""
    topics = tuple(topic for _, topic in map(split_entry, entries) if topic != MASKED)
    if any(not topic for topic in topics):
        raise CameraMappingError(f"camera entries need a topic (NAME=TOPIC or TOPIC), got {list(entries)}")
    return topics


@dataclass(frozen=True)
class CameraMapping:
    """features: the checkpoint's camera features in its order; topics: per feature its topic, None when masked."""

    features: tuple[str, ...]
    topics: tuple[str | None, ...]

    @property
    def streams(self) -> tuple[str, ...]:
        """The topics in use, in feature order."""
        return tuple(topic for topic in self.topics if topic is not None)

    @property
    def slots(self) -> tuple[int, ...]:
        """The feature (image slot) index of each topic in `streams`."""
        return tuple(i for i, topic in enumerate(self.topics) if topic is not None)

    def describe(self) -> str:
        """One line for logs: `observation.images.front <- /cam/front, observation.images.wrist: masked`."""
        return ", ".join(
            f"{feature}: masked" if topic is None else f"{feature} <- {topic}"
            for feature, topic in zip(self.features, self.topics, strict=True)
        )


def are_numbered(features: Sequence[str]) -> bool:
    """True for smolvla_base's numbered camera features (`observation.image`, `observation.image2`, ...), whose
    order is all that tells them apart."""
    return all(_NUMBERED.fullmatch(feature) for feature in features)


def expected_names(features: Sequence[str]) -> str:
    """The names a checkpoint accepts, for error messages: `front, wrist (observation.images.front, ...)`."""
    return f"{', '.join(map(short_name, features))} ({', '.join(features)})"


def map_cameras(entries: Sequence[str], features: Sequence[str]) -> CameraMapping:
    """Map camera entries (see the module docstring) onto a checkpoint's camera features.

    Raises CameraMappingError when an entry names no feature of the checkpoint, a feature is named twice or not at
    all, a topic repeats, the forms are mixed, bare topics are given for named features, or no camera is left.
    """
    features = tuple(features)
    if not features:
        raise CameraMappingError("the checkpoint has no camera features")
    parsed = [split_entry(entry) for entry in entries]
    if not parsed:
        raise CameraMappingError(f"no camera topics given; the checkpoint expects {expected_names(features)}")
    named = [name is not None for name, _ in parsed]
    if any(named) and not all(named):
        raise CameraMappingError(f"camera entries mix NAME=TOPIC and bare topics: {list(entries)}; use NAME=TOPIC")
    if any(not topic for _, topic in parsed):
        raise CameraMappingError(f"camera entries need a topic (NAME=TOPIC, or NAME={MASKED} to mask one)")
    topics = _by_name(parsed, features) if all(named) else _in_order([topic for _, topic in parsed], features)
    used = [topic for topic in topics if topic is not None]
    if not used:
        raise CameraMappingError("every camera is masked; SmolVLA needs at least one image")
    repeated = sorted({topic for topic in used if used.count(topic) > 1})
    if repeated:
        raise CameraMappingError(f"a topic feeds several cameras: {repeated}")
    return CameraMapping(features, topics)


def _by_name(parsed: list[tuple[str | None, str]], features: tuple[str, ...]) -> tuple[str | None, ...]:
    index = {}
    for i, feature in enumerate(features):
        index[feature] = i
        index.setdefault(short_name(feature), i)
    topics: list[str | None] = [None] * len(features)
    given = [False] * len(features)
    for name, topic in parsed:
        i = index.get(name)
        if i is None:
            raise CameraMappingError(f"the checkpoint has no camera {name!r}; it expects {expected_names(features)}")
        if given[i]:
            raise CameraMappingError(f"camera {features[i]} is mapped twice")
        given[i] = True
        topics[i] = None if topic == MASKED else topic
    missing = [feature for feature, done in zip(features, given, strict=True) if not done]
    if missing:
        raise CameraMappingError(
            f"no topic for camera {', '.join(map(short_name, missing))}: the checkpoint expects "
            f"{expected_names(features)}; give NAME=TOPIC for each, NAME={MASKED} to leave one out (masked)"
        )
    return tuple(topics)


def _in_order(topics: list[str], features: tuple[str, ...]) -> tuple[str | None, ...]:
    if not are_numbered(features):
        raise CameraMappingError(
            f"the checkpoint's cameras have names, {expected_names(features)}: map them by name (NAME=TOPIC, "
            f"NAME={MASKED} to leave one out) instead of listing topics in order"
        )
    if len(topics) > len(features):
        raise CameraMappingError(
            f"{len(topics)} camera topics for a checkpoint with {len(features)} cameras: {expected_names(features)}"
        )
    masked = [None if topic == MASKED else topic for topic in topics]
    return tuple(masked + [None] * (len(features) - len(topics)))
