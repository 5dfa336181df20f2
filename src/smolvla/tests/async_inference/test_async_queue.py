import math

import numpy as np
import pytest

from smolvla.async_inference.config import QueueConfig
from smolvla.async_inference.core import AsyncActionQueue
from smolvla.async_inference.latency import LatencyEstimator, threshold_bound

DT = 0.1
STILL = np.zeros(1)


def make_queue(**overrides) -> AsyncActionQueue:
    # The wall clock numbers every call as a tick, which these tests spell out tick by tick; the tests of the
    # (default) action clock ask for it by name.
    settings = dict(
        chunk_size=10, control_period=DT, mode="async", threshold=0.5, similarity_epsilon=0.0, tick_clock="wall"
    )
    settings.update(overrides)
    return AsyncActionQueue(QueueConfig(**settings), [1.0])


def chunk_for(request, n=10, offset=0.0) -> np.ndarray:
    """Actions whose value is the tick they are meant for (plus an offset identifying the chunk)."""
    first = request.observation_tick + 1
    return (np.arange(first, first + n, dtype=np.float64) + offset)[:, None]


def run_ticks(queue, count, now_start=None, state=STILL):
    out = []
    for _ in range(count):
        tick = queue.status().tick
        out.append(queue.tick(tick * DT if now_start is None else now_start, state))
    return out


def test_tick_convention_observation_k_gives_actions_from_k_plus_1():
    queue = make_queue()
    first = queue.tick(0.0, STILL)
    assert first.tick == 0 and first.action is None
    request = first.request
    assert request.observation_tick == 0 and request.must_go and request.capture_time == 0.0
    outcome = queue.add_chunk(request.request_id, 1, chunk_for(request), now=0.05)
    assert outcome.accepted and outcome.dropped_late == 0
    executed = [r.action[0] for r in run_ticks(queue, 10)]
    assert executed == list(range(1, 11))  # tick t executes the action meant for tick t


def test_actions_for_ticks_already_executed_are_dropped_and_counted():
    queue = make_queue()
    request = queue.tick(0.0, STILL).request
    run_ticks(queue, 3)  # ticks 1, 2, 3 pass while the chunk is computed
    outcome = queue.add_chunk(request.request_id, 1, chunk_for(request), now=0.35)
    assert outcome.dropped_late == 3
    assert queue.tick(0.4, STILL).action[0] == 4
    status = queue.status()
    assert status.startup_ticks == 4 and status.idle_ticks == 0


def test_request_when_queue_fraction_reaches_threshold():
    queue = make_queue(threshold=0.5)
    request = queue.tick(0.0, STILL).request
    queue.add_chunk(request.request_id, 1, chunk_for(request), now=0.0)
    results = run_ticks(queue, 6)
    lengths = [r.queue_length for r in results]
    assert lengths == [9, 8, 7, 6, 5, 4]
    requested = [r.queue_length for r in results if r.request is not None]
    assert requested == [5]  # 5 / 10 <= 0.5; one in flight afterwards, so no second request


@pytest.mark.parametrize(("mode", "expected_length"), [("sync", 0), ("continuous", 9)])
def test_sync_requests_on_empty_queue_and_continuous_at_once(mode, expected_length):
    queue = make_queue(mode=mode)
    request = queue.tick(0.0, STILL).request
    # 0.3 s latency: the continuous mode's unanswered request counts as lost only after 3 x 0.3 + 0.5 s.
    queue.add_chunk(request.request_id, 1, chunk_for(request), now=0.3)
    results = run_ticks(queue, 10)
    requested = [r.queue_length for r in results if r.request is not None]
    assert requested == [expected_length]
    assert queue.threshold() == (0.0 if mode == "sync" else 1.0)


def test_must_go_uses_the_latency_estimate():
    queue = make_queue(threshold=1.0)
    request = queue.tick(0.0, STILL).request
    # 0.35 s latency = 3.5 ticks: a request with 4 or fewer actions queued would arrive after they run out.
    queue.add_chunk(request.request_id, 1, chunk_for(request), now=0.35)
    must_go = {}
    for _ in range(10):
        result = queue.tick(queue.status().tick * DT, STILL)
        if result.request is not None:
            must_go[result.queue_length] = result.request.must_go
            queue.request_failed(result.request.request_id, now=-1.0)  # free the slot for the next tick
    assert must_go == {length: length <= 4 for length in range(9, -1, -1)}


