"""LWD's optional world model: a learned one-step dynamics model that also trains the VAE.

The world model maps the last ``history`` (state, action) pairs to a Gaussian over the next
*normalised* state with a learned mean and a **fixed** isotropic variance.  It predicts the
state change: ``mean = s_{t-1} + net(history)`` (deltas are small, so the net starts near the
identity dynamics).  Two losses, over steps ``t = history .. H-1`` of every snippet:

* teacher forcing (``L_TF``): Gaussian negative log-likelihood of the dataset's ``s_t`` given
  the dataset's history; the only loss that trains the world model;
* rollout (``L_RO``): KL between the world model's next-state distribution when the history's
  actions come from the generated policy and when they come from the dataset.  It trains the
  VAE *through* the world model, whose parameters are detached for it: the policy should act
  so that the dynamics go where the demonstration went, not the dynamics bend towards it.

With a fixed, equal variance both are scaled squared distances of means (KL of
``N(m1, v I)`` and ``N(m2, v I)`` is ``|m1 - m2|^2 / 2v``); both are averaged over state
dimensions and valid steps, like :func:`~lwd_gym.nn.vae.masked_mse`.  The default ``v = 0.5``
makes them plain masked MSEs, on the same scale as the BC loss.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from lwd_gym.nn.mlp import mlp
from lwd_gym.nn.vae import PolicyVAE, masked_mse


class WorldModel(nn.Module):
    """``(s, a)`` history -> mean of the Gaussian over the next normalised state (fixed variance).

    :param state_dim: state size.
    :param action_dim: action size.
    :param hidden: hidden widths of the MLP.
    :param history: (state, action) pairs the prediction is conditioned on (1: ``(s_{t-1}, a_{t-1})``).
    :param variance: the fixed variance of every state dimension (not learned).
    """

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int] = (1024, 1024), history: int = 1, variance: float = 0.5) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"world model hidden widths must be a non-empty list of positive integers, got {hidden}")
        if int(history) != history or history < 1:
            raise ValueError(f"world model history must be a positive integer, got {history!r}")
        if not variance > 0:
            raise ValueError(f"world model variance must be positive, got {variance}")
        self.history = int(history)
        self.variance = float(variance)
        self.net = mlp(self.history * (state_dim + action_dim), hidden, state_dim)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predicted means ``[B, H - history, S]`` of ``s_t`` for ``t = history .. H-1`` of snippets ``[B, H, ...]``."""
        k = self.history
        if states.shape[1] <= k:
            raise ValueError(f"snippets of {states.shape[1]} steps have no transition after a history of {k}")
        # Windows of k consecutive steps ending at t-1: [B, H-k, k, S + A] -> flattened per window.
        pairs = torch.cat([states, actions], dim=-1)
        windows = pairs.unfold(1, k, 1)[:, :-1].transpose(-1, -2).flatten(2)
        return states[:, k - 1 : -1] + self.net(windows)

    def transition_mask(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        """``[B, H - history]``: a transition counts only if its target and its whole history are real steps."""
        if mask is None:
            return None
        return mask.unfold(1, self.history + 1, 1).all(dim=-1)

    def _scaled_sq_distance(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # |a - b|^2 / (2 v) per dimension, averaged over dimensions and valid transitions.
        return masked_mse(a, b, self.transition_mask(mask)) / (2 * self.variance)

    def teacher_forcing_loss(self, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``L_TF``: NLL (up to a constant) of the dataset's next states given the dataset's history."""
        return self._scaled_sq_distance(self(states, actions), states[:, self.history :], mask)

    def rollout_loss(
        self, states: torch.Tensor, actions: torch.Tensor, policy_actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``L_RO``: KL(next state | policy's actions || next state | dataset's actions).

        Gradients reach ``policy_actions`` (hence the policy's generator) but never this
        module's parameters, which enter as detached tensors.
        """
        frozen = {name: p.detach() for name, p in self.named_parameters()}
        with torch.no_grad():
            target = self(states, actions)
        return self._scaled_sq_distance(functional_call(self, frozen, (states, policy_actions)), target, mask)


class WorldModelPolicyVAE(PolicyVAE):
    """:class:`~lwd_gym.nn.vae.PolicyVAE` plus a :class:`WorldModel` trained alongside it.

    ``loss`` = ``L_BC + kl_coef L_KL + L_TF + rollout_coef L_RO``.  Gradients are separated by
    construction (``L_TF`` sees only dataset tensors, ``L_RO`` only detached world-model
    weights), so one optimizer over all parameters trains each part with its own losses.

    :param world_model_hidden: hidden widths of the world model.
    :param world_model_history: (state, action) pairs the world model conditions on.
    Other parameters as :class:`~lwd_gym.nn.vae.PolicyVAE`.
    """

    def __init__(
        self,
        snippet_length: int,
        state_dim: int,
        action_dim: int,
        latent_dim: int = 256,
        policy_hidden: Sequence[int] = (256, 256),
        hypernet_size: str | Sequence[int] = "s",
        world_model_hidden: Sequence[int] = (1024, 1024),
        world_model_history: int = 1,
    ) -> None:
        if not 1 <= world_model_history < snippet_length:
            raise ValueError(f"world_model_history must be in [1, snippet_length={snippet_length}), got {world_model_history}")
        super().__init__(snippet_length, state_dim, action_dim, latent_dim, policy_hidden, hypernet_size)
        self.world_model = WorldModel(state_dim, action_dim, world_model_hidden, world_model_history)

    def loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        kl_coef: float,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
        rollout_coef: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """BC + KL + teacher forcing + rollout; ``rollout_coef == 0`` (the warm-up) skips ``L_RO`` entirely."""
        if rollout_coef < 0:
            raise ValueError(f"rollout_coef must be >= 0, got {rollout_coef}")
        policy_actions, bc, kl = self.bc_terms(states, actions, generator, mask)
        tf = self.world_model.teacher_forcing_loss(states, actions, mask)
        ro = self.world_model.rollout_loss(states, actions, policy_actions, mask) if rollout_coef > 0 else torch.zeros((), device=states.device)
        total = bc + kl_coef * kl + tf + rollout_coef * ro
        return total, {"bc": bc.item(), "kl": kl.item(), "tf": tf.item(), "ro": ro.item()}
