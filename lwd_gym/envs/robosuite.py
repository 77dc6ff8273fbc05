"""robosuite's Lift and PickPlaceCan as Gymnasium envs, with scripted multi-operator experts.

* :class:`RobosuiteEnv` wraps ``robosuite.make("Lift" | "PickPlaceCan", robots="Panda", ...)``
  with the default Panda OSC_POSE controller (state observations, no rendering).  Observation:
  a flat ``float32`` vector, the robomimic low-dim keys concatenated in :data:`OBS_KEYS` order
  (``robot0_eef_pos`` 3, ``robot0_eef_quat`` 4 (xyzw), ``robot0_gripper_qpos`` 2, then
  ``object-state``: Lift 10 = cube pos, quat, gripper-to-cube; Can 14 = can-to-eef pos, quat,
  can pos, quat), 19 and 23 entries.  Action: 7 in ``[-1, 1]`` = delta eef position (1 unit =
  5 cm), delta axis-angle (1 unit = 0.5 rad) in the robot base frame and gripper (+1 closes).
* :class:`RobosuiteExpert` picks and lifts the cube, or carries the can into its bin, in the
  style of one of six synthetic :data:`OPERATORS` (two per proficiency level ``better``,
  ``okay``, ``worse``, as in robomimic's multi-human datasets).

robosuite is imported only when an env is built, so this module (its ids, operators and
``demo_sources()``) imports without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

LIFT_ID = "lwd_gym/Lift-v0"
CAN_ID = "lwd_gym/Can-v0"

#: Gymnasium id -> (task name, robosuite env name, max_episode_steps) of the registered envs.
ENV_IDS: dict[str, tuple[str, str, int]] = {
    LIFT_ID: ("lift", "Lift", 400),
    CAN_ID: ("can", "PickPlaceCan", 500),
}
_ROBOSUITE_NAMES = {task: name for task, name, _ in ENV_IDS.values()}

#: robosuite observation keys concatenated (in this order) into the flat observation.
OBS_KEYS: tuple[str, ...] = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object-state")

INSTALL_HINT = "pip install 'lwd-gym[robosuite]'"


def _import_robosuite() -> Any:
    try:
        import robosuite
    except ImportError as err:
        raise ImportError(f"the robosuite environments need robosuite: {INSTALL_HINT} ({err})") from err
    return robosuite


class RobosuiteEnv(gym.Env[np.ndarray, np.ndarray]):
    """robosuite ``Lift`` or ``PickPlaceCan`` (Panda, OSC_POSE, 20 Hz) with a flat state observation.

    :param task: ``"lift"`` or ``"can"``.
    :param terminate_on_success: end the episode (``terminated``) on the first successful step;
        without it episodes only end by the time limit of ``gymnasium.make``.
    :param reward_shaping: robosuite's dense reward instead of its sparse success reward.
    :param model_seed: seeds robosuite's generator when it builds the model, which fixes the
        randomized geometry (Lift's cube size, 2-2.2 cm); fixed by default so that
        ``reset(seed=s)`` gives the same episode in every instance (``None``: a random size).  Per-episode randomness
        (object placement, initial joint noise) comes from ``reset(seed=...)``.

    ``info["is_success"]`` is ``env._check_success()`` (at reset and every step).  The episode
    length is not limited here (robosuite's horizon is ignored): ``gymnasium.make(LIFT_ID)``
    adds a 400-step and ``gymnasium.make(CAN_ID)`` a 500-step time limit.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: str = "lift",
        *,
        terminate_on_success: bool = True,
        reward_shaping: bool = False,
        model_seed: int | None = 0,
        render_mode: str | None = None,
    ) -> None:
        if task not in _ROBOSUITE_NAMES:
            raise ValueError(f"unknown robosuite task {task!r}; expected one of {sorted(_ROBOSUITE_NAMES)}")
        if render_mode is not None:
            raise ValueError(f"RobosuiteEnv has no rendering (state observations only), got render_mode={render_mode!r}")
        robosuite = _import_robosuite()
        from robosuite.controllers import load_composite_controller_config

        self.task = task
        self.terminate_on_success = bool(terminate_on_success)
        self.render_mode = render_mode
        self.robosuite_env = robosuite.make(
            _ROBOSUITE_NAMES[task],
            robots="Panda",
            controller_configs=load_composite_controller_config(robot="Panda"),
            has_renderer=False,
            has_offscreen_renderer=False,
            use_camera_obs=False,
            use_object_obs=True,
            reward_shaping=reward_shaping,
            control_freq=20,
            # The time limit is gymnasium's (TimeLimit sets `truncated`); robosuite's own horizon
            # would instead refuse further steps with an exception.
            horizon=10_000,
            ignore_done=True,
            # hard_reset=True rebuilds the MuJoCo model on every reset (~1.2 s each), so the model
            # (and model_seed's cube size) is built once.
            hard_reset=False,
            seed=model_seed,
        )
        obs = self.robosuite_env.observation_spec()
        #: where each of :data:`OBS_KEYS` lies in the flat observation.
        self.obs_slices: dict[str, slice] = {}
        start = 0
        for key in OBS_KEYS:
            size = int(np.asarray(obs[key]).size)
            self.obs_slices[key] = slice(start, start + size)
            start += size
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(start,), dtype=np.float32)
        low, high = self.robosuite_env.action_spec
        self.action_space = spaces.Box(np.asarray(low, np.float32), np.asarray(high, np.float32), dtype=np.float32)
        arm = self.robosuite_env.robots[0].part_controllers["right"]
        #: metres (entries 0-2) and radians (3-5) that one unit of action commands in one step.
        self.eef_action_scale: np.ndarray = np.abs(np.asarray(arm.output_max, float) - np.asarray(arm.output_min, float)) / np.abs(
            np.asarray(arm.input_max, float) - np.asarray(arm.input_min, float)
        )  # the controller's own scale_action()
        self._needs_reset = True

    # -- Gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # robosuite draws object placements and the robot's initial joint noise from one
        # Generator (`env.rng`) that its placement samplers hold a reference to, so it is reseeded
        # in place (replacing the object would leave the samplers on the old one). Deriving the
        # seed from np_random makes reset(seed=s) reproducible and unseeded resets differ.
        robosuite_seed = int(self.np_random.integers(2**63))
        self.robosuite_env.rng.bit_generator.state = np.random.default_rng(robosuite_seed).bit_generator.state
        self.robosuite_env.reset()
        # The relative sensors (PickPlace's can-to-eef pose) read other sensors' values from an
        # observation cache that reset() has just emptied, so its observation has zeros there;
        # a second pass sees the filled cache.
        obs = self.robosuite_env._get_observations(force_update=True)
        self._needs_reset = False
        return self._flatten(obs), {"is_success": bool(self.robosuite_env._check_success())}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (and again after a terminated episode)")
        action = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        obs, reward, _, _ = self.robosuite_env.step(action)
        success = bool(self.robosuite_env._check_success())
        terminated = success and self.terminate_on_success
        self._needs_reset = terminated
        return self._flatten(obs), float(reward), terminated, False, {"is_success": success}

    def close(self) -> None:
        if getattr(self, "robosuite_env", None) is not None:
            self.robosuite_env.close()
            self.robosuite_env = None

    def _flatten(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(obs[key], dtype=np.float64).ravel() for key in OBS_KEYS]).astype(np.float32)


