"""Reconstruction rollouts: does the VAE alone reproduce the demonstrations?

Encode a demonstration, decode the generated policy from its posterior *mean*, and roll that
policy out closed-loop from the demonstration's own reset seed (the paper's "VAE-decoded"
policies, Fig 17b / 19).  No diffusion is involved, so where LWD fails and a BC MLP succeeds
this tells the VAE stage apart from the latent diffusion stage:

* low success from the demonstration's own seed: the decoded policies do not reproduce their
  own episodes (a VAE / budget problem);
* high success from the own seed but low from *other* seeds of the same task: the policy has
  baked the episode's goal or layout into its weights instead of reading it from the state, so
  a latent sampled for one episode cannot serve another.

Plan ``k`` of a rollout (steps ``k * H_a ...``) runs the policy decoded from the demonstration's
snippet starting at step ``k * H_a`` (the last snippet once the rollout outlives the demonstration),
so with ``H_a`` at least the episode length it is one policy for the whole episode.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from lwd_gym.data.demonstrations import Demonstrations, load_demonstrations
from lwd_gym.evaluation import wilson_interval
from lwd_gym.wrappers.task_id import TaskId

EnvSource = str | Callable[[], gym.Env]


@dataclass
class ReconstructionResult:
    """Success of posterior-mean policies from their demonstration's seed (``own``) and from
    another demonstration's seed of the same task (``other``), with 95 % Wilson intervals."""

    n_episodes: int
    own_success: float
    own_ci95: tuple[float, float]
    other_success: float | None
    other_ci95: tuple[float, float] | None
    #: one record per rollout: episode, task, seed, kind ("own" / "other"), is_success, return,
    #: max_reward (the best single-step reward, e.g. PushT's coverage) and length
    episodes: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env_maker(env: EnvSource | Sequence[EnvSource], task: int, num_tasks: int) -> Callable[[], gym.Env]:
    source = env[task] if isinstance(env, Sequence) and not isinstance(env, str) else env
    base = (lambda: gym.make(source)) if isinstance(source, str) else source
    return (lambda: TaskId(base(), task, num_tasks)) if num_tasks > 1 else base


def reconstruction_rollout(
    agent: Any,
    dataset: Any,
    env: EnvSource | Sequence[EnvSource],
    *,
    episodes: Sequence[int] | None = None,
    other_seeds: bool = True,
    max_steps: int | None = None,
    stop_on_success: bool = False,
    info_keys: Sequence[str] = (),
) -> ReconstructionResult:
    """Roll out the policies an :class:`~lwd_gym.agents.LWDAgent`'s VAE decodes from demonstrations.

    :param agent: a trained ``LWDAgent``.
    :param dataset: the demonstrations (dataset, id, or list of task datasets, as for ``learn``);
        they must record their reset seeds (``lwd-gym collect`` and ``rollout_episodes`` do).
    :param env: an env id or factory, or one per task for a list of task datasets (the one-hot
        task id is appended for a multi-task agent).
    :param episodes: indices of the demonstrations to replay (default: all).
    :param other_seeds: also roll each decoded policy out from the seed of the next demonstration
        of the same task (another goal / layout).
    :param max_steps: stop an episode after this many steps (default: the env's own limit).
    :param stop_on_success: end an episode at its first success (saves time on envs such as
        Metaworld whose episodes run on after success; returns and lengths then stop there).
    :param info_keys: ``info`` keys whose value at an episode's last step goes in its record, as
        in :func:`lwd_gym.evaluate` (e.g. ``"foot_contact_fraction"`` of the
        :class:`~lwd_gym.behaviour.FootContacts` wrapper).
    """
    if not hasattr(agent, "vae") or not hasattr(agent.vae, "policy"):
        raise TypeError(f"reconstruction_rollout needs an agent with generated policies (LWDAgent), got {type(agent).__name__}")
    if not agent.is_trained:
        raise RuntimeError(f"{type(agent).__name__} has not been trained: call learn() or load() first")
    demos = dataset if isinstance(dataset, Demonstrations) else load_demonstrations(dataset)
    if demos.observation_space.shape != agent.state_space.shape:
        raise ValueError(f"the demonstrations have states of shape {demos.observation_space.shape}, the agent {agent.state_space.shape}")
    chosen = np.arange(len(demos)) if episodes is None else np.asarray(episodes, dtype=np.int64)
    if (demos.seeds[chosen] < 0).any():
        raise ValueError("these demonstrations do not record their reset seeds (Minari episode metadata 'seed'), so they cannot be replayed")
    runs = [(int(i), int(demos.seeds[i]), "own") for i in chosen]
    if other_seeds:
        for i in chosen:
            same_task = np.flatnonzero(demos.tasks == demos.tasks[i])
            if len(same_task) > 1:
                j = same_task[(np.searchsorted(same_task, i) + 1) % len(same_task)]
                runs.append((int(i), int(demos.seeds[j]), "other"))
    records = _rollout(agent, demos, runs, env, max_steps, stop_on_success, tuple(info_keys))
    own = [r for r in records if r["kind"] == "own"]
    other = [r for r in records if r["kind"] == "other"]
    rate = lambda rs: sum(r["is_success"] for r in rs) / len(rs)  # noqa: E731
    ci = lambda rs: wilson_interval(sum(r["is_success"] for r in rs), len(rs))  # noqa: E731
    return ReconstructionResult(
        n_episodes=len(own), own_success=rate(own), own_ci95=ci(own),
        other_success=rate(other) if other else None, other_ci95=ci(other) if other else None, episodes=records,
    )  # fmt: skip


