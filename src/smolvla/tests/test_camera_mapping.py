"""Camera topics mapped onto a checkpoint's camera features by name (and in order only for numbered ones)."""

from __future__ import annotations

import re

import pytest

from smolvla.camera_mapping import CameraMappingError, entry_topics, map_cameras, short_name

NAMED = ("observation.images.wrist", "observation.images.front")  # a LeRobot dataset's order, not ours
NUMBERED = ("observation.image", "observation.image2", "observation.image3")  # smolvla_base


def test_named_cameras_are_mapped_by_name_whatever_the_order():
    mapping = map_cameras(["front=/cam/front", "observation.images.wrist=/cam/wrist/compressed"], NAMED)
    assert mapping.topics == ("/cam/wrist/compressed", "/cam/front")
    assert mapping.streams == ("/cam/wrist/compressed", "/cam/front") and mapping.slots == (0, 1)
    assert mapping.describe() == (
        "observation.images.wrist <- /cam/wrist/compressed, observation.images.front <- /cam/front"
    )


def test_a_camera_can_be_left_out_explicitly():
    mapping = map_cameras([" wrist = none ", "front=/cam/front"], NAMED)
    assert mapping.topics == (None, "/cam/front") and mapping.streams == ("/cam/front",) and mapping.slots == (1,)
    assert mapping.describe() == "observation.images.wrist: masked, observation.images.front <- /cam/front"


def test_numbered_cameras_take_topics_in_order_and_mask_the_rest():
    assert map_cameras(["/a", "/b"], NUMBERED).topics == ("/a", "/b", None)
    assert map_cameras(["image3=/c", "image=/a", "image2=none"], NUMBERED).topics == ("/a", None, "/c")


@pytest.mark.parametrize(
    ("entries", "features", "message"),
    [
        (
            ["front=/cam/front"],
            NAMED,
            "no topic for camera wrist: the checkpoint expects wrist, front "
            "(observation.images.wrist, observation.images.front); give NAME=TOPIC for each, NAME=none to leave",
        ),
        (["/cam/front", "/cam/wrist"], NAMED, "the checkpoint's cameras have names, wrist, front"),
        (
            ["top=/cam/top", "front=/a", "wrist=/b"],
            NAMED,
            "the checkpoint has no camera 'top'; it expects wrist, front",
        ),
        (["front=/a", "front=/b", "wrist=/c"], NAMED, "camera observation.images.front is mapped twice"),
        (["front=/a", "/b"], NAMED, "mix NAME=TOPIC and bare topics"),
        (["front=/a", "wrist=/a"], NAMED, "a topic feeds several cameras: ['/a']"),
        (["front=none", "wrist=none"], NAMED, "every camera is masked"),
        (["front=", "wrist=/a"], NAMED, "camera entries need a topic"),
        ([], NAMED, "no camera topics given; the checkpoint expects wrist, front"),
        (["/a", "/b", "/c", "/d"], NUMBERED, "4 camera topics for a checkpoint with 3 cameras"),
    ],
)
def test_entries_that_do_not_fit_are_refused_listing_the_expected_names(entries, features, message):
    with pytest.raises(CameraMappingError, match=re.escape(message)):
        map_cameras(entries, features)


def test_short_names_and_recorded_topics():
    assert [short_name(f) for f in (*NAMED, *NUMBERED, "laptop")] == [
        "wrist",
        "front",
        "image",
        "image2",
        "image3",
        "laptop",
    ]
    assert entry_topics(["front=/a", "wrist=none", "side = /b"]) == ("/a", "/b")
    assert entry_topics(["/a", "/b"]) == ("/a", "/b")