def test_similarity_filter_skips_only_requests_that_are_not_must_go():
    queue = AsyncActionQueue(
        QueueConfig(chunk_size=10, control_period=DT, threshold=1.0, similarity_epsilon=0.05), [2.0, 100.0]
    )
    still = np.zeros(2)
    request = queue.tick(0.0, still).request
    queue.add_chunk(request.request_id, 1, np.zeros((10, 2)), now=0.0)
    # The second joint has a range of 100: moving it by 1.0 is 1 % of its range, below epsilon = 5 %.
    results = [queue.tick(0.1 * (t + 1), np.array([0.0, 1.0])) for t in range(10)]
    assert all(r.request is None for r in results[:-1]) and all(r.request_skipped for r in results[:-1])
    assert results[-1].request is not None and results[-1].request.must_go  # empty queue: never skipped
    assert queue.status().requests_skipped == 9
    # 0.2 rad of the first joint (range 2) is 10 %: a real move, not filtered.
    queue.add_chunk(results[-1].request.request_id, 11, np.zeros((10, 2)), now=1.1)
    assert queue.tick(1.1, np.array([0.2, 0.0])).request is not None


def test_similarity_compares_with_the_last_answered_observation_not_a_failed_one():
    queue = AsyncActionQueue(
        QueueConfig(chunk_size=10, control_period=DT, threshold=1.0, similarity_epsilon=0.05, failure_backoff=0.0),
        [1.0],
    )
    request = queue.tick(0.0, np.zeros(1)).request
    queue.add_chunk(request.request_id, 1, np.zeros((10, 1)), now=0.0)
    moved = np.array([0.5])
    failed = queue.tick(0.1, moved).request
    assert failed is not None and not failed.must_go
    queue.request_failed(failed.request_id, now=0.1)
    retry = queue.tick(0.2, moved)
    assert retry.request is not None  # the failed observation at the same state does not count as processed
    queue.add_chunk(retry.request.request_id, 3, np.zeros((10, 1)), now=0.2)
    assert queue.tick(0.3, moved).request_skipped  # now it was answered: the same state is filtered


def test_overlap_is_aggregated_and_the_tail_beyond_a_short_chunk_is_kept():
    queue = make_queue(threshold=1.0, aggregation="weighted_average")
    request = queue.tick(0.0, STILL).request
    queue.add_chunk(request.request_id, 1, np.full((10, 1), 10.0), now=0.0)
    second = queue.tick(0.1, STILL).request  # observation tick 1, queue holds ticks 2..10
    outcome = queue.add_chunk(second.request_id, 2, np.full((4, 1), 20.0), now=0.1)
    assert outcome.blended == 4
    executed = [r.action[0] for r in run_ticks(queue, 9)]
    assert executed == pytest.approx([17.0] * 4 + [10.0] * 5)  # 0.3 * 10 + 0.7 * 20, then the old tail


def test_a_new_chunk_longer_than_the_queue_extends_it():
    queue = make_queue(threshold=1.0, aggregation="latest_only")
    request = queue.tick(0.0, STILL).request
    queue.add_chunk(request.request_id, 1, chunk_for(request, n=3, offset=0.5), now=0.0)
    second = queue.tick(0.1, STILL).request
    queue.add_chunk(second.request_id, 2, chunk_for(second, n=10), now=0.1)
    assert queue.status().queue_length == 10
    assert [r.action[0] for r in run_ticks(queue, 10)] == list(range(2, 12))


def test_chunk_from_an_older_observation_than_the_queue_is_superseded():
    queue = make_queue(threshold=1.0, max_in_flight=2)
    first = queue.tick(0.0, STILL).request
    second = queue.tick(0.1, STILL).request
    assert queue.add_chunk(second.request_id, 2, chunk_for(second), now=0.2).accepted
    outcome = queue.add_chunk(first.request_id, 1, chunk_for(first), now=0.3)
    assert not outcome.accepted and "older" in outcome.reason
    assert queue.status().chunks_superseded == 1


