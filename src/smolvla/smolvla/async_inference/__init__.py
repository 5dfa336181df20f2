"""Asynchronous inference core (the SmolVLA paper's action queue), free of ROS and of clocks and threads.

The executor node, the queue simulator and the tests drive the same objects: time and joint state are passed in,
chunks may arrive from any thread.

Tick convention: control ticks t = 0, 1, 2, ... at period dt. An observation captured at tick k yields a chunk whose
action i is for tick k + 1 + i (first_tick = k + 1). Actions for ticks already executed are dropped on arrival.
"""

from smolvla.async_inference.aggregation import AGGREGATIONS, aggregate
from smolvla.async_inference.burst import BurstLog
from smolvla.async_inference.config import MODES, QueueConfig
from smolvla.async_inference.control import ControlLoop, ControlTick, JointStateCheck, JointStateMonitor
from smolvla.async_inference.core import AsyncActionQueue, ChunkOutcome, QueueStatus, RequestSpec, TickResult
from smolvla.async_inference.gate import ChunkGate
from smolvla.async_inference.latency import LatencyEstimator
from smolvla.async_inference.safety import CommandSafety, InvalidChunkError, SafeCommand
from smolvla.async_inference.similarity import SimilarityFilter
from smolvla.async_inference.trajectory import TrajectoryStream

__all__ = [
    "AGGREGATIONS",
    "MODES",
    "AsyncActionQueue",
    "BurstLog",
    "ChunkGate",
    "ChunkOutcome",
    "ControlLoop",
    "ControlTick",
    "InvalidChunkError",
    "JointStateCheck",
    "JointStateMonitor",
    "CommandSafety",
    "LatencyEstimator",
    "QueueConfig",
    "QueueStatus",
    "RequestSpec",
    "SafeCommand",
    "SimilarityFilter",
    "TickResult",
    "TrajectoryStream",
    "aggregate",
]
