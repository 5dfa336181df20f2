import threading
import time

import pytest

from smolvla.request_worker import Dropped, DropReason, RequestWorker, WorkerClosedError


class Recorder:
    """Collects every outcome the worker reports, thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.results: list[tuple[int, object, float]] = []
        self.failures: list[tuple[int, Exception]] = []
        self.dropped: list[Dropped[int]] = []

    def on_result(self, request, result, seconds):
        with self.lock:
            self.results.append((request, result, seconds))

    def on_failure(self, request, error, seconds):
        with self.lock:
            self.failures.append((request, error))

    def on_dropped(self, dropped):
        with self.lock:
            self.dropped.append(dropped)

    def callbacks(self):
        return {"on_result": self.on_result, "on_failure": self.on_failure, "on_dropped": self.on_dropped}


class Gate:
    """A compute function that blocks until released, and records how many computations overlap."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.computed: list[int] = []

    def __call__(self, request: int) -> int:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.started.set()
        self.release.wait(5)
        with self.lock:
            self.active -= 1
            self.computed.append(request)
        return request * 10


def test_result_delivered_with_compute_time():
    rec = Recorder()
    with RequestWorker(lambda r: time.sleep(0.05) or r + 1, **rec.callbacks()) as worker:
        worker.submit(41)
        assert worker.wait_idle(5)
    assert [(r, v) for r, v, _ in rec.results] == [(41, 42)]
    assert rec.results[0][2] >= 0.05
    assert not rec.failures and not rec.dropped


def test_latest_pending_request_wins_and_older_ones_are_superseded():
    rec, gate = Recorder(), Gate()
    with RequestWorker(gate, **rec.callbacks()) as worker:
        worker.submit(1)
        assert gate.started.wait(5)
        for request in (2, 3, 4):
            worker.submit(request)
        assert worker.busy
        # Superseded requests are answered at once, while request 1 is still computing.
        assert [(d.request, d.reason, d.newer) for d in rec.dropped] == [
            (2, DropReason.SUPERSEDED, 3),
            (3, DropReason.SUPERSEDED, 4),
        ]
        assert "superseded" in rec.dropped[0].describe()
        gate.release.set()
        assert worker.wait_idle(5)
    assert gate.computed == [1, 4]
    assert [(r, v) for r, v, _ in rec.results] == [(1, 10), (4, 40)]
    assert gate.max_active == 1


def test_failure_is_reported_and_worker_keeps_serving():
    rec = Recorder()

    def compute(request: int) -> int:
        if request < 0:
            raise ValueError(f"bad request {request}")
        return request

    with RequestWorker(compute, **rec.callbacks()) as worker:
        worker.submit(-1)
        assert worker.wait_idle(5)
        worker.submit(5)
        assert worker.wait_idle(5)
    assert [(r, str(e)) for r, e in rec.failures] == [(-1, "bad request -1")]
    assert [r for r, _, _ in rec.results] == [5]


def test_raising_callback_does_not_stop_the_worker(caplog):
    seen = []

    def on_result(request, result, seconds):
        seen.append(request)
        if request == 1:
            raise RuntimeError("callback broke")

    with RequestWorker(lambda r: r, on_result=on_result) as worker:
        worker.submit(1)
        assert worker.wait_idle(5)
        worker.submit(2)
        assert worker.wait_idle(5)
    assert seen == [1, 2]
    assert "callback broke" in caplog.text


def test_close_drops_the_waiting_request_and_finishes_the_running_one():
    rec, gate = Recorder(), Gate()
    worker = RequestWorker(gate, **rec.callbacks())
    worker.submit(1)
    assert gate.started.wait(5)
    worker.submit(2)
    threading.Timer(0.1, gate.release.set).start()
    assert worker.close(timeout=5)
    assert [(d.request, d.reason) for d in rec.dropped] == [(2, DropReason.SHUTDOWN)]
    assert "shut down" in rec.dropped[0].describe()
    assert [r for r, _, _ in rec.results] == [1]
    with pytest.raises(WorkerClosedError):
        worker.submit(3)
    assert worker.close() is True  # idempotent


def test_close_gives_up_on_a_stuck_computation():
    gate = Gate()
    worker = RequestWorker(gate)
    worker.submit(1)
    assert gate.started.wait(5)
    start = time.monotonic()
    assert worker.close(timeout=0.2) is False
    assert time.monotonic() - start < 2
    gate.release.set()
    assert worker.close(timeout=5) is True


def test_wait_idle_times_out_while_busy():
    gate = Gate()
    with RequestWorker(gate) as worker:
        worker.submit(1)
        assert gate.started.wait(5)
        assert worker.wait_idle(0.05) is False
        gate.release.set()
        assert worker.wait_idle(5) is True
        assert not worker.busy


def test_concurrent_submitters_every_request_gets_exactly_one_outcome():
    rec = Recorder()
    active = [0]
    max_active = [0]
    lock = threading.Lock()

    def compute(request: int) -> int:
        with lock:
            active[0] += 1
            max_active[0] = max(max_active[0], active[0])
        time.sleep(0.001)
        with lock:
            active[0] -= 1
        return request

    with RequestWorker(compute, **rec.callbacks()) as worker:

        def submitter(base: int) -> None:
            for i in range(200):
                worker.submit(base + i)

        threads = [threading.Thread(target=submitter, args=(k * 1000,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert worker.wait_idle(10)
    answered = [r for r, _, _ in rec.results] + [d.request for d in rec.dropped]
    assert sorted(answered) == sorted(k * 1000 + i for k in range(4) for i in range(200))
    assert all(d.reason is DropReason.SUPERSEDED for d in rec.dropped)
    assert rec.results, "at least the last request is computed"
    assert max_active[0] == 1


def test_a_waiting_must_go_request_is_not_skipped_for_an_optional_one():
    rec, gate = Recorder(), Gate()
    must_go = {2, 4}
    with RequestWorker(gate, must_go=lambda r: r in must_go, **rec.callbacks()) as worker:
        worker.submit(1)
        assert gate.started.wait(5)
        worker.submit(2)  # must-go, waits
        worker.submit(3)  # optional: must not push 2 out
        worker.submit(4)  # must-go and newer: replaces 2
        worker.submit(5)  # optional again: dropped, 4 stays
        assert [(d.request, d.reason, d.newer) for d in rec.dropped] == [
            (3, DropReason.MUST_GO_FIRST, 2),
            (2, DropReason.SUPERSEDED, 4),
            (5, DropReason.MUST_GO_FIRST, 4),
        ]
        assert "must-go" in rec.dropped[0].describe()
        gate.release.set()
        assert worker.wait_idle(5)
    assert gate.computed == [1, 4]
