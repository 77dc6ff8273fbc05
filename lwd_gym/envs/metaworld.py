"""Metaworld (v3) tasks as seeded Gymnasium envs, with Metaworld's scripted experts as demo sources.

* :class:`MetaworldEnv` wraps one goal-observable Metaworld v3 task: 500-step episodes,
  ``Box(39)`` observations, ``Box(-1, 1, (4,))`` actions, ``info["is_success"]``.  Unlike a raw
  Metaworld env, ``reset(seed=s)`` is honoured: the goal/object configuration is drawn from the
  env's ``np_random``, so equal seeds give equal episodes and different seeds different ones.
* ``lwd_gym/Metaworld-<task>-v3`` ids are registered (:func:`register_metaworld_envs`) for the
  LWD paper's ten tasks (:data:`PAPER_TASKS`) and MT10 (:data:`MT10`); any other Metaworld v3
  task works through :func:`make_metaworld_env`, which registers its id on demand.
* :class:`MetaworldExpert` is Metaworld's scripted policy for the task; :func:`demo_sources`
  exposes one ``lwd-gym collect metaworld/<task>`` source per task.
* Multi-task: :func:`make_metaworld_envs` builds one ``TaskId``-conditioned env per task, matching
  an agent trained on the list of per-task datasets in the same order
  (:func:`collect_metaworld_datasets`).

The module imports without Metaworld (``pip install 'lwd-gym[metaworld]'``); building an env or
an expert is what needs it.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np

from lwd_gym.wrappers.task_id import TaskId

if TYPE_CHECKING:  # only for annotations: the module must import without minari's extras too
    import minari

    from lwd_gym.data.sources import DemoSource

#: The ten Metaworld tasks of the Latent Weight Diffusion paper.
PAPER_TASKS: tuple[str, ...] = (
    "window-open",
    "door-open",
    "drawer-open",
    "dial-turn",
    "faucet-close",
    "button-press-topdown",
    "door-unlock",
    "handle-press",
    "plate-slide",
    "reach",
)

#: Metaworld's standard MT10 multi-task benchmark (in Metaworld's order).
MT10: tuple[str, ...] = (
    "reach",
    "push",
    "pick-place",
    "door-open",
    "drawer-open",
    "drawer-close",
    "button-press-topdown",
    "peg-insert-side",
    "window-open",
    "window-close",
)

#: Tasks with a registered env id and a ``collect`` source (paper tasks first, then MT10's others).
TASKS: tuple[str, ...] = PAPER_TASKS + tuple(t for t in MT10 if t not in PAPER_TASKS)

#: Keys of every ``info`` dict (reset and step): Metaworld's own, plus ``is_success``.
INFO_KEYS: tuple[str, ...] = (
    "is_success",
    "success",
    "near_object",
    "grasp_success",
    "grasp_reward",
    "in_place_reward",
    "obj_to_target",
    "unscaled_reward",
)

_INSTALL_HINT = "Metaworld is not installed: pip install 'lwd-gym[metaworld]'"
_MAX_EPISODE_STEPS = 500  # Metaworld's max_path_length: it truncates (and refuses to step) there


def _import_metaworld() -> tuple[dict[str, Any], dict[str, Any]]:
    """Metaworld's goal-observable env classes and scripted policies, or an ImportError with the fix."""
    try:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE, ENV_POLICY_MAP


def task_name(task: str) -> str:
    """``"reach"`` for ``"reach"``, ``"reach-v3"`` or ``"metaworld/reach"`` (the name used everywhere here)."""
    if not isinstance(task, str):
        raise TypeError(f"a Metaworld task name must be a string, got {type(task).__name__}")
    name = task.removeprefix("metaworld/")
    return name[: -len("-v3")] if name.endswith("-v3") else name


def env_id(task: str) -> str:
    """The Gymnasium id of ``task``: ``lwd_gym/Metaworld-<task>-v3``."""
    return f"lwd_gym/Metaworld-{task_name(task)}-v3"


def dataset_id(task: str) -> str:
    """The default Minari id of ``task``'s expert demonstrations: ``lwd/metaworld-<task>/expert-v0``."""
    return f"lwd/metaworld-{task_name(task)}/expert-v0"


def _check_task(task: str, known: Any) -> None:
    if f"{task}-v3" not in known:
        names = sorted(k[: -len("-v3")] for k in known if k.endswith("-v3"))
        raise ValueError(f"unknown Metaworld task {task!r}; Metaworld v3 tasks: {', '.join(names)}")