# -- Synthetic operators --------------------------------------------------------------------

PROFICIENCY_LEVELS: tuple[str, ...] = ("better", "okay", "worse")


@dataclass(frozen=True)
class Operator:
    """The style of one synthetic demonstrator.

    :param name: e.g. ``"better-1"``.
    :param proficiency: one of :data:`PROFICIENCY_LEVELS`.
    :param gain: action units per metre of position error (the P-controller's speed).
    :param max_speed: cap on the norm of the translation action (1 = 5 cm per step command).
    :param approach_height: how far above the object's top it hovers before descending (m).
    :param xy_first: move horizontally at a safe height before changing height (else a
        straight 3-D line).
    :param noise: std of the temporally correlated noise on the translation action.
    :param hesitation: per-step probability of pausing for 3-12 steps.
    :param regrasp: probability per episode of releasing the first grasp and grasping again.
    :param grasp_jitter: std of the horizontal offset of the grasp point from the object (m).
    :param close_steps: steps the gripper is held closed before lifting.
    """

    name: str
    proficiency: str
    gain: float
    max_speed: float
    approach_height: float
    xy_first: bool
    noise: float
    hesitation: float
    regrasp: float
    grasp_jitter: float
    close_steps: int

    @property
    def proficiency_id(self) -> int:
        """Index of :attr:`proficiency` in :data:`PROFICIENCY_LEVELS` (0 = better)."""
        return PROFICIENCY_LEVELS.index(self.proficiency)


