"""``BaseAgent``: what every agent shares.

* reading demonstrations (spaces, normalisers, task ids) in :meth:`BaseAgent._prepare`;
* SB3's ``predict(observation, state, episode_start, deterministic) -> (action, state)`` for
  one observation or a vector-env batch, with per-environment re-planning: an environment gets
  a new plan (LWD: a new generated policy; DP: a new action chunk) when its episode starts and
  every ``action_horizon`` steps; subclasses only implement :meth:`_replan` and :meth:`_act`;
* ``save`` / ``load`` as safetensors + JSON (see :mod:`lwd_gym.checkpoint`).

Observations of a multi-task agent are the dataset's state followed by a one-hot task id
(the layout the ``TaskId`` wrapper produces), so the task reaches the agent through the
observation and ``predict`` keeps SB3's signature.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import numpy as np
import torch
from minari.serialization import deserialize_space, serialize_space
from torch import nn

from lwd_gym import distributed
from lwd_gym._version import __version__
from lwd_gym.checkpoint import load_checkpoint, save_checkpoint
from lwd_gym.data.demonstrations import Demonstrations, load_demonstrations
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.nn.diffusion import ConditionalDiffusion
from lwd_gym.train_log import StageLog, StageWriter, TrainingLog
from lwd_gym.training import BatchSource, LossFn, TrainCheckpoint, fit
from lwd_gym.utils import get_device, seed_everything
from lwd_gym.validation import integer
from lwd_gym.wrappers.task_id import with_task_id

SelfAgent = TypeVar("SelfAgent", bound="BaseAgent")

#: first episode seed of the in-training evaluation (far from the usual demonstration seeds 0+)
EVAL_SEED = 900_000


#: rows of the held-out data a validation loss is computed on (a fixed, evenly spread subset;
#: with 1,024 rows and 100 validations the curve cost ~30 % of a small agent's training time)
VALIDATION_ROWS = 256


@dataclass
class TrainingRun:
    """Options of one ``learn`` call shared by all its stages (see :meth:`BaseAgent._prepare`)."""

    checkpoint_dir: Path | None = None
    checkpoint_every: int = 500
    progress: bool = True
    data_digest: str = ""
    log_dir: Path | None = None
    validation: Demonstrations | None = None
    eval_env: Any = None
    eval_every: int | None = None
    n_eval_episodes: int = 10


class BaseAgent(ABC):
    """Base class of every agent.

    :param action_horizon: steps an environment follows one plan before re-planning.
    :param device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``...
    :param seed: seeds network initialisation, training data order and sampling noise.
    """

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
        if "learn" in cls.__dict__ and not getattr(cls.__dict__["learn"], "__isabstractmethod__", False):
            cls.learn = _keeps_agent_on_error(cls.__dict__["learn"])

    def __init__(self, *, action_horizon: int = 1, device: str | torch.device = "auto", seed: int = 0) -> None:
        self.action_horizon = action_horizon
        self.device = get_device(device)
        self.seed = integer("seed", seed)
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
        self._steps: np.ndarray | None = None
        self._env_rngs: list[torch.Generator] = []
        self._env_seeds: list[int] = []
        # [n_envs, n_obs_steps, state_dim], normalised, on the host: updated at every step, so
        # keeping it off the device lets steps between plans skip torch (and any device) entirely.
        self._history: np.ndarray | None = None
        self._run = TrainingRun()
        #: what the last ``learn`` recorded: per stage, loss per step, validation loss, evaluations
        self.training_log = TrainingLog()

    # ------------------------------------------------------------------ configuration
    @property
    def action_horizon(self) -> int:
        return self._action_horizon

    @action_horizon.setter
    def action_horizon(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or int(value) != value or value < 1:
            raise ValueError(f"action_horizon must be a positive integer, got {value!r}")
        limit = self.max_action_horizon
        if limit is not None and value > limit:
            raise ValueError(f"action_horizon={value} exceeds what this {type(self).__name__} can execute per plan ({limit})")
        self._action_horizon = int(value)

    @property
    def max_action_horizon(self) -> int | None:
        """Most steps one plan can cover (``None``: unlimited, e.g. a closed-loop policy)."""
        return None

    def _config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able) that rebuild this agent; subclasses extend it."""
        return {"action_horizon": self.action_horizon, "seed": self.seed}

    @property
    def is_trained(self) -> bool:
        return self.observation_space is not None

    # ------------------------------------------------------------------ learning
    def _prepare(
        self,
        dataset: Any,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 500,
        progress_bar: bool = True,
        log_dir: str | os.PathLike | None = None,
        validation_fraction: float = 0.05,
        eval_env: Any = None,
        eval_every: int | None = None,
        n_eval_episodes: int = 10,
    ) -> Demonstrations:
        """Load demonstrations, hold out validation episodes, fix spaces and normalisers, seed,
        and build the networks; returns the *training* episodes.

        The keyword arguments are ``learn``'s run options (see :meth:`learn`), kept for the
        stages' :meth:`_fit` calls.
        """
        if eval_env is not None and (eval_every is None or int(eval_every) != eval_every or eval_every < 1):
            raise ValueError(f"eval_env needs eval_every, a positive number of gradient steps, got {eval_every!r}")
        if int(n_eval_episodes) != n_eval_episodes or n_eval_episodes < 1:
            raise ValueError(f"n_eval_episodes must be a positive integer, got {n_eval_episodes!r}")
        demos, validation = load_demonstrations(dataset).split(validation_fraction, self.seed)
        digest = hashlib.sha256()
        if checkpoint_dir is not None:  # identifies the data of a resumable run; not needed otherwise
            for array in (*demos.observations, *demos.actions, demos.tasks):
                digest.update(np.ascontiguousarray(array).tobytes())
        self._run = TrainingRun(
            None if checkpoint_dir is None else Path(checkpoint_dir), checkpoint_every, progress_bar, digest.hexdigest(),
            None if log_dir is None else Path(log_dir), validation, eval_env, eval_every, int(n_eval_episodes),
        )  # fmt: skip
        self.training_log = TrainingLog()
        self._set_spaces(demos.observation_space, demos.action_space, demos.num_tasks)
        # Under torchrun every rank reads the data, rank 0's normalisers are used by all.
        distributed.init()
        if distributed.is_main_process():
            self.obs_normalizer = Normalizer.fit(np.concatenate(demos.observations))
            self.action_normalizer = Normalizer.fit(np.concatenate(demos.actions), mode=self.action_normalization)
        self.obs_normalizer, self.action_normalizer = distributed.broadcast((self.obs_normalizer, self.action_normalizer))
        seed_everything(self.seed)
        self._rng.manual_seed(self.seed)
        self._build()
        return demos

    def _set_spaces(self, state_space: gym.spaces.Box, action_space: gym.spaces.Box, num_tasks: int) -> None:
        self.state_space, self.action_space, self.num_tasks = state_space, action_space, int(num_tasks)
        self.observation_space = with_task_id(state_space, num_tasks) if self.num_tasks > 1 else state_space

    @abstractmethod
    def _build(self) -> None:
        """Create the networks from the config and the (now known) spaces."""

    @abstractmethod
    def _modules(self) -> dict[str, nn.Module]:
        """The networks whose weights are saved, by name."""

    @abstractmethod
    def learn(self: SelfAgent, dataset: Any, **options: Any) -> SelfAgent:
        """Train on a Minari dataset, a dataset id, or a list of them (one per task); returns ``self``.

        Run options, the same for every agent (each agent adds its stages' step budgets):

        :param checkpoint_dir: every training stage saves its full state there every
            ``checkpoint_every`` gradient steps; calling ``learn`` again with the same arguments
            after an interruption resumes from the last save and ends with the weights an
            uninterrupted run would have.
        :param progress_bar: show tqdm bars.
        :param log_dir: write each stage's log (one CSV row per gradient step; TensorBoard
            scalars when ``tensorboard`` is installed) there; ``agent.training_log`` holds it either way.
        :param validation_fraction: share of each task's episodes held out (whole, seeded by
            ``seed``) for the validation loss of every stage (0: none).
        :param eval_env: an env (id, instance, factory) to roll the agent out in while it trains,
            every ``eval_every`` gradient steps of its last stage, ``n_eval_episodes`` seeded episodes
            each; the best-scoring weights are kept (Diffusion Policy's top-1 by test score).

        A stage's budget is its ``*_steps`` argument, or else its epochs (constructor) but at
        least :data:`~lwd_gym.training.MIN_STEPS` gradient steps (:func:`~lwd_gym.training.stage_steps`).
        """

    def _fit(
        self,
        stage: str,
        model: nn.Module,
        loss_fn: LossFn,
        data: BatchSource,
        *,
        steps: int,
        generator: torch.Generator,
        val_data: BatchSource | None = None,
        val_loss: Callable[[dict[str, torch.Tensor], torch.Generator], torch.Tensor] | None = None,
        acting_attr: str | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """:func:`~lwd_gym.training.fit` on this agent's device, with ``learn``'s progress bar,
        checkpointing and log; ``stage`` names the stage (its state file and log).

        ``val_loss(batch, generator)`` on ``val_data`` (the held-out episodes) is the stage's
        validation loss; ``acting_attr`` names the attribute holding the module the agent acts
        with, for the in-training evaluation (only the last stage of an agent acts).
        """
        checkpoint = None
        if self._run.checkpoint_dir is not None:
            fingerprint = {
                "agent": type(self).__name__, "config": self._config(), "stage": stage, "steps": steps,
                "rows": len(data), "data": self._run.data_digest, "fit": {k: v for k, v in kwargs.items() if k != "ema_model"},
            }  # fmt: skip
            checkpoint = TrainCheckpoint(self._run.checkpoint_dir / f"{stage}.safetensors", self._run.checkpoint_every, fingerprint, {"agent": self._rng})
        name = type(self).__name__.removesuffix("Agent")
        writer = StageWriter(self.training_log.stages.setdefault(stage, StageLog(stage)), self._run.log_dir if distributed.is_main_process() else None)
        validate = None
        if val_data is not None and val_loss is not None and len(val_data) > 0:
            index = torch.linspace(0, len(val_data) - 1, min(len(val_data), VALIDATION_ROWS)).round().long().unique()
            val_batch = {k: v.to(self.device) for k, v in val_data.get_batch(index).items()}
            # the same noise at every validation, so the curve moves with the weights only
            validate = lambda: val_loss(val_batch, torch.Generator(self.device).manual_seed(0)).item()  # noqa: E731
        evaluate_fn = None
        if acting_attr is not None and self._run.eval_env is not None:
            evaluate_fn = lambda module: self._evaluate_during_training(acting_attr, module)  # noqa: E731
        return fit(
            model, loss_fn, data, steps=steps, generator=generator, device=self.device, checkpoint=checkpoint,
            desc=f"{name}: {stage}", progress=self._run.progress, log=writer, validate=validate,
            evaluate=evaluate_fn, eval_every=self._run.eval_every, **kwargs,
        )  # fmt: skip

    def _evaluate_during_training(self, acting_attr: str, module: nn.Module) -> float:
        """Success rate of the agent acting with ``module`` in place of ``self.<acting_attr>``
        over ``n_eval_episodes`` seeded episodes of ``eval_env`` (the same seeds every time)."""
        from lwd_gym.evaluation import evaluate

        saved = getattr(self, acting_attr)
        setattr(self, acting_attr, module)
        try:
            self.reset()
            result = evaluate(self, self._run.eval_env, self._run.n_eval_episodes, seed=EVAL_SEED, count_flops=False, progress=False)
        finally:
            setattr(self, acting_attr, saved)
            self.reset()
        return result.success_rate

    def _validation_snippets(self, make: Callable[[Demonstrations], BatchSource]) -> BatchSource | None:
        """``make(held-out episodes)`` (their snippets, normalised like the training data), or
        ``None`` without a validation split or when no held-out episode is long enough."""
        if self._run.validation is None:
            return None
        try:
            return make(self._run.validation)
        except ValueError:  # e.g. every held-out episode shorter than a snippet
            return None

    # ------------------------------------------------------------------ acting
    @abstractmethod
    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        """Make new plans for environments ``env_ids`` from their normalised ``states``."""

    @abstractmethod
    def _act(self, states: torch.Tensor, tasks: torch.Tensor | None, steps: np.ndarray) -> torch.Tensor:
        """Normalised actions ``[n, action_dim]`` for every environment, ``steps`` into its plan."""

    def _allocate(self, num_envs: int) -> None:
        """Make room for per-environment plans (called when the batch size changes)."""

    def reset(self) -> None:
        """Forget every environment's plan: the next ``predict`` re-plans all of them."""
        self._steps = None

    def set_random_seed(self, seed: int) -> None:
        """Re-seed the sampling noise (and forget current plans)."""
        self.seed = integer("seed", seed)
        self._rng.manual_seed(self.seed)
        self.reset()

    def _allocate_envs(self, num_envs: int) -> None:
        self._allocate(num_envs)
        self._steps = np.full(num_envs, -1, dtype=np.int64)
        self._history = None
        # One noise stream per environment, so an environment's plans do not depend on how many
        # others share the batch; the streams are drawn from the agent's seed.
        draws = torch.randint(2**62, (num_envs,), generator=self._rng, device=self.device).tolist()
        self._env_rngs = [torch.Generator(self.device).manual_seed(s) for s in draws]
        self._env_seeds = [self.seed * 1_000_003 + i for i in range(num_envs)]

    def seed_envs(self, env_ids: Sequence[int], seeds: Sequence[int], num_envs: int | None = None) -> None:
        """Seed the sampling noise of environments ``env_ids`` (e.g. with their episode seeds).

        :func:`lwd_gym.evaluate` calls this at every episode start, which makes an episode's
        outcome depend on its seed only, not on which or how many parallel envs run it.
        ``num_envs`` (the batch size of the next ``predict``) sets up the environments first
        if needed, which forgets every plan.
        """
        if not self.is_trained:
            raise RuntimeError(f"{type(self).__name__} has not been trained: call learn() or load() first")
        if num_envs is not None and (self._steps is None or len(self._steps) != num_envs):
            self._allocate_envs(num_envs)
        if self._steps is None:
            raise RuntimeError("seed_envs() needs the number of environments: pass num_envs or call predict() first")
        for i, s in zip(env_ids, seeds):
            self._env_seeds[int(i)] = int(s)
            self._env_rngs[int(i)].manual_seed(int(s))

    def noise_generators(self, env_ids: np.ndarray, deterministic: bool) -> list[torch.Generator]:
        """One generator per environment in ``env_ids``.

        Stochastic: each environment's own stream.  ``deterministic``: a generator freshly seeded
        with the environment's seed at every plan, so the same observation gives the same plan.
        """
        if deterministic:
            return [torch.Generator(self.device).manual_seed(self._env_seeds[int(i)]) for i in env_ids]
        return [self._env_rngs[int(i)] for i in env_ids]

    def _check_observation(self, observation: Any) -> tuple[np.ndarray, bool, float]:
        """``(observations [n, *shape] float32, whether one was given, largest magnitude)`` of a
        valid input; a clear ``ValueError`` otherwise."""
        shape = self.observation_space.shape
        if isinstance(observation, dict):
            raise ValueError(
                f"observation is a dict (keys {sorted(observation)}) but this agent expects a flat Box of shape {shape}; "
                "wrap the env with gymnasium.wrappers.FlattenObservation (or lwd_gym.wrappers.TaskId for task ids), as when the data were collected"
            )
        raw = np.asarray(observation)
        if raw.dtype != np.float32:
            if raw.dtype.kind not in "biuf":  # bool, int, unsigned, float; not complex, str, object
                raise ValueError(f"observation must be a real-valued numeric array, got dtype {raw.dtype} ({type(observation).__name__})")
            with np.errstate(over="ignore", invalid="ignore"):  # NaN, inf and overflow are told apart below
                obs = raw.astype(np.float32)
        else:
            obs = raw
        # One abs-max serves the finiteness check here and the normalisation check after (NaN propagates).
        peak = float(np.abs(obs).max()) if obs.size else 0.0
        if not math.isfinite(peak):
            if np.isfinite(raw).all():
                raise ValueError(f"observation has values beyond the float32 range (largest magnitude {np.abs(raw).max():.3g})")
            bad = np.argwhere(~np.isfinite(raw))[0]
            raise ValueError(f"observation contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
        if obs.shape == shape:
            single, obs = True, obs[None]
        elif obs.ndim == len(shape) + 1 and obs.shape[1:] == shape and len(obs) > 0:
            single = False
        else:
            raise ValueError(f"observation has shape {obs.shape}; expected {shape} or (n_envs, *{shape}) with n_envs >= 1")
        return obs, single, peak

    def _check_normalisable(self, obs: np.ndarray, peak: float) -> None:
        """Refuse observations that overflow float32 once normalised by the training data's
        statistics, before any plan changes.  Checked on the input: what a network makes of an
        inf input is CPU dependent (vectorised clamps may turn NaN into a bound), so the action
        check in :meth:`predict` alone cannot catch it everywhere.  ``peak``: the largest magnitude
        in ``obs``; within the normaliser's finite bound (the common case) nothing else is done."""
        if peak <= self.obs_normalizer.finite_bound:
            return
        with np.errstate(over="ignore", invalid="ignore"):
            states = self.obs_normalizer.normalize(obs[:, : self.state_space.shape[0]])
        finite = np.isfinite(states).all(axis=1)
        if not finite.all():
            envs = np.flatnonzero(~finite).tolist()
            raise FloatingPointError(
                f"observation(s) of environment(s) {envs} overflow float32 once normalised by the training data's statistics "
                f"(largest raw magnitude {np.abs(obs[~finite]).max():.3g}, far outside the training data); the agent's plans are unchanged"
            )

    def _split_tasks(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Normalised states and task ids (``None`` for a single-task agent) of checked observations."""
        states = self.obs_normalizer.normalize(obs[:, : self.state_space.shape[0]])
        return states, self._task_ids(obs)

    def _task_ids(self, obs: np.ndarray) -> np.ndarray | None:
        """Task ids from the one-hot after the state (validated); ``None`` for a single-task agent."""
        if self.num_tasks == 1:
            return None
        onehot = obs[:, self.state_space.shape[0] :]
        if not (((onehot == 0) | (onehot == 1)).all() and (onehot.sum(axis=1) == 1).all()):
            raise ValueError(f"the last {self.num_tasks} observation entries must be a one-hot task id")
        return onehot.argmax(axis=1)

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
        observation gives the same plan.
        """
        if not self.is_trained:
            raise RuntimeError(f"{type(self).__name__} has not been trained: call learn() or load() first")
        obs, single, peak = self._check_observation(observation)
        self._check_normalisable(obs, peak)
        n = len(obs)
        if episode_start is None:
            starts = None
        else:
            raw_starts = np.asarray(episode_start)
            if raw_starts.dtype != np.bool_:  # SB3 and gymnasium pass bool arrays: checked for free
                # (raw == 0) | (raw == 1), not np.isin: isin costs ~40 us on a tiny array, the fast path's whole budget
                if raw_starts.dtype.kind not in "iuf" or not ((raw_starts == 0) | (raw_starts == 1)).all():
                    raise ValueError(f"episode_start must hold booleans (or 0/1), got {raw_starts!r}")
                raw_starts = raw_starts.astype(bool)
            starts = raw_starts.reshape(-1)
            if starts.shape != (n,):
                raise ValueError(f"episode_start has {starts.size} entries for {n} observation(s)")
            if self._steps is not None and len(self._steps) != n and not starts.all():
                # Continuing episodes need their plans, but this agent holds plans for another
                # number of environments: acting on would mix up environments' plans.
                raise ValueError(
                    f"got a batch of {n} observation(s) but the agent holds plans for {len(self._steps)} environment(s); "
                    "a batch of another size must start new episodes (episode_start all True) or follow agent.reset()"
                )
        if self._steps is None or len(self._steps) != n:
            self._allocate_envs(n)
        new_episode = self._steps < 0 if starts is None else starts | (self._steps < 0)
        replan = new_episode | (self._steps >= self.action_horizon)
        self.last_replanned = replan
        if self.n_obs_steps > 1:
            self._update_history(self.obs_normalizer.normalize(obs[:, : self.state_space.shape[0]]), new_episode)
        actions = None
        if self.act_on_host and (self.stateless or not replan.any()):
            self._task_ids(obs)  # validates one-hot task ids (acting on the host does not need them)
            actions = self._act_host(obs, self._steps)  # the fast path between plans: raw in, raw out
            if actions is not None and replan.any():  # a stateless agent's plan is a no-op
                self._steps[replan] = 0
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
                    self._steps[ids] = 0
                    self.num_replans += len(ids)
                actions = self._act(t_states, t_tasks, self._steps).cpu().numpy()
            actions = self.action_normalizer.unnormalize(actions)
        self._steps += 1
        if not np.isfinite(actions).all():
            bad = ~np.isfinite(actions).all(axis=1)
            envs = np.flatnonzero(bad).tolist()
            with np.errstate(over="ignore", invalid="ignore"):
                magnitude = np.abs(self._split_tasks(obs[bad])[0]).max()
            where = "re-planned from" if replan[bad].all() else "acted on"
            # Their plans may now hold NaN: discard them, so the next call re-plans these
            # environments instead of failing again until the next scheduled re-plan.
            self._steps[bad] = -1
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

    def _update_history(self, states: np.ndarray, new_episode: np.ndarray) -> None:
        """Append normalised ``states`` to each environment's observation history; a new
        episode's history is its first observation repeated (Diffusion Policy's padding)."""
        if self._history is None:
            self._history = np.repeat(states[:, None], self.n_obs_steps, axis=1)
            return
        self._history[:, :-1] = self._history[:, 1:]
        self._history[:, -1] = states
        self._history[new_episode] = states[new_episode][:, None]

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

    # ------------------------------------------------------------------ checkpoints
    def _extra_state(self) -> dict[str, Any]:
        """JSON-able state beyond config, spaces and normalisers (e.g. latent statistics)."""
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Inverse of :meth:`_extra_state`."""

    def save(self, path: str | os.PathLike) -> None:
        """Write a single-file checkpoint (safetensors weights + JSON config), atomically.

        Under ``torchrun`` only rank 0 writes (every rank holds the same weights).
        """
        if not self.is_trained:
            raise RuntimeError("nothing to save: the agent has not been trained")
        if not distributed.is_main_process():
            return
        meta = {
            "agent": type(self).__name__,
            "lwd_gym_version": __version__,
            "config": self._config(),
            "state_space": serialize_space(self.state_space),
            "action_space": serialize_space(self.action_space),
            "num_tasks": self.num_tasks,
            "normalizers": {"obs": self.obs_normalizer.to_dict(), "action": self.action_normalizer.to_dict()},
            "extra": self._extra_state(),
        }
        tensors = {f"{name}.{k}": v for name, module in self._modules().items() for k, v in _named_tensors(module).items()}
        save_checkpoint(path, tensors, meta)

    @classmethod
    def load(cls: type[SelfAgent], path: str | os.PathLike, device: str | torch.device = "auto") -> SelfAgent:
        """Rebuild an agent saved with :meth:`save` (``BaseAgent.load`` picks the saved class)."""
        device = get_device(device)
        tensors, meta = load_checkpoint(path, device)
        try:
            name = meta["agent"]
            klass = BaseAgent.agent_classes[name]
            if not issubclass(klass, cls):
                raise ValueError(f"{path} holds a {name}, not a {cls.__name__}")
            agent = klass(**meta["config"], device=device)
            agent._set_spaces(deserialize_space(meta["state_space"]), deserialize_space(meta["action_space"]), meta["num_tasks"])
            agent.obs_normalizer = Normalizer.from_dict(meta["normalizers"]["obs"])
            agent.action_normalizer = Normalizer.from_dict(meta["normalizers"]["action"])
            agent._load_extra_state(meta["extra"])
            agent._build()
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: checkpoint metadata is incomplete or invalid ({err!r})") from err
        for module_name, module in agent._modules().items():
            prefix = module_name + "."
            _load_tensors(module, {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, f"{path}: '{module_name}'")
            module.eval()
        return agent


def _keeps_agent_on_error(learn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an agent's ``learn`` so that a call that fails (bad data found late, NaN loss,
    Ctrl-C) leaves the agent exactly as it was: a trained agent keeps its weights, normalisers
    and plans instead of ending half-rebuilt.  (Interrupted training is not lost with a
    ``checkpoint_dir``: calling ``learn`` again resumes it.)"""
    if getattr(learn, "_keeps_agent", False):
        return learn

    @functools.wraps(learn)
    def wrapper(self: BaseAgent, *args: Any, **kwargs: Any) -> Any:
        run = self.__dict__.get("_run")  # may hold the user's eval env, which need not copy
        memo = {id(run): run}
        snapshot = copy.deepcopy(self.__dict__, memo)
        try:
            return learn(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise

    wrapper._keeps_agent = True  # type: ignore[attr-defined]
    return wrapper


def _named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    # Not state_dict(): hypnettorch registers each hypernetwork parameter under two names, and
    # safetensors refuses aliased tensors.  named_parameters() lists each tensor once.
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


@torch.no_grad()
def _load_tensors(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict load of :func:`_named_tensors`: same names, same shapes, or a clear error."""
    targets = _named_tensors(module)
    missing, unexpected = sorted(targets.keys() - state.keys()), sorted(state.keys() - targets.keys())
    if missing or unexpected:
        raise ValueError(f"{where} weights do not match the saved config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, target in targets.items():
        if state[name].shape != target.shape:
            raise ValueError(f"{where} weight {name!r} has shape {tuple(state[name].shape)}, expected {tuple(target.shape)}")
        target.copy_(state[name])


class ChunkActing:
    """Acting of open-loop agents (DP, LDP), mixed in before their base class: each
    environment's action is the next step of its current chunk (``self._plans``)."""

    _plans: ActionChunks
    action_normalizer: Normalizer

    def _act(self, states: torch.Tensor, tasks: torch.Tensor | None, steps: np.ndarray) -> torch.Tensor:
        return self._plans.at(steps)

    def _act_host(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self.action_normalizer.unnormalize(self._plans.at_host(steps))


class ActionChunks:
    """Per-environment open-loop plans (DP, LDP): one chunk of normalised actions per environment,
    read one step at a time, on the device (:meth:`at`) or from a host copy (:meth:`at_host`)."""

    def __init__(self) -> None:
        self.chunks: torch.Tensor | None = None  # [n_envs, length, action_dim]
        self.host: np.ndarray | None = None  # the same, refreshed once per plan

    def allocate(self, num_envs: int, length: int, action_dim: int, device: torch.device) -> None:
        self.chunks = torch.zeros(num_envs, length, action_dim, device=device)
        self.host = np.zeros((num_envs, length, action_dim), np.float32)

    def store(self, env_ids: np.ndarray, chunks: torch.Tensor) -> None:
        self.chunks[torch.as_tensor(env_ids, device=chunks.device)] = chunks
        self.host[env_ids] = chunks.float().cpu().numpy()  # one device->host copy per plan

    def at(self, steps: np.ndarray) -> torch.Tensor:
        """Action ``steps[i]`` of environment ``i``'s chunk, for every environment."""
        index = torch.as_tensor(steps, device=self.chunks.device)
        return self.chunks[torch.arange(len(index), device=index.device), index]

    def at_host(self, steps: np.ndarray) -> np.ndarray:
        """:meth:`at` from the host copy, as numpy."""
        return self.host[np.arange(len(steps)), steps]
