"""Real-time chunking on the executor's side: what a request carries, how an early, on-time or late chunk takes
over the queue, the seam of every chunk, and the delay estimate."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolvla.async_inference.config import QueueConfig
from smolvla.async_inference.core import AsyncActionQueue
from smolvla.async_inference.rtc import SeamMeter, delay_ticks, merge

N = 8
DT = 0.01


def test_delay_ticks_rounds_the_pessimistic_latency_up():
    assert delay_ticks(None, DT) == 0
    assert delay_ticks(0.0, DT) == 0
    assert delay_ticks(0.03, DT) == 3  # exactly three periods, not four from rounding noise
    assert delay_ticks(0.0301, DT) == 4


def test_merge_replaces_on_time_and_ramps_a_late_chunk_in():
    old = np.zeros((4, 2))
    new = np.ones((4, 2))
    np.testing.assert_array_equal(merge(old, new, 0), new)
    np.testing.assert_allclose(merge(old, new, 2)[:, 0], [1 / 3, 2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(merge(old, new, 9)[:, 0], [0.2, 0.4, 0.6, 0.8])  # later than the overlap is long
    with pytest.raises(ValueError):
        merge(old, new[:3], 0)


def test_seam_meter_keeps_last_mean_and_max():
    meter = SeamMeter()
    assert meter.record(None, np.zeros(2)) == 0.0 and meter.count == 0  # no command before: no seam
    assert meter.record(np.zeros(2), np.array([0.1, -0.3])) == pytest.approx(0.3)
    meter.record(np.zeros(2), np.array([0.1, 0.0]))
    assert (meter.count, meter.last, meter.largest) == (2, pytest.approx(0.1), pytest.approx(0.3))
    assert meter.mean == pytest.approx(0.2)


def make_queue(**overrides) -> AsyncActionQueue:
    settings_ = dict(chunk_size=N, control_period=DT, aggregation="rtc", similarity_epsilon=0.0, threshold=0.5)
    settings_.update(overrides)
    return AsyncActionQueue(QueueConfig(**settings_), [1.0, 1.0])


def test_other_aggregations_send_no_guidance():
    queue = make_queue(aggregation="weighted_average")
    request = queue.tick(0.0, np.zeros(2)).request
    assert request.previous_actions is None and request.delay_ticks == 0


def test_the_delay_estimate_forgets_a_warm_up_outlier():
    """The announced delay is a high quantile of the recent latencies: after a slow first chunk (warm-up) it comes
    back down once newer latencies fill the window (a running maximum would stay at the outlier forever)."""
    queue = make_queue(threshold=1.0, tick_clock="wall")
    now = 0.0
    delays = []
    for latency in [0.5] + [0.02] * 25:
        request = queue.tick(now, np.zeros(2)).request
        delays.append(request.delay_ticks)
        now += latency
        first = request.observation_tick + 1
        queue.add_chunk(request.request_id, first, np.zeros((N, 2)), now)
    assert delays[0] == 0 and delays[1] == 50  # unknown before the first latency, then the outlier
    assert delays[-1] == 2  # ceil(0.02 / 0.01)


def plan(request_id: int, ticks: np.ndarray) -> np.ndarray:
    """The policy's own plan for these ticks: joint 0 = the tick, joint 1 = a value of its request."""
    return np.stack([ticks.astype(np.float64), np.full(ticks.size, 10.0 * request_id)], axis=1)


