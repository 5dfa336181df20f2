import threading

import numpy as np
import pytest

from smolvla.health import Level
from smolvla.images import CompressedImage, RawImage
from smolvla.joint_units import JointConverter, MotorCalibration
from smolvla.policy_runner import NoChunkKind, PolicyRunner
from smolvla.robot_interface import SO100_JOINT_NAMES, UNIT_PRESETS

JOINTS = list(SO100_JOINT_NAMES)


def frame(value: int, encoding: str = "rgb8", size: int = 4) -> RawImage:
    """A flat frame whose pixel value identifies it."""
    channels = {"rgb8": 3, "mono8": 1, "mono16": 2}[encoding]
    return RawImage(encoding, size, size, size * channels, bytes([value]) * (size * size * channels))


def transparent_predict(images, state, instruction):
    """A real, inspectable policy: action[i, j] = state[j] + first image's mean / 1000 + i, plus which slots had
    images (in the last column's hundreds) and the instruction's length (tens of thousands)."""
    present = sum(10**k for k, image in enumerate(images) if image is not None)
    base = float(images[0].mean()) / 1000 if images[0] is not None else 0.0
    actions = np.array([state + base + i for i in range(5)], dtype=np.float32)
    actions[:, -1] += 100 * present + 10000 * len(instruction)
    return actions


class Outcomes:
    def __init__(self) -> None:
        self.chunks = []
        self.no_chunks = []
        self.event = threading.Event()

    def on_chunk(self, result) -> None:
        self.chunks.append(result)
        self.event.set()

    def on_no_chunk(self, outcome) -> None:
        self.no_chunks.append(outcome)
        self.event.set()


def make_runner(outcomes, predict=transparent_predict, **kwargs) -> PolicyRunner:
    options = dict(
        camera_slots=["/front", "/wrist", None],
        joint_names=JOINTS,
        max_sample_age=0.25,
        instruction="pick up the cube",
        on_chunk=outcomes.on_chunk,
        on_no_chunk=outcomes.on_no_chunk,
        clock=lambda: 100.0,
    )
    options.update(kwargs)
    return PolicyRunner(predict, **options)


def feed(runner, t0=99.0, frames=10):
    for k in range(frames):
        runner.add_image("/front", t0 + k / 30, frame(k))
        runner.add_image("/wrist", t0 + k / 30, frame(200))
    state = np.arange(6) * 0.1
    runner.add_joint_state(t0 + 0.1, list(reversed(JOINTS)), list(reversed(state)))
    return state


def test_chunk_is_computed_from_the_samples_at_or_before_capture_time():
    outcomes = Outcomes()
    runner = make_runner(outcomes)
    state = feed(runner)
    runner.request(request_id=7, observation_tick=41, capture_time=99.0 + 4.5 / 30)
    assert runner.wait_idle(5)
    runner.close()
    assert not outcomes.no_chunks
    (result,) = outcomes.chunks
    assert result.job.request_id == 7 and result.first_tick == 42 and result.job.instruction == "pick up the cube"
    assert result.actions.shape == (5, 6) and result.actions.dtype == np.float64
    # Frame 4 (stamped 99.133) is the latest at or before 99.15; frame 5 would leak the future.
    np.testing.assert_allclose(result.actions[0, :5], state[:5] + 4 / 1000, atol=1e-6)
    # Slots 0 and 1 filled, slot 2 masked; the instruction has 16 characters.
    np.testing.assert_allclose(result.actions[0, 5], state[5] + 4 / 1000 + 100 * 11 + 10000 * 16, rtol=1e-6)
    assert 0 <= result.model_seconds <= result.compute_seconds


def test_each_stream_feeds_the_slot_it_is_mapped_to():
    outcomes = Outcomes()
    runner = make_runner(outcomes, camera_slots=[None, "/wrist", "/front"])
    state = feed(runner)
    runner.request(1, 0, 99.0 + 4.5 / 30)
    assert runner.wait_idle(5)
    runner.close()
    (result,) = outcomes.chunks
    assert result.job.image_streams == (None, "/wrist", "/front")
    # Slot 0 empty (no image mean added), slots 1 and 2 filled.
    np.testing.assert_allclose(result.actions[0, 5], state[5] + 100 * 110 + 10000 * 16, rtol=1e-6)