@torch.no_grad()
def _latents(agent: Any, demos: Demonstrations, episode: int, plans: int) -> torch.Tensor:
    """Posterior means of the demonstration's snippets at steps ``0, H_a, 2 H_a, ...`` (``plans`` of them)."""
    obs, act = demos.observations[episode], demos.actions[episode]
    length, h = len(act), agent.snippet_length
    starts = np.minimum(np.arange(plans) * agent.action_horizon, length - 1)
    rows = np.minimum(starts[:, None] + np.arange(h), length - 1)  # past the end: the last step repeated, as in training
    return torch.as_tensor(agent.encode(obs[rows], act[rows]), device=agent.device)


@torch.no_grad()
def _rollout(
    agent: Any, demos: Demonstrations, runs: list[tuple[int, int, str]], env: Any, max_steps: int | None, stop_on_success: bool, info_keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    records = []
    state_dim = agent.state_space.shape[0]
    low, high = agent.action_space.low, agent.action_space.high
    for episode, seed, kind in runs:
        task = int(demos.tasks[episode])
        e = _env_maker(env, task, demos.num_tasks)()
        limit = max_steps or (e.spec.max_episode_steps if e.spec is not None and e.spec.max_episode_steps else 1000)
        latents = _latents(agent, demos, episode, -(-limit // agent.action_horizon))
        weights = agent.vae.decoder(latents)
        obs, info = e.reset(seed=seed)
        success, total, steps, best = bool(info.get("is_success", False) or info.get("success", False)), 0.0, 0, -np.inf
        for t in range(limit):
            state = torch.as_tensor(agent.obs_normalizer.normalize(np.asarray(obs, np.float32)[:state_dim]), device=agent.device)
            plan = t // agent.action_horizon
            action = agent.vae.policy(weights[plan : plan + 1], state[None]).cpu().numpy()[0]
            action = np.clip(agent.action_normalizer.unnormalize(action), low, high).astype(agent.action_space.dtype)
            obs, reward, terminated, truncated, info = e.step(action)
            total, steps, best = total + float(reward), t + 1, max(best, float(reward))
            success = success or bool(info.get("is_success", False) or info.get("success", False))
            if terminated or truncated or (success and stop_on_success):
                break
        e.close()
        record = {"episode": episode, "task": task, "seed": seed, "kind": kind, "is_success": success, "return": total, "max_reward": best, "length": steps}
        for key in info_keys:
            if key in info:
                value = np.asarray(info[key])
                record[key] = value.item() if value.ndim == 0 else value.tolist()
        records.append(record)
    return records
