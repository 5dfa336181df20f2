"""Placement counting of the episode driver: what ends an episode as a success."""

from __future__ import annotations

from smolvla_ros.sim_session import PlacementEdges


def test_the_previous_scenes_success_still_in_flight_after_a_reset_is_no_placement():
    edges = PlacementEdges()
    assert [edges.update(s, t) for t, s in enumerate([False, False, True, True])] == [False, False, True, False]
    edges.rearm()  # reset: the old scene's True messages are still queued
    assert not edges.update(True, 4.0) and not edges.update(True, 5.0)
    assert not edges.update(False, 6.0)  # the new scene, unplaced
    assert edges.update(True, 7.0)
    assert edges.times == [2.0, 7.0]


def test_respawned_scenes_without_a_reset_count_each_placement():
    edges = PlacementEdges()
    flags = [False, True, True, False, False, True]  # placed, respawned one second later, placed again
    assert [t for t, s in enumerate(flags) if edges.update(s, float(t))] == [1, 5]
