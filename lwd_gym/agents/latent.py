"""What LWD and the LDP baseline share: a snippet VAE, then conditional diffusion over its latents.

Training, one way through: demonstrations -> snippets -> VAE -> latents (posterior means) of
every snippet -> conditional latent diffusion (EMA weights).  A plan is a latent sampled from
``p(z | state, task)`` and decoded; the subclasses differ only in the decoder and in how a plan
is acted on: LWD decodes *policy weights* run closed-loop, LDP an *action chunk* run open-loop.
"""
from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lwd_gym import distributed
from lwd_gym.agents.base import BaseAgent
from lwd_gym.agents.config import LatentDiffusionConfig
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.diffusion import ConditionalDiffusion
from lwd_gym.training import LossFn, TensorBatches

#: Snippets per encoder call when encoding many at once: bounds the activations' memory.
ENCODE_CHUNK = 4096


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
