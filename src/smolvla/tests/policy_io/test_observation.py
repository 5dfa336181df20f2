import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolvla.observation import (
    RateLimiter,
    RejectedSampleError,
    SampleHistory,
    order_joint_positions,
    select_samples,
)


def clock_at(now: float):
    return lambda: now


def test_history_keeps_stamp_order_replaces_duplicates_and_forgets_beyond_its_span():
    history = SampleHistory("/cam", span=2.0, clock=clock_at(10.0))
    for stamp in (1.0, 3.0, 2.0):  # out of order arrival
        history.add(stamp, f"v{stamp}")
    history.add(2.0, "replaced")
    assert [history.at_or_before(t).value for t in (1.5, 2.0, 2.9, 10.0)] == ["v1.0", "replaced", "replaced", "v3.0"]
    history.add(4.0, "v4")  # 1.0 is now more than 2 s older than the newest
    assert len(history) == 3 and history.oldest_stamp() == 2.0
    assert history.at_or_before(1.5) is None
    assert history.latest().value == "v4"
    with pytest.raises(RejectedSampleError, match="outside the kept span of 2.000 s"):
        history.add(1.5, "late")
    with pytest.raises(RejectedSampleError, match="finite"):
        history.add(float("nan"), "x")
    assert history.rejected == {"future": 0, "too old": 1, "not finite": 1}


def test_history_span_does_not_depend_on_the_sensor_rate():
    # 100 Hz joint states for 3 s, then a request handled 0.2 s late: its capture time is 0.2 s before the newest
    # sample, 20 samples back (a 16-sample history would have lost it).
    for rate in (10.0, 100.0, 1000.0):
        history = SampleHistory("/joint_states", span=1.25, clock=clock_at(103.0))
        for k in range(int(3 * rate) + 1):
            history.add(100.0 + k / rate, k)
        capture = 103.0 - 0.2
        found = history.at_or_before(capture)
        assert found is not None and capture - found.stamp < 1 / rate + 1e-9
        assert history.oldest_stamp() >= 103.0 - 1.25 - 1e-9


def test_future_stamps_are_refused_and_never_evict_good_samples():
    now = [100.0]
    history = SampleHistory("/joint_states", span=1.25, future_tolerance=0.5, clock=lambda: now[0])
    for k in range(100):
        now[0] = 100.0 + k / 100
        history.add(now[0], k)
    for _ in range(20):
        with pytest.raises(RejectedSampleError, match="in the future"):
            history.add(now[0] + 1e6, "spoofed")
    # Within the tolerance: kept; the span then still reaches span - tolerance = 0.75 s back from the clock.
    history.add(now[0] + 0.4, "slightly ahead")
    assert history.rejected["future"] == 20 and history.last_rejection()[1].startswith("sample stamped 1000000.000 s")
    assert history.at_or_before(100.795).value == 79
    assert history.at_or_before(100.25).value == 25 and history.latest().value == "slightly ahead"


def test_max_samples_bounds_memory_under_a_burst():
    history = SampleHistory("s", span=10.0, max_samples=50, clock=clock_at(100.0))
    for k in range(1000):
        history.add(99.0 + k / 2000, k)
    assert len(history) == 50 and history.latest().value == 999


@settings(max_examples=100, deadline=None)
@given(
    stamps=st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=30),
    query=st.floats(-1, 11, allow_nan=False),
    span=st.floats(0.1, 12),
)
def test_at_or_before_is_the_newest_kept_sample_not_after_the_query(stamps, query, span):
    history = SampleHistory("s", span=span, clock=clock_at(10.0))
    kept: list[float] = []
    for stamp in stamps:
        try:
            history.add(stamp, stamp)
        except RejectedSampleError:
            assert kept and stamp < max(kept) - span
            continue
        kept = [s for s in set(kept) | {stamp} if s >= max(max(kept, default=stamp), stamp) - span]
    expected = max((s for s in kept if s <= query), default=None)
    found = history.at_or_before(query)
    assert (found.stamp if found else None) == expected


