"""Serve chunk requests on one worker thread: at most one computation in flight, the latest pending request wins.

A policy answers chunk requests with a computation that takes far longer than a callback may block (the model's
forward pass). The RequestWorker runs that computation on its own thread so the caller's callbacks keep flowing,
and applies the asynchronous-inference rule for requests that arrive while it is busy: only the newest waiting
request is kept, an older waiting one is answered as superseded at once (its observation is already outdated and the
newer request serves the same executor). Every submitted request gets exactly one outcome through the callbacks:
a result, a failure, or a drop (superseded, or the worker shut down before computing it).

Must-go requests (the executor's queue runs dry before a later chunk could arrive) are never skipped for an
optional one: while a must-go request waits, a newer request that is not must-go is dropped instead of it. A newer
must-go request replaces a waiting one as usual (it serves the same need from a fresher observation).

Used by the policy node (the model) and the expert node (a scripted policy behind the same interface).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")

_log = logging.getLogger(__name__)


class DropReason(str, Enum):
    """Why a request was answered without being computed."""

    SUPERSEDED = "superseded"  # a newer request arrived while this one was waiting
    SHUTDOWN = "shutdown"  # the worker was closed while this one was waiting
    MUST_GO_FIRST = "must-go first"  # a must-go request was waiting; this newer, optional one was not taken


@dataclass(frozen=True)
class Dropped(Generic[RequestT]):
    """A request that was not computed; `newer` is the request computed in its place (SUPERSEDED: the newer one
    that replaced it; MUST_GO_FIRST: the waiting must-go request)."""

    request: RequestT
    reason: DropReason
    newer: RequestT | None = None

    def describe(self) -> str:
        """A short human-readable reason, e.g. for a status message."""
        if self.reason is DropReason.SUPERSEDED:
            return "superseded by a newer request before computation started"
        if self.reason is DropReason.MUST_GO_FIRST:
            return "not computed: a must-go request was waiting and goes first"
        return "worker shut down before computation started"


class WorkerClosedError(RuntimeError):
    """Raised by RequestWorker.submit after close()."""


class RequestWorker(Generic[RequestT, ResultT]):
    """One worker thread computing `compute(request)` for submitted requests, newest-pending-wins.

    Callbacks (each may be None):
      on_result(request, result, seconds): the computation returned; seconds = its wall time.
      on_failure(request, error, seconds): the computation raised an Exception.
      on_dropped(dropped): the request was never computed (see Dropped).
    must_go(request): whether a request must not be skipped (None: no request is must-go).
    on_result and on_failure run on the worker thread; on_dropped runs on the thread that called submit() or
    close(). An exception raised by a callback is logged and does not stop the worker.
    """

    def __init__(
        self,
        compute: Callable[[RequestT], ResultT],
        *,
        on_result: Callable[[RequestT, ResultT, float], None] | None = None,
        on_failure: Callable[[RequestT, Exception, float], None] | None = None,
        on_dropped: Callable[[Dropped[RequestT]], None] | None = None,
        must_go: Callable[[RequestT], bool] | None = None,
        name: str = "request-worker",
    ) -> None:
        self._compute = compute
        self._on_result = on_result
        self._on_failure = on_failure
        self._on_dropped = on_dropped
        self._must_go = must_go or (lambda request: False)
        self._cond = threading.Condition()
        self._pending: RequestT | None = None
        self._has_pending = False  # a request may legitimately be None-like; track presence separately
        self._running = False
        self._closed = False
        # Daemon: a computation cannot be interrupted (e.g. a torch forward pass), and a stuck one must not keep
        # the process alive after close() gave up waiting for it.
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """True while a computation runs or a request waits."""
        with self._cond:
            return self._running or self._has_pending

    def submit(self, request: RequestT) -> None:
        """Queue a request. A request already waiting (not yet started) is dropped as superseded by this one, unless
        it is must-go and this one is not: then this one is dropped (MUST_GO_FIRST).

        Raises WorkerClosedError after close().
        """
        with self._cond:
            if self._closed:
                raise WorkerClosedError("the request worker is closed")
            if self._has_pending and self._must_go(self._pending) and not self._must_go(request):
                replaced = Dropped(request, DropReason.MUST_GO_FIRST, self._pending)
                request = self._pending
            else:
                replaced = Dropped(self._pending, DropReason.SUPERSEDED, request) if self._has_pending else None
            self._pending = request
            self._has_pending = True
            self._cond.notify_all()
        if replaced is not None:
            self._call(self._on_dropped, replaced)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no computation runs and none waits; False if `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._running or self._has_pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop accepting requests, drop the waiting one (reason SHUTDOWN) and wait for the running computation.

        Returns True when the worker thread ended within `timeout` seconds (None: wait as long as it takes).
        Idempotent.
        """
        with self._cond:
            self._closed = True
            dropped = Dropped(self._pending, DropReason.SHUTDOWN) if self._has_pending else None
            self._pending = None
            self._has_pending = False
            self._cond.notify_all()
        if dropped is not None:
            self._call(self._on_dropped, dropped)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> RequestWorker[RequestT, ResultT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._has_pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                request = self._pending
                self._pending = None
                self._has_pending = False
                self._running = True
            start = time.perf_counter()
            try:
                result = self._compute(request)
            except Exception as error:  # any failure of one request must not end the worker
                self._call(self._on_failure, request, error, time.perf_counter() - start)
            else:
                self._call(self._on_result, request, result, time.perf_counter() - start)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            _log.exception("request worker callback %r failed", callback)
