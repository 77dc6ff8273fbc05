"""A planning expert for gym-pusht's PushT, and its demonstration sources.

gym-pusht ships no expert and no data, so :class:`PushTExpert` plans pushes itself: at each
replanning point it simulates a few hundred candidate pushes (contact point on the T outline x
push direction x push length) on a private copy of the pymunk scene, scores each by the mean
distance of the T's 8 corners to their goal positions after the push, and executes one of the
best as targets for the agent: a collision-free approach that ends at rest next to the contact
point, then the simulated push.  Randomised tie-breaking among near-equal pushes and randomised
contact points / push lengths make the demonstrations multimodal, like human PushT data.

gym-pusht is optional (``pip install 'lwd-gym[pusht]'``): this module imports without it and
imports it only when an env or an expert is built.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "gym_pusht/PushT-v0"
_INSTALL_HINT = "pip install 'lwd-gym[pusht]'"

#: The T in block coordinates (gym-pusht's ``add_tee`` with scale 30): crossbar, then stem.
#: The block's pose is (position of this frame's origin, angle); its 8 corners are the keypoints.
T_RECTS_LOCAL = np.array(
    [
        [[-60.0, 0.0], [60.0, 0.0], [60.0, 30.0], [-60.0, 30.0]],
        [[-15.0, 30.0], [15.0, 30.0], [15.0, 120.0], [-15.0, 120.0]],
    ]
)
T_KEYPOINTS_LOCAL = T_RECTS_LOCAL.reshape(8, 2)
AGENT_RADIUS = 15.0

#: Contact points as (point on the T outline, outward normal), in block coordinates.  Points in
#: the concave corners are kept far enough from the other bar for the agent (radius 15) to fit.
_CONTACTS = np.array(
    [
        # top face of the crossbar
        *[[[x, 0.0], [0.0, -1.0]] for x in (-50.0, -30.0, -10.0, 10.0, 30.0, 50.0)],
        # crossbar ends
        [[-60.0, 15.0], [-1.0, 0.0]],
        [[60.0, 15.0], [1.0, 0.0]],
        # underside of the crossbar, either side of the stem
        [[-45.0, 30.0], [0.0, 1.0]],
        [[45.0, 30.0], [0.0, 1.0]],
        # stem sides
        *[[[sx * 15.0, y], [sx, 0.0]] for sx in (-1.0, 1.0) for y in (70.0, 105.0)],
        # stem bottom
        [[0.0, 120.0], [0.0, 1.0]],
    ]
)
#: How far each contact may be moved along its face at random (keeps points on the face and
#: concave-corner points clear of the other bar).
_CONTACT_JITTER = np.array([6.0] * 6 + [6.0] * 2 + [5.0] * 2 + [8.0] * 4 + [7.0])


def _require_gym_pusht() -> Any:
    """Import gym_pusht (which registers ``gym_pusht/PushT-v0``) or explain how to get it."""
    try:
        import gym_pusht
    except ImportError as err:
        raise ImportError(f"PushT needs gym-pusht: {_INSTALL_HINT}") from err
    return gym_pusht


def _pusht_env_class() -> type:
    _require_gym_pusht()
    from gym_pusht.envs.pusht import PushTEnv

    return PushTEnv


class PushTResetInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds ``coverage`` to PushT's reset info, so that reset and step infos share their keys.

    gym-pusht reports ``coverage`` only from ``step``; Minari (and :func:`lwd_gym.data.collect.
    rollout_episodes`) need the same info keys at every step of an episode.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        info["coverage"] = float(self.env.unwrapped._get_coverage())
        return obs, info


def make_pusht_env(obs_type: str = "state", **kwargs: Any) -> gym.Env:
    """``gym.make("gym_pusht/PushT-v0", obs_type=obs_type, **kwargs)`` with constant info keys.

    * ``obs_type="state"``: ``Box`` of 5: agent x, y, block x, y (origin of the T frame: middle
      of the crossbar's top edge), block angle in ``[0, 2 pi)``.
    * ``obs_type="environment_state_agent_pos"``: gym-pusht returns a ``Dict``; it is flattened
      with :class:`gymnasium.wrappers.FlattenObservation` into a ``Box`` of 18 in the Dict's
      (sorted) key order: ``agent_pos`` (x, y), then ``environment_state`` (the T's 8 corners,
      x0, y0, ..., x7, y7).
    * Other obs types are returned as gym-pusht makes them.

    ``info`` has ``coverage`` at reset too (:class:`PushTResetInfo`).  Raises ImportError (with
    the install command) without gym-pusht.
    """
    _require_gym_pusht()
    env: gym.Env = PushTResetInfo(gym.make(ENV_ID, obs_type=obs_type, **kwargs))
    if obs_type == "environment_state_agent_pos":
        env = gym.wrappers.FlattenObservation(env)
    return env


# --------------------------------------------------------------------------------------------
# Geometry (numpy, world coordinates in pixels)
# --------------------------------------------------------------------------------------------


def _rotation(angle: float) -> np.ndarray:
    # Same convention as pymunk's Vec2d.rotated.
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _to_world(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Block-frame points -> world, for a pose (origin x, origin y, angle)."""
    return points @ _rotation(pose[2]).T + pose[:2]


def keypoint_error(pose: np.ndarray, goal_pose: np.ndarray) -> float:
    """Mean distance (px) between the T's 8 corners at ``pose`` and at ``goal_pose``."""
    diff = _to_world(T_KEYPOINTS_LOCAL, np.asarray(pose, float)) - _to_world(T_KEYPOINTS_LOCAL, np.asarray(goal_pose, float))
    return float(np.linalg.norm(diff, axis=-1).mean())


def _keypoint_errors(poses: np.ndarray, goal_pose: np.ndarray) -> np.ndarray:
    """Vectorised :func:`keypoint_error` for poses of shape (n, 3)."""
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (n, 2, 2)
    world = np.einsum("nij,kj->nki", rot, T_KEYPOINTS_LOCAL) + poses[:, None, :2]
    goal = _to_world(T_KEYPOINTS_LOCAL, goal_pose)
    return np.linalg.norm(world - goal, axis=-1).mean(axis=1)


def distance_to_t(points: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Distance of each point (P, 2) to the T given as its two world rectangles (2, 4, 2); 0 inside."""
    a = rects
    ab = np.roll(rects, -1, axis=1) - a  # edges (2, 4, 2)
    ap = points[:, None, None, :] - a[None]  # (P, 2, 4, 2)
    t = np.clip((ap * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    dist = np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(axis=2)  # (P, 2)
    cross = ab[None, ..., 0] * ap[..., 1] - ab[None, ..., 1] * ap[..., 0]
    inside = (cross >= 0).all(axis=2) | (cross <= 0).all(axis=2)
    return np.where(inside, 0.0, dist).min(axis=1)


def _segment_points(a: np.ndarray, b: np.ndarray, spacing: float = 2.0) -> np.ndarray:
    n = max(2, int(math.ceil(float(np.linalg.norm(b - a)) / spacing)) + 1)
    return a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)


def _segment_clear(a: np.ndarray, b: np.ndarray, rects: np.ndarray, clearance: float) -> bool:
    return bool(distance_to_t(_segment_points(a, b), rects).min() >= clearance)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise convex hull (Andrew's monotone chain), collinear points dropped."""
    pts = sorted(map(tuple, np.asarray(points, float)))

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0]) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


