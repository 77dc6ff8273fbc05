"""How every agent learns: ``learn``'s template and what all its training stages share.

``learn(dataset, steps=..., <stage>_steps=..., **run options)`` checks its options, then
:meth:`Learner._prepare` reads the demonstrations (held-out validation episodes, spaces,
normalisers, seeds) and builds the networks, then the agent's :meth:`Learner._train` runs its
stages, each through :meth:`Learner._fit`: :func:`lwd_gym.training.fit` with the run's progress
bar, resumable checkpoints, per-step log, validation loss and in-training evaluation.  A failed
call leaves the agent as it was (:func:`keeps_agent_on_error`).

:class:`Learner` is a mixin of :class:`~lwd_gym.agents.base.BaseAgent`; it uses the agent's
``config``, ``seed``, ``_rng``, ``_set_spaces``, ``_build`` and ``reset``.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import math
import os
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from lwd_gym import distributed
from lwd_gym.data.demonstrations import Demonstrations, load_demonstrations
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.train_log import StageLog, StageWriter, TrainingLog
from lwd_gym.training import BatchSource, LossFn, TrainCheckpoint, fit, stage_steps
from lwd_gym.utils import seed_everything

SelfLearner = TypeVar("SelfLearner", bound="Learner")

#: first episode seed of the in-training evaluation (far from the usual demonstration seeds 0+)
EVAL_SEED = 900_000


#: rows of the held-out data a validation loss is computed on (a fixed, evenly spread subset;
#: with 1,024 rows and 100 validations the curve cost ~30 % of a small agent's training time)
VALIDATION_ROWS = 256


@dataclass
class TrainingRun:
    """Options of one ``learn`` call shared by all its stages (see :meth:`Learner._prepare`)."""

    checkpoint_dir: Path | None = None
    checkpoint_every: int = 500
    progress: bool = True
    data_digest: str = ""
    log_dir: Path | None = None
    validation: Demonstrations | None = None
    eval_env: Any = None
    eval_every: int | None = None
    n_eval_episodes: int = 10
    keep_best_validation: bool = False
    budgets: dict[str, int | None] = field(default_factory=dict)


#: ``learn``'s run options, the same for every agent (see :meth:`BaseAgent.learn`)
RUN_OPTIONS = (
    "checkpoint_dir", "checkpoint_every", "progress_bar", "log_dir", "validation_fraction", "eval_env", "eval_every", "n_eval_episodes",
    "keep_best_validation",
)  # fmt: skip


class Learner:
    """``learn`` and the training stages' shared machinery (mixed into ``BaseAgent``)."""

    def learn(self: SelfLearner, dataset: Any, *, steps: int | None = None, **options: Any) -> SelfLearner:
        """Train on a Minari dataset, a dataset id, or a list of them (one per task); returns ``self``.

        :param steps: gradient steps of every stage.  ``<stage>_steps`` sets one stage's (for
            ``stage`` in :attr:`stages`: LWD / LDP ``vae_steps`` and ``diffusion_steps``, DP
            ``diffusion_steps``, MLP ``bc_steps``).  A stage without either trains for its
            ``config.<stage>_epochs`` epochs, but at least :data:`~lwd_gym.training.MIN_STEPS`
            gradient steps (:func:`~lwd_gym.training.stage_steps`).

        Run options, the same for every agent (:data:`RUN_OPTIONS`):

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
        :param keep_best_validation: every stage that acts with its own training weights (no EMA
            copy) and has no in-training evaluation ends with the weights of its lowest
            validation loss instead of its last (Keras' ``restore_best_weights``): LWD's and LDP's
            VAE, the MLP.  Diffusion stages keep their EMA weights.  For a VAE that overfits
            small data (its held-out BC-MSE lowest early, benchmarks/README.md); needs
            ``validation_fraction > 0``.  ``agent.training_log[stage].kept_step`` says which step.

        A call that fails leaves the agent as it was (a trained agent keeps its weights).
        """
        budgets = self._stage_budgets(steps, options)
        demos = self._prepare(dataset, **options)
        self._run.budgets = budgets
        self._train(demos)
        self.training_record = training_record(demos, self._run.validation, self.training_log)
        self.reset()
        return self

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
        keep_best_validation: bool = False,
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
        if not isinstance(keep_best_validation, bool):
            raise TypeError(f"keep_best_validation must be True or False, got {keep_best_validation!r}")
        if keep_best_validation and not validation_fraction > 0:
            raise ValueError(f"keep_best_validation needs held-out episodes: validation_fraction > 0, got {validation_fraction!r}")
        demos, validation = load_demonstrations(dataset).split(validation_fraction, self.seed)
        if keep_best_validation and validation is None:
            raise ValueError(
                f"keep_best_validation needs held-out episodes, but validation_fraction={validation_fraction} of {len(demos)} "
                "episodes holds out none (floor(fraction x episodes per task)); raise validation_fraction"
            )
        digest = hashlib.sha256()
        if checkpoint_dir is not None:  # identifies the data of a resumable run; not needed otherwise
            for array in (*demos.observations, *demos.actions, demos.tasks):
                digest.update(np.ascontiguousarray(array).tobytes())
        self._run = TrainingRun(
            None if checkpoint_dir is None else Path(checkpoint_dir), checkpoint_every, progress_bar, digest.hexdigest(),
            None if log_dir is None else Path(log_dir), validation, eval_env, eval_every, int(n_eval_episodes), keep_best_validation,
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

    @classmethod
    def learn_options(cls) -> list[str]:
        """Every keyword :meth:`learn` accepts."""
        return ["steps", *(f"{stage}_steps" for stage in cls.config_class.STAGES), *RUN_OPTIONS]

    def _stage_budgets(self, steps: int | None, options: dict[str, Any]) -> dict[str, int | None]:
        """Each stage's requested gradient steps (``None``: its epochs), taken out of ``options``;
        checked before anything is trained."""
        requested = {stage: options.pop(f"{stage}_steps", None) for stage in self.stages}
        unknown = sorted(set(options) - set(RUN_OPTIONS))
        if unknown:
            raise TypeError(f"{type(self).__name__}.learn() got unknown option(s) {unknown}; it accepts: {', '.join(self.learn_options())}")
        budgets: dict[str, int | None] = {}
        for stage, own in requested.items():  # a stage's own budget wins over steps; each checked now
            value, name = (steps, "steps") if own is None else (own, f"{stage}_steps")
            budgets[stage] = None if value is None else stage_steps(value, 1, 1, 1, name)
        return budgets

    def _stage_steps(self, stage: str, num_rows: int) -> int:
        """Gradient steps of ``stage`` in this ``learn`` call, for ``num_rows`` training rows."""
        return stage_steps(self._run.budgets.get(stage), getattr(self.config, f"{stage}_epochs"), num_rows, self.batch_size, f"{stage}_steps")

    @abstractmethod
    def _train(self, demos: Demonstrations) -> None:
        """Train every stage on the (prepared) training episodes; budgets from :meth:`_stage_steps`."""

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
        # the best-validation weights apply where the validation loss is measured on the weights that act
        keep_best = self._run.keep_best_validation and val_data is not None and val_loss is not None and len(val_data) > 0 and kwargs.get("ema_model") is None
        checkpoint = None
        if self._run.checkpoint_dir is not None:
            fingerprint = {
                "agent": type(self).__name__, "config": self.config.to_dict(), "stage": stage, "steps": steps,
                "rows": len(data), "data": self._run.data_digest, "fit": {k: v for k, v in kwargs.items() if k != "ema_model"},
                **({"keep_best_validation": True} if keep_best else {}),  # absent otherwise: earlier runs' states still resume
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
            evaluate=evaluate_fn, eval_every=self._run.eval_every, keep_best_validation=keep_best, **kwargs,
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


def training_record(demos: Demonstrations, validation: Demonstrations | None, log: TrainingLog) -> dict[str, Any]:
    """What a ``learn`` call trained on and for how long, JSON-able (saved with the agent)."""
    stages = {stage: {k: (None if math.isnan(v) else v) for k, v in s.items()} for stage, s in log.summary().items()}
    return {"datasets": list(demos.dataset_ids), "train_episodes": len(demos), "validation_episodes": 0 if validation is None else len(validation), "stages": stages}


def keeps_agent_on_error(learn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an agent's ``learn`` so that a call that fails (bad data found late, NaN loss,
    Ctrl-C) leaves the agent exactly as it was: a trained agent keeps its weights, normalisers
    and plans instead of ending half-rebuilt.  (Interrupted training is not lost with a
    ``checkpoint_dir``: calling ``learn`` again resumes it.)"""
    if getattr(learn, "_keeps_agent", False):
        return learn

    @functools.wraps(learn)
    def wrapper(self: Learner, *args: Any, **kwargs: Any) -> Any:
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


