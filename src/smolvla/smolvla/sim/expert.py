"""Scripted pick-and-place expert in joint space, answering with chunks of joint-position actions.

The expert is stateless: every chunk is planned from the observation alone (joint positions, cube and target
positions), so it behaves the same whether chunks arrive every tick (continuous), before the queue runs out
(async) or after the arm stopped (sync), and whatever the latency. The phase is read from the scene (is the cube
held, is it at the target, is the gripper above it), the remaining motion is laid out as straight Cartesian
segments of the grasp point with the gripper pointing down, and sampled at the control period. Joint targets come
from a damped least-squares IK on the same MuJoCo model, with the static gravity torque added so the position
actuators (which sag under gravity) end where they are meant to.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from lerobot_env_so101.mujoco_env import grasp_point_offset

from smolvla.sim.scene import JOINT_NAMES

_ARM_JOINTS = JOINT_NAMES[:5]
_DOWN = np.asarray([0.0, 0.0, -1.0])
# Site axes of gripperframe: x points out along the jaws, z from the fixed to the moving jaw.
_APPROACH_AXIS = 0
_JAW_AXIS = 2
#: IK seed for joint-space moves: a top-down pose over the middle of the workspace, on the elbow-up branch.
READY_POSE = np.asarray([0.0, 0.75, 0.75, 0.0, 1.57])


@dataclass(frozen=True)
class ExpertParams:
    """Geometry, speeds and timing of the scripted motion (metres, seconds, radians)."""

    control_period: float = 1.0 / 30.0
    cube_half_size: float = 0.02
    #: Grasp point (between the fingertip pads) above the cube centre when grasping: the pads pinch its upper half.
    grasp_above_centre: float = 0.015
    hover_above_centre: float = 0.055
    carry_above_centre: float = 0.06
    release_clearance: float = 0.003
    fast_speed: float = 0.18
    #: Fastest joint during joint-space moves (rad/s).
    joint_speed: float = 1.2
    #: Fastest any joint is commanded to turn (rad/s). The inverse kinematics of a Cartesian segment may turn a joint
    #: much further in one step than the segment's time allows (the wrist roll to the grasp yaw, which the grasp
    #: point does not see); the step is clipped and the joint gets there over the next steps. Normal motions stay
    #: below 3.1 rad/s (0.103 rad per step at 30 Hz, the most over 12 seeded scenes).
    max_joint_speed: float = 4.5
    careful_speed: float = 0.06
    jaw_open: float = 1.2
    jaw_closed: float = -0.17
    #: Jaw angle below which a cube between the pads counts as held (pads touch a 40 mm cube at ~0.46 rad).
    jaw_holding: float = 0.6
    close_time: float = 0.4
    open_time: float = 0.35
    #: Distances that decide the phase.
    at_target_tolerance: float = 0.012
    in_hand_tolerance: float = 0.03
    #: Gripper within this distance (xy) of the place position: lower without lifting and carrying first.
    column_tolerance: float = 0.012
    pose_tolerance: float = 0.01
    #: Largest gap between the commanded and the measured grasp point that still counts as the same motion.
    reference_tolerance: float = 0.04
    #: Largest gap between the planned and the measured grasp point before the plan is given up (a reset, a
    #: collision). Generous: where the executor blends a new plan's first chunk with the old plan's queued actions,
    #: the arm follows a mix of both for a while.
    plan_tolerance: float = 0.12
    #: Largest gap (rad) between the planned and the measured wrist roll before the plan is given up. The grasp
    #: point hardly moves with the roll, so the gap above does not see it; a plan whose roll ran away from the arm
    #: (its chunks refused while its timeline went on) would start every chunk that far from the arm, and the
    #: executor's gate refuses such chunks for good.
    roll_tolerance: float = 0.3

    def __post_init__(self) -> None:
        if not 0.001 <= self.control_period <= 1.0:
            raise ValueError(f"control_period must be within 1 ms..1 s, got {self.control_period}")
        if self.fast_speed <= 0 or self.careful_speed <= 0:
            raise ValueError("speeds must be positive")


@dataclass(frozen=True)
class ExpertObservation:
    """What the expert sees: joint positions in JOINT_NAMES order, cube centre and target centre (world, m)."""

    joint_positions: np.ndarray
    cube_position: np.ndarray
    target_position: np.ndarray
    #: The cube's rotation about the vertical (radians); a grasp closes the jaws across two opposite faces.
    cube_yaw: float = 0.0

    def __post_init__(self) -> None:
        for name, shape in (("joint_positions", (6,)), ("cube_position", (3,)), ("target_position", (3,))):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != shape or not np.all(np.isfinite(value)):
                raise ValueError(f"{name} must be {shape[0]} finite numbers, got {value!r}")
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class Segment:
    """A straight move of the grasp point to `goal` at `speed` (or a hold when speed is 0 for `duration`)."""

    goal: np.ndarray
    jaw: float
    speed: float = 0.0
    duration: float = 0.0
    name: str = ""
    #: Interpolate the joints instead of the grasp point (free-space moves from any arm pose).
    joint_space: bool = False
    #: Direction (radians about the vertical) the jaws close across: perpendicular to the closing axis.
    yaw: float = 0.0


def grasp_yaw(cube_yaw: float) -> float:
    """The closing direction for a cube at this yaw nearest to the straight-ahead grasp: a cube looks the same
    every 90 degrees, so its yaw folded into [-45, 45) degrees."""
    quarter = np.pi / 2
    return float((cube_yaw + quarter / 2) % quarter - quarter / 2)


class ArmKinematics:
    """Forward and inverse kinematics of the grasp point with the gripper pointing down, and gravity offsets."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self._site = model.site("gripperframe").id
        self._offset = grasp_point_offset(model, self._site)
        self._qpos = np.asarray([model.joint(n).qposadr[0] for n in JOINT_NAMES])
        self._dofs = np.asarray([model.joint(n).dofadr[0] for n in _ARM_JOINTS])
        self._range = np.asarray([model.joint(n).range for n in _ARM_JOINTS])
        actuators = [model.actuator(n).id for n in _ARM_JOINTS]
        self._kp = model.actuator_gainprm[actuators, 0].copy()
        self._site_body = model.site_bodyid[self._site]

    def _set(self, q: np.ndarray) -> None:
        self.data.qpos[self._qpos[: len(q)]] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def _point(self) -> np.ndarray:
        return self.data.site_xpos[self._site] + self.data.site_xmat[self._site].reshape(3, 3) @ self._offset

    def grasp_point(self, joint_positions: np.ndarray) -> np.ndarray:
        """World position of the point between the fingertip pads for these joint positions (6,)."""
        self._set(np.asarray(joint_positions, dtype=float))
        return self._point().copy()

    def solve(self, target: np.ndarray, seed: np.ndarray, iterations: int = 30, yaw: float = 0.0) -> np.ndarray:
        """Arm joint angles (5,) putting the grasp point at target, the jaws pointing down and closing across the
        horizontal direction `yaw` (0: along y, across a cube face whose normal is x)."""
        across = np.asarray([np.cos(yaw), np.sin(yaw), 0.0])
        q = np.asarray(seed, dtype=float)[:5].copy()
        jac_pos = np.zeros((3, self.model.nv))
        jac_rot = np.zeros((3, self.model.nv))
        for _ in range(iterations):
            self._set(q)
            point = self._point()
            axes = self.data.site_xmat[self._site].reshape(3, 3)
            mujoco.mj_jac(self.model, self.data, jac_pos, jac_rot, point, self._site_body)
            jp, jr = jac_pos[:, self._dofs], jac_rot[:, self._dofs]
            approach = axes[:, _APPROACH_AXIS]
            rotation = np.cross(approach, _DOWN)
            sin_tilt = np.linalg.norm(rotation)
            if sin_tilt > 1e-9:
                rotation *= np.arctan2(sin_tilt, approach @ _DOWN) / sin_tilt
            tangent = np.delete(axes, _APPROACH_AXIS, axis=1).T
            jaw = axes[:, _JAW_AXIS]
            # Weights trade radians against metres: 0.1 rad of tilt costs as much as 5 mm of position.
            error = np.concatenate([target - point, 0.05 * (tangent @ rotation), [-0.05 * (jaw @ across)]])
            jac = np.vstack([jp, 0.05 * (tangent @ jr), 0.05 * (np.cross(jaw, across) @ jr)[None, :]])
            if np.linalg.norm(error) < 2e-5:
                break
            q = np.clip(q + self._limited_step(jac, error, q), self._range[:, 0], self._range[:, 1])
        return q

    def _limited_step(self, jac: np.ndarray, error: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Damped least-squares step in which joints pinned at a limit and pushed outward sit out.

        Plain clipping after the step stalls the solver at the wrist-flex limit, where most hover poses put the
        wrist; removing the pinned joint lets the others take up the error (the gripper then tilts a little).
        """
        free = np.ones(len(q), dtype=bool)
        for _ in range(len(q)):
            cols = jac * free
            step = np.linalg.solve(cols.T @ cols + 1e-4 * np.eye(len(q)), cols.T @ error) * free
            pinned = ((q <= self._range[:, 0] + 1e-6) & (step < 0)) | ((q >= self._range[:, 1] - 1e-6) & (step > 0))
            if not np.any(pinned & free):
                return step
            free &= ~pinned
        return step

    def gravity_compensated(self, arm_q: np.ndarray) -> np.ndarray:
        """Position command under which the arm comes to rest at arm_q: q + gravity torque / kp."""
        self.data.qpos[self._qpos[:5]] = arm_q
        self.data.qvel[:] = 0.0
        mujoco.mj_forward(self.model, self.data)
        return arm_q + self.data.qfrc_bias[self._dofs] / self._kp


class PickPlaceExpert:
    """Plans pick-and-place chunks from single observations (see the module docstring)."""

    def __init__(self, model: mujoco.MjModel, params: ExpertParams | None = None) -> None:
        self.params = params or ExpertParams()
        self.kinematics = ArmKinematics(model)
        self._last_chunk: tuple[int, np.ndarray] | None = None
        self._plan: _Trajectory | None = None
        #: Why the latest chunk started a new plan ("" when it continued the previous one).
        self.replan_reason = ""

    def plan(self, obs: ExpertObservation, start_q: np.ndarray | None = None) -> list[Segment]:
        """The remaining motion as segments of the grasp point, from the arm pose start_q (default: observed).

        Whether the cube is held or placed is read from the observation; how far the motion has got is read from
        start_q, which chunk() sets to the pose the arm was being commanded to at the observation tick.
        """
        p = self.params
        q = obs.joint_positions
        observed = self.kinematics.grasp_point(q)
        point = observed if start_q is None else self.kinematics.grasp_point(np.r_[start_q, q[5]])
        cube, target = obs.cube_position, obs.target_position
        yaw = grasp_yaw(obs.cube_yaw)
        rest_z = p.cube_half_size
        jaw = q[5]
        held = np.linalg.norm(cube - observed) < p.in_hand_tolerance and jaw < p.jaw_holding
        on_table = cube[2] < rest_z + 0.005
        at_target = np.linalg.norm(cube[:2] - target[:2]) < p.at_target_tolerance

        if at_target and on_table:
            return self._release(point, p.open_time if held or jaw < p.jaw_open - 0.15 else 0.0, yaw)
        if held:
            return self._carry(point, observed - cube, target, yaw)

        grasp = cube + [0.0, 0.0, p.grasp_above_centre]
        hover = cube + [0.0, 0.0, p.hover_above_centre]
        segments: list[Segment] = []
        if np.linalg.norm(point - grasp) > p.pose_tolerance:
            if point[2] < hover[2] - 0.01:
                # Rise first: a sideways move at cube height would sweep the cube away.
                segments.append(Segment(np.asarray([*point[:2], hover[2]]), p.jaw_open, p.careful_speed, yaw=yaw))
            # Always through the joint-space hover pose (from the ready-pose IK seed), also when the gripper is
            # already above the cube: after a carry the wrist can be near its limits, where the jaws no longer
            # close square to the cube.
            segments.append(Segment(hover, p.jaw_open, joint_space=True, name="hover", yaw=yaw))
            segments.append(Segment(grasp, p.jaw_open, p.careful_speed, name="descend", yaw=yaw))
        segments.append(Segment(grasp, p.jaw_closed, duration=p.close_time, name="close", yaw=yaw))
        return segments + self._carry(grasp, grasp - cube, target, yaw)

    def _carry(self, point: np.ndarray, in_hand: np.ndarray, target: np.ndarray, yaw: float) -> list[Segment]:
        """Lift, move over the target, lower and release, for a cube held at point - in_hand (jaws across yaw)."""
        p = self.params
        carry_z = p.cube_half_size + p.carry_above_centre
        place = np.asarray([*(target[:2] + in_hand[:2]), p.cube_half_size + in_hand[2] + p.release_clearance])
        segments = []
        if np.linalg.norm(point[:2] - place[:2]) > p.column_tolerance:
            lift = np.asarray([*point[:2], carry_z])
            segments.append(Segment(lift, p.jaw_closed, p.careful_speed, name="lift", yaw=yaw))
            over = np.asarray([*place[:2], carry_z])
            segments.append(Segment(over, p.jaw_closed, p.fast_speed, name="carry", yaw=yaw))
        segments.append(Segment(place, p.jaw_closed, p.careful_speed, name="lower", yaw=yaw))
        return segments + self._release(place, p.open_time, yaw)

    def _release(self, point: np.ndarray, open_time: float, yaw: float) -> list[Segment]:
        p = self.params
        above = np.asarray([*point[:2], p.cube_half_size + p.hover_above_centre])
        return [
            Segment(point, p.jaw_open, duration=open_time, name="open", yaw=yaw),
            Segment(above, p.jaw_open, p.careful_speed, name="retreat", yaw=yaw),
        ]

    def chunk(self, obs: ExpertObservation, n: int, tick: int | None = None, delay_ticks: int = 0) -> np.ndarray:
        """n joint-position commands (n, 6) for ticks tick+1 .. tick+n, in JOINT_NAMES order.

        tick is the observation's control tick. With it the expert remembers which step of its plan each tick
        got, and a new chunk continues the plan where the arm will be when the chunk arrives, as long as the
        observation agrees with the plan (arm near its planned pose, cube where it should be, held while it
        should be); otherwise it plans afresh from the observation. delay_ticks is how many ticks after the
        observation the chunk reaches the executor, which drops the actions of the ticks that have passed: those
        only repeat the pose the arm will hold at arrival. Without tick every chunk is planned afresh from the
        measured pose.
        """
        if n < 1:
            raise ValueError(f"chunk length must be >= 1, got {n}")
        if delay_ticks < 0:
            raise ValueError(f"delay_ticks must be >= 0, got {delay_ticks}")
        skip = min(delay_ticks, n - 1) if tick is not None else 0
        if tick is not None and self._last_chunk is not None and tick + 1 < self._last_chunk[0]:
            # Ticks went back: the executor restarted (e.g. deactivated and activated around a reset) and its
            # queue was cleared; nothing of the old plan will be played.
            self._last_chunk = None
        arrival = None if tick is None else self._step_at(tick + skip)
        if arrival is None:
            self.replan_reason = "no plan covers this tick"
        elif arrival >= self._plan.last_step:
            # Plan again only from an observation taken after the plan's last step was played: an older one still
            # shows the motion under way, and planning from it would repeat the motion's end (lower the cube again).
            ended = self._plan.end_tick is not None and tick >= self._plan.end_tick
            self.replan_reason = "the plan is finished" if ended else ""
        else:
            self.replan_reason = self._plan_disagreement(obs, tick)
        if self.replan_reason:
            start_q = obs.joint_positions[:5].copy()
            if arrival is not None:
                held_pose = self._plan.pose(arrival)
                same_roll = abs(held_pose[_ROLL] - start_q[_ROLL]) < self.params.roll_tolerance
                if same_roll and self._gap(held_pose, start_q) < self.params.reference_tolerance:
                    start_q = held_pose
            # The executor blends a new chunk with the old one's queued actions where they overlap; until those run
            # out the arm is pulled toward the old plan, so the grasp waits above the cube for them.
            # None when the executor restarted its ticks (its queue was cleared); an arm far off the old plan means
            # it was moved (reset), so nothing of that plan is queued either.
            queued = 0
            if arrival is not None and not self.replan_reason.startswith(_ARM_OFF_PLAN):
                queued = self._last_chunk[0] + n - 1 - (tick + skip)
            self._plan = _Trajectory(self, obs, start_q, grasp_after=max(0, queued) * self.params.control_period)
            arrival = 0
        steps = np.minimum(arrival + np.maximum(0, np.arange(1, n + 1) - skip), self._plan.last_step)
        if tick is not None:
            self._last_chunk = (tick + 1, steps)
            last = np.nonzero(steps >= self._plan.last_step)[0]
            if last.size and self._plan.end_tick is None:
                self._plan.end_tick = tick + 1 + int(last[0])
        actions = np.empty((n, len(JOINT_NAMES)))
        for i, step in enumerate(steps):
            actions[i, :5] = self._plan.command(step)
            actions[i, 5] = self._plan.jaw[step]
        return actions

    def _step_at(self, tick: int) -> int | None:
        """Plan step the latest chunk gave `tick` (its last step after its end), None without a usable chunk."""
        if self._last_chunk is None or self._plan is None or tick < self._last_chunk[0]:
            return None
        first_tick, steps = self._last_chunk
        return int(steps[min(tick - first_tick, len(steps) - 1)])

    def _gap(self, q_a: np.ndarray, q_b: np.ndarray) -> float:
        kin = self.kinematics
        return float(np.linalg.norm(kin.grasp_point(np.r_[q_a, 0.0]) - kin.grasp_point(np.r_[q_b, 0.0])))

    def _plan_disagreement(self, obs: ExpertObservation, tick: int) -> str:
        """Why the observation at `tick` contradicts the plan step the arm was given then ("" when it agrees)."""
        step = self._step_at(tick)
        if step is None:
            return "the observation is older than the latest chunk"
        plan, p = self._plan, self.params
        # The arm lags its commands (more during fast joint-space moves), so compare with the recent steps too.
        lag_steps = int(np.ceil(_LAG_ALLOWANCE / p.control_period))
        recent = [plan.pose(i) for i in range(max(0, step - lag_steps), step + 1)]
        gap = min(self._gap(pose, obs.joint_positions[:5]) for pose in recent)
        if gap > p.plan_tolerance:
            return f"{_ARM_OFF_PLAN} {100 * gap:.1f} cm from its planned pose"
        roll = min(abs(pose[_ROLL] - obs.joint_positions[_ROLL]) for pose in recent)
        if roll > p.roll_tolerance:
            return f"{_ARM_OFF_PLAN} {roll:.2f} rad of wrist roll from its planned pose"
        point = self.kinematics.grasp_point(obs.joint_positions)
        near = np.linalg.norm(obs.cube_position - point) < p.in_hand_tolerance
        held = near and obs.joint_positions[5] < p.jaw_holding
        if plan.grasp_end is not None and step < plan.grasp_end:
            moved = np.linalg.norm(obs.cube_position - plan.cube)
            return f"the cube moved {100 * moved:.1f} cm" if moved > 0.01 else ""
        if plan.grasp_end is not None and plan.grasp_end + _GRASP_GRACE_STEPS <= step < plan.release_start:
            return "" if held else "the cube is not in the gripper"
        return ""


_ARM_OFF_PLAN = "the arm is"
_ROLL = JOINT_NAMES.index("wrist_roll")
#: Seconds the measured arm may trail its planned pose and still count as following the plan.
_LAG_ALLOWANCE = 0.6
#: Steps after the end of the closing hold before the cube must show as held.
_GRASP_GRACE_STEPS = 3


class _Trajectory:
    """One plan sampled at the control period: step 0 is the start pose, poses are solved lazily in order."""

    def __init__(
        self, expert: PickPlaceExpert, obs: ExpertObservation, start_q: np.ndarray, grasp_after: float = 0.0
    ) -> None:
        self._kin = expert.kinematics
        p = expert.params
        self.cube = obs.cube_position.copy()
        start = self._kin.grasp_point(np.r_[start_q, obs.joint_positions[5]])
        self._timeline = []  # (end time, span, segment, start point, goal q or None)
        elapsed = 0.0
        self.grasp_end: int | None = None
        self.release_start = 0
        segment_q = start_q
        for seg in expert.plan(obs, start_q):
            if seg.name == "descend" and elapsed < grasp_after:
                wait = Segment(start, seg.jaw, duration=grasp_after - elapsed, name="wait")
                self._timeline.append((grasp_after, grasp_after - elapsed, wait, start, None))
                elapsed = grasp_after
            goal_q = None
            if seg.joint_space:
                goal_q = self._kin.solve(seg.goal, READY_POSE, iterations=60, yaw=seg.yaw)
                span = float(np.max(np.abs(goal_q - segment_q))) / p.joint_speed
            elif seg.speed > 0:
                span = float(np.linalg.norm(seg.goal - start)) / seg.speed
            else:
                span = seg.duration
            if seg.name == "open" and self.release_start == 0:
                self.release_start = int(elapsed / p.control_period)
            elapsed += span
            if seg.name == "close":
                self.grasp_end = int(np.ceil(elapsed / p.control_period))
            self._timeline.append((elapsed, span, seg, start, goal_q))
            start = seg.goal
            if goal_q is not None:
                segment_q = goal_q
        if self.grasp_end is not None and self.release_start < self.grasp_end:
            self.release_start = self.grasp_end
        self.last_step = int(np.ceil(elapsed / p.control_period))
        #: Tick at which the last step is played (set by the chunk that reaches it).
        self.end_tick: int | None = None
        self.jaw = np.empty(self.last_step + 1)
        self._dt = p.control_period
        self._max_step = p.max_joint_speed * p.control_period
        self._poses = [start_q.copy()]
        self._segment_origin: dict[int, np.ndarray] = {}  # timeline index -> pose at its first step
        self._commands: list[np.ndarray] = []
        index = 0
        for step in range(self.last_step + 1):
            while index < len(self._timeline) - 1 and step * self._dt > self._timeline[index][0] + 1e-9:
                index += 1
            self.jaw[step] = self._timeline[index][2].jaw if step > 0 else obs.joint_positions[5]

    def pose(self, step: int) -> np.ndarray:
        """Arm pose (5,) of this step (solved on first use, warm-started from the step before)."""
        index = 0
        while len(self._poses) <= step:
            t = len(self._poses) * self._dt
            while index < len(self._timeline) - 1 and t > self._timeline[index][0] + 1e-9:
                index += 1
            end, span, seg, seg_start, goal_q = self._timeline[index]
            fraction = 1.0 if span <= 0 else min(1.0, max(0.0, 1.0 - (end - t) / span))
            previous = self._poses[-1]
            if goal_q is not None:
                # From the pose the arm has at the segment's start (a Cartesian segment before may not have ended
                # where it was planned to), not from the planned one.
                origin = self._segment_origin.setdefault(index, previous)
                solved = origin + fraction * (goal_q - origin)
            else:
                target = seg.goal if seg.speed == 0 else seg_start + fraction * (seg.goal - seg_start)
                iterations = 40 if len(self._poses) == 1 else 10
                solved = self._kin.solve(target, previous, iterations=iterations, yaw=seg.yaw)
            self._poses.append(previous + np.clip(solved - previous, -self._max_step, self._max_step))
        return self._poses[step]

    def command(self, step: int) -> np.ndarray:
        """Gravity-compensated position command (5,) of this step."""
        while len(self._commands) <= step:
            self._commands.append(self._kin.gravity_compensated(self.pose(len(self._commands))))
        return self._commands[step]