def test_stale_or_missing_inputs_give_no_chunk_with_the_reason():
    outcomes = Outcomes()
    calls = []
    runner = make_runner(outcomes, predict=lambda *a: calls.append(a) or transparent_predict(*a))
    runner.request(1, 0, 100.0)
    runner.add_image("/front", 99.9, frame(1))
    runner.add_joint_state(99.95, JOINTS, [0.0] * 6)
    runner.add_image("/wrist", 99.0, frame(1))  # the wrist camera's newest frame is too old
    runner.add_image("/wrist", 99.5, frame(1))
    runner.request(2, 5, 100.0)
    runner.close()
    assert not calls and not outcomes.chunks
    first, second = outcomes.no_chunks
    assert first.kind is NoChunkKind.INPUT and "/front: no sample received yet" in first.reason
    assert "joint states: no sample received yet" in first.reason
    assert second.request_id == 2 and second.reason.startswith("/wrist: newest sample at or before the capture time")
    assert "/front" not in second.reason
    health = runner.health(now=100.0)
    assert health.level is Level.WARN and "/wrist" in health.message


def test_undecodable_image_gives_no_chunk_naming_the_camera():
    outcomes = Outcomes()
    runner = make_runner(outcomes)
    feed(runner)
    runner.add_image("/wrist", 99.3, frame(3, encoding="mono16"))
    runner.request(3, 9, 99.31)
    runner.add_image("/wrist", 99.32, CompressedImage("jpeg", b"garbage"))
    runner.wait_idle(5)
    runner.request(4, 10, 99.33)
    assert runner.wait_idle(5)
    runner.close()
    reasons = [o.reason for o in outcomes.no_chunks]
    assert reasons[0].startswith("camera /wrist: unsupported encoding 'mono16'")
    assert reasons[1].startswith("camera /wrist: compressed image is not JPEG or PNG")
    assert all(o.kind is NoChunkKind.INPUT for o in outcomes.no_chunks)


def test_instruction_change_applies_to_the_next_request_and_bad_ones_are_refused():
    outcomes = Outcomes()
    runner = make_runner(outcomes)
    feed(runner)
    check = runner.set_instruction("  stack the   blocks ")
    assert check.accepted and runner.instruction == "stack the blocks"
    assert not runner.set_instruction("   ").accepted
    assert runner.instruction == "stack the blocks"
    runner.request(1, 0, 99.2)
    assert runner.wait_idle(5)
    runner.close()
    assert outcomes.chunks[0].job.instruction == "stack the blocks"
    assert dict(runner.health(99.3).values)["instruction"] == "stack the blocks"


def test_model_failure_and_bad_output_are_reported_and_recovered_from():
    outcomes = Outcomes()
    behaviour = {"mode": "raise"}

    def predict(images, state, instruction):
        if behaviour["mode"] == "raise":
            raise RuntimeError("out of memory")
        if behaviour["mode"] == "shape":
            return np.zeros((5, 4), np.float32)
        if behaviour["mode"] == "nan":
            return np.full((5, 6), np.nan, np.float32)
        return transparent_predict(images, state, instruction)

    runner = make_runner(outcomes, predict=predict)
    feed(runner)
    for mode in ("raise", "shape", "nan", "ok"):
        behaviour["mode"] = mode
        runner.request(len(outcomes.no_chunks) + len(outcomes.chunks), 0, 99.2)
        assert runner.wait_idle(5)
        if mode == "nan":
            assert runner.health(99.2).level is Level.ERROR
    runner.close()
    assert [o.reason for o in outcomes.no_chunks] == [
        "model failed: RuntimeError: out of memory",
        "model failed: ValueError: model returned actions of shape (5, 4), expected (n, 6)",
        "model failed: ValueError: model returned non-finite actions",
    ]
    assert all(o.kind is NoChunkKind.FAILED for o in outcomes.no_chunks)
    assert len(outcomes.chunks) == 1 and runner.health(99.2).level is Level.OK


def computing_runner(outcomes: Outcomes):
    """A runner busy with request 1 (tick 10) until the returned event is set: its model waits for it."""
    release, started = threading.Event(), threading.Event()

    def slow(images, state, instruction):
        started.set()
        release.wait(5)
        return transparent_predict(images, state, instruction)

    runner = make_runner(outcomes, predict=slow)
    feed(runner)
    runner.request(1, 10, 99.2)
    assert started.wait(5)
    return runner, release


def test_requests_arriving_while_computing_follow_latest_wins():
    outcomes = Outcomes()
    runner, release = computing_runner(outcomes)
    runner.request(2, 11, 99.2)
    runner.request(3, 12, 99.2, must_go=True)
    assert [(o.request_id, o.kind, o.reason) for o in outcomes.no_chunks] == [
        (2, NoChunkKind.SUPERSEDED, "superseded by request 3")
    ]
    release.set()
    assert runner.wait_idle(5)
    runner.close()
    assert [(r.job.request_id, r.first_tick, r.job.must_go) for r in outcomes.chunks] == [(1, 11, False), (3, 13, True)]
    assert runner.stats.no_chunk["superseded"] == 1 and runner.stats.chunks == 2


