"""``BaseAgent``: what every agent shares.

* its config (:mod:`lwd_gym.agents.config`), every field readable as an attribute;
* ``learn`` (:mod:`lwd_gym.agents.learning`, mixed in);
* SB3's ``predict(observation, state, episode_start, deterministic) -> (action, state)`` for
  one observation or a vector-env batch, with per-environment re-planning: an environment gets
  a new plan (LWD: a new generated policy; DP: a new action chunk) when its episode starts and
  every ``action_horizon`` steps; subclasses only implement :meth:`_replan` and :meth:`_act`;
  what it holds per environment is one :class:`~lwd_gym.agents.acting.ActingState`;
* ``save`` / ``load``, ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` and
  ``get_parameters`` / ``set_parameters`` (:mod:`lwd_gym.agents.persistence`, mixed in).

Observations of a multi-task agent are the dataset's state followed by a one-hot task id
(the layout the ``TaskId`` wrapper produces), so the task reaches the agent through the
observation and ``predict`` keeps SB3's signature.
"""
from __future__ import annotations

import copy
import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from lwd_gym.agents.acting import ActingState
from lwd_gym.agents.config import AgentConfig
from lwd_gym.agents.learning import Learner, TrainingRun, keeps_agent_on_error
from lwd_gym.agents.persistence import Persistence
from lwd_gym.agents.observations import check_episode_start, check_normalisable, check_observation, task_ids
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.nn.diffusion import ConditionalDiffusion
from lwd_gym.train_log import TrainingLog
from lwd_gym.utils import get_device
from lwd_gym.wrappers.task_id import with_task_id

SelfAgent = TypeVar("SelfAgent", bound="BaseAgent")