#: Six operators, two per proficiency level (ids 0-1 better, 2-3 okay, 4-5 worse).
OPERATORS: tuple[Operator, ...] = (
    Operator("better-1", "better", gain=14.0, max_speed=1.0, approach_height=0.04, xy_first=False,
             noise=0.02, hesitation=0.0, regrasp=0.0, grasp_jitter=0.002, close_steps=8),
    Operator("better-2", "better", gain=9.0, max_speed=0.8, approach_height=0.10, xy_first=True,
             noise=0.03, hesitation=0.0, regrasp=0.0, grasp_jitter=0.002, close_steps=10),
    Operator("okay-1", "okay", gain=7.0, max_speed=0.6, approach_height=0.06, xy_first=False,
             noise=0.08, hesitation=0.01, regrasp=0.1, grasp_jitter=0.004, close_steps=12),
    Operator("okay-2", "okay", gain=10.0, max_speed=0.7, approach_height=0.12, xy_first=True,
             noise=0.06, hesitation=0.02, regrasp=0.1, grasp_jitter=0.004, close_steps=12),
    Operator("worse-1", "worse", gain=6.0, max_speed=0.6, approach_height=0.08, xy_first=False,
             noise=0.15, hesitation=0.03, regrasp=0.3, grasp_jitter=0.006, close_steps=15),
    Operator("worse-2", "worse", gain=8.0, max_speed=1.0, approach_height=0.15, xy_first=True,
             noise=0.2, hesitation=0.03, regrasp=0.3, grasp_jitter=0.006, close_steps=15),
)


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a robosuite (x, y, z, w) quaternion."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _mat_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """Axis-angle vector (axis * angle) of a rotation matrix."""
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = math.acos(cos)
    if angle < 1e-8:
        return np.zeros(3)
    if math.pi - angle < 1e-4:
        # sin(angle) ~ 0: the axis comes from the symmetric part, R ~ 2 a a^T - I.
        axis = np.sqrt(np.clip((np.diag(r) + 1.0) / 2.0, 0.0, None))
        i = int(np.argmax(axis))
        for j in range(3):
            if j != i and r[i, j] + r[j, i] < 0:
                axis[j] = -axis[j]
        return axis / np.linalg.norm(axis) * angle
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2.0 * math.sin(angle))
    return axis * angle


def _yaw(r: np.ndarray) -> float:
    """Heading of a rotation's x axis in the horizontal plane."""
    return math.atan2(r[1, 0], r[0, 0])


def _wrap(angle: float, period: float = 2 * math.pi) -> float:
    """``angle`` wrapped into ``[-period / 2, period / 2)``."""
    return (angle + period / 2) % period - period / 2