def test_invalid_requests_and_joint_states_are_refused():
    outcomes = Outcomes()
    runner = make_runner(outcomes)
    runner.request(1, -1, 99.0)
    runner.request(2, 0, float("nan"))
    runner.request(3, 2**63 - 1, 99.0)  # first_tick would overflow ActionChunk's int64
    assert [o.kind for o in outcomes.no_chunks] == [NoChunkKind.INVALID] * 3
    with pytest.raises(ValueError, match="lacks gripper"):
        runner.add_joint_state(99.0, JOINTS[:5], [0.0] * 5)
    runner.close()


def test_undecodable_frames_turn_the_diagnostics_to_error_until_a_chunk_comes():
    outcomes = Outcomes()
    runner = make_runner(outcomes)
    feed(runner)
    for k in range(3):
        runner.add_image("/wrist", 99.31 + k / 100, CompressedImage("jpeg", b"garbage"))
        runner.request(k, k, 99.315 + k / 100)
        assert runner.wait_idle(5)
        # Every input is fresh, yet no request gets a chunk: WARN, then ERROR from the third on.
        expected = Level.ERROR if k == 2 else Level.WARN
        health = runner.health(99.35)
        assert health.level is expected and "camera /wrist" in health.message
    assert "no chunk for the last 3 requests" in health.message
    runner.add_image("/wrist", 99.34, frame(5))
    runner.request(9, 9, 99.345)
    assert runner.wait_idle(5)
    runner.close()
    assert len(outcomes.chunks) == 1 and runner.health(99.35).level is Level.OK


def test_future_stamped_samples_are_refused_and_requests_keep_being_answered():
    now = [99.2]
    outcomes = Outcomes()
    runner = make_runner(outcomes, clock=lambda: now[0])
    feed(runner)
    for _ in range(20):
        with pytest.raises(ValueError, match="in the future"):
            runner.add_joint_state(now[0] + 1e6, JOINTS, [0.0] * 6)
        with pytest.raises(ValueError, match="in the future"):
            runner.add_image("/front", now[0] + 1e6, frame(9))
    health = runner.health()
    assert health.level is Level.WARN and health.message.startswith("refusing input samples: /front: sample stamped")
    assert dict(health.values)["samples refused on joint states"] == "20 future, 0 too old, 0 not finite"
    runner.request(1, 0, 99.2)
    assert runner.wait_idle(5)
    assert len(outcomes.chunks) == 1
    now[0] = 99.2 + 5.1  # the refusals are older than the rejection window; inputs fresh again
    runner.add_joint_state(now[0], JOINTS, [0.0] * 6)
    for stream in ("/front", "/wrist"):
        runner.add_image(stream, now[0], frame(1))
    runner.close()
    assert runner.health().level is Level.OK


def test_a_late_request_finds_its_samples_in_a_100_hz_joint_state_stream():
    # A request handled 0.2 s after its capture time, with joint states at 100 Hz: the samples at the capture time
    # are 20 samples back. The history holds max_sample_age + max_request_delay seconds, whatever the rate.
    now = [0.0]
    outcomes = Outcomes()
    runner = make_runner(outcomes, clock=lambda: now[0])
    for k in range(300):
        now[0] = 97.0 + k / 100
        runner.add_joint_state(now[0], JOINTS, [k / 1000] * 6)
        if k % 3 == 0:
            for stream in ("/front", "/wrist"):
                runner.add_image(stream, now[0], frame(k % 250))
    capture = 99.795  # 0.195 s before the newest sample (99.99)
    runner.request(1, 0, capture)
    assert runner.wait_idle(5)
    runner.close()
    assert not outcomes.no_chunks
    np.testing.assert_allclose(outcomes.chunks[0].job.state, [0.279] * 6)  # the sample stamped 99.79


def test_an_optional_request_does_not_push_out_a_waiting_must_go_one():
    outcomes = Outcomes()
    runner, release = computing_runner(outcomes)
    runner.request(2, 11, 99.2, must_go=True)
    runner.request(3, 12, 99.2)
    release.set()
    assert runner.wait_idle(5)
    runner.close()
    assert [(o.request_id, o.kind) for o in outcomes.no_chunks] == [(3, NoChunkKind.SUPERSEDED)]
    assert "must-go request 2 was waiting" in outcomes.no_chunks[0].reason
    assert [r.job.request_id for r in outcomes.chunks] == [1, 2]
    assert runner.health(99.2).level is Level.OK


