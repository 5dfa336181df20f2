"""Seam and jerk figures of a commanded trajectory (smolvla.async_inference.smoothness), checked against the real
action queue: the seam ticks found from the tick log and the statuses are the ticks whose action came from a new
chunk, and the seam jumps are the queue's own."""

import math

import numpy as np
import pytest

from smolvla.async_inference.config import QueueConfig
from smolvla.async_inference.core import AsyncActionQueue
from smolvla.async_inference.smoothness import StatusPoint, jerk, rms_jerk, seam_jumps, seam_ticks, seam_windows

N = 10
DT = 0.01


def _run_executor(aggregation: str, latencies: list[int]):
    """Ticks of an executor with this queue, each request answered after latencies[i] ticks (cycled), the status
    published after every tick as the node does. Returns (tick stamps, commands, statuses, queue)."""
    queue = AsyncActionQueue(
        QueueConfig(chunk_size=N, control_period=DT, aggregation=aggregation, similarity_epsilon=0.0, threshold=0.6),
        [1.0, 1.0],
    )
    pending: list[tuple[int, object]] = []  # (tick to answer before, request)
    stamps, commands, statuses = [], [], []
    command = np.zeros(2)
    answered = 0
    for k in range(120):
        now = k * DT
        for due, request in [p for p in pending if p[0] == k]:
            # Joint 1 names the chunk: every action of request r is 10 r there, so an executed action tells its chunk.
            ticks = np.arange(request.observation_tick + 1, request.observation_tick + 1 + N)
            actions = np.stack([ticks * 0.01 + 0.05 * request.request_id, np.full(N, 10.0 * request.request_id)], 1)
            queue.add_chunk(request.request_id, request.observation_tick + 1, actions, now - DT / 2)
            pending.remove((due, request))
        result = queue.tick(now, command)
        if result.action is not None:
            command = result.action
        stamps.append(now)
        commands.append(command.copy())
        if result.request is not None:
            pending.append((k + 1 + latencies[answered % len(latencies)], result.request))
            answered += 1
        s = queue.status()
        statuses.append(StatusPoint(now + DT / 10, s.chunks_received, s.seams, s.seam_jump_last, s.seam_jump_mean))
    return stamps, np.array(commands), statuses, queue


# rtc with a steady latency: every chunk on time, so it replaces the queue at once (a late one is ramped in).
@pytest.mark.parametrize(("aggregation", "latencies"), [("latest_only", [3, 1, 5, 2]), ("rtc", [3])])
def test_seam_ticks_are_the_first_commands_of_each_chunk(aggregation, latencies):
    stamps, commands, statuses, _ = _run_executor(aggregation, latencies)
    chunk_of = commands[:, 1]
    expected = [i for i in range(len(chunk_of)) if chunk_of[i] != (chunk_of[i - 1] if i else 0.0)]
    assert len(expected) > 10
    assert seam_ticks(stamps, statuses) == expected


def test_seam_jumps_are_the_queues_own():
    _, _, statuses, queue = _run_executor("weighted_average", [2, 4])
    found = seam_jumps(statuses)
    status = queue.status()
    assert found.count == status.seams > 5
    assert found.mean == pytest.approx(status.seam_jump_mean)
    assert found.max == pytest.approx(status.seam_jump_max)
    # A window: the mean over its own seams only.
    half = len(statuses) // 2
    first, second = seam_jumps(statuses[: half + 1]), seam_jumps(statuses[half:])
    assert first.count + second.count == found.count
    assert (first.mean * first.count + second.mean * second.count) / found.count == pytest.approx(found.mean)
    assert sorted(first.jumps + second.jumps) == sorted(found.jumps)


def test_seam_jumps_count_again_after_a_restarted_executor():
    statuses = [
        StatusPoint(0.0, 1, 1, 0.2, 0.2),
        StatusPoint(0.1, 2, 2, 0.4, 0.3),
        StatusPoint(0.2, 1, 1, 0.1, 0.1),  # restarted: its counters began again
    ]
    found = seam_jumps(statuses)
    assert (found.count, found.jumps) == (2, (0.4, 0.1))
    assert found.mean == pytest.approx(0.25) and found.max == pytest.approx(0.4)
    assert seam_jumps(statuses[:1]) == seam_jumps([]) == seam_jumps(statuses[:1])
    assert seam_jumps([]).count == 0


def test_seam_ticks_refuse_unordered_stamps():
    with pytest.raises(ValueError):
        seam_ticks([0.0, 0.2, 0.1], [])


def test_jerk_of_a_cubic_is_its_third_derivative_and_segments_are_not_joined():
    t = np.arange(20) * DT
    cubic = np.stack([t**3, -2 * t**3], axis=1)
    np.testing.assert_allclose(jerk(cubic, DT), np.tile([6.0, -12.0], (17, 1)), rtol=1e-6)
    assert rms_jerk([cubic], DT) == pytest.approx(math.sqrt((36 + 144) / 2), rel=1e-6)
    assert rms_jerk([cubic], DT, joints=[1]) == pytest.approx(12.0, rel=1e-6)
    # A second episode starting elsewhere: no difference spans the two, so the figure does not change.
    assert rms_jerk([cubic, cubic + 5.0], DT) == pytest.approx(rms_jerk([cubic], DT), rel=1e-6)
    assert math.isnan(rms_jerk([cubic[:3]], DT))
    with pytest.raises(ValueError):
        jerk(cubic, 0.0)


def test_seam_windows_are_relative_to_the_command_before_the_seam():
    positions = np.arange(30, dtype=float)[:, None] * [1.0, 2.0]
    windows = seam_windows(positions, [1, 10, 28], before=2, after=3)
    assert len(windows) == 1  # 1 and 28 are too close to the ends
    np.testing.assert_array_equal(windows[0][:, 0], [-1, 0, 1, 2, 3, 4])
