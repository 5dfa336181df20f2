"""Placement counting of the episode driver: what ends an episode as a success."""

from __future__ import annotations

from smolvla_ros.sim_session import PlacementEdges


def _feed(edges: PlacementEdges, flags: list[bool], start: int = 0) -> None:
    for t, success in enumerate(flags, start):
        edges.update(success, float(t))


def test_the_previous_scenes_success_still_in_flight_after_a_reset_is_no_placement():
    edges = PlacementEdges()
    _feed(edges, [False, False, True, True])
    assert edges.times == [2.0]
    edges.rearm()  # reset: the old scene's True messages are still queued
    _feed(edges, [True, True], start=4)
    assert edges.times == [2.0]
    _feed(edges, [False, True], start=6)  # the new scene reported unplaced, then placed
    assert edges.times == [2.0, 7.0]


def test_respawned_scenes_without_a_reset_count_each_placement():
    edges = PlacementEdges()
    _feed(edges, [False, True, True, False, False, True])  # placed, respawned one second later, placed again
    assert edges.times == [1.0, 5.0]
