"""Random end-effector pushes for delta-pose (OSC) manipulation envs: a robustness test."""
from __future__ import annotations

import math
import numbers
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np


class EndEffectorPerturbation(gym.Wrapper):
    """Occasionally push the end effector by a random offset, through the controller.

    At each step with no perturbation under way, a new one starts with probability ``p``: a
    translation of norm ``magnitude`` metres in a uniformly random direction and, if
    ``max_rotation > 0``, a rotation by an angle drawn uniformly from ``[0, max_rotation]``
    radians about a uniformly random axis.  It is added to the agent's delta-pose command in
    equal parts over ``duration`` steps (starting with this one), so the arm moves through the
    controller and a grasped object is carried along, instead of the pose being teleported.

    Actions stay within the action space's bounds: where the agent's own command leaves no room
    (it already pushes to the bound in the offset's direction), the part not applied is carried
    to the next steps, for at most ``2 * duration`` steps in all; so the offsets reported in
    ``info`` add up to the drawn one unless the agent keeps saturating against it or the episode
    ends first.  The offset is a *commanded* one: robosuite's OSC re-bases every delta on the
    pose reached, so the arm moves only a fraction of it (measured on ``lwd_gym/Lift-v0`` with
    an idle agent: a 5 cm offset over 5 steps displaces the gripper by ~1.2 cm, ~25 %).

    ``info`` (at reset and every step, as Minari requires the same keys throughout):
    ``perturbed`` (bool: a perturbation acted on this step), ``perturbation_start`` (bool: one
    started on this step), ``perturbation_offset`` (``float64[3]``: metres added to the
    position command this step) and ``perturbation_rotation`` (``float64[3]``: axis-angle
    radians added to the rotation command this step).  All randomness comes from the env's
    ``np_random``, so ``reset(seed=s)`` reproduces the perturbations too.

    :param env: an env whose actions start with a delta position (3) and delta axis-angle (3)
        and whose unwrapped env has ``eef_action_scale``: metres (entries 0-2) and radians
        (3-5) commanded by one unit of action (``lwd_gym/Lift-v0``, ``lwd_gym/Can-v0``).
    :param p: probability per step (with none under way) that a perturbation starts.
    :param magnitude: norm of the translation in metres.
    :param max_rotation: largest rotation angle in radians (0: translations only).
    :param duration: steps over which each perturbation is spread.
    """

    def __init__(self, env: gym.Env, p: float = 0.1, magnitude: float = 0.05, max_rotation: float = 0.0, duration: int = 5) -> None:
        super().__init__(env)
        if not (isinstance(p, numbers.Real) and 0.0 <= p <= 1.0):
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        if not (isinstance(magnitude, numbers.Real) and math.isfinite(magnitude) and magnitude >= 0.0):
            raise ValueError(f"magnitude must be a finite number of metres >= 0, got {magnitude!r}")
        if not (isinstance(max_rotation, numbers.Real) and math.isfinite(max_rotation) and max_rotation >= 0.0):
            raise ValueError(f"max_rotation must be a finite angle in radians >= 0, got {max_rotation!r}")
        if isinstance(duration, bool) or not isinstance(duration, (int, np.integer)) or duration < 1:
            raise ValueError(f"duration must be a positive number of steps, got {duration!r}")
        scale = getattr(env.unwrapped, "eef_action_scale", None)
        if scale is None:
            raise ValueError(
                f"{type(env.unwrapped).__name__} does not say how actions map to end-effector motion: "
                "EndEffectorPerturbation needs `eef_action_scale` (metres / radians per action unit of entries 0-5) "
                "on the unwrapped env, as lwd_gym/Lift-v0 and lwd_gym/Can-v0 have"
            )
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1 or space.shape[0] < 6:
            raise ValueError(f"EndEffectorPerturbation needs a flat Box action space of >= 6 delta-pose entries, got {space}")
        self.p, self.magnitude, self.max_rotation, self.duration = float(p), float(magnitude), float(max_rotation), int(duration)
        self._scale = np.asarray(scale, dtype=np.float64)[:6]
        self._low = np.asarray(space.low, dtype=np.float64)
        self._high = np.asarray(space.high, dtype=np.float64)
        # Largest offset one step can add to a zero command along any direction: beyond it the
        # perturbation could not be delivered in `duration` steps even by an idle agent.
        reach = self._scale * np.minimum(self._high[:6], -self._low[:6])
        for name, total, limit, unit in (("magnitude", magnitude, reach[:3].min(), "m"), ("max_rotation", max_rotation, reach[3:].min(), "rad")):
            if total / duration > limit:
                raise ValueError(
                    f"{name} / duration = {total / duration:.4g} {unit} per step exceeds what one action can command "
                    f"({limit:.4g} {unit}); raise duration to at least {math.ceil(total / limit)}"
                )
        # Remaining offset (metres, radians) of the perturbation under way and its step count.
        self._remaining = np.zeros(6)
        self._steps_done = 0
        self._active = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._active, self._steps_done, self._remaining = False, 0, np.zeros(6)
        return obs, {**info, **self._info(False, False, np.zeros(6))}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        started = False
        if not self._active:
            # One uniform draw per eligible step keeps the random stream aligned across episodes.
            if self.np_random.random() < self.p:
                self._start()
                started = True
        agent = np.clip(np.asarray(action, dtype=np.float64), self._low, self._high)
        applied = np.zeros(6)
        final = agent
        # Counts every step of a perturbation, even one where the bounds let none of it through.
        perturbed = self._active
        if self._active:
            # Equal parts over `duration` steps; whatever the bounds held back is added to the
            # later parts, and the last allowed step tries to deliver all that is left.
            steps_left = max(self.duration - self._steps_done, 1)
            chunk = self._remaining / steps_left
            final = agent.copy()
            final[:6] = np.clip(agent[:6] + chunk / self._scale, self._low[:6], self._high[:6])
            applied = (final[:6] - agent[:6]) * self._scale
            self._remaining = self._remaining - applied
            self._steps_done += 1
            done = np.allclose(self._remaining, 0.0, atol=1e-12) or self._steps_done >= 2 * self.duration
            if done:
                self._active = False
        obs, reward, terminated, truncated, info = self.env.step(final.astype(self.action_space.dtype))
        return obs, reward, terminated, truncated, {**info, **self._info(perturbed, started, applied)}

    def _start(self) -> None:
        direction = self.np_random.standard_normal(3)
        direction /= max(float(np.linalg.norm(direction)), 1e-12)
        offset = np.zeros(6)
        offset[:3] = self.magnitude * direction
        if self.max_rotation > 0.0:
            axis = self.np_random.standard_normal(3)
            axis /= max(float(np.linalg.norm(axis)), 1e-12)
            offset[3:] = self.np_random.uniform(0.0, self.max_rotation) * axis
        self._remaining, self._steps_done, self._active = offset, 0, True

    @staticmethod
    def _info(perturbed: bool, started: bool, applied: np.ndarray) -> dict[str, Any]:
        return {
            "perturbed": bool(perturbed),
            "perturbation_start": bool(started),
            "perturbation_offset": applied[:3].copy(),
            "perturbation_rotation": applied[3:6].copy(),
        }