def test_unknown_duplicate_and_misaligned_chunks_are_refused():
    queue = make_queue()
    request = queue.tick(0.0, STILL).request
    assert "not a request" in queue.add_chunk(999, 1, chunk_for(request), now=0.1).reason
    assert "does not follow" in queue.add_chunk(request.request_id, 2, chunk_for(request), now=0.1).reason
    assert not queue.add_chunk(request.request_id, 1, chunk_for(request), now=0.1).accepted  # already answered
    assert queue.status().chunks_unmatched == 3
    with pytest.raises(ValueError, match="NaN"):
        queue.add_chunk(request.request_id, 1, np.full((3, 1), np.nan), now=0.1)
    with pytest.raises(ValueError, match="shape"):
        queue.add_chunk(request.request_id, 1, np.zeros((3, 2)), now=0.1)


def test_lost_request_times_out_and_a_late_chunk_is_still_used():
    queue = make_queue(request_timeout=0.5)
    lost = queue.tick(0.0, STILL).request
    results = [queue.tick(0.1 * t, STILL) for t in range(1, 7)]
    retry = [r.request for r in results if r.request is not None]
    assert len(retry) == 1 and retry[0].observation_tick == 6  # 0.6 s > 0.5 s timeout
    assert queue.status().requests_timed_out == 1
    assert queue.add_chunk(lost.request_id, 1, chunk_for(lost), now=0.65).accepted
    assert queue.add_chunk(retry[0].request_id, 7, chunk_for(retry[0]), now=0.7).accepted
    assert queue.tick(0.7, STILL).action[0] == 7


def test_failed_request_frees_the_slot_after_a_backoff():
    queue = make_queue(failure_backoff=0.25)
    request = queue.tick(0.0, STILL).request
    assert queue.request_failed(request.request_id, now=0.05)
    assert not queue.request_failed(request.request_id, now=0.05)
    requested = [queue.tick(0.1 * t, STILL).request is not None for t in range(1, 5)]
    assert requested == [False, False, True, False]  # 0.1, 0.2 within the backoff; 0.3 retries
    assert queue.status().requests_failed == 1


def test_a_lost_request_is_reissued_after_a_time_tied_to_the_measured_latency():
    queue = make_queue(request_timeout=10.0, threshold=1.0)
    first = queue.tick(0.0, STILL).request
    assert queue.add_chunk(first.request_id, 1, chunk_for(first), now=0.2).accepted  # latency 0.2 s
    now, lost = 0.3, None
    while lost is None:
        lost = queue.tick(now, STILL).request
        now += 0.1
    sent = now - 0.1
    retry_at = None
    while retry_at is None and now < 5.0:
        if queue.tick(now, STILL).request is not None:
            retry_at = now
        now += 0.1
    # 3 x 0.2 s + 0.5 s after it was sent, not the 10 s request_timeout.
    assert retry_at == pytest.approx(sent + 1.2, abs=0.11)
    assert queue.status().requests_timed_out == 1


def test_a_superseded_request_frees_its_slot_without_a_backoff():
    queue = make_queue(failure_backoff=1.0, max_in_flight=2, threshold=1.0)
    older = queue.tick(0.0, STILL).request
    newer = queue.tick(0.1, STILL).request
    assert newer.request_id == older.request_id + 1
    assert queue.request_failed(older.request_id, now=0.15)  # superseded at the policy by the newer one
    assert queue.tick(0.2, STILL).request is not None  # no back-off: a slot is free and used at once
    assert queue.request_failed(queue.status().requests_sent, now=0.25)  # the newest fails: back off
    assert [queue.tick(0.3 + 0.1 * t, STILL).request for t in range(5)] == [None] * 5


def test_idle_ticks_and_starvation_episodes_are_counted():
    queue = make_queue(mode="sync")
    request = queue.tick(0.0, STILL).request
    queue.tick(0.1, STILL)
    queue.add_chunk(request.request_id, 1, chunk_for(request, n=4), now=0.15)
    results = run_ticks(queue, 8)
    status = queue.status()
    assert status.startup_ticks == 2
    assert [r.action is None for r in results] == [False] * 3 + [True] * 5
    assert status.idle_ticks == 5 and status.starvation_episodes == 1


