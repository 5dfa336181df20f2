"""The simulated SO-101: meshes, command following, cameras, seeded scenes and the scripted expert."""

from __future__ import annotations

import numpy as np
import pytest

from smolvla.sim.arm import HOME_POSITION, CommandDisturbance, SimArm
from smolvla.sim.expert import ExpertObservation, PickPlaceExpert
from smolvla.sim.meshes import simplify_mesh
from smolvla.sim.scene import CAMERA_NAMES, SceneOptions
from smolvla.sim.task import MIN_CUBE_TARGET_DISTANCE, SAMPLING_BOUNDS

DT = 1.0 / 30.0


@pytest.fixture(scope="module")
def sim():
    arm = SimArm(SceneOptions(image_width=96, image_height=96), seed=0)
    yield arm
    arm.close()


def _unit_cube_mesh(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(0.0, 1.0, subdivisions + 1)
    vertices = np.array([[x, y, 0.0] for y in grid for x in grid])
    faces = []
    for j in range(subdivisions):
        for i in range(subdivisions):
            a = j * (subdivisions + 1) + i
            faces += [[a, a + 1, a + subdivisions + 2], [a, a + subdivisions + 2, a + subdivisions + 1]]
    return vertices, np.array(faces)


def test_simplify_mesh_reduces_triangles_and_stays_close():
    vertices, faces = _unit_cube_mesh(40)
    out_vertices, out_faces = simplify_mesh(vertices, faces, 0.1)
    assert len(out_faces) < len(faces) / 10
    assert out_faces.max() < len(out_vertices)
    # Every original vertex has a simplified vertex within one cell diagonal.
    distances = np.linalg.norm(vertices[:, None, :] - out_vertices[None, :, :], axis=2).min(axis=1)
    assert distances.max() <= 0.1 * np.sqrt(3)
    with pytest.raises(ValueError):
        simplify_mesh(vertices, faces, 0.0)


def test_arm_follows_commands(sim):
    sim.reset(0)
    goal = np.array([0.4, -0.3, 0.5, 0.6, -0.5, 0.3])
    sim.set_command(goal)
    for _ in range(60):
        sim.step(DT)
    # Gravity makes the position actuators sag a little; the arm must still settle near its command.
    assert np.max(np.abs(sim.joint_positions() - goal)) < 0.08
    assert np.max(np.abs(sim.joint_velocities())) < 0.05


def test_invalid_commands_are_refused_and_ranges_clipped(sim):
    sim.reset(0)
    before = sim.command
    with pytest.raises(ValueError):
        sim.set_command(np.zeros(5))
    with pytest.raises(ValueError):
        sim.set_command(np.array([np.nan, 0, 0, 0, 0, 0]))
    np.testing.assert_array_equal(sim.command, before)
    clipped = sim.set_command(np.array([10.0, 0, 0, 0, 0, 0]))
    assert clipped[0] == pytest.approx(sim.command_high[0])


def _disturbed_run(seed: int, goal: np.ndarray, ticks: int) -> tuple[np.ndarray, np.ndarray, SimArm]:
    arm = SimArm(SceneOptions(image_width=32, image_height=32), seed=seed, disturbance=CommandDisturbance(0.05, 0.5))
    arm.set_command(goal)
    offsets, errors = [], []
    for _ in range(ticks):
        arm.step(DT)
        offsets.append(arm.disturbance_offset)
        errors.append(arm.joint_positions() - arm.command)
    return np.array(offsets), np.array(errors), arm


def test_a_command_disturbance_moves_the_arm_off_its_command_reproducibly():
    """DART recording: the actuators get the command plus a wandering offset of the configured size (the gripper's
    stays 0), `command` still says what was commanded, the same seed wanders the same way and a reset starts
    from no offset."""
    goal = np.array([0.3, -0.3, 0.3, 0.4, 0.2, 0.5])  # in free space: nothing touches the table
    offsets, errors, arm = _disturbed_run(3, goal, 900)
    with arm:
        np.testing.assert_array_equal(arm.command, goal)
        assert np.all(offsets[:, -1] == 0.0) and np.all(offsets[-1, :5] != 0.0)
        # 30 s of a 0.5 s correlation time: about 60 independent draws per joint, 5 joints.
        assert 0.035 < offsets[:, :5].std() < 0.065, offsets[:, :5].std()
        # The arm follows command + offset: its error from the command tracks the offset (gravity sag aside).
        settled = slice(60, None)
        for joint in range(5):
            correlation = np.corrcoef(errors[settled, joint], offsets[settled, joint])[0, 1]
            assert correlation > 0.85, (joint, correlation)  # measured: 0.93-0.96
        again, _, other = _disturbed_run(3, goal, 30)
        other.close()
        np.testing.assert_array_equal(again, offsets[:30])
        arm.reset(3)
        assert np.all(arm.disturbance_offset == 0.0)
    with pytest.raises(ValueError, match="std"):
        CommandDisturbance(std=-0.1)
    with pytest.raises(ValueError, match="time constant"):
        CommandDisturbance(std=0.1, time_constant=0.0)


def test_the_expert_places_the_cube_under_a_command_disturbance():
    """The disturbance `make train-demo` could record with (0.03 rad) still lets the expert place the cube: it plans
    from the joints it observes, so each new chunk corrects the stray."""
    with SimArm(SceneOptions(image_width=32, image_height=32), disturbance=CommandDisturbance(0.03)) as arm:
        expert = PickPlaceExpert(arm.model)
        results = [_run_expert(arm, expert, seed, 50, 3, 0.7) for seed in range(4)]
        assert all(ok for ok, _ in results), results
        assert np.any(arm.disturbance_offset != 0.0)


def test_images_change_when_the_arm_moves(sim):
    sim.reset(3)
    before = {camera: sim.render(camera) for camera in CAMERA_NAMES}
    for camera, image in before.items():
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8, camera
    sim.set_command(HOME_POSITION + [0.6, 0.4, -0.4, 0.5, 0.3, 0.0])
    for _ in range(30):
        sim.step(DT)
    for camera in CAMERA_NAMES:
        changed = np.mean(np.any(sim.render(camera) != before[camera], axis=2))
        assert changed > 0.02, f"{camera}: only {changed:.1%} of the pixels changed"


def test_seeded_resets_are_deterministic_and_within_bounds(sim):
    layouts = [sim.reset(seed) for seed in (5, 6, 5)]
    assert layouts[0] == layouts[2]
    assert layouts[0] != layouts[1]
    for layout in layouts:
        cube, target = np.array(layout.cube_xy), np.array(layout.target_xy)
        assert np.all(cube >= SAMPLING_BOUNDS[0]) and np.all(cube <= SAMPLING_BOUNDS[1])
        assert np.linalg.norm(cube - target) >= MIN_CUBE_TARGET_DISTANCE
    state = sim.scene_state()
    np.testing.assert_allclose(state.cube_position[:2], layouts[2].cube_xy)
    assert not state.success


def _run_expert(sim: SimArm, expert: PickPlaceExpert, seed: int, chunk_size: int, delay: int, threshold: float):
    """Executor model in simulated time: request when the queue is at or below threshold * n, answer after delay
    ticks, drop actions whose tick has passed (the executor's rule). Returns (success, seconds)."""
    sim.reset(seed)
    queue: dict[int, np.ndarray] = {}
    in_flight = None
    for tick in range(30 * 25):
        pending = sum(1 for k in queue if k >= tick)
        if in_flight is None and pending <= threshold * chunk_size:
            state = sim.scene_state()
            obs = ExpertObservation(sim.joint_positions(), state.cube_position, state.target_position, state.cube_yaw)
            in_flight = (tick + delay, tick, expert.chunk(obs, chunk_size, tick, delay))
        if in_flight is not None and in_flight[0] <= tick:
            _, first, actions = in_flight
            in_flight = None
            queue = {first + 1 + i: a for i, a in enumerate(actions) if first + 1 + i >= tick}
        if tick in queue:
            sim.set_command(queue.pop(tick))
        if sim.step(DT):
            return True, (tick + 1) * DT
    return False, 25.0


@pytest.mark.parametrize(("threshold", "delay"), [(0.0, 0), (1.0, 1), (1.0, 10), (0.7, 10), (0.0, 10)])
def test_expert_places_the_cube_on_seeded_scenes(sim, threshold, delay):
    expert = PickPlaceExpert(sim.model)
    results = [_run_expert(sim, expert, seed, 50, delay, threshold) for seed in range(6)]
    successes = [ok for ok, _ in results]
    # Measured: 6/6 in each configuration, 4.6-9.8 s (sync with delay is the slowest); one miss is tolerated.
    assert sum(successes) >= 5, results
    assert max(t for ok, t in results if ok) < 12.0, results


def test_async_execution_finishes_sooner_than_sync(sim):
    """With a latency of 10 ticks, sync idles for it before every chunk; async (g = 0.7) only before the first."""
    expert = PickPlaceExpert(sim.model)
    sync = [_run_expert(sim, expert, seed, 50, 10, 0.0) for seed in range(3)]
    asynchronous = [_run_expert(sim, expert, seed, 50, 10, 0.7) for seed in range(3)]
    assert all(ok for ok, _ in sync + asynchronous)
    assert np.mean([t for _, t in asynchronous]) < np.mean([t for _, t in sync]) - 0.3, (sync, asynchronous)


def test_expert_continues_its_plan_and_starts_over_when_ticks_restart(sim):
    sim.reset(1)
    expert = PickPlaceExpert(sim.model)
    state = sim.scene_state()
    obs = ExpertObservation(sim.joint_positions(), state.cube_position, state.target_position, state.cube_yaw)
    first = expert.chunk(obs, 20, tick=100)
    assert expert.replan_reason == "no plan covers this tick"
    # Same observation ten ticks later: the arm is still within reach of the plan, so the plan continues.
    continued = expert.chunk(obs, 20, tick=110)
    assert expert.replan_reason == ""
    np.testing.assert_allclose(continued[:10], first[10:])
    # The executor restarted (ticks back at 0): the old plan is not being played any more.
    expert.chunk(obs, 20, tick=0)
    assert expert.replan_reason == "no plan covers this tick"


def test_expert_starts_over_when_the_wrist_roll_left_its_plan(sim):
    """The grasp point hardly moves with the wrist roll: a roll far from the plan's (its chunks were refused while
    its timeline went on) must still start a new plan from the measured roll, or every later chunk would start
    that far from the arm and be refused by the executor's gate."""
    sim.reset(1)
    expert = PickPlaceExpert(sim.model)
    state = sim.scene_state()
    obs = ExpertObservation(sim.joint_positions(), state.cube_position, state.target_position, state.cube_yaw)
    expert.chunk(obs, 20, tick=100)
    rolled = obs.joint_positions.copy()
    rolled[4] += 0.9
    turned = ExpertObservation(rolled, state.cube_position, state.target_position, state.cube_yaw)
    actions = expert.chunk(turned, 20, tick=110)
    assert expert.replan_reason.startswith("the arm is") and "rad of wrist roll" in expert.replan_reason
    assert abs(actions[0, 4] - rolled[4]) < 0.1  # the new plan starts where the wrist is


@pytest.mark.parametrize("seed", [3, 5])
def test_a_plan_from_a_turned_wrist_never_jumps(sim, seed):
    """Found by make chaos: after a run of faults the arm held with the wrist roll at its limit and the grasp point
    low; the new plan's first Cartesian step turned the roll 0.66 rad at once to the grasp yaw and the next segment
    jumped back to the planned start, so the executor's gate (0.5 rad) refused every chunk and the arm stood still.
    Every step of a plan now stays within max_joint_speed."""
    sim.reset(seed)
    state = sim.scene_state()
    stuck = np.array([0.975, -0.068, 0.321, 1.278, 2.841, 1.2])
    expert = PickPlaceExpert(sim.model)
    obs = ExpertObservation(stuck, state.cube_position, state.target_position, state.cube_yaw)
    actions = expert.chunk(obs, 60, tick=0)
    step = expert.params.max_joint_speed * expert.params.control_period
    gravity = 0.1  # the commands are gravity-compensated poses: a fixed-ish offset from the pose
    assert np.max(np.abs(actions[0, :5] - stuck[:5])) < step + gravity
    assert np.max(np.abs(np.diff(actions[:, :5], axis=0))) <= step + 1e-6