def test_a_lerobot_model_gets_its_units_and_its_actions_come_back_in_radians():
    outcomes = Outcomes()
    seen = []

    def predict(images, state, instruction):
        seen.append(state.copy())
        return np.tile(state, (3, 1))

    calibration = {name: MotorCalibration(name, i + 1, i % 2, 0, 1000, 3000) for i, name in enumerate(JOINTS)}
    units = JointConverter(JOINTS, UNIT_PRESETS["lerobot_range"], calibration)
    runner = make_runner(outcomes, predict=predict, units=units)
    state = feed(runner)
    runner.request(1, 0, 99.2)
    assert runner.wait_idle(5)
    runner.close()
    np.testing.assert_allclose(seen[0], units.to_policy(state), rtol=1e-6)
    assert not np.allclose(seen[0], state)
    np.testing.assert_allclose(outcomes.chunks[0].actions[0], state, atol=1e-4)  # float32 model, radians back


def test_previous_actions_reach_the_model_in_its_joint_order_and_units():
    """Real-time chunking: the executor's queued actions (radians, any joint order) reach predict in the model's
    joint order and units with the delay; a request without them calls predict without guidance keywords."""
    outcomes = Outcomes()
    seen = []

    def predict(images, state, instruction, **guidance):
        seen.append(guidance)
        return np.tile(state, (3, 1))

    calibration = {name: MotorCalibration(name, i + 1, i % 2, 0, 1000, 3000) for i, name in enumerate(JOINTS)}
    units = JointConverter(JOINTS, UNIT_PRESETS["lerobot_degrees"], calibration)
    runner = make_runner(outcomes, predict=predict, units=units)
    feed(runner)
    previous = np.arange(18, dtype=float).reshape(3, 6) / 10
    runner.request(1, 0, 99.2, previous_joint_names=list(reversed(JOINTS)), previous_actions=previous, delay_ticks=2)
    assert runner.wait_idle(5)
    runner.request(2, 1, 99.2)
    assert runner.wait_idle(5)
    runner.request(3, 2, 99.2, previous_joint_names=JOINTS[:5], previous_actions=previous[:, :5], delay_ticks=1)
    runner.request(4, 3, 99.2, previous_joint_names=JOINTS, previous_actions=previous, delay_ticks=-1)
    assert runner.wait_idle(5)
    runner.close()
    assert seen[0]["delay"] == 2
    np.testing.assert_allclose(seen[0]["previous_actions"], units.to_policy(previous[:, ::-1]), rtol=1e-6)
    assert seen[1] == {} and len(seen) == 2
    assert [(o.request_id, o.kind) for o in outcomes.no_chunks] == [(3, NoChunkKind.INVALID), (4, NoChunkKind.INVALID)]
    assert "previous actions" in outcomes.no_chunks[0].reason and "gripper" in outcomes.no_chunks[0].reason


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"camera_slots": []}, "at least one camera slot needs a stream"),
        ({"camera_slots": [None, None]}, "at least one camera slot needs a stream"),
        ({"camera_slots": ["/a", "/a"]}, "repeat"),
        ({"joint_names": []}, "joint names"),
        ({"max_sample_age": 0.0}, "max_sample_age"),
        ({"units": JointConverter(JOINTS[:5], ("radians",) * 5)}, "the unit conversion is for joints"),
        ({"max_request_delay": -1.0}, "max_request_delay"),
        ({"future_tolerance": float("nan")}, "future_tolerance"),
        ({"instruction": ""}, "default instruction refused: instruction is empty"),
    ],
)
def test_configuration_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_runner(Outcomes(), **kwargs)


def test_with_the_tiny_smolvla_model(tmp_path):
    from smolvla.policy import SmolVLAPolicy, make_tiny_checkpoint

    policy = SmolVLAPolicy.from_pretrained(str(make_tiny_checkpoint(tmp_path, n_cameras=3)))
    outcomes = Outcomes()
    runner = make_runner(outcomes, predict=policy.predict_chunk)
    feed(runner)
    runner.request(1, 0, 99.2)
    assert runner.wait_idle(30)
    first = outcomes.chunks[0].actions
    runner.request(2, 1, 99.2, previous_joint_names=JOINTS, previous_actions=first[1:], delay_ticks=2)  # guided
    assert runner.wait_idle(30)
    runner.close()
    assert not outcomes.no_chunks
    for chunk in outcomes.chunks:
        assert chunk.actions.shape == (policy.chunk_size, 6) and np.all(np.isfinite(chunk.actions))
