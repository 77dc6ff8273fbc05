"""Export one generated LWD policy as a standalone artefact a robot runs without torch.

``export_policy`` samples a policy exactly as :meth:`LWDAgent.predict` would at an episode
start and writes its MLP weights and normalisers to a ``.npz`` of plain float32 arrays.
:class:`NumpyPolicy` runs it with numpy only; its source, :data:`RUNNER_SOURCE`, is what
``write_runner=True`` ships as ``numpy_policy.py``, so the shipped runner is the tested one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lwd_gym.checkpoint import atomic_write

RUNNER_SOURCE = '''"""Run a policy exported by lwd_gym's export_policy; needs numpy only.

    policy = NumpyPolicy.load("policy.npz"); action = policy(observation)
"""
import numpy as np


class NumpyPolicy:
    """Normalise state -> ReLU MLP -> unnormalise -> clip; obs [obs_dim] or [n, obs_dim]."""

    def __init__(self, arrays):
        self.layers = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(sum(k.startswith("W") for k in arrays))]
        self.obs_mean, self.obs_std = arrays["obs_mean"], arrays["obs_std"]
        self.act_mean, self.act_std = arrays["act_mean"], arrays["act_std"]
        self.act_low, self.act_high = arrays["act_low"], arrays["act_high"]
        self.state_dim, self.obs_dim = int(arrays["state_dim"]), int(arrays["obs_dim"])
        self.task = arrays["task"]  # the one-hot task id the policy was sampled for (empty: single task)

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as f:
            return cls({k: f[k] for k in f.files})

    def __call__(self, obs):
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim or not np.isfinite(x).all():
            raise ValueError(f"expected finite observation(s) of shape ({self.obs_dim},) or (n, {self.obs_dim}), got {x.shape}")
        if not (x[..., self.state_dim :] == self.task).all():
            raise ValueError(f"this policy was exported for task one-hot {self.task.tolist()}, got {x[..., self.state_dim :].tolist()}")
        h = (x[..., : self.state_dim] - self.obs_mean) / self.obs_std  # the task is not an input: it chose the policy
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            h = np.maximum(h, 0) if i < len(self.layers) - 1 else h
        return np.clip(h * self.act_std + self.act_mean, self.act_low, self.act_high)
'''
# The tested class is compiled from the very text that is shipped.
exec(compile(RUNNER_SOURCE, "numpy_policy.py", "exec"), globals())
NumpyPolicy: type  # defined by the exec above


def _savez(filename: str, arrays: dict[str, np.ndarray]) -> None:
    with open(filename, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


def export_policy(
    agent: Any,
    path: str | os.PathLike,
    observation: np.ndarray,
    *,
    deterministic: bool = True,
    seed: int | None = None,
    write_runner: bool = False,
) -> Path:
    """Sample one policy of ``agent`` for a single ``observation`` and write it to ``path`` (``.npz``).

    The policy is the one ``agent.predict(observation, episode_start=[True], deterministic=...)``
    would follow in environment 0 (after ``agent.seed_envs([0], [seed], num_envs=1)`` when ``seed``
    is given); the agent's own plans and noise are untouched.  Stochastic sampling without ``seed``
    draws fresh noise.  ``.npz`` is appended to ``path`` if missing; returns the path written.
    ``write_runner`` also writes :data:`RUNNER_SOURCE` as ``numpy_policy.py`` beside it.
    """
    sample = getattr(agent, "sample_policy_layers", None)  # duck-typed: this module never imports the agents
    if sample is None:
        raise TypeError(f"export_policy needs an LWDAgent, got {type(agent).__name__}")
    obs = np.asarray(observation)
    layers = sample(obs, deterministic=deterministic, seed=seed)
    state_dim = agent.state_space.shape[0]
    f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    arrays: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate(layers):
        arrays[f"W{i}"], arrays[f"b{i}"] = f32(w), f32(b)
    arrays |= {
        "obs_mean": f32(agent.obs_normalizer.mean), "obs_std": f32(agent.obs_normalizer.std),
        "act_mean": f32(agent.action_normalizer.mean), "act_std": f32(agent.action_normalizer.std),
        "act_low": f32(agent.action_space.low), "act_high": f32(agent.action_space.high),
        "state_dim": np.array(state_dim), "obs_dim": np.array(obs.shape[0]), "task": f32(obs[state_dim:]),
    }  # fmt: skip
    path = Path(path)
    path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    atomic_write(path, lambda tmp: _savez(tmp, arrays))
    if write_runner:
        atomic_write(path.parent / "numpy_policy.py", lambda tmp: Path(tmp).write_text(RUNNER_SOURCE))
    return path
