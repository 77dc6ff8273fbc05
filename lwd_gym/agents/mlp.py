"""Behaviour-cloning MLP baseline: one deterministic ``state -> action`` network."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lwd_gym.agents.base import BaseAgent
from lwd_gym.agents.config import MLPConfig
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.generated_policy import HostMLP
from lwd_gym.nn.mlp import mlp


class MLPAgent(BaseAgent):
    """Behaviour cloning with an MSE loss; it regresses to the *mean* action, so it averages modes.

    Its hyperparameters are :class:`~lwd_gym.agents.config.MLPConfig`'s; one stage, ``bc``.
    """

    config_class = MLPConfig
    stateless = True  # one fixed network: "re-planning" changes nothing

    def __init__(self, config: MLPConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.net: nn.Module | None = None
        self._host_net: HostMLP | None = None

    def _build(self) -> None:
        in_dim = self.state_space.shape[0] + (self.num_tasks if self.num_tasks > 1 else 0)
        self.net = mlp(in_dim, self.hidden, self.action_space.shape[0], nn.ReLU).to(self.device)

    def _modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def _inputs(self, states: torch.Tensor, tasks: torch.Tensor | None) -> torch.Tensor:
        if self.num_tasks == 1:
            return states
        return torch.cat([states, F.one_hot(tasks, self.num_tasks).to(states.dtype)], dim=-1)

    def _train(self, demos: Any) -> None:
        """Fit on every (state, action) pair."""
        make_pairs = lambda d: SnippetDataset(d, 1, self.obs_normalizer, self.action_normalizer)  # noqa: E731
        pairs = make_pairs(demos)

        def loss(batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
            states = batch["states"][:, 0]
            return F.mse_loss(self.net(self._inputs(states, batch["task"] if self.num_tasks > 1 else None)), batch["actions"][:, 0])

        self._fit(
            "bc",
            self.net,
            loss,
            pairs,
            steps=self._stage_steps("bc", len(pairs)),
            batch_size=self.batch_size,
            lr=self.bc_lr,
            generator=torch.Generator().manual_seed(self.seed),
            val_data=self._validation_snippets(make_pairs),
            val_loss=lambda batch, generator: loss(batch, 0),
            acting_attr="net",
        )

    def reset(self) -> None:
        super().reset()
        self._host_net = None  # rebuilt from the (possibly retrained) weights at the next step

    def _act_host(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        if self._host_net is None:
            extra = self.num_tasks if self.num_tasks > 1 else 0  # one-hot task inputs pass unnormalised
            in_norm = (np.r_[self.obs_normalizer.mean, np.zeros(extra, np.float32)], np.r_[self.obs_normalizer.std, np.ones(extra, np.float32)])
            out_norm = (self.action_normalizer.mean, self.action_normalizer.std)
            self._host_net = HostMLP.from_linears([m for m in self.net if isinstance(m, nn.Linear)], in_norm=in_norm, out_norm=out_norm)
        return self._host_net(obs)

    def export_onnx(self, path: str | os.PathLike, observation: np.ndarray | None = None) -> Path:
        """Write the BC MLP as an ONNX model mapping raw observations ``[n, obs_dim]`` (with the
        one-hot task id of a multi-task agent, read as ``predict`` reads it) to raw actions,
        normalisers and clipping inside; see :func:`lwd_gym.export.onnx_policy_model`.
        ``observation`` is accepted so every exportable agent is called alike, and unused: the
        MLP is one fixed policy.  Needs ``pip install "lwd-gym[onnx]"``."""
        from lwd_gym.export import policy_arrays, write_onnx_policy

        if not self.is_trained:
            raise ValueError("exporting the MLP needs a trained agent: call learn() or load() first")
        extra = self.num_tasks if self.num_tasks > 1 else 0  # one-hot task inputs pass unnormalised, as in _act_host
        arrays = policy_arrays(
            [(m.weight.detach().cpu().numpy(), m.bias.detach().cpu().numpy()) for m in self.net if isinstance(m, nn.Linear)],
            obs_norm=(np.r_[self.obs_normalizer.mean, np.zeros(extra)], np.r_[self.obs_normalizer.std, np.ones(extra)]),
            act_norm=(self.action_normalizer.mean, self.action_normalizer.std),
            act_bounds=(self.action_space.low, self.action_space.high),
            obs_dim=self.observation_space.shape[0],
        )
        return write_onnx_policy(path, arrays, {"agent": type(self).__name__})

    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        pass  # the policy is fixed: nothing to re-plan

    def _act(self, states: torch.Tensor, tasks: torch.Tensor | None, steps: np.ndarray) -> torch.Tensor:
        return self.net(self._inputs(states, tasks))