class _InflatedHull:
    """Convex hull of the T grown by ``radius`` (polygonal, slightly larger than the exact
    Minkowski sum): the region the agent's centre keeps out of while travelling round the block."""

    def __init__(self, rects: np.ndarray, radius: float, n_dirs: int = 16) -> None:
        angles = 2 * np.pi * np.arange(n_dirs) / n_dirs
        # Circumscribe the circle so that the polygon contains the exact offset shape.
        ring = radius / math.cos(math.pi / n_dirs) * np.stack([np.cos(angles), np.sin(angles)], -1)
        core = _convex_hull(rects.reshape(-1, 2))
        self.vertices = _convex_hull((core[:, None, :] + ring[None]).reshape(-1, 2))
        edges = np.roll(self.vertices, -1, axis=0) - self.vertices
        # Outward normals of a counter-clockwise polygon; inside <=> normals @ x <= offsets.
        self.normals = np.stack([edges[:, 1], -edges[:, 0]], -1) / np.linalg.norm(edges, axis=1, keepdims=True)
        self.offsets = (self.normals * self.vertices).sum(-1)

    def contains(self, point: np.ndarray) -> bool:
        return bool((self.normals @ point <= self.offsets).all())

    def exit_distance(self, point: np.ndarray, direction: np.ndarray) -> float:
        """How far from ``point`` (inside) along ``direction`` the hull's boundary is; 0 outside."""
        if not self.contains(point):
            return 0.0
        along = self.normals @ direction
        ahead = along > 1e-9
        return float(((self.offsets - self.normals @ point)[ahead] / along[ahead]).min())

    def path_around(self, start: np.ndarray, end: np.ndarray) -> list[np.ndarray]:
        """Intermediate waypoints of the shorter way round the hull from ``start`` to ``end``
        (both outside it): a chain of the hull of (hull + the two points)."""
        pts = np.vstack([self.vertices, start, end])
        hull = _convex_hull(pts)
        i = _row_index(hull, start)
        j = _row_index(hull, end)
        if i is None or j is None:  # one point sees the other past the hull: go straight
            return []
        n = len(hull)
        forward = [hull[(i + k) % n] for k in range(1, (j - i) % n)]
        backward = [hull[(i - k) % n] for k in range(1, (i - j) % n)]

        def length(chain: list[np.ndarray]) -> float:
            seq = [start, *chain, end]
            return float(sum(np.linalg.norm(b - a) for a, b in zip(seq[:-1], seq[1:])))

        def outside_workspace(chain: list[np.ndarray]) -> float:
            # Chains that leave [0, 512]^2 would be clipped into the block: avoid them.
            return float(sum(np.clip(-p, 0, None).sum() + np.clip(p - 512.0, 0, None).sum() for p in chain))

        return min((forward, backward), key=lambda c: (outside_workspace(c) > 1.0, length(c)))