class RobosuiteExpert:
    """Scripted pick-and-lift (Lift) / pick-and-place (Can) expert with an operator's style.

    Phases: hover above the object (gripper yaw aligned with the cube's faces, mod 90 deg),
    descend, close, then lift (Lift) or lift, carry over the can's bin, lower, release and
    retreat (Can).  A grasp that closed on nothing or lets the object slip is retried from the
    hover.  The operator (:data:`OPERATORS`) sets speed, approach height, path shape, action
    noise, pauses and deliberate regrasps; it is drawn uniformly per episode from the ``rng``
    given to :meth:`reset` unless fixed by ``operator``.

    :param env: a :class:`RobosuiteEnv`, possibly wrapped (e.g. from ``gymnasium.make``).
    :param operator: fix the operator (index into :data:`OPERATORS` or its name).
    :param seed: seed of the generator used until :meth:`reset` is given one.
    """

    def __init__(self, env: gym.Env, operator: int | str | None = None, seed: int | None = None) -> None:
        base = env.unwrapped
        if not isinstance(base, RobosuiteEnv):
            raise TypeError(f"RobosuiteExpert needs a RobosuiteEnv (lwd_gym/Lift-v0 or lwd_gym/Can-v0), got {type(base).__name__}")
        if isinstance(operator, str):
            names = [op.name for op in OPERATORS]
            if operator not in names:
                raise ValueError(f"unknown operator {operator!r}; expected one of {names}")
            operator = names.index(operator)
        if operator is not None and not 0 <= operator < len(OPERATORS):
            raise ValueError(f"operator must be in [0, {len(OPERATORS)}), got {operator}")
        self.env = base
        self.task = base.task
        self.fixed_operator = operator
        self._rng = np.random.default_rng(seed)
        s = base.obs_slices
        self._eef_pos, self._eef_quat, self._gripper = s["robot0_eef_pos"], s["robot0_eef_quat"], s["robot0_gripper_qpos"]
        # Object pose inside object-state: Lift is (cube_pos, cube_quat, ...), Can is
        # (can_to_eef_pos, can_to_eef_quat, can_pos, can_quat).
        obj = s["object-state"].start + (0 if self.task == "lift" else 7)
        self._obj_pos, self._obj_quat = slice(obj, obj + 3), slice(obj + 3, obj + 7)
        # Height above the grasp point (the object's centre) that clears the object's top.
        self._clearance = 0.035 if self.task == "lift" else 0.075
        self.operator_id = 0
        self.reset()

    @property
    def operator(self) -> Operator:
        """This episode's operator."""
        return OPERATORS[self.operator_id]

    @property
    def proficiency_id(self) -> int:
        """This episode's proficiency level (index into :data:`PROFICIENCY_LEVELS`)."""
        return self.operator.proficiency_id

    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Start an episode: pick the operator and this episode's variations of its style."""
        if rng is not None:
            self._rng = rng
        rng = self._rng
        self.operator_id = int(rng.integers(len(OPERATORS))) if self.fixed_operator is None else self.fixed_operator
        op = self.operator
        # Small per-episode variation so one operator's demonstrations are not all identical.
        self._gain = op.gain * rng.uniform(0.9, 1.1)
        self._approach = op.approach_height * rng.uniform(0.85, 1.15)
        self._grasp_offset = rng.normal(0.0, op.grasp_jitter, 2)
        self._regrasp_pending = bool(rng.random() < op.regrasp)
        # Can: where to put it down, 4.5-9 cm inside the bin's corner nearest the robot. The bin's
        # centre (target_bin_placements) lies at the edge of the Panda's reach, where the arm sags
        # and cannot get above it.
        self._drop_xy = rng.uniform(0.045, 0.09, 2)
        if self.task == "can":
            rs = self.env.robosuite_env
            centre = np.asarray(rs.target_bin_placements[rs.object_to_id["can"]][:2], dtype=np.float64)
            self._drop_xy += centre - np.asarray(rs.bin_size[:2], dtype=np.float64) / 4.0
        self._phase = "hover"
        self._phase_steps = 0
        self._pause = 0
        self._noise = np.zeros(3)
        self._yaw_goal: float | None = None
        self._anchor = np.zeros(3)
        self._carry_z = 1.0
        self._centred = False

    # -- control helpers -----------------------------------------------------------------
    def _set_phase(self, phase: str) -> None:
        self._phase, self._phase_steps = phase, 0

    def _release(self, eef: np.ndarray) -> None:
        """Open the gripper where it is, then go back to the hover (a new grasp attempt)."""
        self._anchor = eef.copy()
        self._set_phase("release")

    def _move(self, eef: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Translation action of the P-controller towards ``target``, capped at the operator's speed."""
        delta = self._gain * (target - eef)
        norm = float(np.linalg.norm(delta))
        if norm > self.operator.max_speed:
            delta *= self.operator.max_speed / norm
        return delta

    def _rotate(self, eef_rot: np.ndarray) -> np.ndarray:
        """Rotation action towards the gripper pointing down with heading ``_yaw_goal``."""
        c, s = math.cos(self._yaw_goal), math.sin(self._yaw_goal)
        goal = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])  # x = (c, s, 0), z = down
        error = _mat_to_axis_angle(goal @ eef_rot.T)  # world-frame rotation from current to goal
        # 0.5 rad per action unit (controller scale); correct ~60 % of the error per step.
        return np.clip(0.6 * error / self.env.eef_action_scale[3:], -1.0, 1.0)

    def _hover_target(self, eef: np.ndarray, above: np.ndarray) -> tuple[np.ndarray, bool]:
        """Next waypoint towards the point ``above``; True once there (path shape per operator)."""
        xy_error = float(np.linalg.norm(above[:2] - eef[:2]))
        if self.operator.xy_first and xy_error > 0.02:
            # Go up (never down) to the approach height first, then across.
            z = max(eef[2], above[2])
            target = np.array([above[0], above[1], z]) if eef[2] > above[2] - 0.02 else np.array([eef[0], eef[1], z])
        else:
            target = above
        return target, xy_error < 0.015 and abs(above[2] - eef[2]) < 0.02

    # -- policy --------------------------------------------------------------------------
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        eef, eef_rot = obs[self._eef_pos], _quat_to_mat(obs[self._eef_quat])
        obj = obs[self._obj_pos]
        finger_gap = float(obs[self._gripper][0] - obs[self._gripper][1])
        op = self.operator
        if self._yaw_goal is None:
            # Lift: the cube's faces mod 90 deg nearest the current heading; Can: keep the heading.
            self._yaw_goal = _yaw(eef_rot)
        if self.task == "lift" and self._phase in ("hover", "descend"):
            cube_yaw = _yaw(_quat_to_mat(obs[self._obj_quat]))
            self._yaw_goal = _yaw(eef_rot) + _wrap(cube_yaw - _yaw(eef_rot), math.pi / 2)

        grasp = np.array([obj[0] + self._grasp_offset[0], obj[1] + self._grasp_offset[1], obj[2]])
        gripper = -1.0
        self._phase_steps += 1
        phase = self._phase
        if phase == "hover":
            target, arrived = self._hover_target(eef, grasp + [0.0, 0.0, self._clearance + self._approach])
            yaw_ok = abs(_wrap(self._yaw_goal - _yaw(eef_rot))) < math.radians(5)
            if arrived and yaw_ok:
                self._set_phase("descend")
        if self._phase == "descend":
            error = grasp - eef
            xy_error = float(np.linalg.norm(error[:2]))
            # Lower the open fingers past the object's top only when centred over it (with some
            # hysteresis); off-centre they would knock the can over or grasp it badly, so the
            # operator waits just above the object's top (or backs up to it) to re-centre.
            self._centred = xy_error < (0.015 if self._centred else 0.01)
            target = grasp if self._centred else np.array([grasp[0], grasp[1], grasp[2] + self._clearance])
            if self._centred and abs(error[2]) < 0.01:
                self._anchor = eef.copy()
                self._set_phase("close")
            elif self._phase_steps > 150:  # not getting there: start the approach over
                self._set_phase("hover")
        if self._phase == "close":
            target, gripper = self._anchor, 1.0
            if self._phase_steps >= op.close_steps:
                if finger_gap < 0.02:  # closed on nothing (an empty grip leaves ~0.014): missed, try again
                    self._release(eef)
                elif self._regrasp_pending:  # the operator is not happy with the grasp
                    self._regrasp_pending = False
                    self._release(eef)
                else:
                    self._anchor = eef.copy()
                    self._set_phase("lift")
        if self._phase == "release":
            target, gripper = self._anchor + [0.0, 0.0, 0.02], -1.0
            if self._phase_steps >= 8:
                self._set_phase("hover")
        if self._phase == "lift":
            gripper = 1.0
            carry_z = (1.0 if self.task == "can" else self._anchor[2] + 0.15) + 0.3 * self._approach
            target = np.array([self._anchor[0], self._anchor[1], carry_z])
            if np.linalg.norm(obj - eef) > 0.05:  # slipped out of the fingers
                self._release(eef)
            elif self.task == "can" and eef[2] > carry_z - 0.03:
                self._carry_z = carry_z
                self._set_phase("carry")
        if self._phase == "carry":
            gripper = 1.0
            target = np.array([self._drop_xy[0], self._drop_xy[1], self._carry_z])
            if np.linalg.norm(obj - eef) > 0.05:
                self._release(eef)
            elif np.linalg.norm(self._drop_xy - obj[:2]) < 0.02:
                self._set_phase("lower")
        if self._phase == "lower":
            gripper = 1.0
            target = np.array([self._drop_xy[0], self._drop_xy[1], 0.91])
            if eef[2] < 0.925 or self._phase_steps > 60:
                self._anchor = eef.copy()
                self._set_phase("drop")
        if self._phase == "drop":
            # Open in place first, then back off upwards (success needs the gripper away from the can).
            target, gripper = self._anchor + np.array([0.0, 0.0, 0.15 if self._phase_steps > 6 else 0.0]), -1.0
            if self._phase_steps > 6 and np.linalg.norm(obj[:2] - self._drop_xy) > 0.1:
                self._set_phase("hover")  # the can rolled out: pick it up again
        if phase != self._phase and phase == "release" and self._phase == "hover":
            self._grasp_offset = self._rng.normal(0.0, op.grasp_jitter, 2)

        move = self._move(eef, target)
        # Temporally correlated noise (AR(1), unit stationary variance times op.noise): human
        # corrections drift over several steps rather than jitter independently.
        # Its size grows with the commanded speed (motor noise is signal dependent), so fine
        # positioning near the object stays possible for the noisiest operator.
        self._noise = 0.8 * self._noise + 0.6 * self._rng.standard_normal(3)
        speed = min(1.0, float(np.linalg.norm(move)) / op.max_speed)
        move = move + op.noise * (0.25 + 0.75 * speed) * self._noise
        rotate = self._rotate(eef_rot)
        if self._pause == 0 and self._phase in ("hover", "descend", "carry") and self._rng.random() < op.hesitation:
            self._pause = int(self._rng.integers(3, 13))
        if self._pause > 0:
            # Hesitating: hold still (the gripper keeps its command).
            self._pause -= 1
            move, rotate = np.zeros(3), np.zeros(3)
        action = np.concatenate([np.clip(move, -1.0, 1.0), rotate, [gripper]])
        return action.astype(np.float32)


