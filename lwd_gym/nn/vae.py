"""The LWD variational autoencoder: trajectory snippet -> latent z -> weights of a policy.

The encoder reads a whole snippet of (state, action) pairs; the decoder is a hypernetwork, so
the reconstruction is not the snippet itself but a *policy* that must reproduce the snippet's
actions from its states (behaviour cloning through generated weights).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

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
        mu, logvar = self.encoder(states, actions)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        predicted = self.policy(self.decoder(z), states)
        error = ((predicted - actions) ** 2).mean(dim=-1)
        bc = error.mean() if mask is None else (error * mask).sum() / mask.sum()
        kl = torch.mean(-0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=-1))
        return bc + kl_coef * kl, {"bc": bc.item(), "kl": kl.item()}
