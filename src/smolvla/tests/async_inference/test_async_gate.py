"""The way in for chunks (length bound, rate check or resampling, gate on absurd chunks) and burst logging."""

import numpy as np
import pytest

from smolvla.async_inference import (
    AsyncActionQueue,
    BurstLog,
    ChunkGate,
    CommandSafety,
    ControlLoop,
    InvalidChunkError,
    QueueConfig,
)
from smolvla.async_inference.resample import resample_chunk

JOINTS = ["a", "b", "c"]
LOWER = np.array([-1.9, -1.7, -0.17])
UPPER = np.array([1.9, 1.7, 1.7])
DT = 1 / 30
N = 10


def make_gate() -> ChunkGate:
    return ChunkGate(JOINTS, LOWER, UPPER, max_jump=[0.5, 0.5, 1.0], limit_margin=0.1)


def smooth_chunk(start: np.ndarray) -> np.ndarray:
    return start + np.outer(np.arange(1, N + 1), [0.01, -0.01, 0.02])


def test_a_chunk_in_radians_passes():
    observed = np.array([0.2, -0.4, 0.5])
    assert make_gate().check(smooth_chunk(observed), observed) == ""


def test_a_chunk_in_degrees_is_refused_as_outside_the_limits():
    observed = np.array([0.2, -0.4, 0.5])
    degrees = np.degrees(smooth_chunk(observed))  # a LeRobot degrees checkpoint read as radians
    why = make_gate().check(degrees, observed)
    assert why.startswith(f"{N} of {N} actions lie outside the joint limits") and "wrong units?" in why


def test_a_few_actions_slightly_beyond_a_limit_pass():
    observed = np.array([1.85, 0.0, 0.0])
    chunk = np.tile(observed, (N, 1))
    chunk[:4, 0] = 2.2  # 4 of 10 beyond the margin: not "mostly"; the executor clips them
    chunk[4:, 0] = 1.95  # within the margin
    assert make_gate().check(chunk, observed) == ""


def test_a_first_action_too_far_from_the_observation_is_refused():
    observed = np.array([0.2, -0.4, 0.5])
    chunk = smooth_chunk(observed + [0.0, 0.9, 0.0])
    assert "first action is 0.890 rad from the observed state for b" in make_gate().check(chunk, observed)
    assert make_gate().check(chunk, None) == ""  # unknown observation: only the other checks


def test_consecutive_actions_that_jump_are_refused():
    observed = np.zeros(3)
    chunk = smooth_chunk(observed)
    chunk[5:, 2] += 1.2
    assert "actions 4 and 5 are" in make_gate().check(chunk, observed)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_jump": [0.5, 0.0, 0.5]}, "gate_max_jump"),
        ({"max_jump": [0.5, 0.5]}, "gate_max_jump"),
        ({"max_jump": 0.5, "limit_margin": -1.0}, "gate_limit_margin"),
        ({"max_jump": 0.5, "max_outside_fraction": 1.0}, "gate_outside_fraction"),
    ],
)
def test_gate_parameters_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChunkGate(JOINTS, LOWER, UPPER, **kwargs)


def make_loop() -> ControlLoop:
    config = QueueConfig(chunk_size=N, control_period=DT, mode="sync", similarity_epsilon=0.0, failure_backoff=0.2)
    queue = AsyncActionQueue(config, UPPER - LOWER)
    safety = CommandSafety(JOINTS, LOWER, UPPER, 3.0, 30.0, DT)
    return ControlLoop(queue, safety, 0.5, gate=make_gate())


def test_a_gated_chunk_never_reaches_the_queue_and_the_executor_keeps_holding():
    loop = make_loop()
    q = np.array([0.2, -0.4, 0.5])
    loop.update_joint_state(q, 0.0)
    first = loop.step(0.0)
    outcome = loop.offer_chunk(first.request.request_id, 1, np.degrees(smooth_chunk(q)), DT, 0.01)
    assert not outcome.accepted and "wrong units?" in outcome.reason
    status = loop.queue.status()
    assert status.chunks_gated == 1 and status.queue_length == 0 and status.in_flight == 0
    for i in range(1, 6):
        loop.update_joint_state(q, i * DT)
        tick = loop.step(i * DT)
        np.testing.assert_array_equal(tick.command, q)  # holding
        if i * DT < 0.21:
            assert tick.request is None  # the failure back-off
    assert loop.queue.status().requests_sent == 1
    loop.update_joint_state(q, 0.3)
    retry = loop.step(0.3).request
    assert retry is not None  # asks again after the back-off
    assert loop.offer_chunk(retry.request_id, retry.observation_tick + 1, smooth_chunk(q), DT, 0.31).accepted


