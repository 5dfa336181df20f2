"""Property tests: over random interleavings of ticks and chunk arrivals no action is executed twice, none is
executed at a tick other than its own, and every action that entered the queue is accounted for."""

import itertools
import queue as queue_module
import random
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolvla.async_inference.config import QueueConfig
from smolvla.async_inference.core import AsyncActionQueue

N = 8
DT = 0.01


def encode(request_id: int, ticks: np.ndarray) -> np.ndarray:
    # Joint 0 = the tick the action is for, joint 1 = the request that produced it.
    return np.stack([ticks.astype(np.float64), np.full(ticks.size, float(request_id))], axis=1)


def assert_books_balance(queue: AsyncActionQueue, ticks: int) -> None:
    s = queue.status()
    assert s.actions_received == (
        s.actions_executed + s.actions_dropped_late + s.actions_blended + s.actions_discarded + s.queue_length
    )
    assert s.actions_executed + s.idle_ticks + s.startup_ticks == ticks


operations = st.lists(
    st.one_of(
        st.just(("tick",)),
        # deliver the pending request at this position (if any) with this many actions
        st.tuples(st.just("deliver"), st.integers(0, 3), st.integers(1, 2 * N)),
        st.tuples(st.just("fail"), st.integers(0, 3)),
    ),
    max_size=120,
)


@settings(max_examples=400, deadline=None)
@given(
    ops=operations,
    threshold=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    max_in_flight=st.integers(1, 3),
    clear_at=st.integers(0, 200),
    tick_clock=st.sampled_from(["wall", "action"]),
)
def test_random_interleavings_execute_each_action_at_its_own_tick_once(
    ops, threshold, max_in_flight, clear_at, tick_clock
):
    config = QueueConfig(
        tick_clock=tick_clock,
        chunk_size=N,
        control_period=DT,
        threshold=threshold,
        max_in_flight=max_in_flight,
        aggregation="latest_only",
        similarity_epsilon=0.0,
        failure_backoff=0.0,
    )
    queue = AsyncActionQueue(config, [1.0, 1.0])
    pending = []
    expected: dict[int, int] = {}  # model: tick -> request whose action latest_only must execute there
    newest_observation = -1
    executed_ticks: list[int] = []  # ticks restart at 0 after clear(), so they are checked per run
    runs = [executed_ticks]
    first_tick = 0 if tick_clock == "wall" else 1  # "action": the first (holding) tick is 0, the first action 1
    next_tick = first_tick  # model of the next tick number to execute
    calls = 0
    for index, op in enumerate(ops):
        now = calls * DT
        if index == clear_at:
            queue.clear()
            pending.clear()
            expected.clear()
            newest_observation = -1
            next_tick = first_tick
            executed_ticks = []
            runs.append(executed_ticks)
            continue
        if op[0] == "tick":
            result = queue.tick(now, np.zeros(2))
            calls += 1
            if result.action is None and tick_clock == "action":
                assert result.tick == next_tick - 1  # holding does not use up a tick
            else:
                assert result.tick == next_tick
                next_tick += 1
            if result.action is None:  # idle only when the model has no action for the tick due either
                assert expected.get(next_tick if tick_clock == "action" else result.tick) is None
            else:
                assert result.action[0] == result.tick  # never a tick early or late
                assert result.action[1] == expected.pop(result.tick)
                executed_ticks.append(result.tick)
            assert min(expected, default=next_tick) >= next_tick  # nothing left behind unexecuted
            if result.request:
                pending.append(result.request)
        elif op[0] == "deliver" and op[1] < len(pending):
            request = pending.pop(op[1])
            first = request.observation_tick + 1
            outcome = queue.add_chunk(
                request.request_id, first, encode(request.request_id, first + np.arange(op[2])), now
            )
            assert outcome.accepted == (request.observation_tick >= newest_observation)
            if outcome.accepted:
                newest_observation = request.observation_tick
                for t in range(max(first, next_tick), first + op[2]):
                    expected[t] = request.request_id
        elif op[0] == "fail" and op[1] < len(pending):
            assert queue.request_failed(pending.pop(op[1]).request_id, now)
        assert queue.status().in_flight <= max_in_flight
    for run in runs:  # no tick executed twice within a run
        assert run == sorted(set(run))
    s = queue.status()
    assert sum(len(run) for run in runs) == s.actions_executed
    assert s.actions_received == (
        s.actions_executed + s.actions_dropped_late + s.actions_blended + s.actions_discarded + s.queue_length
    )


@settings(max_examples=150, deadline=None)
@given(
    latencies=st.lists(st.floats(0.0, 0.2), min_size=1, max_size=30),
    aggregation=st.sampled_from(["weighted_average", "average", "conservative", "ramp", "latest_only"]),
    threshold=st.sampled_from([0.0, 0.5, 0.7, 1.0]),
)
def test_simulated_latencies_keep_the_books_balanced(latencies, aggregation, threshold):
    # Wall clock: the loop index is the tick, so every executed action must be the one encoded for it.
    config = QueueConfig(
        chunk_size=N, control_period=DT, threshold=threshold, aggregation=aggregation, tick_clock="wall"
    )
    queue = AsyncActionQueue(config, [1.0, 1.0])
    arrivals = []
    draw = itertools.cycle(latencies)
    ticks = 300
    for tick in range(ticks):
        now = tick * DT
        for item in [a for a in arrivals if a[0] <= now]:
            arrivals.remove(item)
            _, request = item
            first = request.observation_tick + 1
            queue.add_chunk(request.request_id, first, encode(request.request_id, first + np.arange(N)), now)
        result = queue.tick(now, np.array([tick * 0.01, 0.0]))
        if result.action is not None:
            # Every aggregation is a convex combination of actions for the same tick.
            assert abs(result.action[0] - tick) < 1e-9
        if result.request:
            arrivals.append((now + next(draw), result.request))
    assert_books_balance(queue, ticks)


@pytest.mark.parametrize("tick_clock", ["wall", "action"])
def test_threads_ticking_and_delivering_concurrently_lose_and_repeat_nothing(tick_clock):
    config = QueueConfig(
        chunk_size=N,
        control_period=DT,
        threshold=0.7,
        aggregation="latest_only",
        max_in_flight=2,
        similarity_epsilon=0,
        tick_clock=tick_clock,
    )
    queue = AsyncActionQueue(config, [1.0, 1.0])
    requests: queue_module.Queue = queue_module.Queue()
    executed: list[int] = []
    stop = threading.Event()
    rng = random.Random(0)

    def policy() -> None:
        while not stop.is_set():
            try:
                request = requests.get(timeout=0.01)
            except queue_module.Empty:
                continue
            stop.wait(rng.uniform(0, 0.002))
            first = request.observation_tick + 1
            queue.add_chunk(request.request_id, first, encode(request.request_id, first + np.arange(N)), 0.0)

    worker = threading.Thread(target=policy)
    worker.start()
    ticks = 3000
    try:
        for _ in range(ticks):
            time.sleep(0.0002)  # ticks a few times faster than the policy answers: overlaps, late drops, starvation
            result = queue.tick(0.0, np.zeros(2))
            if result.action is not None:
                assert result.action[0] == result.tick
                executed.append(result.tick)
            if result.request:
                requests.put(result.request)
    finally:
        stop.set()
        worker.join()
    assert len(executed) == len(set(executed)) > ticks // 10
    status = queue.status()
    assert status.actions_blended > 0 and status.actions_dropped_late > 0  # the interleavings did overlap
    assert_books_balance(queue, ticks)
