"""What LWD and the LDP baseline share: a snippet VAE, then conditional diffusion over its latents.

Training, one way through: demonstrations -> snippets -> VAE -> latents (posterior means) of
every snippet -> conditional latent diffusion (EMA weights).  A plan is a latent sampled from
``p(z | state, task)`` and decoded; the subclasses differ only in the decoder and in how a plan
is acted on: LWD decodes *policy weights* run closed-loop, LDP an *action chunk* run open-loop.
"""
from __future__ import annotations

import copy
import numbers
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lwd_gym import distributed
from lwd_gym.agents.base import BaseAgent
from lwd_gym.agents.behaviours import BehaviourFilter, behaviour_ids, check_known_ids
from lwd_gym.agents.config import LatentDiffusionConfig
from lwd_gym.data.demonstrations import Demonstrations, load_demonstrations
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.diffusion import ConditionalDiffusion
from lwd_gym.training import LossFn, TensorBatches

#: Snippets per encoder call when encoding many at once: bounds the activations' memory.
ENCODE_CHUNK = 4096

SelfLatent = TypeVar("SelfLatent", bound="LatentDiffusionAgent")


class LatentDiffusionAgent(BaseAgent):
    """Base of :class:`~lwd_gym.agents.LWDAgent` and :class:`~lwd_gym.agents.LDPAgent`.

    Subclasses implement :meth:`_make_vae` (a module with ``.encoder(states, actions) -> (mu,
    logvar)`` and ``.loss(states, actions, kl_coef, generator, mask)``), :meth:`_replan` and
    :meth:`_act`.  The hyperparameters both share are :class:`~lwd_gym.agents.config.LatentDiffusionConfig`'s.
    """

    plans_with_diffusion = True
    config_class = LatentDiffusionConfig

    def __init__(self, config: LatentDiffusionConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.latent_normalizer: Normalizer | None = None
        self.vae: nn.Module | None = None
        self.diffusion: ConditionalDiffusion | None = None
        #: the behaviours sampled (:meth:`filter_behaviours`; ``None``: all); not saved
        self.behaviour_filter: BehaviourFilter | None = None

    # ------------------------------------------------------------------ networks
    @property
    def conditioning(self) -> str:
        """What the diffusion is conditioned on: ``condition_on``, with ``"auto"`` resolved for the
        data (``"obs+task"`` when trained on several tasks, else ``"obs"``)."""
        if self.condition_on != "auto":
            return self.condition_on
        return "obs+task" if self.num_tasks > 1 else "obs"

    @property
    def cond_dim(self) -> int:
        dim = self.state_space.shape[0] if "obs" in self.conditioning else 0
        return dim + (self.num_tasks if "task" in self.conditioning else 0)

    @abstractmethod
    def _make_vae(self) -> nn.Module:
        """The VAE for the (now known) spaces."""

    def _build(self) -> None:
        if "task" in self.conditioning and self.num_tasks < 2:
            raise ValueError(f"condition_on={self.condition_on!r} needs task ids: pass a list of datasets, one per task")
        self.behaviour_filter = None  # new networks: a filter's centroids would be another model's
        self.vae = self._make_vae().to(self.device)
        latent_shape = (self.latent_dim // self.latent_length, self.latent_length)
        self.diffusion = ConditionalDiffusion(latent_shape, self.cond_dim, size=self.denoiser_size, denoiser=self.denoiser).to(self.device)

    def _modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae, "diffusion": self.diffusion}

    def _condition(self, states: torch.Tensor, tasks: torch.Tensor | None) -> torch.Tensor | None:
        """The diffusion condition: normalised state and/or one-hot task id."""
        parts = []
        if "obs" in self.conditioning:
            parts.append(states)
        if "task" in self.conditioning:
            parts.append(F.one_hot(tasks, self.num_tasks).to(states.dtype))
        return torch.cat(parts, dim=-1) if parts else None

    # ------------------------------------------------------------------ learning
    def _train(self, demos: Any) -> None:
        """The VAE on snippets, then the latent diffusion on their posterior means (EMA weights kept)."""
        snippets = self._vae_snippets(demos)
        val_snippets = self._validation_snippets(self._vae_snippets)
        self._fit(
            "vae",
            self.vae,
            self._vae_loss_fn(snippets),
            snippets,
            steps=self._stage_steps("vae", len(snippets)),
            batch_size=self.batch_size,
            lr=self.vae_lr,
            generator=self._cpu_rng(),
            val_data=val_snippets,
            val_loss=lambda b, g: self.vae.posterior_mean_mse(b["states"], b["actions"], b["mask"]),
        )
        latents, conds = self._encode_snippets(self._plan_snippets(snippets))
        # Latents scaled to [-1, 1] per dimension, the range the DDPM clips its x0 estimate to;
        # the statistics are kept to map samples back.
        self.latent_normalizer = distributed.broadcast(Normalizer.fit(latents, mode="minmax"))
        data = self._latent_batches(latents, conds)
        val_data = None if val_snippets is None else self._latent_batches(*self._encode_snippets(self._plan_snippets(val_snippets)))
        ema = copy.deepcopy(self.diffusion)
        self._fit(
            "latent-diffusion",
            self.diffusion,
            lambda b, step: self.diffusion.loss(b["x0"], b.get("cond"), self._rng),
            data,
            steps=self._stage_steps("diffusion", len(data)),
            batch_size=self.batch_size,
            lr=self.diffusion_lr,
            warmup_steps=500,
            generator=self._cpu_rng(),
            ema_model=ema,
            val_data=val_data,
            val_loss=lambda b, g: self.diffusion.loss(b["x0"], b.get("cond"), g),
            acting_attr="diffusion",
        )
        self.diffusion = ema  # only the EMA weights are used (and saved) from here on

    def _vae_snippets(self, demos: Any) -> SnippetDataset:
        """The VAE's training windows of (normalised) demonstrations, as ``vae_windows`` says."""
        every = SnippetDataset(demos, self.snippet_length, self.obs_normalizer, self.action_normalizer, pad_short_episodes=self.pad_short_episodes)
        return every if self.vae_windows == "all" else every.starting_every(self.action_horizon)

    def _plan_snippets(self, snippets: SnippetDataset) -> SnippetDataset:
        """The snippets whose latents the diffusion learns: those a plan can start with.

        Conditioned on the state, every window is a plan's possible start (the condition tells
        them apart).  Without the state (``"task"``, ``"none"``) the diffusion learns a marginal
        over latents, and a plan starts only at steps ``0, H_a, 2 H_a, ...`` of an episode: a latent
        of a window starting elsewhere (late in the episode, mostly padding when ``H_a`` is the
        episode's length) would be a wrong plan.  For such an agent, the ``action_horizon`` it
        acts with should be the one it was trained with.
        """
        return snippets if "obs" in self.conditioning else snippets.starting_every(self.action_horizon)

    def _latent_batches(self, latents: torch.Tensor, conds: dict[str, torch.Tensor]) -> TensorBatches:
        """The diffusion stage's rows: scaled latents in the denoiser's layout, with their conditions."""
        return TensorBatches(x0=self.latent_normalizer.normalize(latents).view(-1, *self.diffusion.sample_shape), **conds)

    def _vae_loss_fn(self, snippets: SnippetDataset) -> LossFn:
        """The VAE stage's loss of one batch at a gradient step (a factory, so a subclass can add terms)."""
        return lambda b, step: self.vae.loss(b["states"], b["actions"], self.kl_coef, self._rng, b["mask"])

    def _cpu_rng(self) -> torch.Generator:
        # Data order is drawn on the CPU whatever the device, from the agent's own seed stream.
        return torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=self._rng, device=self.device)))

    @torch.no_grad()
    def _encode_snippets(self, snippets: SnippetDataset, with_condition: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Posterior means of every snippet, with the diffusion condition at its first step
        (``with_condition=False``: ``{}`` instead, for snippets whose task ids are not the agent's)."""
        latents, conds = [], []
        for index in torch.arange(len(snippets)).split(ENCODE_CHUNK):
            batch = {k: v.to(self.device) for k, v in snippets.get_batch(index).items()}
            latents.append(self.vae.encoder(batch["states"], batch["actions"])[0])
            conds.append(self._condition(batch["states"][:, 0], batch["task"]) if with_condition else None)
        cond = {} if conds[0] is None else {"cond": torch.cat(conds)}
        return torch.cat(latents), cond

    @torch.no_grad()
    def encode(self, states: np.ndarray | torch.Tensor, actions: np.ndarray | torch.Tensor) -> np.ndarray:
        """Posterior means ``[n, latent_dim]`` of the VAE encoder for ``n`` snippets.

        :param states: raw (unnormalised) states ``[n, snippet_length, state_dim]`` (no task id).
        :param actions: raw actions ``[n, snippet_length, action_dim]``.

        The snippets are normalised as in training; the means are the latents the diffusion
        model was fitted to (before its min-max scaling), e.g. for analysing behaviours.
        """
        if not self.is_trained:
            raise RuntimeError(f"{type(self).__name__} has not been trained: call learn() or load() first")
        s, a = torch.as_tensor(states, dtype=torch.float32), torch.as_tensor(actions, dtype=torch.float32)
        expected_s = (self.snippet_length, self.state_space.shape[0])
        expected_a = (self.snippet_length, self.action_space.shape[0])
        if s.ndim != 3 or tuple(s.shape[1:]) != expected_s or a.ndim != 3 or tuple(a.shape[1:]) != expected_a or len(s) != len(a):
            raise ValueError(f"expected states [n, *{expected_s}] and actions [n, *{expected_a}], got {tuple(s.shape)} and {tuple(a.shape)}")
        s = self.obs_normalizer.normalize(s.to(self.device))
        a = self.action_normalizer.normalize(a.to(self.device))
        means = [self.vae.encoder(s_, a_)[0] for s_, a_ in zip(s.split(ENCODE_CHUNK), a.split(ENCODE_CHUNK))]
        return torch.cat(means).cpu().numpy()  # split() yields one empty chunk for n = 0

    def _extra_state(self) -> dict[str, Any]:
        return {"latent_normalizer": self.latent_normalizer.to_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.latent_normalizer = Normalizer.from_dict(extra["latent_normalizer"])

    # ------------------------------------------------------------------ behaviour filtering
    def filter_behaviours(
        self: SelfLatent,
        keep: Sequence[int] | None,
        labelled: Any = None,
        *,
        classifier: str = "centroid",
        k: int = 10,
        max_tries: int = 16,
        on_exhausted: str = "raise",
    ) -> SelfLatent:
        """Sample only the behaviours ``keep`` from now on (``keep=None``: every behaviour again); returns the agent.

        An agent trained on mixed-quality demonstrations can be told at acting time which of the
        behaviours it learned to reproduce; :meth:`sample_latents` applies the filter, so
        ``predict``, :func:`lwd_gym.evaluate` and every re-plan use it unchanged.  Two ways:

        * **by task id** (``labelled=None``): for an agent whose diffusion is conditioned on the
          task (``condition_on`` with ``"task"``) and trained on one dataset per behaviour, the
          ids being the datasets' positions.  Each re-plan draws its task uniformly from ``keep``
          (with one kept id, no draw: exactly the plans of that task id); the task id in the
          observation is ignored while the filter is set.  The draw uses the environment's
          noise stream, so deterministic acting stays deterministic.
        * **by nearest labelled cluster** (``labelled`` given), for any agent, conditioned or
          not: ``labelled`` is demonstrations labelled by behaviour, anything
          :func:`~lwd_gym.data.load_demonstrations` reads with the same spaces as the training
          data (typically a list of datasets, one per behaviour: the id is the position; or a
          :class:`~lwd_gym.data.Demonstrations` whose ``tasks`` are the behaviour ids).  Their
          snippets are encoded (:meth:`encode`'s posterior means, the windows the diffusion was
          trained on) into the diffusion's min-max scaled space (where every latent dimension
          has the same range).  ``classifier`` names a sampled latent's behaviour:
          ``"centroid"`` (default), the nearest behaviour centroid (the mean of its latents);
          ``"knn"``, the behaviour most of its ``k`` nearest labelled latents have (a kept
          behaviour tied for most votes counts as kept).  Centroids suit behaviours that are
          groups in latent space (one policy per episode, Fig 8); when the task's phase
          dominates the latent geometry (a policy re-sampled every few steps: the latents of
          one phase lie together whoever demonstrated it), the neighbours compare a latent only
          with the labelled latents of the same phase.
          A sampled latent whose behaviour is not kept is rejected and sampled again
          (same condition, the environment's own noise stream), up to ``max_tries`` samplings in
          all.  If some are still rejected then: with ``on_exhausted="raise"`` (default),
          ``RuntimeError`` (the agent rarely generates the kept behaviours in those states; the
          plans are unchanged); with ``on_exhausted="closest"``, each of them takes, of its
          ``max_tries`` samples, the one that came closest to a kept behaviour
          (:meth:`BehaviourFilter.kept_excess`), so acting goes on, filtered as far as the agent allows, and
          :attr:`BehaviourFilter.fallbacks` counts them.  ``behaviour_filter`` reports the
          acceptance rate and how well the classifier tells the labelled data apart
          (:attr:`BehaviourFilter.labelled_accuracy`).

        An acting-time setting, like ``action_horizon``: it is **not saved** with the agent
        (``save``, ``save_pretrained``), is copied by :meth:`acting_copy`, kept by ``reset`` and
        ``set_parameters``, and cleared by ``learn`` and ``load`` (new networks).

        :raises ValueError: ``keep`` is empty, holds repeats, non-integers or unknown ids;
            ``labelled`` is missing for an agent not conditioned on the task, has other spaces,
            fewer than two behaviours, or a kept behaviour without a full snippet; ``max_tries``
            or ``k`` is not a positive integer; ``classifier`` is not ``"centroid"`` or
            ``"knn"`` (or is given without ``labelled``); ``on_exhausted`` is not ``"raise"`` or
            ``"closest"``.
        """
        if not self.is_trained:
            raise RuntimeError(f"{type(self).__name__} has not been trained: call learn() or load() first")
        if keep is None:
            if labelled is not None:
                raise ValueError("labelled demonstrations need keep= (the behaviour ids to keep); filter_behaviours(None) clears the filter")
            self.behaviour_filter = None
            return self
        if isinstance(max_tries, bool) or not isinstance(max_tries, numbers.Integral) or max_tries < 1:
            raise ValueError(f"max_tries must be a positive integer, got {max_tries!r}")
        if on_exhausted not in ("raise", "closest"):
            raise ValueError(f"on_exhausted must be 'raise' or 'closest', got {on_exhausted!r}")
        if classifier not in ("centroid", "knn"):
            raise ValueError(f"classifier must be 'centroid' or 'knn', got {classifier!r}")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        ids = behaviour_ids(keep)
        if labelled is None:
            if classifier != "centroid":
                raise ValueError(f"classifier={classifier!r} names behaviours of labelled demonstrations: pass labelled= (task-id filtering needs none)")
            if "task" not in self.conditioning:
                raise ValueError(
                    f"this agent's diffusion is conditioned on {self.conditioning!r}, not on task ids: pass labelled= demonstrations "
                    "(e.g. a list of datasets, one per behaviour) to filter sampled latents by their nearest behaviour"
                )
            check_known_ids(ids, self.num_tasks, "task ids (one per training dataset)")
            self.behaviour_filter = BehaviourFilter(keep=ids, max_tries=int(max_tries))
            return self
        filt = self._labelled_filter(labelled, ids, classifier, int(k))
        filt.max_tries, filt.on_exhausted = int(max_tries), on_exhausted
        self.behaviour_filter = filt
        return self

    @torch.no_grad()
    def _labelled_filter(self, labelled: Any, keep: tuple[int, ...], classifier: str, k: int) -> BehaviourFilter:
        """A :class:`BehaviourFilter` from labelled demonstrations: their scaled latents, labels and
        centroids, and how often the classifier names each behaviour's own snippets rightly."""
        demos = labelled if isinstance(labelled, Demonstrations) else load_demonstrations(labelled)
        if demos.observation_space.shape != self.state_space.shape or demos.action_space.shape != self.action_space.shape:
            raise ValueError(
                f"labelled demonstrations have observations {demos.observation_space.shape} and actions {demos.action_space.shape}; "
                f"this agent was trained on {self.state_space.shape} and {self.action_space.shape}"
            )
        if demos.num_tasks < 2:
            raise ValueError("labelled demonstrations hold one behaviour: give one dataset per behaviour (a list), so there is something to filter")
        check_known_ids(keep, demos.num_tasks, "labelled behaviours")
        snippets = self._plan_snippets(
            SnippetDataset(demos, self.snippet_length, self.obs_normalizer, self.action_normalizer, pad_short_episodes=self.pad_short_episodes)
        )
        labels = snippets.step_tasks[snippets.begins].to(self.device)
        latents, _ = self._encode_snippets(snippets, with_condition=False)
        scaled = self.latent_normalizer.normalize(latents)
        counts = torch.bincount(labels, minlength=demos.num_tasks)
        empty = [int(b) for b in torch.nonzero(counts == 0).flatten()]
        if empty:
            raise ValueError(f"labelled behaviour(s) {empty} have no snippet of {self.snippet_length} steps: each needs an episode at least that long")
        centroids = torch.zeros(demos.num_tasks, scaled.shape[1], device=self.device, dtype=scaled.dtype).index_add_(0, labels, scaled)
        centroids /= counts[:, None].to(scaled.dtype)
        filt = BehaviourFilter(keep=keep, centroids=centroids, classifier=classifier, k=k)
        if classifier == "knn":
            filt.latents, filt.labels = scaled, labels
        # Each labelled snippet named by the classifier; for neighbours, only from other episodes
        # (overlapping windows of one episode are near-copies of each other).
        episodes = snippets.begins.to(self.device)
        named = filt.behaviour_of(scaled, exclude_groups=episodes if classifier == "knn" else None)
        filt.labelled_accuracy = tuple(float((named[labels == b] == b).float().mean()) for b in range(demos.num_tasks))
        return filt

    def _draw_kept_tasks(self, n: int, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        """Task ids ``[n]`` drawn uniformly from the filter's kept ids, one per sample (each from
        its environment's generator when given a list)."""
        keep = torch.as_tensor(self.behaviour_filter.keep, device=self.device)
        if len(keep) == 1:
            return keep.expand(n)
        if isinstance(generator, list):
            picks = torch.cat([torch.randint(len(keep), (1,), generator=g, device=self.device) for g in generator])
        else:
            picks = torch.randint(len(keep), (n,), generator=generator, device=self.device)
        return keep[picks]

    # ------------------------------------------------------------------ acting
    def sample_latents(
        self, states: torch.Tensor, tasks: torch.Tensor | None = None, deterministic: bool = False, env_ids: np.ndarray | None = None
    ) -> torch.Tensor:
        """Latents ``[n, latent_dim]`` from the EMA diffusion model for normalised ``states [n, state_dim]``.

        ``env_ids`` picks the environments' noise streams (as ``predict`` does); without them the
        agent's own stream is used (``deterministic``: a generator seeded with ``seed``).  Only
        the behaviours kept by :meth:`filter_behaviours` are sampled, when it was called.
        """
        n = len(states)
        if env_ids is not None:
            generator = self.noise_generators(env_ids, deterministic)
        else:
            generator = torch.Generator(self.device).manual_seed(self.seed) if deterministic else self._rng
        filt = self.behaviour_filter
        if filt is not None and filt.by_task:
            tasks = self._draw_kept_tasks(n, generator)
            filt.sampled, filt.accepted = filt.sampled + n, filt.accepted + n
        cond = self._condition(states, tasks)
        z = self._sample_scaled(cond, n, generator)
        if filt is not None and not filt.by_task:
            z = self._rejecting(z, cond, generator)
        return self.latent_normalizer.unnormalize(z)

    def _sample_scaled(self, cond: torch.Tensor | None, n: int, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        """``n`` latents ``[n, latent_dim]`` in the diffusion's scaled space."""
        z = self.diffusion.sample(cond, n, num_inference_steps=self.num_inference_steps, scheduler=self.scheduler, generator=generator)
        return z.reshape(n, -1)

    def _rejecting(self, z: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        """``z`` with every latent whose nearest behaviour is not kept sampled again (same
        condition and noise stream), up to the filter's ``max_tries`` samplings in all; then
        what the filter's ``on_exhausted`` says (raise, or each one's closest sample)."""
        filt = self.behaviour_filter
        z = z.clone()
        best, best_excess = z.clone(), torch.full((len(z),), float("inf"), device=z.device)
        rejected = torch.arange(len(z), device=z.device)
        for attempt in range(filt.max_tries):
            if attempt:
                rows = rejected.tolist()
                gens = [generator[i] for i in rows] if isinstance(generator, list) else generator
                z[rejected] = self._sample_scaled(None if cond is None else cond[rejected], len(rows), gens)
            excess = filt.kept_excess(z[rejected])
            closer = excess < best_excess[rejected]
            best[rejected[closer]], best_excess[rejected[closer]] = z[rejected[closer]], excess[closer]
            ok = excess <= 0
            filt.sampled += len(rejected)
            filt.accepted += int(ok.sum())
            rejected = rejected[~ok]
            if len(rejected) == 0:
                return z
        if filt.on_exhausted == "closest":
            z[rejected] = best[rejected]
            filt.fallbacks += len(rejected)
            return z
        raise RuntimeError(
            f"behaviour filter: {len(rejected)} of {len(z)} latent(s) were still nearest a behaviour not kept after {filt.max_tries} samplings "
            f"(acceptance so far {filt.acceptance_rate:.1%}): the agent rarely generates behaviours {list(filt.keep)} in these states; "
            "raise max_tries, keep more behaviours, filter with on_exhausted='closest', or clear the filter (filter_behaviours(None)); "
            "the plans are unchanged"
        )

