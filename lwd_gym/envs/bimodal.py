"""A tiny 2-D navigation task whose demonstrations are bimodal.

A point starts below a circular obstacle and must reach a goal above it. The
expert goes around the obstacle on the left or on the right with equal
probability, so a unimodal policy fit to the demonstrations (e.g. a Gaussian
regression of actions) averages the two modes and drives straight into the
obstacle, while a policy *distribution* (LWD) can represent both.
"""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import gymnasium as gym
import minari
import numpy as np
from gymnasium import spaces

from lwd_gym.data.collect import rollout_episodes, write_minari_dataset

ENV_ID = "lwd_gym/Bimodal-v0"


class BimodalEnv(gym.Env[np.ndarray, np.ndarray]):
    """Point navigation in ``[-1, 1]^2`` around a circular obstacle.

    * Observation: the point's ``(x, y)`` position, ``Box(-1, 1, (2,), float32)``.
    * Action: a velocity in ``Box(-1, 1, (2,), float32)``; the point moves by
      ``clip(action, -1, 1) * max_step`` and is clipped to the square.
    * Start: ``x ~ U(-0.05, 0.05)``, ``y ~ -0.55 + U(-0.03, 0.03)``, just below the obstacle,
      so a policy must commit to a side within a few steps.
    * Reward: ``1.0`` on the step that reaches the goal, else ``0.0``.
    * Termination: success (within ``goal_radius`` of ``goal``) or collision
      (the step's segment enters the obstacle disc; the point stops at the
      contact point).
    * ``info`` (same keys at reset and every step, as Minari requires):
      ``is_success`` (bool), ``is_collision`` (bool) and ``side`` (int):
      ``0`` until the point first reaches the obstacle centre's height, then
      ``-1`` if it was left of the centre there and ``+1`` if right; it keeps
      that value for the rest of the episode.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        max_step: float = 0.05,
        goal: tuple[float, float] = (0.0, 0.8),
        goal_radius: float = 0.1,
        obstacle_center: tuple[float, float] = (0.0, 0.0),
        obstacle_radius: float = 0.3,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"]
            raise ValueError(f"unsupported render_mode {render_mode!r}; expected one of {modes}")
        self.max_step = float(max_step)
        self.goal = np.asarray(goal, dtype=np.float64)
        self.goal_radius = float(goal_radius)
        self.obstacle_center = np.asarray(obstacle_center, dtype=np.float64)
        self.obstacle_radius = float(obstacle_radius)
        self.render_mode = render_mode

        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

        # Internal state is float64 so that clipping/geometry is exact; only
        # the observation is cast to float32.
        self._pos = np.zeros(2, dtype=np.float64)
        self._side = 0
        # Rendering cache (static scene, pixel x, pixel y), built on first render.
        self._render_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        x = self.np_random.uniform(-0.05, 0.05)
        y = -0.55 + self.np_random.uniform(-0.03, 0.03)
        self._pos = np.array([x, y], dtype=np.float64)
        self._side = 0
        return self._obs(), self._info(False, False)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        start = self._pos
        delta = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) * self.max_step
        end = np.clip(start + delta, -1.0, 1.0)

        # Check the whole segment (not just the end point) so that a large
        # step cannot jump over the obstacle.
        hit_t = self._segment_hit(start, end)
        collision = hit_t is not None
        if collision:
            end = start + hit_t * (end - start)
        self._pos = end

        if self._side == 0 and end[1] >= self.obstacle_center[1]:
            self._side = -1 if end[0] < self.obstacle_center[0] else 1

        success = not collision and math.dist(end, self.goal) <= self.goal_radius
        reward = 1.0 if success else 0.0
        return self._obs(), reward, success or collision, False, self._info(success, collision)

    def render(self) -> np.ndarray | None:
        """Return an RGB image (``rgb_array`` mode) of the scene, else ``None``."""
        if self.render_mode != "rgb_array":
            return None
        if self._render_cache is None:
            # The scene is static, so draw it once; only the point moves.
            size = 128
            coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
            xx, yy = np.meshgrid(coords, -coords)  # image rows go top to bottom
            scene = np.full((size, size, 3), 255, dtype=np.uint8)
            cx, cy = self.obstacle_center
            scene[(xx - cx) ** 2 + (yy - cy) ** 2 <= self.obstacle_radius**2] = (90, 90, 90)
            gx, gy = self.goal
            scene[(xx - gx) ** 2 + (yy - gy) ** 2 <= self.goal_radius**2] = (60, 180, 75)
            self._render_cache = (scene, xx, yy)
        scene, xx, yy = self._render_cache
        frame = scene.copy()
        px, py = self._pos
        frame[(xx - px) ** 2 + (yy - py) ** 2 <= 0.03**2] = (30, 80, 220)
        return frame

    def _segment_hit(self, start: np.ndarray, end: np.ndarray) -> float | None:
        """Fraction of the segment ``start -> end`` at which it first enters the
        obstacle disc, or ``None`` if it stays outside."""
        f = start - self.obstacle_center
        d = end - start
        r2 = self.obstacle_radius**2
        c = f @ f - r2
        if c <= 0.0:  # already touching/inside (only if stepped after termination)
            return 0.0
        a = d @ d
        if a == 0.0:
            return None
        # Closest point of the segment to the centre decides whether it hits.
        t_close = min(max(-(f @ d) / a, 0.0), 1.0)
        closest = f + t_close * d
        if closest @ closest >= r2:
            return None
        # Entry point: smaller root of |f + t d|^2 = r^2 (exists since it hits).
        b = f @ d
        return (-b - math.sqrt(max(b * b - a * c, 0.0))) / a

    def _obs(self) -> np.ndarray:
        return self._pos.astype(np.float32)

    def _info(self, success: bool, collision: bool) -> dict[str, Any]:
        return {"is_success": bool(success), "is_collision": bool(collision), "side": int(self._side)}


class BimodalExpert:
    """Scripted, noisy expert for :class:`BimodalEnv` that passes left or right.

    Each episode (call :meth:`reset` at its start) it draws a side (``-1`` or
    ``+1`` with probability 1/2 unless fixed) and a waypoint at
    ``x = side * U(0.55, 0.65)``, ``y = U(-0.1, 0.1)``; it heads for the waypoint
    until within 0.1 of it, then for the goal, at full speed when far, with
    Gaussian action noise.

    The straight lines start -> waypoint -> goal pass ~0.1 outside the obstacle
    (radius 0.3); with the action noise, 1,000 seeded episodes stayed >= 0.03
    clear of it and all succeeded (~34 steps each).
    """

    def __init__(
        self,
        side: int | None = None,
        noise: float = 0.1,
        seed: int | None = None,
        *,
        max_step: float = 0.05,
        goal: tuple[float, float] = (0.0, 0.8),
    ) -> None:
        if side not in (None, -1, 1):
            raise ValueError(f"side must be None, -1 or +1, got {side!r}")
        self.fixed_side = side
        self.noise = float(noise)
        self.max_step = float(max_step)
        self.goal = np.asarray(goal, dtype=np.float64)
        self.waypoint_radius = 0.1
        self._rng = np.random.default_rng(seed)
        self.side: int = 0
        self._waypoint = np.zeros(2, dtype=np.float64)
        self._reached_waypoint = False
        self.reset()

    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Start a new episode; ``rng`` (if given) drives this and later noise draws."""
        if rng is not None:
            self._rng = rng
        self.side = self.fixed_side if self.fixed_side is not None else int(self._rng.choice((-1, 1)))
        self._waypoint[0] = self.side * self._rng.uniform(0.55, 0.65)
        self._waypoint[1] = self._rng.uniform(-0.1, 0.1)
        self._reached_waypoint = False

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        pos = np.asarray(obs, dtype=np.float64)
        if not self._reached_waypoint and math.dist(pos, self._waypoint) < self.waypoint_radius:
            self._reached_waypoint = True
        target = self.goal if self._reached_waypoint else self._waypoint
        # Gain 1: one step would land exactly on the target. Rescale (rather
        # than clip per dimension) so the path is a straight line: per-dim
        # clipping moves diagonally and cuts into the obstacle.
        action = (target - pos) / self.max_step
        norm = math.hypot(action[0], action[1])
        if norm > 1.0:
            action /= norm
        action += self.noise * self._rng.standard_normal(2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def make_bimodal_dataset(
    num_episodes: int = 200,
    seed: int = 0,
    dataset_id: str = "lwd/bimodal/expert-v0",
    *,
    side: int | None = None,
    overwrite: bool = True,
    progress: bool = True,
) -> minari.MinariDataset:
    """Roll out :class:`BimodalExpert` and write its successful episodes as a local
    Minari dataset (no network needed).

    Episode ``i`` resets the env with ``seed + i``; the expert's randomness is
    derived from ``seed`` too, so the dataset is reproducible. Each episode's
    ``infos`` carries ``expert_side`` (constant over the episode).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    # gymnasium.make (not BimodalEnv()) so the dataset records the env spec and
    # ``dataset.recover_environment()`` works.
    env = gym.make(ENV_ID)
    expert = BimodalExpert(side=side, seed=seed)
    try:
        buffers, success_rate = rollout_episodes(
            env,
            expert,
            num_episodes,
            seed,
            progress=progress,
            desc="bimodal expert",
            episode_info=lambda: {"expert_side": expert.side},
        )
        return write_minari_dataset(
            dataset_id,
            buffers,
            env,
            overwrite=overwrite,
            algorithm_name="scripted expert",
            author="lwd_gym",
            requirements=["lwd-gym"],  # the env ships with lwd-gym itself
            description=(
                "BimodalEnv demonstrations of a scripted expert that passes the obstacle on the "
                f"left or right (side={side}); successful episodes only, expert success rate "
                f"{success_rate:.3f} over {num_episodes} episodes. infos['expert_side'] holds the side."
            ),
        )
    finally:
        env.close()


def demo_sources() -> list:
    """``lwd-gym collect bimodal``: the scripted two-paths expert (see :mod:`lwd_gym.data.sources`)."""
    from lwd_gym.data.sources import DemoSource

    return [
        DemoSource(
            name="bimodal",
            make_env=lambda: gym.make(ENV_ID),
            make_expert=lambda env: BimodalExpert(),
            dataset_id="lwd/bimodal/expert-v0",
            episode_info=lambda expert: {"expert_side": expert.side},
            description="BimodalEnv: a scripted expert passes the obstacle on the left or right (infos['expert_side']).",
        )
    ]