def _row_index(rows: np.ndarray, row: np.ndarray) -> int | None:
    hits = np.flatnonzero(np.all(np.abs(rows - row) < 1e-9, axis=1))
    return int(hits[0]) if len(hits) else None


# --------------------------------------------------------------------------------------------
# Agent dynamics: gym-pusht's agent is a kinematic body under PD control of its target, so its
# motion does not depend on contacts and is an exact linear system per axis.
# --------------------------------------------------------------------------------------------


class _AgentModel:
    """One env step of the PD-controlled agent, per axis: ``x' = A x + B u`` with x = (p, v)."""

    def __init__(self, k_p: float, k_v: float, dt: float, n_substeps: int) -> None:
        self.k_p, self.k_v, self.dt, self.n_substeps = k_p, k_v, dt, n_substeps
        # One substep, as gym-pusht integrates it: v += (k_p (u - p) - k_v v) dt; p += v dt.
        m = np.array([[1 - k_p * dt * dt, dt * (1 - k_v * dt)], [-k_p * dt, 1 - k_v * dt]])
        b = np.array([k_p * dt * dt, k_p * dt])
        self.A = np.linalg.matrix_power(m, n_substeps)
        self.B = sum(np.linalg.matrix_power(m, j) @ b for j in range(n_substeps))

    def deadbeat(self, pos: np.ndarray, vel: np.ndarray, goal: np.ndarray, n_steps: int) -> np.ndarray:
        """Targets (n_steps, 2) that bring the agent from (pos, vel) to rest at ``goal`` in
        ``n_steps`` env steps, least-norm in their deviation from ``goal``."""
        # In deviations from the rest state (goal, 0): e_n = A^n e_0 + sum_i A^(n-1-i) B w_i = 0.
        g = np.stack([np.linalg.matrix_power(self.A, n_steps - 1 - i) @ self.B for i in range(n_steps)], -1)
        a_n = np.linalg.matrix_power(self.A, n_steps)
        e0 = np.stack([pos - goal, vel], 0)  # (2 [p, v], 2 axes)
        w = -g.T @ np.linalg.solve(g @ g.T, a_n @ e0)  # (n_steps, 2 axes)
        return goal + w

    def substep_path(self, pos: np.ndarray, vel: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions at every substep (n*n_substeps, 2) and the velocity set before each substep."""
        p, v = np.array(pos, float), np.array(vel, float)
        positions, velocities = [], []
        for u in targets:
            for _ in range(self.n_substeps):
                v = v + (self.k_p * (u - p) - self.k_v * v) * self.dt
                p = p + v * self.dt
                positions.append(p)
                velocities.append(v)
        return np.array(positions), np.array(velocities)


# --------------------------------------------------------------------------------------------
# The expert
# --------------------------------------------------------------------------------------------


class _Push:
    """A chosen push: start at rest at ``start``, then follow ``targets``; ``poses`` is the
    simulated block pose after each of those steps."""

    def __init__(self, start: np.ndarray, targets: np.ndarray, poses: np.ndarray) -> None:
        self.start, self.targets, self.poses = start, targets, poses


class PushTExpert:
    """Planning expert for ``gym_pusht/PushT-v0`` (any obs type): reads the true pymunk state.

    At each replanning point it simulates every candidate push (15 contact points on the T
    outline, each moved at random along its face, x 3 directions within the friction cone x 3
    push lengths proportional to the current error) on a private ``PushTEnv`` and scores them by
    the mean corner distance to the goal pose (:func:`keypoint_error`).  One of the pushes whose
    error reduction is within ``tie_tolerance`` of the best is drawn at random, so that equally
    good strategies all appear in the data.  Execution: travel round the block (outside its hull
    grown by the agent's radius + ``clearance``), come to rest ``gap`` px off the contact point
    with a deadbeat approach (the agent's PD dynamics are linear and contact-free, so this is
    exact), then play the simulated push.  It replans after each push, and earlier when the
    block moves unexpectedly (a bump, or a perturbation wrapper) or departs from the simulation.

    :param env: the PushT env the expert acts in (possibly wrapped); it reads ``env.unwrapped``'s
        ``agent``, ``block`` and ``goal_pose``, so observations are ignored.
    :param seed: seed of the expert's own generator, used until :meth:`reset` gets one.
    :param tie_tolerance: pushes whose error reduction is at least ``(1 - tie_tolerance)`` times
        the best one's are drawn from uniformly.
    :param push_speed: px per env step a push covers on average (fewer steps for long pushes).
    :param clearance: extra distance (px) the agent keeps from the block while travelling round it.
    :param gap: distance (px) between agent and block where a push starts.
    :param directions: push directions tried, in radians from the contact's inward normal
        (gym-pusht's friction coefficient is 1, so within +-0.79 the contact sticks).
    :param length_factors: push lengths tried, as multiples of the current keypoint error
        (each scaled by a random factor in [0.8, 1.25] per plan).
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        seed: int | None = None,
        tie_tolerance: float = 0.15,
        push_speed: float = 25.0,
        clearance: float = 10.0,
        gap: float = 3.0,
        directions: tuple[float, ...] = (-0.5, 0.0, 0.5),
        length_factors: tuple[float, ...] = (0.3, 0.6, 1.0),
    ) -> None:
        if not 0.0 <= tie_tolerance < 1.0:
            raise ValueError(f"tie_tolerance must be in [0, 1), got {tie_tolerance}")
        if push_speed <= 0 or clearance <= 0 or gap <= 0:
            raise ValueError(f"push_speed, clearance and gap must be > 0, got {push_speed}, {clearance}, {gap}")
        if not directions or not length_factors or min(length_factors) <= 0:
            raise ValueError("directions and length_factors must be non-empty, length_factors > 0")
        pusht_env = _pusht_env_class()
        if not isinstance(env.unwrapped, pusht_env):
            raise ValueError(f"PushTExpert needs a gym-pusht PushTEnv, got {type(env.unwrapped).__name__}")
        self.env = env
        self.tie_tolerance = float(tie_tolerance)
        self.push_speed = float(push_speed)
        self.clearance = float(clearance)
        self.gap = float(gap)
        self.directions = tuple(float(d) for d in directions)
        self.length_factors = tuple(float(f) for f in length_factors)
        self._rng = np.random.default_rng(seed)
        real = env.unwrapped
        self._model = _AgentModel(real.k_p, real.k_v, real.dt, int(1 / (real.dt * real.control_hz)))
        self._sim: Any = None
        self._sim_key: tuple[Any, ...] | None = None
        #: Number of plans made this episode (for diagnostics).
        self.num_plans = 0
        self.reset()

    # -- protocol -----------------------------------------------------------------------------

    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Start a new episode; ``rng`` (if given) drives this episode's and later random choices."""
        if rng is not None:
            self._rng = rng
        self._mode = "plan"
        self._push: _Push | None = None
        self._waypoints: list[np.ndarray] = []
        self._final_targets: list[np.ndarray] = []
        self._push_index = 0
        self._plan_keypoints: np.ndarray | None = None
        self.num_plans = 0

    def __call__(self, obs: Any = None) -> np.ndarray:
        """The next target position of the agent (float32 array of 2 in [0, 512])."""
        for _ in range(3):  # at most: abandon a plan, make a new one, act on it
            target = self._act()
            if target is not None:
                return np.clip(target, 0.0, 512.0).astype(np.float32)
        # No executable push was found (e.g. the block is jammed in a corner the agent cannot
        # reach): hold still; the next call plans again with new random contact points.
        return np.asarray(self.env.unwrapped.agent.position, dtype=np.float32)

    # -- state ----------------------------------------------------------------------------------

    def _state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        real = self.env.unwrapped  # bodies are re-created at each reset: never cache them
        block, agent = real.block, real.agent
        pose = np.array([block.position.x, block.position.y, block.angle])
        return pose, np.array(agent.position, float), np.array(agent.velocity, float), np.asarray(real.goal_pose, float)

    def _block_moved(self, pose: np.ndarray, tolerance: float) -> bool:
        assert self._plan_keypoints is not None
        return bool(np.linalg.norm(_to_world(T_KEYPOINTS_LOCAL, pose) - self._plan_keypoints, axis=-1).mean() > tolerance)

    # -- acting -------------------------------------------------------------------------------

    def _act(self) -> np.ndarray | None:
        pose, pos, vel, goal = self._state()
        if self._mode == "plan":
            if not self._plan(pose, pos, goal):
                return None
            self._mode = "approach"
        rects = _to_world(T_RECTS_LOCAL.reshape(-1, 2), pose).reshape(2, 4, 2)
        assert self._push is not None

        if self._mode in ("approach", "final") and self._block_moved(pose, 1.0):
            self._mode = "plan"  # bumped or perturbed on the way: the plan is stale
            return None

        if self._mode == "approach":
            # Go straight for the start as soon as a deadbeat approach to it is collision-free.
            for n in (3, 4, 5):
                targets = self._model.deadbeat(pos, vel, self._push.start, n)
                if self._path_clear(pos, vel, targets, rects):
                    break
            else:
                while self._waypoints and np.linalg.norm(self._waypoints[0] - pos) < 12.0:
                    self._waypoints.pop(0)
                if self._waypoints:
                    return self._waypoints[0]
                # Out of waypoints without a clear final approach (rare): approach anyway.
            # The agent's motion is exact and contact-free, so these targets are played open-loop.
            self._mode, self._final_targets = "final", list(targets)

        if self._mode == "final":
            if self._final_targets:
                return self._final_targets.pop(0)
            self._mode, self._push_index = "push", 0

        # push
        if self._push_index > 0:
            expected = _to_world(T_KEYPOINTS_LOCAL, self._push.poses[self._push_index - 1])
            if np.linalg.norm(_to_world(T_KEYPOINTS_LOCAL, pose) - expected, axis=-1).mean() > 6.0:
                self._mode = "plan"  # the push went differently from its simulation
                return None
        if self._push_index >= len(self._push.targets):
            self._mode = "plan"
            return None
        self._push_index += 1
        return self._push.targets[self._push_index - 1]

    def _path_clear(self, pos: np.ndarray, vel: np.ndarray, targets: np.ndarray, rects: np.ndarray) -> bool:
        """Whether playing ``targets`` keeps the agent off the block (and the targets unclipped)."""
        if np.any(targets < 0.0) or np.any(targets > 512.0):
            return False
        path, _ = self._model.substep_path(pos, vel, targets)
        return bool(distance_to_t(path, rects).min() >= AGENT_RADIUS + min(1.5, self.gap / 2))

    # -- planning -----------------------------------------------------------------------------

    def _simulator(self) -> Any:
        real = self.env.unwrapped
        key = (real.block_cog, real.damping)
        if self._sim is None or self._sim_key != key:
            # A private PushTEnv with the real one's physics settings: its space is where the
            # candidates are tried, so the real scene is never touched.
            sim = _pusht_env_class()(obs_type="state", block_cog=real.block_cog, damping=real.damping)
            sim._setup()
            self._sim, self._sim_key = sim, key
        return self._sim

    def _simulate(self, pose: np.ndarray, start: np.ndarray, velocities: np.ndarray) -> np.ndarray:
        """Block poses after each env step of a push whose agent velocities (per substep) are given."""
        sim = self._simulator()
        space, agent, block = sim.space, sim.agent, sim.block
        # Park the agent far away and let the space forget the previous candidate's contacts
        # (pymunk keeps an arbiter alive for a few steps after separation).
        agent.velocity = (0.0, 0.0)
        agent.position = (-1000.0, -1000.0)
        space.reindex_shapes_for_body(agent)
        for _ in range(4):
            space.step(sim.dt)
        block.angle = float(pose[2])  # angle first: pymunk rotates about the centre of gravity
        block.position = (float(pose[0]), float(pose[1]))
        block.velocity = (0.0, 0.0)
        block.angular_velocity = 0.0
        space.reindex_shapes_for_body(block)
        agent.position = (float(start[0]), float(start[1]))
        space.reindex_shapes_for_body(agent)
        n_sub = self._model.n_substeps
        poses = np.empty((len(velocities) // n_sub, 3))
        for i, v in enumerate(velocities):
            agent.velocity = (float(v[0]), float(v[1]))
            space.step(sim.dt)
            if (i + 1) % n_sub == 0:
                p = block.position
                poses[i // n_sub] = (p.x, p.y, block.angle)
        return poses

    def _plan(self, pose: np.ndarray, agent_pos: np.ndarray, goal: np.ndarray) -> bool:
        """Choose the next push and the waypoints to reach it; False if none is executable."""
        self.num_plans += 1
        rng = self._rng
        error = keypoint_error(pose, goal)
        rects = _to_world(T_RECTS_LOCAL.reshape(-1, 2), pose).reshape(2, 4, 2)
        rot = _rotation(pose[2])

        # Contact points, each moved at random along its face (a source of multimodality).
        local_points = _CONTACTS[:, 0].copy()
        local_normals = _CONTACTS[:, 1]
        tangents = np.stack([-local_normals[:, 1], local_normals[:, 0]], -1)
        local_points += tangents * (rng.uniform(-1.0, 1.0, len(_CONTACTS)) * _CONTACT_JITTER)[:, None]
        points = local_points @ rot.T + pose[:2]
        normals = local_normals @ rot.T
        starts = points + normals * (AGENT_RADIUS + self.gap)

        # Push lengths scale with the error (long pushes far away, pixel-sized ones near the goal).
        lengths = np.clip(error * np.asarray(self.length_factors) * rng.uniform(0.8, 1.25, len(self.length_factors)), 1.5, 150.0)
        profiles = {}
        for length in lengths:
            travel = length + self.gap
            n = max(2, int(math.ceil(travel / self.push_speed)))
            targets_1d = self._model.deadbeat(np.zeros(1), np.zeros(1), np.array([travel]), n)[:, 0]
            _, vel_1d = self._model.substep_path(np.zeros(1), np.zeros(1), targets_1d[:, None])
            profiles[float(length)] = (targets_1d, vel_1d[:, 0])

        candidates: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        final_poses = []
        for k in range(len(_CONTACTS)):
            start = starts[k]
            if np.any(start < 1.0) or np.any(start > 511.0):
                continue
            if distance_to_t(start[None], rects)[0] < AGENT_RADIUS + self.gap - 0.5:
                continue  # the start overlaps another part of the T (can only happen by jitter)
            for alpha in self.directions:
                direction = -normals[k] @ _rotation(alpha).T
                for length, (targets_1d, vel_1d) in profiles.items():
                    targets = start + targets_1d[:, None] * direction
                    if np.any(targets < 0.0) or np.any(targets > 512.0):
                        continue  # the env would clip them and the push would not be the simulated one
                    poses = self._simulate(pose, start, vel_1d[:, None] * direction)
                    candidates.append((start, targets, poses, normals[k]))
                    final_poses.append(poses[-1])
        if not candidates:
            return False

        errors = _keypoint_errors(np.array(final_poses), goal)
        gains = error - errors
        best = float(gains.max())
        if best > 0:
            pool = np.flatnonzero(gains >= best * (1.0 - self.tie_tolerance))
        else:
            # Nothing helps from here (rare): try one of the least harmful pushes, which changes
            # the situation so that the next plan can find progress.
            pool = np.argsort(-gains)[:5]
        choice = int(rng.choice(pool))
        start, targets, poses, normal = candidates[choice]
        self._push = _Push(start, targets, poses)
        self._plan_keypoints = _to_world(T_KEYPOINTS_LOCAL, pose)
        self._waypoints = self._route(agent_pos, start, normal, rects)
        return True

    def _route(self, agent_pos: np.ndarray, start: np.ndarray, normal: np.ndarray, rects: np.ndarray) -> list[np.ndarray]:
        """Waypoints from the agent to a point from which ``start`` is reached along ``normal``,
        keeping the agent (radius 15) clear of the block."""
        hull = _InflatedHull(rects, AGENT_RADIUS + self.clearance)
        waypoints: list[np.ndarray] = []
        here = agent_pos
        if hull.contains(here):
            # Back off from the block first (the agent usually ends a push touching it).
            away = self._away_direction(here, rects)
            here = here + away * (hull.exit_distance(here, away) + 2.0)
            waypoints.append(here)
        entry = start + normal * (hull.exit_distance(start, normal) + 2.0)
        if not _segment_clear(here, entry, rects, AGENT_RADIUS + 3.0):
            chain = hull.path_around(here, entry)
            # Shortcut the chain wherever the straight line stays clear of the block.
            i = 0
            seq = [here, *chain, entry]
            while i < len(seq) - 1:
                j = len(seq) - 1
                while j > i + 1 and not _segment_clear(seq[i], seq[j], rects, AGENT_RADIUS + 4.0):
                    j -= 1
                if j < len(seq) - 1:
                    waypoints.append(seq[j])
                i = j
        waypoints.append(entry)
        return [np.clip(w, 0.0, 512.0) for w in waypoints]

    @staticmethod
    def _away_direction(point: np.ndarray, rects: np.ndarray) -> np.ndarray:
        """Unit vector pointing away from the T at ``point`` (the distance's gradient)."""
        eps = 0.5
        probes = point + np.array([[eps, 0.0], [-eps, 0.0], [0.0, eps], [0.0, -eps]])
        d = distance_to_t(probes, rects)
        grad = np.array([d[0] - d[1], d[2] - d[3]])
        norm = float(np.linalg.norm(grad))
        return grad / norm if norm > 1e-9 else np.array([1.0, 0.0])


def demo_sources() -> list:
    """``lwd-gym collect pusht`` and ``pusht/keypoints`` (see :mod:`lwd_gym.data.sources`)."""
    from lwd_gym.data.sources import DemoSource

    return [
        DemoSource(
            name="pusht",
            make_env=lambda: make_pusht_env("state"),
            make_expert=lambda env: PushTExpert(env),
            dataset_id="lwd/pusht/expert-v0",
            extra="pusht",
            description="gym-pusht PushT (5-d state obs): a push-planning expert (lwd_gym.envs.pusht.PushTExpert).",
        ),
        DemoSource(
            name="pusht/keypoints",
            make_env=lambda: make_pusht_env("environment_state_agent_pos"),
            make_expert=lambda env: PushTExpert(env),
            dataset_id="lwd/pusht-keypoints/expert-v0",
            extra="pusht",
            description=(
                "gym-pusht PushT, obs = agent xy then the T's 8 corners (18-d): a push-planning expert "
                "(lwd_gym.envs.pusht.PushTExpert)."
            ),
        ),
    ]
