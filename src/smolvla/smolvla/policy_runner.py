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
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from smolvla.images import CompressedImage, ImageConversionError, RawImage
from smolvla.instruction import InstructionCheck, check_instruction
from smolvla.joint_units import JointConverter
from smolvla.observation import SampleHistory, order_joint_positions, select_samples
from smolvla.request_worker import Dropped, RequestWorker

#: predict(images per model camera slot (None = no camera), state, instruction) -> (chunk_size, action_dim) array;
#: SmolVLAPolicy.predict_chunk fits.
PredictFn = Callable[[list[np.ndarray | None], np.ndarray, str], np.ndarray]

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


@dataclass
class RunnerStats:
    """Counters for diagnostics: requests handled, chunks produced, requests without a chunk by kind."""

    requests: int = 0
    chunks: int = 0
    no_chunk: dict[str, int] = field(default_factory=lambda: {kind.name.lower(): 0 for kind in NoChunkKind})
    last_model_seconds: float | None = None
    last_no_chunk: str = ""
    last_failed: bool = False  # the most recent outcome was a model failure
    computing: bool = False


class Level(IntEnum):
    """Health levels, numbered as diagnostic_msgs/DiagnosticStatus does."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass(frozen=True)
class Health:
    """One diagnostics report: level, a one-line message and key/value details."""

    level: Level
    message: str
    values: tuple[tuple[str, str], ...]


class PolicyRunner:
    """Chunk requests in, chunks or reasons out; see the module docstring.

    predict: the model (SmolVLAPolicy.predict_chunk). camera_slots: per model image slot, the stream that feeds it
    or None for a slot left empty (masked); `smolvla.camera_mapping` says which. joint_names: order of the state
    vector and of the actions (len must equal the model's state and action size). units: the joint units the model
    was trained with (`smolvla.joint_units`); states are converted from radians and actions back to radians.
    None: the model speaks radians.
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
        history: int = 16,
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
        self._cameras = {name: SampleHistory(name, history) for name in self.camera_streams}
        self._joints: SampleHistory[np.ndarray] = SampleHistory("joint states", history)
        self._lock = threading.Lock()
        self._instruction = check.instruction
        self.stats = RunnerStats()
        self._worker: RequestWorker[ChunkJob, ChunkResult] = RequestWorker(
            self._compute,
            on_result=self._finished,
            on_failure=self._failed,
            on_dropped=self._dropped,
            name="policy-worker",
        )

    # -- inputs ----------------------------------------------------------------------------------------------------

    def add_image(self, stream: str, stamp: float, image: RawImage | CompressedImage) -> None:
        """Keep a camera frame (undecoded) with its capture stamp in seconds."""
        self._cameras[stream].add(stamp, image)

    def add_joint_state(self, stamp: float, names: Sequence[str], positions: Sequence[float]) -> None:
        """Keep a joint state; raises ValueError (with the reason) when it lacks a joint or has bad values."""
        self._joints.add(stamp, order_joint_positions(names, positions, self.joint_names))

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
        now = self._clock() if now is None else now
        ages: dict[str, float | None] = {}
        for history in (*self._cameras.values(), self._joints):
            latest = history.latest()
            ages[history.name] = None if latest is None else now - latest.stamp
        return ages

    # -- requests --------------------------------------------------------------------------------------------------

    def request(self, request_id: int, observation_tick: int, capture_time: float, must_go: bool = False) -> None:
        """Handle a chunk request: answered later through on_chunk/on_no_chunk (possibly before this returns)."""
        instruction = self.instruction
        with self._lock:
            self.stats.requests += 1
        if not (math.isfinite(capture_time) and capture_time > 0) or observation_tick < 0:
            self._answer(
                NoChunk(
                    request_id,
                    NoChunkKind.INVALID,
                    f"invalid request: capture time {capture_time}, observation tick {observation_tick}",
                    instruction,
                )
            )
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
        with self._lock:
            self.stats.computing = True
        try:
            images: list[np.ndarray | None] = []
            for stream, image in zip(job.image_streams, job.images, strict=True):
                try:
                    images.append(None if image is None else image.to_rgb())
                except ImageConversionError as error:
                    raise _ImageError(stream, error) from error
            state = self.units.to_policy(job.state)
            model_start = time.perf_counter()
            raw = self._predict(images, state.astype(np.float32), job.instruction)
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
            with self._lock:
                self.stats.computing = False
        return ChunkResult(job, actions, model_seconds, time.perf_counter() - start)

    def _finished(self, job: ChunkJob, result: ChunkResult, seconds: float) -> None:
        with self._lock:
            self.stats.chunks += 1
            self.stats.last_model_seconds = result.model_seconds
            self.stats.last_failed = False
        self._on_chunk(result)

    def _failed(self, job: ChunkJob, error: Exception, seconds: float) -> None:
        if isinstance(error, _ImageError):
            self._answer(NoChunk(job.request_id, NoChunkKind.INPUT, str(error), job.instruction))
        else:
            reason = f"model failed: {type(error).__name__}: {error}"
            self._answer(NoChunk(job.request_id, NoChunkKind.FAILED, reason, job.instruction))

    def _dropped(self, dropped: Dropped[ChunkJob]) -> None:
        job = dropped.request
        if dropped.newer is not None:
            kind, reason = NoChunkKind.SUPERSEDED, f"superseded by request {dropped.newer.request_id}"
        else:
            kind, reason = NoChunkKind.SHUTDOWN, "policy shutting down"
        self._answer(NoChunk(job.request_id, kind, reason, job.instruction))

    def _answer(self, outcome: NoChunk) -> None:
        with self._lock:
            self.stats.no_chunk[outcome.kind.name.lower()] += 1
            self.stats.last_no_chunk = f"request {outcome.request_id}: {outcome.reason}"
            if outcome.kind is not NoChunkKind.SUPERSEDED:
                self.stats.last_failed = outcome.kind is NoChunkKind.FAILED
        self._on_no_chunk(outcome)

    # -- diagnostics -----------------------------------------------------------------------------------------------

    def health(self, now: float | None = None) -> Health:
        """ERROR after a model failure (until the next chunk), WARN while an input is missing or older than the
        maximum sample age, else OK; with input ages, counters and the last model time."""
        ages = self.input_ages(now)
        with self._lock:
            stats = self.stats
            model_time = "none" if stats.last_model_seconds is None else f"{stats.last_model_seconds:.4f}"
            values = [
                ("state", "computing" if stats.computing else "idle"),
                ("instruction", self._instruction),
                ("requests", str(stats.requests)),
                ("chunks", str(stats.chunks)),
                *((f"no chunk: {kind}", str(count)) for kind, count in stats.no_chunk.items()),
                ("last model time [s]", model_time),
                ("last request without chunk", stats.last_no_chunk or "none"),
            ]
            failed = stats.last_failed
            last = stats.last_no_chunk
        values += [
            (f"age of {name} [s]", "never received" if age is None else f"{age:.3f}") for name, age in ages.items()
        ]
        stale = [name for name, age in ages.items() if age is None or age > self.max_sample_age]
        if failed:
            return Health(Level.ERROR, f"model failing: {last}", tuple(values))
        if stale:
            return Health(Level.WARN, f"stale or missing input: {', '.join(stale)}", tuple(values))
        return Health(Level.OK, "ready", tuple(values))