def make_expert(env: gym.Env, operator: int | str | None = None, seed: int | None = None) -> RobosuiteExpert:
    """The scripted expert for a :class:`RobosuiteEnv` (see :class:`RobosuiteExpert`)."""
    return RobosuiteExpert(env, operator=operator, seed=seed)


def _operator_info(expert: RobosuiteExpert) -> dict[str, int]:
    return {"operator_id": expert.operator_id, "proficiency": expert.proficiency_id}


def demo_sources() -> list:
    """``lwd-gym collect robosuite/lift`` and ``robosuite/can``: six synthetic operators of three
    proficiency levels; ``infos["operator_id"]`` (index into :data:`OPERATORS`) and
    ``infos["proficiency"]`` (0 better, 1 okay, 2 worse) are constant over each episode."""
    from lwd_gym.data.sources import DemoSource

    operators = ", ".join(f"{i}={op.name}" for i, op in enumerate(OPERATORS))
    return [
        DemoSource(
            name="robosuite/lift",
            make_env=lambda: gym.make(LIFT_ID),
            make_expert=make_expert,
            dataset_id="lwd/robosuite-lift/mh-v0",
            episode_info=_operator_info,
            extra="robosuite",
            description=(
                "robosuite Lift (Panda, OSC_POSE): scripted pick-and-lift by six synthetic operators "
                f"(infos['operator_id']: {operators}; infos['proficiency']: 0 better, 1 okay, 2 worse)."
            ),
        ),
        DemoSource(
            name="robosuite/can",
            make_env=lambda: gym.make(CAN_ID),
            make_expert=make_expert,
            dataset_id="lwd/robosuite-can/mh-v0",
            episode_info=_operator_info,
            extra="robosuite",
            description=(
                "robosuite PickPlaceCan (Panda, OSC_POSE): scripted pick-and-place of the can into its bin by six "
                f"synthetic operators (infos['operator_id']: {operators}; infos['proficiency']: 0 better, 1 okay, 2 worse)."
            ),
        ),
    ]