class BaseAgent(Learner, Persistence, ABC):
    """Base class of every agent.

    :param config: the agent's hyperparameters, an instance of its :attr:`config_class` (or a
        dict of its fields); keyword ``overrides`` are fields too and apply on top:
        ``LWDAgent(action_horizon=16)``, ``LWDAgent(LWDConfig(...))``, ``LWDAgent(config, seed=1)``.
        Every field reads as an attribute (``agent.latent_dim`` is ``agent.config.latent_dim``);
        only the config's ``ACTING_FIELDS`` (``action_horizon``, a sampler's settings) may be set
        on a trained agent, the others are fixed by the networks they built.
    :param device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``...
    """

    #: the hyperparameters' dataclass (see :mod:`lwd_gym.agents.config`)
    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    #: every concrete agent class by name, so :meth:`load` can rebuild the right one.
    agent_classes: ClassVar[dict[str, type[BaseAgent]]] = {}
    #: whether a plan is a diffusion query (reported per episode by :func:`lwd_gym.evaluate`).
    plans_with_diffusion: ClassVar[bool] = False
    #: how actions are normalised for training: ``"standard"``, or ``"minmax"`` to ``[-1, 1]``
    #: for agents that diffuse actions (their DDPM clips samples to that range).
    action_normalization: ClassVar[str] = "standard"
    #: observations per environment a plan is conditioned on (the latest last).
    n_obs_steps: int = 1
    #: act between plans with :meth:`_act_host` (numpy) when the agent provides it; ``False``
    #: forces the torch path (``flops_per_step`` counts torch operations).
    act_on_host: bool = True
    #: a plan holds nothing (e.g. the BC MLP): the host path is taken even at re-plan steps.
    stateless: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        BaseAgent.agent_classes[cls.__name__] = cls
        _add_config_properties(cls)
        if "learn" in cls.__dict__ and not getattr(cls.__dict__["learn"], "__isabstractmethod__", False):
            cls.learn = keeps_agent_on_error(cls.__dict__["learn"])

    def __init__(self, config: AgentConfig | Mapping[str, Any] | None = None, *, device: str | torch.device = "auto", **overrides: Any) -> None:
        #: the hyperparameters (frozen; :meth:`AgentConfig.replace` gives a changed copy)
        self.config = self.config_class.build(config, **overrides)
        self.device = get_device(device)
        self.state_space: gym.spaces.Box | None = None
        self.observation_space: gym.spaces.Box | None = None
        self.action_space: gym.spaces.Box | None = None
        self.num_tasks = 1
        self.obs_normalizer: Normalizer | None = None
        self.action_normalizer: Normalizer | None = None
        #: total number of (per-environment) re-plans made by ``predict``.
        self.num_replans = 0
        #: which environments re-planned in the last ``predict`` call.
        self.last_replanned = np.zeros(0, dtype=bool)
        self._rng = torch.Generator(self.device).manual_seed(self.seed)
        #: every environment's plan, position in it, noise stream and history (None: no plans)
        self._acting: ActingState | None = None
        self._run = TrainingRun()
        #: what the last ``learn`` recorded: per stage, loss per step, validation loss, evaluations
        self.training_log = TrainingLog()
        self.training_record: dict[str, Any] = {}

    # ------------------------------------------------------------------ configuration
    @property
    def max_action_horizon(self) -> int | None:
        """Most steps one plan can cover (``None``: unlimited, e.g. a closed-loop policy)."""
        return None

    @property
    def stages(self) -> tuple[str, ...]:
        """Training stages in order (``learn(<stage>_steps=...)``, ``config.<stage>_lr``, ...)."""
        return self.config.STAGES

    @property
    def is_trained(self) -> bool:
        return self.observation_space is not None

    # ------------------------------------------------------------------ networks
    def _set_spaces(self, state_space: gym.spaces.Box, action_space: gym.spaces.Box, num_tasks: int) -> None:
        self.state_space, self.action_space, self.num_tasks = state_space, action_space, int(num_tasks)
        self.observation_space = with_task_id(state_space, num_tasks) if self.num_tasks > 1 else state_space

    @abstractmethod
    def _build(self) -> None:
        """Create the networks from the config and the (now known) spaces."""

    @abstractmethod
    def _modules(self) -> dict[str, nn.Module]:
        """The networks whose weights are saved, by name."""

    # ------------------------------------------------------------------ acting
    @abstractmethod
    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        """Make new plans for environments ``env_ids`` from their normalised ``states``."""

    @abstractmethod
    def _act(self, states: torch.Tensor, tasks: torch.Tensor | None, steps: np.ndarray) -> torch.Tensor:
        """Normalised actions ``[n, action_dim]`` for every environment, ``steps`` into its plan."""

    def _allocate(self, num_envs: int) -> Any:
        """The (empty) plans of ``num_envs`` environments, kept as ``self._acting.plans``
        (called when the batch size changes)."""
        return None

    def reset(self) -> None:
        """Forget every environment's plan: the next ``predict`` re-plans all of them."""
        self._acting = None

    def set_random_seed(self, seed: int) -> None:
        """Re-seed the sampling noise (and forget current plans); ``config.seed`` becomes ``seed``.

        Only sampling is re-seeded (each environment's noise stream is drawn from it at the next
        ``predict``, or set by :meth:`seed_envs`); network initialisation and data order follow
        the seed when ``learn`` starts, which also seeds Python, numpy and torch
        (:func:`lwd_gym.utils.seed_everything`), as SB3 does."""
        self.config = self.config.replace(seed=seed)
        self._rng.manual_seed(self.seed)
        self.reset()

    def _allocate_envs(self, num_envs: int) -> ActingState:
        # One noise stream per environment, drawn from the agent's seed.
        self._acting = ActingState.new(num_envs, self._allocate(num_envs), self.seed, self._rng, self.device)
        return self._acting

    def seed_envs(self, env_ids: Sequence[int], seeds: Sequence[int], num_envs: int | None = None) -> None:
        """Seed the sampling noise of environments ``env_ids`` (e.g. with their episode seeds).

        :func:`lwd_gym.evaluate` calls this at every episode start, which makes an episode's
        outcome depend on its seed only, not on which or how many parallel envs run it.
        ``num_envs`` (the batch size of the next ``predict``) sets up the environments first
        if needed, which forgets every plan.
        """
        if not self.is_trained:
            raise RuntimeError(f"{type(self).__name__} has not been trained: call learn() or load() first")
        if num_envs is not None and (self._acting is None or self._acting.num_envs != num_envs):
            self._allocate_envs(num_envs)
        if self._acting is None:
            raise RuntimeError("seed_envs() needs the number of environments: pass num_envs or call predict() first")
        self._acting.seed(env_ids, seeds)

    def noise_generators(self, env_ids: np.ndarray, deterministic: bool) -> list[torch.Generator]:
        """One generator per environment in ``env_ids``.

        Stochastic: each environment's own stream.  ``deterministic``: a generator freshly seeded
        with the environment's seed at every plan, so the same observation gives the same plan.
        """
        return self._acting.noise_generators(env_ids, deterministic, self.device)

    def _split_tasks(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Normalised states and task ids (``None`` for a single-task agent) of checked observations."""
        states = self.obs_normalizer.normalize(obs[:, : self.state_space.shape[0]])
        return states, self._task_ids(obs)

    def _task_ids(self, obs: np.ndarray) -> np.ndarray | None:
        return task_ids(obs, self.state_space.shape[0], self.num_tasks)

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Action(s) for one observation or a batch ``[n_envs, ...]`` (Stable-Baselines3 signature).

        Plans are kept per environment inside the agent (``state`` is accepted for SB3
        compatibility and ``None`` is returned, as for SB3's non-recurrent policies).
        ``episode_start[i]`` forces a new plan for environment ``i``.  A batch of another size
        than the previous call's starts every environment afresh (with ``episode_start`` given,
        it must then be all true).  With
        ``deterministic=True`` sampling noise is fixed per environment index, so the same
        observation gives the same plan.  For agents that re-plan a closed-loop policy (LWD) this
        can hold an episode where that policy makes no progress, since every re-plan there returns
        it again; evaluate success with ``deterministic=False`` (SB3's ``evaluate_policy`` defaults
        to ``True``).
        """
        if not self.is_trained:
            raise RuntimeError(f"{type(self).__name__} has not been trained: call learn() or load() first")
        obs, single, peak = check_observation(observation, self.observation_space.shape)
        check_normalisable(obs, peak, self.obs_normalizer, self.state_space.shape[0])
        n, acting = len(obs), self._acting
        starts = None if episode_start is None else check_episode_start(episode_start, n, None if acting is None else acting.num_envs)
        if acting is None or acting.num_envs != n:
            acting = self._allocate_envs(n)
        steps = acting.steps
        new_episode = steps < 0 if starts is None else starts | (steps < 0)
        replan = new_episode | (steps >= self.action_horizon)
        self.last_replanned = replan
        if self.n_obs_steps > 1:
            acting.update_history(self.obs_normalizer.normalize(obs[:, : self.state_space.shape[0]]), new_episode, self.n_obs_steps)
        actions = None
        if self.act_on_host and (self.stateless or not replan.any()):
            self._task_ids(obs)  # validates one-hot task ids (acting on the host does not need them)
            actions = self._act_host(obs, steps)  # the fast path between plans: raw in, raw out
            if actions is not None and replan.any():  # a stateless agent's plan is a no-op
                steps[replan] = 0
                self.num_replans += int(replan.sum())
        if actions is None:
            states, tasks = self._split_tasks(obs)
            with torch.inference_mode():
                t_states = torch.as_tensor(states, device=self.device)
                t_tasks = None if tasks is None else torch.as_tensor(tasks, device=self.device)
                if replan.any():
                    ids = np.flatnonzero(replan)
                    index = torch.as_tensor(ids, device=self.device)
                    self._replan(ids, t_states[index], None if t_tasks is None else t_tasks[index], deterministic)
                    steps[ids] = 0
                    self.num_replans += len(ids)
                actions = self._act(t_states, t_tasks, steps).cpu().numpy()
            actions = self.action_normalizer.unnormalize(actions)
        steps += 1
        if not np.isfinite(actions).all():
            bad = ~np.isfinite(actions).all(axis=1)
            envs = np.flatnonzero(bad).tolist()
            with np.errstate(over="ignore", invalid="ignore"):
                magnitude = np.abs(self._split_tasks(obs[bad])[0]).max()
            where = "re-planned from" if replan[bad].all() else "acted on"
            # Their plans may now hold NaN: discard them, so the next call re-plans these
            # environments instead of failing again until the next scheduled re-plan.
            steps[bad] = -1
            raise FloatingPointError(
                f"the policy produced NaN/inf actions for environment(s) {envs}: it {where} observations probably far outside "
                f"the training data (normalised magnitude up to {magnitude:.3g} in those environments); their plans are discarded "
                "and the next predict() re-plans them"
            )
        # np.minimum/maximum: np.clip costs ~5x more on these tiny arrays (the fast path's budget is ~20 us).
        actions = np.minimum(np.maximum(actions, self.action_space.low), self.action_space.high).astype(self.action_space.dtype, copy=False)
        return (actions[0] if single else actions), None

    def _act_host(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray | None:
        """*Unnormalised* actions for checked raw observations ``[n, obs_dim]``, computed on the host
        (numpy) from host copies of the current plans, or ``None`` to use :meth:`_act`.  Called
        only when no environment re-plans this step (any step for a :attr:`stateless` agent)."""
        return None

    def flops_per_step(self) -> float:
        """Floating-point operations per environment step, counted by ``FlopCounterMode``.

        A plan's FLOPs (all denoising steps and decoding included) are amortised over
        ``action_horizon`` steps and added to the per-step network's (for LWD: the generated MLP).
        Measured on a copy of the agent with one environment; this agent's plans are untouched.
        """
        from torch.utils.flop_counter import FlopCounterMode

        if not self.is_trained:
            raise RuntimeError("flops_per_step() needs a trained agent")
        probe = self.acting_copy()
        probe.act_on_host = False  # FlopCounterMode sees torch operations only
        obs = self._probe_observation()
        counts = []
        # A replayed CUDA graph is invisible to FlopCounterMode: count an eager sampling loop.
        samplers = [m for module in self._modules().values() for m in module.modules() if isinstance(m, ConditionalDiffusion)]
        saved = [m.cuda_graphs for m in samplers]
        try:
            for m in samplers:
                m.cuda_graphs = False
            for start in (True, False):
                with FlopCounterMode(display=False) as counter:
                    probe.predict(obs, episode_start=np.array([start]), deterministic=True)
                counts.append(counter.get_total_flops())
        finally:
            for m, value in zip(samplers, saved):
                m.cuda_graphs = value
        plan_and_step, step = counts
        if self.action_horizon == 1:  # every step is a plan
            return float(plan_and_step)
        return (plan_and_step - step) / self.action_horizon + step

    def export_onnx(self, path: str | os.PathLike, observation: np.ndarray | None = None, **kwargs: Any) -> Path:
        """Write this agent's policy as an ONNX model (raw observation -> raw action); only agents
        that act with one closed-loop MLP can (``LWDAgent``, ``MLPAgent`` override this)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot be exported to ONNX: it acts through plans (a sampler, action chunks or random draws), "
            "not one fixed network; export_onnx exports an LWDAgent (one sampled generated policy) or an MLPAgent (the BC MLP)"
        )

    def acting_copy(self: SelfAgent) -> SelfAgent:
        """A copy that shares this agent's networks (and log) but owns every per-environment
        acting state (plans, step counters, noise streams, observation history), so using it
        leaves this agent's episodes untouched; its plans are forgotten."""
        shared = [*self._modules().values(), self.training_log, self._run]
        probe = copy.deepcopy(self, {id(x): x for x in shared})
        probe._rng = torch.Generator(self.device).manual_seed(0)
        probe.reset()
        return probe

    def _probe_observation(self) -> np.ndarray:
        """A typical observation: the mean state (with task 0 for a multi-task agent)."""
        obs = self.obs_normalizer.mean.astype(np.float32)
        if self.num_tasks > 1:
            obs = np.concatenate([obs, np.eye(self.num_tasks, dtype=np.float32)[0]])
        return obs[None]


def _config_property(name: str) -> property:
    """``agent.<name>``: reads ``agent.config.<name>``; setting it is allowed for the config's
    ``ACTING_FIELDS`` only (a validated copy of the config replaces the old one)."""

    def get(self: BaseAgent) -> Any:
        return getattr(self.config, name)

    def set_(self: BaseAgent, value: Any) -> None:
        if name not in self.config.ACTING_FIELDS:
            raise AttributeError(
                f"{type(self).__name__}.{name} is fixed at construction (the networks are built from it); "
                f"build another agent: {type(self).__name__}(agent.config.replace({name}=...))"
            )
        self.config = self.config.replace(**{name: value})

    return property(get, set_, doc=f"``config.{name}``")


def _add_config_properties(cls: type[BaseAgent]) -> None:
    """One :func:`_config_property` per field of ``cls.config_class`` the class does not define."""
    for name in cls.config_class.field_names():
        if not isinstance(inspect.getattr_static(cls, name, None), property):
            setattr(cls, name, _config_property(name))


_add_config_properties(BaseAgent)
BaseAgent.learn = keeps_agent_on_error(BaseAgent.learn)  # subclasses' own learn is wrapped in __init_subclass__