class MetaworldEnv(gym.Env[np.ndarray, np.ndarray]):
    """One goal-observable Metaworld v3 task with seeded, per-episode random configurations.

    * Observation: Metaworld's 39-d state (hand, gripper, objects, previous frame, goal),
      ``float64``, bounded by Metaworld's ``sawyer_observation_space`` (the raw env's
      ``observation_space`` has stale zero bounds on the goal).
    * Action: ``Box(-1, 1, (4,), float32)`` (xyz mocap delta, gripper effort).
    * Episodes: 500 steps (truncation); with ``terminate_on_success`` they also end (terminated)
      at the first successful step.
    * ``info``: ``is_success`` (bool) and Metaworld's float metrics (:data:`INFO_KEYS`), at reset
      too (evaluated on the reset state), as Minari requires.

    :param task: a Metaworld v3 task, e.g. ``"reach"`` (``"reach-v3"`` is accepted).
    :param terminate_on_success: end the episode when the task is first solved.
    :param render_mode: passed to Metaworld (``"rgb_array"`` needs an OpenGL backend, e.g.
        ``MUJOCO_GL=egl``).
    """

    # Metaworld's own (frame_skip 5 at dt 0.0025); a class attribute because gymnasium.make checks
    # render_mode against it before building the env.
    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 80}

    def __init__(self, task: str, terminate_on_success: bool = False, render_mode: str | None = None) -> None:
        envs, _ = _import_metaworld()
        self.task = task_name(task)
        _check_task(self.task, {k.removesuffix("-goal-observable") for k in envs})
        # seed=0: with seed=None Metaworld's constructor draws its first configuration from the
        # *global* np.random and leaves it advanced; with a seed it restores the global state.
        # That first configuration is never used: every reset draws a fresh one (below).
        self.mw_env = envs[f"{self.task}-v3-goal-observable"](seed=0, render_mode=render_mode)
        # Draw a new configuration at every reset from the env's np_random (which reset() points
        # at this env's Gymnasium generator), instead of replaying the constructor's frozen one.
        self.mw_env._freeze_rand_vec = False
        self.mw_env.seeded_rand_vec = True
        self.terminate_on_success = bool(terminate_on_success)
        self.render_mode = render_mode
        self.observation_space = self.mw_env.sawyer_observation_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self._zero_action = np.zeros(4, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # Metaworld ignores reset(seed=) but draws its configuration from its own np_random:
        # sharing this env's generator makes reset(seed=s) reproducible and reset() continue the
        # seeded stream, the usual Gymnasium semantics. (reset(seed=s) creates a new generator,
        # so the link is re-made every time.)
        self.mw_env.np_random = self.np_random
        self.mw_env.reset()
        # Some tasks (window-open/-close, drawer-open, dial-turn) set joint positions after their
        # last simulation step at reset, so Metaworld's reset observation holds the previous
        # episode's object positions (and window-close reports success at reset).  mj_kinematics
        # recomputes positions only, no dynamics: the trajectory that follows is bit-identical.
        import mujoco  # a Metaworld dependency

        mujoco.mj_kinematics(self.mw_env.model, self.mw_env.data)
        obs = self.mw_env._get_obs()
        # No previous frame at reset: repeat the current one, as Metaworld's reset does.
        obs[18:36] = obs[:18]
        self.mw_env._prev_obs = obs[:18].copy()
        # Metaworld clips step observations to its observation space but not the reset one.
        obs = np.clip(obs, self.observation_space.low, self.observation_space.high)
        _, raw_info = self.mw_env.evaluate_state(obs, self._zero_action)
        return obs, self._info(raw_info)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (4,):
            raise ValueError(f"Metaworld actions have shape (4,), got {action.shape}")
        obs, reward, _, truncated, raw_info = self.mw_env.step(action)
        info = self._info(raw_info)
        terminated = self.terminate_on_success and info["is_success"]
        return obs, float(reward), terminated, bool(truncated), info

    def render(self) -> np.ndarray | None:
        """Metaworld's rendering in ``render_mode`` (an image for ``rgb_array``/``depth_array``)."""
        return self.mw_env.render()

    def close(self) -> None:
        self.mw_env.close()

    @staticmethod
    def _info(raw: dict[str, Any]) -> dict[str, Any]:
        # A fixed key set with fixed types (Minari needs identical keys at reset and every step):
        # each task's evaluate_state and Metaworld's simulator-instability fallback build their
        # own dicts, so don't rely on them agreeing.
        info: dict[str, Any] = {"is_success": bool(raw.get("success", 0.0))}
        info.update({key: float(raw.get(key, 0.0)) for key in INFO_KEYS[1:]})
        return info


class MetaworldExpert:
    """Metaworld's scripted policy for ``task`` (``metaworld.policies.ENV_POLICY_MAP``), as an Expert.

    The policies are deterministic and stateless, so :meth:`reset` has nothing to do; actions are
    clipped to ``[-1, 1]`` (the policies' proportional controllers overshoot, which Metaworld clips
    anyway) and returned as ``float32``, the env's action dtype.
    """

    def __init__(self, task: str) -> None:
        _, policies = _import_metaworld()
        self.task = task_name(task)
        _check_task(self.task, policies)
        self.policy = policies[f"{self.task}-v3"]()

    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Start an episode (the scripted policies keep no state and use no randomness)."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.shape != (39,):
            raise ValueError(f"the Metaworld expert needs the raw 39-d observation, got shape {obs.shape}")
        with warnings.catch_warnings():
            # "Constant(s) may be too high": emitted whenever a controller saturates, i.e. often.
            warnings.simplefilter("ignore", UserWarning)
            action = self.policy.get_action(obs)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def _register(task: str) -> str:
    eid = env_id(task)
    # Guard: re-registering an id makes gymnasium warn (and reload must stay quiet).
    if eid not in gym.registry:
        gym.register(
            id=eid,
            entry_point="lwd_gym.envs.metaworld:MetaworldEnv",
            kwargs={"task": task_name(task)},
            max_episode_steps=_MAX_EPISODE_STEPS,
        )
    return eid


def register_metaworld_envs(tasks: Sequence[str] = TASKS) -> list[str]:
    """Register ``lwd_gym/Metaworld-<task>-v3`` for ``tasks`` (default :data:`TASKS`); returns the ids.

    Needs no Metaworld (the entry point is imported by ``gymnasium.make``) and is idempotent.
    """
    return [_register(task) for task in tasks]


def make_metaworld_env(task: str, task_id: int | None = None, num_tasks: int | None = None, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` the Metaworld ``task``, optionally with a one-hot task id appended.

    Give ``task_id`` and ``num_tasks`` to evaluate a multi-task agent (trained on a list of
    datasets; task ``i`` = dataset ``i``) on this task. ``kwargs`` go to ``gymnasium.make``
    (e.g. ``terminate_on_success=True``, ``max_episode_steps=200``). Any Metaworld v3 task
    works; ids outside :data:`TASKS` are registered on first use.
    """
    if (task_id is None) != (num_tasks is None):
        raise ValueError("give both task_id and num_tasks (a multi-task env) or neither")
    name = task_name(task)
    if env_id(name) not in gym.registry:
        # Validate before registering, so a typo doesn't leave a broken id in the registry.
        envs, _ = _import_metaworld()
        _check_task(name, {k.removesuffix("-goal-observable") for k in envs})
    env = gym.make(_register(name), **kwargs)
    if task_id is not None:
        env = TaskId(env, task_id, num_tasks)
    return env


def make_metaworld_envs(tasks: Sequence[str] = MT10, **kwargs: Any) -> list[gym.Env]:
    """One env per task, task ``i`` conditioned with ``TaskId(i, len(tasks))``: the eval envs of a
    multi-task agent trained on the per-task datasets in the same order (a single task gets no id)."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("no Metaworld task given")
    if len(tasks) == 1:
        return [make_metaworld_env(tasks[0], **kwargs)]
    return [make_metaworld_env(task, i, len(tasks), **kwargs) for i, task in enumerate(tasks)]


def collect_metaworld_datasets(
    tasks: Sequence[str] = MT10, num_episodes: int = 50, seed: int = 0, *, progress: bool = True, **kwargs: Any
) -> list[minari.MinariDataset]:
    """Collect expert datasets for ``tasks`` (ids :func:`dataset_id`), in order: the list to train a
    multi-task agent on, matching :func:`make_metaworld_envs` ``(tasks)``. ``kwargs`` go to
    :func:`lwd_gym.data.sources.collect`."""
    from lwd_gym.data.sources import collect

    if "dataset_id" in kwargs:
        raise ValueError("collect_metaworld_datasets names each task's dataset itself (dataset_id(task)); don't pass dataset_id")
    register_metaworld_envs(tasks)
    return [collect(f"metaworld/{task_name(t)}", num_episodes, seed, progress=progress, **kwargs)[0] for t in tasks]


def _source(task: str) -> DemoSource:
    from lwd_gym.data.sources import DemoSource

    paper = "LWD paper task" if task in PAPER_TASKS else "MT10 task"
    return DemoSource(
        name=f"metaworld/{task}",
        make_env=lambda: make_metaworld_env(task),
        make_expert=lambda env: MetaworldExpert(task),
        dataset_id=dataset_id(task),
        extra="metaworld",
        description=f"Metaworld {task}-v3 ({paper}, goal observable, 500-step episodes): Metaworld's scripted expert.",
    )


def demo_sources() -> list[DemoSource]:
    """``lwd-gym collect metaworld/<task>`` for every task in :data:`TASKS` (see :mod:`lwd_gym.data.sources`)."""
    register_metaworld_envs()
    return [_source(task) for task in TASKS]
