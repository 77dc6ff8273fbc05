"""What LWD and the LDP baseline share: a snippet VAE, then conditional diffusion over its latents.

Training, one way through: demonstrations -> snippets -> VAE -> latents (posterior means) of
every snippet -> conditional latent diffusion (EMA weights).  A plan is a latent sampled from
``p(z | state, task)`` and decoded; the subclasses differ only in the decoder and in how a plan
is acted on: LWD decodes *policy weights* run closed-loop, LDP an *action chunk* run open-loop.
"""
from __future__ import annotations

import copy
from abc import abstractmethod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lwd_gym import distributed
from lwd_gym.agents.base import BaseAgent
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.diffusion import ConditionalDiffusion
from lwd_gym.training import LossFn, TensorBatches, stage_steps
from lwd_gym.validation import choice, positive_float, positive_int
from lwd_gym.validation import denoiser as check_denoiser
from lwd_gym.validation import sampler as check_sampler

CONDITIONS = ("obs", "task", "obs+task", "none")
#: which windows the VAE trains on (``vae_windows``): one starting at every step, or only those where plans start
VAE_WINDOWS = ("all", "plan_starts")


#: Snippets per encoder call when encoding many at once: bounds the activations' memory.
ENCODE_CHUNK = 4096

class LatentDiffusionAgent(BaseAgent):
    """Base of :class:`~lwd_gym.agents.LWDAgent` and :class:`~lwd_gym.agents.LDPAgent`.

    Subclasses implement :meth:`_make_vae` (a module with ``.encoder(states, actions) -> (mu,
    logvar)`` and ``.loss(states, actions, kl_coef, generator, mask)``), :meth:`_replan` and
    :meth:`_act`.  Parameters shared by both are documented on the subclasses.
    """

    plans_with_diffusion = True

    def __init__(
        self,
        action_horizon: int,
        snippet_length: int | None,
        latent_dim: int,
        latent_length: int,
        kl_coef: float,
        diffusion_size: str,
        condition_on: str,
        num_inference_steps: int,
        scheduler: str,
        batch_size: int,
        vae_lr: float,
        diffusion_lr: float,
        vae_epochs: int,
        diffusion_epochs: int,
        device: str | torch.device,
        seed: int,
        pad_short_episodes: bool = False,
        denoiser: str = "unet",
        vae_windows: str = "all",
    ) -> None:
        choice("condition_on", condition_on, CONDITIONS)
        self.vae_windows = choice("vae_windows", vae_windows, VAE_WINDOWS)
        self.latent_dim, self.latent_length = positive_int("latent_dim", latent_dim), positive_int("latent_length", latent_length)
        if latent_dim % latent_length:
            raise ValueError(f"latent_dim={latent_dim} must be divisible by latent_length={latent_length}")
        check_denoiser(denoiser, diffusion_size, "diffusion_size", self.latent_length, "latent_length")
        if isinstance(kl_coef, bool) or not isinstance(kl_coef, (int, float)) or not 0 <= kl_coef < 1:
            raise ValueError(f"kl_coef must be in [0, 1), got {kl_coef!r}")
        # None (not 0) means "as long as action_horizon"
        self.snippet_length = positive_int("action_horizon", action_horizon) if snippet_length is None else positive_int("snippet_length", snippet_length)
        self.pad_short_episodes = bool(pad_short_episodes)
        super().__init__(action_horizon=action_horizon, device=device, seed=seed)
        self.kl_coef = float(kl_coef)
        self.diffusion_size = diffusion_size
        self.denoiser = denoiser
        self.condition_on = condition_on
        self.num_inference_steps = check_sampler(scheduler, num_inference_steps)
        self.scheduler = scheduler
        self.batch_size = positive_int("batch_size", batch_size)
        self.vae_lr, self.diffusion_lr = positive_float("vae_lr", vae_lr), positive_float("diffusion_lr", diffusion_lr)
        self.vae_epochs, self.diffusion_epochs = positive_int("vae_epochs", vae_epochs), positive_int("diffusion_epochs", diffusion_epochs)
        self.latent_normalizer: Normalizer | None = None
        self.vae: nn.Module | None = None
        self.diffusion: ConditionalDiffusion | None = None

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "snippet_length": self.snippet_length,
            "pad_short_episodes": self.pad_short_episodes,
            "vae_windows": self.vae_windows,
            "latent_dim": self.latent_dim,
            "latent_length": self.latent_length,
            "kl_coef": self.kl_coef,
            "diffusion_size": self.diffusion_size,
            "denoiser": self.denoiser,
            "condition_on": self.condition_on,
            "num_inference_steps": self.num_inference_steps,
            "scheduler": self.scheduler,
            "batch_size": self.batch_size,
            "vae_lr": self.vae_lr,
            "diffusion_lr": self.diffusion_lr,
            "vae_epochs": self.vae_epochs,
            "diffusion_epochs": self.diffusion_epochs,
        }

    # ------------------------------------------------------------------ networks
    @property
    def cond_dim(self) -> int:
        dim = self.state_space.shape[0] if "obs" in self.condition_on else 0
        return dim + (self.num_tasks if "task" in self.condition_on else 0)

    @abstractmethod
    def _make_vae(self) -> nn.Module:
        """The VAE for the (now known) spaces."""

    def _build(self) -> None:
        if "task" in self.condition_on and self.num_tasks < 2:
            raise ValueError(f"condition_on={self.condition_on!r} needs task ids: pass a list of datasets, one per task")
        self.vae = self._make_vae().to(self.device)
        latent_shape = (self.latent_dim // self.latent_length, self.latent_length)
        self.diffusion = ConditionalDiffusion(latent_shape, self.cond_dim, size=self.diffusion_size, denoiser=self.denoiser).to(self.device)

    def _modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae, "diffusion": self.diffusion}

    def _condition(self, states: torch.Tensor, tasks: torch.Tensor | None) -> torch.Tensor | None:
        """The diffusion condition: normalised state and/or one-hot task id."""
        parts = []
        if "obs" in self.condition_on:
            parts.append(states)
        if "task" in self.condition_on:
            parts.append(F.one_hot(tasks, self.num_tasks).to(states.dtype))
        return torch.cat(parts, dim=-1) if parts else None

    # ------------------------------------------------------------------ learning
    def learn(self, dataset: Any, *, vae_steps: int | None = None, diffusion_steps: int | None = None, **options: Any) -> LatentDiffusionAgent:
        """Train the VAE, then the latent diffusion model; returns ``self``.

        :param dataset: a ``minari.MinariDataset``, a dataset id, or a list of them (one per task).
        :param vae_steps: gradient steps of the VAE stage (default: ``vae_epochs`` epochs, at least
            :data:`~lwd_gym.training.MIN_STEPS`).
        :param diffusion_steps: gradient steps of the diffusion stage (default: ``diffusion_epochs``, same rule).
        :param options: the run options of :meth:`BaseAgent.learn` (checkpoints, logs, validation, evaluation).
        """
        demos = self._prepare(dataset, **options)
        snippets = self._vae_snippets(demos)
        val_snippets = self._validation_snippets(self._vae_snippets)
        self._fit(
            "vae",
            self.vae,
            self._vae_loss_fn(snippets),
            snippets,
            steps=stage_steps(vae_steps, self.vae_epochs, len(snippets), self.batch_size, "vae_steps"),
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
            steps=stage_steps(diffusion_steps, self.diffusion_epochs, len(data), self.batch_size, "diffusion_steps"),
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
        self.reset()
        return self

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
        return snippets if "obs" in self.condition_on else snippets.starting_every(self.action_horizon)

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
    def _encode_snippets(self, snippets: SnippetDataset) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Posterior means of every snippet, with the diffusion condition at its first step."""
        latents, conds = [], []
        for index in torch.arange(len(snippets)).split(ENCODE_CHUNK):
            batch = {k: v.to(self.device) for k, v in snippets.get_batch(index).items()}
            latents.append(self.vae.encoder(batch["states"], batch["actions"])[0])
            conds.append(self._condition(batch["states"][:, 0], batch["task"]))
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

    # ------------------------------------------------------------------ acting
    def sample_latents(
        self, states: torch.Tensor, tasks: torch.Tensor | None = None, deterministic: bool = False, env_ids: np.ndarray | None = None
    ) -> torch.Tensor:
        """Latents ``[n, latent_dim]`` from the EMA diffusion model for normalised ``states [n, state_dim]``.

        ``env_ids`` picks the environments' noise streams (as ``predict`` does); without them the
        agent's own stream is used (``deterministic``: a generator seeded with ``seed``).
        """
        n = len(states)
        if env_ids is not None:
            generator = self.noise_generators(env_ids, deterministic)
        else:
            generator = torch.Generator(self.device).manual_seed(self.seed) if deterministic else self._rng
        z = self.diffusion.sample(
            self._condition(states, tasks),
            n,
            num_inference_steps=self.num_inference_steps,
            scheduler=self.scheduler,
            generator=generator,
        )
        return self.latent_normalizer.unnormalize(z.reshape(n, -1))