def test_a_chunk_at_another_rate_is_refused_and_counted():
    loop = make_loop()
    q = np.zeros(3)
    loop.update_joint_state(q, 0.0)
    request = loop.step(0.0).request
    outcome = loop.offer_chunk(request.request_id, 1, smooth_chunk(q), 0.1, 0.01)
    assert not outcome.accepted and "0.100000 s apart but the control period is 0.033333 s" in outcome.reason
    assert loop.queue.status().chunks_wrong_rate == 1
    unknown = loop.offer_chunk(999, 1, smooth_chunk(q), 0.1, 0.02)  # a rogue chunk for no request
    assert not unknown.accepted and loop.queue.status().chunks_unmatched == 1


def test_burst_log_reports_the_first_event_of_a_burst_then_a_count():
    log = BurstLog(quiet=2.0, interval=10.0)
    assert log.report(0.0) == 0
    assert [log.report(0.001 * i) for i in range(1, 1000)] == [None] * 999  # a 1 kHz burst: one line
    assert log.report(10.0) == 999  # a reminder within a long burst, with the count
    assert log.report(10.5) is None
    assert log.report(20.0) == 1  # after a quiet spell: a new burst is logged at once
    assert log.report(20.1, kind="other") == 0  # another kind of event: logged at once too
    assert log.report(20.2, kind="other") is None
    # two kinds alternating as fast as a sender can: still one line per kind and burst, not one per switch
    first = [log.report(21.0 + 0.001 * i, kind=("a", "b")[i % 2]) for i in range(2000)]
    assert first[:2] == [0, 0] and first[2:] == [None] * 1998
    assert sum(log.report(23.0 + 0.001 * i, kind=("a", "b")[i % 2]) is not None for i in range(2000)) == 0


def test_resampling_keeps_the_speed_of_a_chunk_at_another_rate():
    chunk = np.outer(np.arange(1, 11), [0.1, -0.2, 0.0])  # 10 Hz: 1 rad/s, -2 rad/s, still
    resampled = resample_chunk(chunk, 0.1, 1 / 30)
    assert resampled.shape == (30, 3)  # the same second of motion
    np.testing.assert_allclose(resampled[2:], np.outer(np.arange(3, 31) / 30, [1.0, -2.0, 0.0]), atol=1e-12)
    np.testing.assert_allclose(resampled[:2], np.tile(chunk[0], (2, 1)))  # before the first action: the first
    faster = resample_chunk(np.outer(np.arange(1, 31), [0.01, 0.0, 0.0]), 1 / 100, 1 / 30)
    assert faster.shape == (9, 3)
    np.testing.assert_allclose(faster[:, 0], np.arange(1, 10) / 30, atol=1e-12)
    with pytest.raises(ValueError, match="chunk period"):
        resample_chunk(chunk, 0.0, 1 / 30)


def test_with_resampling_a_chunk_at_another_rate_is_used():
    loop = make_loop()
    loop.resample = True
    q = np.zeros(3)
    loop.update_joint_state(q, 0.0)
    request = loop.step(0.0).request
    outcome = loop.offer_chunk(request.request_id, 1, smooth_chunk(q), 0.1, 0.01)
    assert outcome.accepted and loop.queue.status().queue_length == 30


def test_a_chunk_far_longer_than_the_chunk_size_is_invalid():
    loop = make_loop()
    loop.update_joint_state(np.zeros(3), 0.0)
    request = loop.step(0.0).request
    with pytest.raises(InvalidChunkError, match="more than 4 x chunk_size"):
        loop.offer_chunk(request.request_id, 1, np.zeros((10_000, 3)), DT, 0.01)
