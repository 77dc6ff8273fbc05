"""Random displacements of the T block in gym-pusht's PushT, to test how policies recover."""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from lwd_gym.envs.pusht import distance_to_t

#: gym-pusht's walls are segments at 5 and 506 px with radius 2: the free interior is [7, 504]^2.
WORKSPACE = 512.0


class PushTPerturbation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """With probability ``p`` per step, move the T block by ``magnitude`` px after the step.

    After the inner ``step`` (unless it ended the episode), with probability ``p`` the block's
    centre of gravity is displaced by a vector of norm exactly ``magnitude`` in a uniformly random
    direction and the block is rotated about it by ``U(-max_rotation, max_rotation)`` radians.
    Directions that would put a corner of the T outside ``[margin, 512 - margin]^2`` or the block
    onto the agent are redrawn (up to ``max_tries`` times; if none fits, that step is not
    perturbed, so the realised rate is marginally below ``p`` near walls).  The block's velocities
    are zeroed, and the returned observation is re-read after the move.

    ``info`` gets, at reset and every step: ``perturbed`` (bool), ``perturbation`` (the
    displacement, float64 (2,), zeros when not perturbed) and ``perturbation_rotation`` (rad).
    ``reward``, ``terminated`` and gym-pusht's own info entries (``coverage``, ``is_success``,
    ``block_pose``) describe the step before the displacement; the next step sees the new pose.
    All draws come from the env's ``np_random``, so ``reset(seed=s)`` reproduces an episode
    perturbations included.

    Wrap gym-pusht's env directly (``gym.make`` output) or through ``ObservationWrapper``\\ s
    only: the observation is rebuilt from the simulator and those wrappers' ``observation``.

    :param env: a gym-pusht ``PushTEnv``, possibly wrapped.
    :param p: probability of a perturbation per step, in ``[0, 1]``.
    :param magnitude: displacement norm in pixels (>= 0).
    :param max_rotation: largest rotation in radians (>= 0; 0 = translation only).
    :param margin: how far inside the 512 px workspace every corner of the T must stay.
    :param max_tries: directions drawn before giving up a perturbation.
    """

    def __init__(
        self,
        env: gym.Env,
        p: float = 0.1,
        magnitude: float = 25.0,
        max_rotation: float = 0.0,
        *,
        margin: float = 10.0,
        max_tries: int = 32,
    ) -> None:
        if not (_is_real(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        if not (_is_real(magnitude) and math.isfinite(magnitude) and magnitude >= 0.0):
            raise ValueError(f"magnitude must be a finite number of pixels >= 0, got {magnitude!r}")
        if not (_is_real(max_rotation) and math.isfinite(max_rotation) and max_rotation >= 0.0):
            raise ValueError(f"max_rotation must be a finite angle in radians >= 0, got {max_rotation!r}")
        if not (_is_real(margin) and 0.0 <= margin < WORKSPACE / 2):
            raise ValueError(f"margin must be in [0, {WORKSPACE / 2}) px, got {margin!r}")
        if not (isinstance(max_tries, int) and not isinstance(max_tries, bool) and max_tries >= 1):
            raise ValueError(f"max_tries must be an int >= 1, got {max_tries!r}")
        if not _is_pusht(env):
            raise ValueError(
                f"PushTPerturbation needs gym-pusht's PushT env (gym_pusht/PushT-v0), got {type(env.unwrapped).__name__}"
            )
        gym.utils.RecordConstructorArgs.__init__(
            self, p=p, magnitude=magnitude, max_rotation=max_rotation, margin=margin, max_tries=max_tries
        )
        gym.Wrapper.__init__(self, env)
        self.p, self.magnitude, self.max_rotation = float(p), float(magnitude), float(max_rotation)
        self.margin, self.max_tries = float(margin), max_tries
        # Wrappers between this one and PushTEnv, outermost first: the observation wrappers among
        # them are replayed on the re-read observation.
        self._inner_wrappers: list[gym.Env] = []
        inner = env
        while isinstance(inner, gym.Wrapper):
            self._inner_wrappers.append(inner)
            inner = inner.env

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        info.update(self._info(False, np.zeros(2), 0.0))
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        # One draw per step whatever happens, so the stream of draws (hence the episode) does not
        # depend on which steps could be perturbed.
        draw = float(self.np_random.random())
        moved = None
        if draw < self.p and not (terminated or truncated):
            if not _same(obs, self._observe()):
                raise RuntimeError(
                    "PushTPerturbation cannot rebuild this env's observation: wrap gym-pusht's env "
                    "directly or through ObservationWrappers only"
                )
            moved = self._displace()
        if moved is None:
            info.update(self._info(False, np.zeros(2), 0.0))
        else:
            obs = self._observe()
            info.update(self._info(True, *moved))
        return obs, reward, terminated, truncated, info

    @staticmethod
    def _info(perturbed: bool, displacement: np.ndarray, rotation: float) -> dict[str, Any]:
        return {
            "perturbed": bool(perturbed),
            "perturbation": np.asarray(displacement, dtype=np.float64),
            "perturbation_rotation": float(rotation),
        }

    def _displace(self) -> tuple[np.ndarray, float] | None:
        """Move the block (a valid random displacement); returns (displacement, rotation) or None."""
        pusht = self.env.unwrapped
        block, agent = pusht.block, pusht.agent
        local = np.array([[tuple(v) for v in shape.get_vertices()] for shape in pusht._block_shapes])  # (2, 4, 2)
        cog_local = np.array(block.center_of_gravity)
        cog = np.array(block.local_to_world(block.center_of_gravity))
        agent_radius = max(shape.radius for shape in agent.shapes)
        rng = self.np_random
        for _ in range(self.max_tries):
            phi = rng.uniform(0.0, 2.0 * math.pi)
            displacement = self.magnitude * np.array([math.cos(phi), math.sin(phi)])
            rotation = float(rng.uniform(-self.max_rotation, self.max_rotation)) if self.max_rotation > 0 else 0.0
            angle = block.angle + rotation
            c, s = math.cos(angle), math.sin(angle)
            rot = np.array([[c, -s], [s, c]])
            # The centre of gravity moves by `displacement`; the body origin follows the rotation.
            origin = cog + displacement - rot @ cog_local
            corners = local @ rot.T + origin
            if corners.min() < self.margin or corners.max() > WORKSPACE - self.margin:
                continue
            if distance_to_t(np.array([agent.position]), corners)[0] < agent_radius + 1.0:
                continue  # dropping the block onto the agent would make pymunk shove it away
            block.angle = angle  # angle first: pymunk rotates about the centre of gravity
            block.position = (float(origin[0]), float(origin[1]))
            block.velocity = (0.0, 0.0)
            block.angular_velocity = 0.0
            pusht.space.reindex_shapes_for_body(block)
            return displacement, rotation
        return None

    def _observe(self) -> Any:
        """The current observation as the inner wrappers would return it."""
        obs = self.env.unwrapped.get_obs()
        for wrapper in reversed(self._inner_wrappers):
            if isinstance(wrapper, gym.ObservationWrapper):
                obs = wrapper.observation(obs)
        return obs


def _is_real(value: Any) -> bool:
    # bool is an int, but p=True is a mistake rather than a probability.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_pusht(env: gym.Env) -> bool:
    try:
        from gym_pusht.envs.pusht import PushTEnv
    except ImportError:  # without gym-pusht the env cannot be PushT
        return False
    return isinstance(env.unwrapped, PushTEnv)


def _same(a: Any, b: Any) -> bool:
    """Observations (arrays, possibly in dicts/tuples) are equal."""
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))
