"""Snippet VAEs: trajectory snippet -> latent z -> a plan.

The encoder reads a whole snippet of (state, action) pairs.  LWD's decoder is a hypernetwork,
so the reconstruction is not the snippet itself but a *policy* that must reproduce the
snippet's actions from its states (behaviour cloning through generated weights).  The LDP
baseline's decoder instead outputs the action chunk directly (:class:`ChunkVAE`): same encoder,
same loss shape, only the decoder differs.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lwd_gym import distributed
from lwd_gym.nn.generated_policy import GeneratedMLP
from lwd_gym.nn.hypernet import HypernetDecoder
from lwd_gym.nn.mlp import mlp


class SnippetEncoder(nn.Module):
    """Flattened snippet ``[B, H, state+action]`` -> ``(mu, logvar)`` of ``q(z | snippet)``."""

    def __init__(self, snippet_length: int, state_dim: int, action_dim: int, latent_dim: int, hidden: Sequence[int] = (512, 512, 512)) -> None:
        super().__init__()
        self.net = mlp(snippet_length * (state_dim + action_dim), hidden, 2 * latent_dim)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([states, actions], dim=-1).flatten(1)
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


def sample_posterior(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised ``z ~ q(z | snippet)`` and the mean ``KL(q || N(0, I))`` over the batch."""
    eps = distributed.randn(mu.shape, generator, mu.device, mu.dtype)
    kl = torch.mean(-0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=-1))
    return mu + eps * torch.exp(0.5 * logvar), kl


def masked_mse(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """MSE over ``[B, H, A]`` steps, ignoring padded steps where ``mask [B, H]`` is false."""
    error = ((predicted - target) ** 2).mean(dim=-1)
    return error.mean() if mask is None else distributed.masked_mean(error, mask)


class PolicyVAE(nn.Module):
    """Encoder + hypernetwork decoder, trained with BC-MSE of the generated policy + ``kl_coef`` KL.

    :param snippet_length: steps per snippet ``H``.
    :param state_dim: observation size seen by the generated policy.
    :param action_dim: action size.
    :param latent_dim: size of ``z``.
    :param policy_hidden: hidden widths of the generated policy.
    :param hypernet_size: hypernetwork preset (see :data:`~lwd_gym.nn.hypernet.HYPERNET_PRESETS`).
    """

    def __init__(
        self,
        snippet_length: int,
        state_dim: int,
        action_dim: int,
        latent_dim: int = 256,
        policy_hidden: Sequence[int] = (256, 256),
        hypernet_size: str | Sequence[int] = "s",
    ) -> None:
        super().__init__()
        self.policy = GeneratedMLP(state_dim, policy_hidden, action_dim)
        self.encoder = SnippetEncoder(snippet_length, state_dim, action_dim, latent_dim)
        self.decoder = HypernetDecoder(latent_dim, self.policy, hypernet_size)

    def loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        kl_coef: float,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Negative ELBO with a tiny KL weight for snippets ``[B, H, ...]``; ``mask [B, H]`` drops padded steps."""
        _, bc, kl = self.bc_terms(states, actions, generator, mask)
        return bc + kl_coef * kl, {"bc": bc.item(), "kl": kl.item()}

    def posterior_mean_mse(self, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """BC-MSE of the policy decoded from each snippet's posterior *mean* (no sampling): the
        validation loss of the VAE stage."""
        mu = self.encoder(states, actions)[0]
        return masked_mse(self.policy(self.decoder(mu), states), actions, mask)

    def bc_terms(
        self, states: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(generated policies' actions [B, H, A], BC-MSE, KL)`` for one posterior sample per snippet."""
        z, kl = sample_posterior(*self.encoder(states, actions), generator)
        policy_actions = self.policy(self.decoder(z), states)
        return policy_actions, masked_mse(policy_actions, actions, mask), kl


class ChunkVAE(nn.Module):
    """Encoder + MLP decoder ``z -> [H, action_dim]`` action chunk (the LDP baseline's VAE).

    :param snippet_length: steps per snippet and per decoded chunk ``H``.
    :param state_dim: observation size.
    :param action_dim: action size.
    :param latent_dim: size of ``z``.
    :param decoder_hidden: hidden widths of the decoder MLP.
    """

    def __init__(self, snippet_length: int, state_dim: int, action_dim: int, latent_dim: int = 256, decoder_hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.chunk_shape = (int(snippet_length), int(action_dim))
        self.encoder = SnippetEncoder(snippet_length, state_dim, action_dim, latent_dim)
        self.decoder = mlp(latent_dim, decoder_hidden, snippet_length * action_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Action chunks ``[B, H, action_dim]`` for latents ``[B, latent_dim]``."""
        return self.decoder(z).view(-1, *self.chunk_shape)

    def posterior_mean_mse(self, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Chunk MSE decoded from each snippet's posterior mean: the VAE stage's validation loss."""
        return masked_mse(self.decode(self.encoder(states, actions)[0]), actions, mask)

    def loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        kl_coef: float,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Chunk reconstruction MSE + ``kl_coef`` KL; ``mask [B, H]`` drops padded steps."""
        z, kl = sample_posterior(*self.encoder(states, actions), generator)
        recon = masked_mse(self.decode(z), actions, mask)
        return recon + kl_coef * kl, {"recon": recon.item(), "kl": kl.item()}
