"""The policy side of the chunk protocol without ROS: inputs in, one outcome per chunk request out.

The policy node is wiring around a PolicyRunner: its subscriptions feed camera frames and joint states in
(add_image, add_joint_state), its request subscription calls request(), its SetInstruction service calls
set_instruction(), and the runner answers every request exactly once through one of two callbacks:

  on_chunk(ChunkResult): actions for ticks observation_tick + 1 ... (publish an ActionChunk and an ok status);
  on_no_chunk(NoChunk): why no chunk came (stale or missing input, bad image, model failure, superseded).

A request selects its samples at once (the latest at or before its capture time, within the maximum age), then
waits for the single worker thread (RequestWorker: at most one model call in flight, the newest waiting request
wins). Images are decoded on the worker, so subscriptions stay cheap.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from smolvla.health import Health, OutcomeStats, ServingHealth
from smolvla.images import CompressedImage, ImageConversionError, RawImage
from smolvla.instruction import InstructionCheck, check_instruction
from smolvla.joint_units import JointConverter
from smolvla.observation import SampleHistory, order_joint_positions, select_samples
from smolvla.request_worker import Dropped, DropReason, RequestWorker

#: predict(images per model camera slot (None = no camera), state, instruction) -> (chunk_size, action_dim) array;
#: SmolVLAPolicy.predict_chunk fits. For a request with previous actions (real-time chunking) it is called with the
#: keywords previous_actions ((m, action_dim), model units) and delay (ticks) as well.
PredictFn = Callable[[list[np.ndarray | None], np.ndarray, str], np.ndarray]

#: Largest observation tick a request may carry: first_tick = tick + 1 and the ticks of a chunk's points must stay
#: within the int64 of ActionChunk.first_tick. No run reaches it (2^62 ticks at 1 kHz are 146 million years).
MAX_OBSERVATION_TICK = 2**62

#: Samples kept at most per input, whatever the span: a flood cannot exhaust memory. Cameras: 200 frames per second
#: over the default span; joint states: 2 kHz.
MAX_CAMERA_SAMPLES = 256
MAX_JOINT_SAMPLES = 4096


def invalid_request(observation_tick: int, capture_time: float) -> str | None:
    """Why a chunk request with these fields cannot be served (a tick outside 0..MAX_OBSERVATION_TICK, a capture
    time that is not a positive finite time), or None."""
    if not (math.isfinite(capture_time) and capture_time > 0) or not 0 <= observation_tick <= MAX_OBSERVATION_TICK:
        return f"invalid request: capture time {capture_time}, observation tick {observation_tick}"
    return None


@dataclass(frozen=True)
class ChunkJob:
    """A request with its observation inputs selected, waiting for (or in) the model."""

    request_id: int
    observation_tick: int
    capture_time: float
    must_go: bool
    instruction: str
    images: tuple[RawImage | CompressedImage | None, ...]  # one per model camera slot
    image_streams: tuple[str | None, ...]  # the stream each slot's image came from
    state: np.ndarray  # joint positions in joint_names order, radians
    # Real-time chunking: the executor's queued actions for ticks observation_tick + 1 + i (joint_names order,
    # radians), None without; and its estimate of the ticks until the chunk arrives.
    previous_actions: np.ndarray | None = None
    delay_ticks: int = 0


@dataclass(frozen=True)
class ChunkResult:
    """A computed chunk: actions[i] is the command for tick job.observation_tick + 1 + i (radians).

    model_seconds: time inside the model (predict); compute_seconds: the whole computation on the worker
    (image decoding, unit conversion, model, checks).
    """

    job: ChunkJob
    actions: np.ndarray
    model_seconds: float
    compute_seconds: float

    @property
    def first_tick(self) -> int:
        """Tick of actions[0]."""
        return self.job.observation_tick + 1


class NoChunkKind(IntEnum):
    """Why a request got no chunk."""

    INPUT = 1  # stale or missing input, or an image that cannot be decoded
    SUPERSEDED = 2  # a newer request replaced it before computation
    FAILED = 3  # the model or its output failed
    SHUTDOWN = 4  # the runner was closed before computing it
    INVALID = 5  # the request itself is malformed


@dataclass(frozen=True)
class NoChunk:
    """A request answered without a chunk, with a human-readable reason."""

    request_id: int
    kind: NoChunkKind
    reason: str
    instruction: str


class _ImageError(Exception):
    """An image of one stream could not be decoded (internal: turned into a NoChunk of kind INPUT)."""

    def __init__(self, stream: str, error: ImageConversionError) -> None:
        super().__init__(f"camera {stream}: {error}")
        self.stream = stream


class PolicyRunner:
    """Chunk requests in, chunks or reasons out; see the module docstring.

    predict: the model (SmolVLAPolicy.predict_chunk). camera_slots: per model image slot, the stream that feeds it
    or None for a slot left empty (masked); `smolvla.camera_mapping` says which. joint_names: order of the state
    vector and of the actions (len must equal the model's state and action size). units: the joint units the model
    was trained with (`smolvla.joint_units`); states are converted from radians and actions back to radians.
    None: the model speaks radians.
    Each input keeps the samples of the last max_sample_age + max_request_delay seconds (a request handled up to
    max_request_delay seconds after its capture time still finds its samples, at any sensor rate); samples stamped
    more than future_tolerance seconds ahead of `clock` are refused and counted.
    """

    def __init__(
        self,
        predict: PredictFn,
        *,
        camera_slots: Sequence[str | None],
        joint_names: Sequence[str],
        max_sample_age: float,
        instruction: str,
        on_chunk: Callable[[ChunkResult], None],
        on_no_chunk: Callable[[NoChunk], None],
        units: JointConverter | None = None,
        max_request_delay: float = 1.0,
        future_tolerance: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        streams = [stream for stream in camera_slots if stream is not None]
        if not streams:
            raise ValueError(f"at least one camera slot needs a stream, got {list(camera_slots)}")
        if len(set(streams)) != len(streams):
            raise ValueError(f"camera streams repeat: {streams}")
        if not joint_names or len(set(joint_names)) != len(joint_names):
            raise ValueError(f"joint names must be unique and not empty, got {list(joint_names)}")
        if not (math.isfinite(max_sample_age) and max_sample_age > 0):
            raise ValueError(f"max_sample_age must be a positive number of seconds, got {max_sample_age}")
        if not (math.isfinite(max_request_delay) and max_request_delay >= 0):
            raise ValueError(f"max_request_delay must be >= 0 seconds, got {max_request_delay}")
        units = units or JointConverter(joint_names, ("radians",) * len(joint_names))
        if units.joint_names != tuple(joint_names):
            raise ValueError(f"the unit conversion is for joints {list(units.joint_names)}, not {list(joint_names)}")
        check = check_instruction(instruction)
        if not check.accepted:
            raise ValueError(f"default instruction refused: {check.message}")
        self._predict = predict
        self.camera_slots = tuple(camera_slots)
        self.camera_streams = tuple(streams)
        self.joint_names = tuple(joint_names)
        self.max_sample_age = max_sample_age
        self.units = units
        self._clock = clock
        self._on_chunk = on_chunk
        self._on_no_chunk = on_no_chunk
        span = max_sample_age + max_request_delay
        self._cameras = {
            name: SampleHistory(
                name, span, future_tolerance=future_tolerance, max_samples=MAX_CAMERA_SAMPLES, clock=clock
            )
            for name in self.camera_streams
        }
        self._joints: SampleHistory[np.ndarray] = SampleHistory(
            "joint states", span, future_tolerance=future_tolerance, max_samples=MAX_JOINT_SAMPLES, clock=clock
        )
        self._lock = threading.Lock()
        self._instruction = check.instruction
        self._health = ServingHealth(
            (kind.name.lower() for kind in NoChunkKind),
            [*self._cameras.values(), self._joints],
            max_sample_age,
            clock=clock,
        )
        self._worker: RequestWorker[ChunkJob, ChunkResult] = RequestWorker(
            self._compute,
            on_result=self._finished,
            on_failure=self._failed,
            on_dropped=self._dropped,
            must_go=lambda job: job.must_go,
            name="policy-worker",
        )

    # -- inputs ----------------------------------------------------------------------------------------------------

    def add_image(self, stream: str, stamp: float, image: RawImage | CompressedImage) -> None:
        """Keep a camera frame (undecoded) with its capture stamp in seconds; raises ValueError (with the reason,
        counted in the diagnostics) for a stamp that is not finite, in the future or outside the kept span."""
        self._cameras[stream].add(stamp, image)

    def add_joint_state(self, stamp: float, names: Sequence[str], positions: Sequence[float]) -> None:
        """Keep a joint state; raises ValueError (with the reason) when it lacks a joint, has bad values or a stamp
        add_image would refuse."""
        self._joints.add(stamp, order_joint_positions(names, positions, self.joint_names))

    @property
    def stats(self) -> OutcomeStats:
        """Counters of the requests handled so far."""
        return self._health.stats

    @property
    def instruction(self) -> str:
        """The instruction the next request will be conditioned on."""
        with self._lock:
            return self._instruction

    def set_instruction(self, text: str) -> InstructionCheck:
        """Validate and, if accepted, use `text` from the next request on."""
        check = check_instruction(text)
        if check.accepted:
            with self._lock:
                self._instruction = check.instruction
        return check

    def input_ages(self, now: float | None = None) -> dict[str, float | None]:
        """Seconds since the newest sample of each input (None: nothing received yet)."""
        return self._health.input_ages(now)

    # -- requests --------------------------------------------------------------------------------------------------

    def request(
        self,
        request_id: int,
        observation_tick: int,
        capture_time: float,
        must_go: bool = False,
        *,
        previous_joint_names: Sequence[str] = (),
        previous_actions: Sequence[Sequence[float]] | np.ndarray | None = None,
        delay_ticks: int = 0,
    ) -> None:
        """Handle a chunk request: answered later through on_chunk/on_no_chunk (possibly before this returns).

        Real-time chunking: previous_actions (m rows of one position per previous_joint_names entry, radians) are
        the executor's queued actions for the requested chunk's first m ticks, delay_ticks its estimate of the
        ticks until the chunk arrives; the model then samples the chunk guided to continue them. None or m = 0: no
        guidance. Previous actions that do not name every joint make the request INVALID.
        """
        instruction = self.instruction
        self._health.requested()
        invalid = invalid_request(observation_tick, capture_time)
        previous = None
        if not invalid and previous_actions is not None and len(previous_actions):
            try:
                previous = np.array(
                    [order_joint_positions(previous_joint_names, row, self.joint_names) for row in previous_actions]
                )
            except ValueError as error:
                invalid = f"invalid previous actions: {error}"
        if not invalid and not (isinstance(delay_ticks, int) and delay_ticks >= 0):
            invalid = f"invalid delay_ticks {delay_ticks!r}"
        if invalid:
            self._answer(NoChunk(request_id, NoChunkKind.INVALID, invalid, instruction))
            return
        histories = [*self._cameras.values(), self._joints]
        selection = select_samples(histories, capture_time, self.max_sample_age)
        if not selection.ok:
            self._answer(NoChunk(request_id, NoChunkKind.INPUT, selection.describe(), instruction))
            return
        slots = self.camera_slots
        job = ChunkJob(
            request_id=request_id,
            observation_tick=observation_tick,
            capture_time=capture_time,
            must_go=must_go,
            instruction=instruction,
            images=tuple(None if s is None else selection.samples[s].value for s in slots),
            image_streams=tuple(slots),
            state=selection.samples[self._joints.name].value,
            previous_actions=previous,
            delay_ticks=delay_ticks,
        )
        self._worker.submit(job)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no request waits or computes (tests, benchmarks)."""
        return self._worker.wait_idle(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop: a waiting request is answered with SHUTDOWN, a running computation is awaited up to timeout."""
        return self._worker.close(timeout)

    # -- worker side -----------------------------------------------------------------------------------------------

    def _compute(self, job: ChunkJob) -> ChunkResult:
        start = time.perf_counter()
        self._health.set_computing(True)
        try:
            images: list[np.ndarray | None] = []
            for stream, image in zip(job.image_streams, job.images, strict=True):
                try:
                    images.append(None if image is None else image.to_rgb())
                except ImageConversionError as error:
                    raise _ImageError(stream, error) from error
            state = self.units.to_policy(job.state).astype(np.float32)
            model_start = time.perf_counter()
            if job.previous_actions is None:
                raw = self._predict(images, state, job.instruction)
            else:
                previous = self.units.to_policy(job.previous_actions).astype(np.float32)
                raw = self._predict(images, state, job.instruction, previous_actions=previous, delay=job.delay_ticks)
            model_seconds = time.perf_counter() - model_start
            actions = np.asarray(raw, dtype=np.float64)
            if actions.ndim != 2 or actions.shape[1] != len(self.joint_names) or actions.shape[0] < 1:
                raise ValueError(
                    f"model returned actions of shape {actions.shape}, expected (n, {len(self.joint_names)})"
                )
            if not np.all(np.isfinite(actions)):
                raise ValueError("model returned non-finite actions")
            actions = self.units.to_radians(actions)
        finally:
            self._health.set_computing(False)
        return ChunkResult(job, actions, model_seconds, time.perf_counter() - start)

    def _finished(self, job: ChunkJob, result: ChunkResult, seconds: float) -> None:
        self._health.chunk(result.model_seconds)
        self._on_chunk(result)

    def _failed(self, job: ChunkJob, error: Exception, seconds: float) -> None:
        if isinstance(error, _ImageError):
            self._answer(NoChunk(job.request_id, NoChunkKind.INPUT, str(error), job.instruction))
        else:
            reason = f"model failed: {type(error).__name__}: {error}"
            self._answer(NoChunk(job.request_id, NoChunkKind.FAILED, reason, job.instruction))

    def _dropped(self, dropped: Dropped[ChunkJob]) -> None:
        job = dropped.request
        if dropped.reason is DropReason.SUPERSEDED:
            kind, reason = NoChunkKind.SUPERSEDED, f"superseded by request {dropped.newer.request_id}"
        elif dropped.reason is DropReason.MUST_GO_FIRST:
            kind = NoChunkKind.SUPERSEDED
            reason = f"not computed: must-go request {dropped.newer.request_id} was waiting and goes first"
        else:
            kind, reason = NoChunkKind.SHUTDOWN, "policy shutting down"
        self._answer(NoChunk(job.request_id, kind, reason, job.instruction))

    def _answer(self, outcome: NoChunk) -> None:
        self._health.no_chunk(
            outcome.kind.name.lower(),
            f"request {outcome.request_id}: {outcome.reason}",
            counts_as_failure=outcome.kind not in (NoChunkKind.SUPERSEDED, NoChunkKind.SHUTDOWN),
            model_failure=outcome.kind is NoChunkKind.FAILED,
        )
        self._on_no_chunk(outcome)

    # -- diagnostics -----------------------------------------------------------------------------------------------

    def health(self, now: float | None = None) -> Health:
        """What the runner can do now (see smolvla.health.ServingHealth), with the instruction in the values."""
        return self._health.report(now, extra=[("instruction", self.instruction)])