@settings(max_examples=300, deadline=None)
@given(
    latencies=st.lists(st.integers(0, 2 * N), min_size=1, max_size=20),
    lengths=st.lists(st.integers(1, 2 * N), min_size=1, max_size=5),
    threshold=st.sampled_from([0.0, 0.5, 0.7, 1.0]),
    tick_clock=st.sampled_from(["wall", "action"]),
)
def test_early_on_time_and_late_chunks_take_over_as_specified(latencies, lengths, threshold, tick_clock):
    """A policy that honours the guidance exactly (it returns the previous actions for the first delay_ticks of
    its chunk, its own plan after): each request carries exactly the queued actions for its chunk's ticks; a chunk
    arriving after at most delay_ticks replaces them from the tick it arrives at with no seam while it is early; a
    later one is ramped in over the extra ticks and counted; each tick executes the action the model expects."""
    queue = make_queue(threshold=threshold, tick_clock=tick_clock)
    expected: dict[int, np.ndarray] = {}  # tick -> action the spec says must be executed there
    next_tick = 0 if tick_clock == "wall" else 1
    in_flight = None  # (request, ticks to wait)
    draws = itertools.cycle(latencies)
    length_draws = itertools.cycle(lengths)
    late_chunks = 0
    for call in range(200):
        now = call * DT
        if in_flight is not None and in_flight[1] == 0:
            request = in_flight[0]
            in_flight = None
            first = request.observation_tick + 1
            m = len(request.previous_actions)
            length = next(length_draws)
            actions = plan(request.request_id, first + np.arange(length))
            frozen = min(request.delay_ticks, m, length)
            actions[:frozen] = request.previous_actions[:frozen]
            late = next_tick - first
            late_by = max(0, late - request.delay_ticks) if m else 0
            before = expected.get(next_tick)
            outcome = queue.add_chunk(request.request_id, first, actions, now)
            assert outcome.accepted and outcome.late_seam == (late_by > 0)
            late_chunks += outcome.late_seam
            ramped = min(late_by, len(expected), first + length - next_tick)
            for i, t in enumerate(range(next_tick, first + length)):
                new = actions[t - first]
                if i < ramped:
                    weight = (i + 1) / (ramped + 1)
                    expected[t] = (1 - weight) * expected[t] + weight * new
                else:
                    expected[t] = new
            if before is not None and late < length:
                assert outcome.seam_jump == pytest.approx(np.abs(expected[next_tick] - before).max())
                if late < request.delay_ticks:  # early: the chunk's next action is the queued one
                    assert outcome.seam_jump == 0.0
        elif in_flight is not None:
            in_flight = (in_flight[0], in_flight[1] - 1)
        result = queue.tick(now, np.zeros(2))
        if result.action is not None:
            assert result.tick == next_tick
            np.testing.assert_allclose(result.action, expected.pop(next_tick), atol=1e-12)
            next_tick += 1
        else:
            assert next_tick not in expected
            next_tick += tick_clock == "wall"
        if result.request is not None:
            assert in_flight is None  # max_in_flight = 1
            request = result.request
            first = request.observation_tick + 1
            assert first == next_tick and sorted(expected) == list(range(first, first + len(expected)))
            assert request.previous_actions.shape == (len(expected), 2)
            for i, t in enumerate(sorted(expected)):
                np.testing.assert_array_equal(request.previous_actions[i], expected[t])
            in_flight = (result.request, next(draws))
    assert queue.status().chunks_late == late_chunks


@pytest.mark.parametrize(("extra_ticks", "late"), [(-1, False), (0, False), (1, True)])
def test_a_chunk_early_on_time_or_late(extra_ticks, late):
    """The first chunk arrives after 2 ticks (latency 0.03 s: delay estimate 3 ticks); the second request announces
    3 ticks and its chunk, which disagrees by 1.0 after the frozen ticks, arrives 2, 3 or 4 ticks later."""
    queue = make_queue(threshold=1.0, tick_clock="wall")
    first_request = queue.tick(0.0, np.zeros(2)).request
    for call in (1, 2):
        queue.tick(call * DT, np.zeros(2))
    queue.add_chunk(first_request.request_id, 1, plan(0, 1 + np.arange(N)), 3 * DT)
    result = queue.tick(3 * DT, np.zeros(2))
    request = result.request
    assert request.delay_ticks == 3 and request.observation_tick == 3
    np.testing.assert_array_equal(request.previous_actions, plan(0, 4 + np.arange(N - 3)))
    actions = plan(0, 4 + np.arange(N)) + [0.0, 1.0]
    actions[:3] = request.previous_actions[:3]  # the policy reproduced the frozen ticks
    for call in range(4, 4 + 3 + extra_ticks):
        queue.tick(call * DT, np.zeros(2))
    outcome = queue.add_chunk(request.request_id, 4, actions, (4 + 3 + extra_ticks) * DT)
    assert outcome.late_seam == late and queue.status().chunks_late == int(late)
    if late:  # ramped in over the extra tick: half the disagreement at the seam
        assert outcome.seam_jump == pytest.approx(0.5)
    elif extra_ticks < 0:  # early: the next tick is a frozen one
        assert outcome.seam_jump == 0.0
    else:  # on time: the switch at the first unfrozen tick shows the disagreement
        assert outcome.seam_jump == pytest.approx(1.0)
    assert queue.status().seam_jump_last == outcome.seam_jump