def test_action_clock_holding_does_not_use_up_the_chunk():
    queue = make_queue(mode="sync", tick_clock="action")
    request = queue.tick(0.0, STILL).request
    assert request.observation_tick == 0
    held = [queue.tick(0.1 * t, STILL) for t in range(1, 4)]
    assert [r.tick for r in held] == [0, 0, 0]  # holding repeats the tick of the held command
    outcome = queue.add_chunk(request.request_id, 1, chunk_for(request, n=4), now=0.35)
    assert outcome.dropped_late == 0  # nothing was executed while it was computed
    results = run_ticks(queue, 6)
    assert [r.tick for r in results] == [1, 2, 3, 4, 4, 4]
    assert [None if r.action is None else r.action[0] for r in results] == [1, 2, 3, 4, None, None]
    second = results[3].request  # the queue ran empty at tick 4: its observation is tick 4
    assert second.observation_tick == 4 and second.must_go
    queue.add_chunk(second.request_id, 5, chunk_for(second, n=4), now=1.0)
    assert queue.tick(1.0, STILL).action[0] == 5  # continues after the last executed action
    status = queue.status()
    assert (status.idle_ticks, status.startup_ticks, status.actions_dropped_late) == (2, 4, 0)


def test_wall_clock_holding_drops_the_actions_of_held_ticks():
    queue = make_queue(mode="sync", tick_clock="wall")
    request = queue.tick(0.0, STILL).request
    run_ticks(queue, 3)
    assert queue.add_chunk(request.request_id, 1, chunk_for(request, n=4), now=0.35).dropped_late == 3
    assert [r.tick for r in run_ticks(queue, 2)] == [4, 5]


def test_clear_restarts_at_tick_zero_and_refuses_old_chunks():
    queue = make_queue(threshold=0.0)
    request = queue.tick(0.0, STILL).request
    queue.add_chunk(request.request_id, 1, chunk_for(request), now=0.0)
    in_flight = [r.request for r in run_ticks(queue, 10) if r.request]
    assert queue.clear() == 0  # the queue had run empty; only the request in flight is forgotten
    status = queue.status()
    assert status.tick == 0 and status.queue_length == 0 and status.in_flight == 0
    assert not queue.add_chunk(
        in_flight[0].request_id, in_flight[0].observation_tick + 1, np.ones((3, 1)), 1.0
    ).accepted
    again = queue.tick(2.0, STILL).request
    assert again.observation_tick == 0 and again.request_id > in_flight[0].request_id


def test_clear_counts_discarded_actions_and_the_books_balance():
    queue = make_queue()
    request = queue.tick(0.0, STILL).request
    run_ticks(queue, 2)
    queue.add_chunk(request.request_id, 1, chunk_for(request), now=0.2)
    run_ticks(queue, 3)
    assert queue.clear() == 5
    s = queue.status()
    assert (s.actions_received, s.actions_dropped_late, s.actions_executed, s.actions_discarded) == (10, 2, 3, 5)


def test_latency_estimate_ignores_warm_up_outliers_and_forgets_them():
    estimator = LatencyEstimator(window=5, quantile=0.9)
    assert estimator.estimate() is None
    for value in (9.0, 1.0, 1.2, 1.1):
        estimator.add(value)
    assert estimator.estimate() == pytest.approx(1.15)
    assert estimator.upper() > 5.0  # the pessimistic view still sees it ...
    for value in (1.0, 1.1, 1.2, 1.0, 1.1):
        estimator.add(value)
    assert estimator.upper() < 1.25  # ... until the window has moved past it
    estimator.add(float("nan"))
    estimator.add(-1.0)
    assert estimator.count == 9
    assert threshold_bound(1.5, 1 / 30, 50) == pytest.approx(0.9)


def test_auto_threshold_stays_above_the_bound_with_a_margin():
    queue = make_queue(mode="auto", threshold=0.7, chunk_size=50, auto_margin=0.2)
    assert queue.threshold() == 0.7  # no latency measured yet
    now = 0.0
    for _ in range(5):
        result = queue.tick(now, STILL)
        if result.request:
            queue.add_chunk(result.request.request_id, result.tick + 1, np.zeros((50, 1)), now + 1.0)
        now += DT
    status = queue.status()
    assert status.latency_estimate == pytest.approx(1.0)
    assert status.threshold_min == pytest.approx(1.0 / (DT * 50))
    assert status.threshold == pytest.approx(1.2 * 0.2 + 1 / 50)
    assert status.threshold > status.threshold_min


def test_invalid_configuration_names_every_problem():
    with pytest.raises(ValueError) as error:
        QueueConfig(
            chunk_size=0, mode="fast", threshold=1.5, aggregation="max", control_period=math.nan, max_in_flight=17
        )
    for word in ("chunk_size", "mode", "threshold", "aggregation", "control_period", "max_in_flight"):
        assert word in str(error.value)