def make_histories():
    front, wrist, joints = (SampleHistory(n, 2.0, clock=clock_at(10.5)) for n in ("/front", "/wrist", "/joint_states"))
    for k in range(10):
        front.add(10.0 + k / 30, ("front", k))
        joints.add(10.0 + k / 100, ("joints", k))
    wrist.add(9.0, ("wrist", 0))
    return front, wrist, joints


def test_selection_takes_the_latest_sample_at_or_before_capture_never_a_later_one():
    front, wrist, joints = make_histories()
    selection = select_samples([front, joints], capture_time=10.05, max_age=0.25)
    assert selection.ok and selection.describe() == ""
    assert selection.samples["/front"].value == ("front", 1)  # 10.033 <= 10.05 < 10.067
    assert selection.samples["/joint_states"].value == ("joints", 5)  # exactly at the capture time


def test_selection_names_each_unusable_stream_and_why():
    front, wrist, joints = make_histories()
    empty = SampleHistory("/side", 2.0)
    selection = select_samples([front, wrist, joints, empty], capture_time=10.02, max_age=0.25)
    assert not selection.ok
    assert set(selection.samples) == {"/front", "/joint_states"}
    reasons = {problem.stream: problem.reason for problem in selection.problems}
    assert reasons["/wrist"] == "newest sample at or before the capture time is 1.020 s old (maximum age 0.250 s)"
    assert reasons["/side"] == "no sample received yet"
    early = select_samples([front], capture_time=9.5, max_age=0.25)
    assert early.describe().startswith(
        "/front: no sample at or before the capture time (the oldest kept one is 0.500 s later; the stream has no "
        "sample that early yet, or clocks are out of sync)"
    )
    full = SampleHistory("/front", 2.0, clock=clock_at(20.0))
    for k in range(100):
        full.add(10.0 + k / 30, k)
    late = select_samples([full], capture_time=10.0, max_age=0.25).describe()
    assert late.endswith("later; the request arrived more than the kept 2.000 s late, or clocks are off)")


def test_history_is_safe_under_concurrent_writers_and_readers():
    history = SampleHistory("s", span=3000.0, clock=clock_at(2000.0))
    errors = []

    def writer(offset: float) -> None:
        for k in range(2000):
            history.add(k + offset, k)

    def reader() -> None:
        for k in range(2000):
            sample = history.at_or_before(k)
            if sample is not None and sample.stamp > k:
                errors.append(sample)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (0.0, 0.5)] + [threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert history.latest().stamp == 1999.5 and len(history) == 4000
    assert history.rejected == {"future": 0, "too old": 0, "not finite": 0}


def test_order_joint_positions_reorders_and_ignores_extra_joints():
    out = order_joint_positions(["b", "extra", "a"], [2.0, 9.0, 1.0], ["a", "b"])
    np.testing.assert_array_equal(out, [1.0, 2.0])
    assert out.dtype == np.float64


@pytest.mark.parametrize(
    "names, positions, message",
    [
        (["a", "b"], [1.0], "2 names but 1 positions"),
        (["a"], [1.0], "lacks b"),
        (["a", "a", "b"], [1.0, 1.0, 2.0], "names 'a' twice"),
        (["a", "b"], [1.0, float("inf")], "non-finite positions for b"),
    ],
)
def test_order_joint_positions_rejects_bad_states(names, positions, message):
    with pytest.raises(ValueError, match=message):
        order_joint_positions(names, positions, ["a", "b"])


def test_rate_limiter_allows_once_per_interval_per_key_and_counts_suppressed():
    limiter = RateLimiter(interval=5.0)
    assert limiter.allow("/cam", 0.0) == (True, 0)
    assert limiter.allow("/cam", 1.0) == (False, 0)
    assert limiter.allow("/cam", 4.9) == (False, 0)
    assert limiter.allow("/other", 4.9) == (True, 0)
    assert limiter.allow("/cam", 5.0) == (True, 2)
    assert limiter.allow("/cam", 10.5) == (True, 0)
