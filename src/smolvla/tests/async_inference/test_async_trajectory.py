"""TrajectoryStream: chunks streamed to a trajectory controller execute what position output would command."""

import numpy as np
import pytest

from smolvla.async_inference.config import QueueConfig
from smolvla.async_inference.control import ControlLoop
from smolvla.async_inference.core import AsyncActionQueue
from smolvla.async_inference.safety import CommandSafety
from smolvla.async_inference.trajectory import TrajectoryStream

DT = 0.1
N = 8
LOWER, UPPER, MAX_STEP = [-1.0, -1.0], [1.0, 1.0], [0.05, 0.05]
MAX_ACCELERATION = 2.0  # rad/s^2: 0.02 rad per tick per tick
Q0 = np.array([0.1, -0.2])


def make_loop(mode: str = "sync") -> tuple[ControlLoop, TrajectoryStream]:
    config = QueueConfig(chunk_size=N, control_period=DT, mode=mode, similarity_epsilon=0.0, aggregation="latest_only")
    queue = AsyncActionQueue(config, [2.0, 2.0])
    safety = CommandSafety(["a", "b"], LOWER, UPPER, np.array(MAX_STEP) / DT, MAX_ACCELERATION, DT)
    return ControlLoop(queue, safety, joint_state_timeout=0.25), TrajectoryStream(safety, DT)


def chunk(first_tick: int, slope: float) -> np.ndarray:
    actions = np.tile(Q0, (N, 1))
    actions[:, 0] += slope * (first_tick + np.arange(N))
    return actions


def tick(loop: ControlLoop, stream: TrajectoryStream, now: float, state=Q0):
    if state is not None:
        loop.update_joint_state(state, now)
    result = loop.step(now)
    queued = loop.queue.queued_actions() if result.queue is not None else None
    return result, stream.update(result.command, queued)


def test_plan_limits_every_point_like_a_per_tick_command_and_times_them_one_period_apart():
    safety = CommandSafety(["a", "b"], LOWER, UPPER, np.array(MAX_STEP) / DT, 1e6, DT)  # no acceleration limit
    stream = TrajectoryStream(safety, DT)
    command = safety.command(None, np.array([0.9, 0.0])).positions
    points = stream.plan(command, np.array([[1.5, 0.01], [1.5, 0.5], [0.9, 0.5]]))
    assert points == pytest.approx(np.array([[0.9, 0.0], [0.95, 0.01], [1.0, 0.06], [0.95, 0.11]]))
    assert safety.last_command == pytest.approx(command)  # planning changed nothing
    assert stream.times(3) == pytest.approx([0.1, 0.2, 0.3])
    assert stream.plan(command, None).shape == (1, 2)


def test_a_chunk_is_sent_once_and_the_controller_then_runs_exactly_the_per_tick_commands():
    loop, stream = make_loop()
    now = 0.0
    first, sent = tick(loop, stream, now)
    assert sent == pytest.approx(Q0[None])  # the first command, the measured state: a hold
    request = first.request
    first_tick = request.observation_tick + 1
    loop.queue.add_chunk(request.request_id, first_tick, chunk(first_tick, 0.02), now)
    now += DT
    result, trajectory = tick(loop, stream, now)
    assert trajectory is not None and len(trajectory) == N  # this tick's command + the N - 1 queued actions
    commands = [result.command]
    for _ in range(N + 3):  # the chunk runs out, the executor holds its last command
        now += DT
        result, sent = tick(loop, stream, now)
        assert sent is None, "nothing changed: the controller keeps the trajectory it has"
        commands.append(result.command)
    # What the controller executes, point by point, is what position output would have sent tick by tick.
    assert np.array(commands[:N]) == pytest.approx(trajectory, abs=1e-12)
    assert np.array(commands[N:]) == pytest.approx(np.tile(trajectory[-1], (4, 1)))


def test_a_new_chunk_replaces_the_trajectory_and_a_lost_joint_state_sends_one_hold():
    loop, stream = make_loop(mode="continuous")  # requests again as soon as the first chunk is answered
    request = tick(loop, stream, 0.0)[0].request
    loop.queue.add_chunk(request.request_id, request.observation_tick + 1, chunk(request.observation_tick + 1, 0.02), 0)
    result, first = tick(loop, stream, DT)
    second_request = result.request
    assert first is not None and second_request is not None
    assert tick(loop, stream, 2 * DT)[1] is None
    # The answer to the second request (a steeper plan, replacing the queued actions) changes the plan.
    first_tick = second_request.observation_tick + 1
    assert loop.queue.add_chunk(second_request.request_id, first_tick, chunk(first_tick, 0.04), 2 * DT).accepted
    result, replaced = tick(loop, stream, 3 * DT)
    assert replaced == pytest.approx(stream.plan(result.command, loop.queue.queued_actions()))
    assert replaced[-1][0] > first[-1][0]  # the steeper chunk reaches further
    # No fresh joint state: the tick holds, braking to a stop at the acceleration limit; the controller gets each
    # braking command alone, then nothing once the arm stands.
    now = 3 * DT + 1.0
    held, hold = tick(loop, stream, now, state=None)
    assert hold == pytest.approx(held.command[None]) and held.command[0] > result.command[0]
    sent = hold
    while sent is not None:
        now += DT
        held, sent = tick(loop, stream, now, state=None)
        assert sent is None or sent == pytest.approx(held.command[None])
    assert tick(loop, stream, now + DT, state=None)[1] is None
    # Joint states back: the queue continues, and the controller gets the rest of the plan again.
    _, resumed = tick(loop, stream, now + 2 * DT, state=held.command)
    assert resumed is not None and len(resumed) > 1
