"""Rollouts the learning tests share on the two-paths task (a helper module, not collected)."""
from __future__ import annotations

import numpy as np

from lwd_gym import RandomAgent, evaluate
from lwd_gym.demo import ENV_ID


def rollout_vs_random(agent, n_episodes: int, seed: int) -> dict[str, float]:
    """Success of ``agent`` next to the uniform-random floor over the same ``n_episodes`` seeded
    episodes (one batched ``evaluate`` each), and the share passing the obstacle on each side."""
    kwargs = dict(seed=seed, n_envs=10, count_flops=False, progress=False)
    result = evaluate(agent, ENV_ID, n_episodes, info_keys=("side",), **kwargs)
    floor = evaluate(RandomAgent(agent.observation_space, agent.action_space, device="cpu"), ENV_ID, n_episodes, **kwargs)
    side = np.array([r["side"] for r in result.episodes])
    return {"success": result.success_rate, "random": floor.success_rate, "left": float(np.mean(side < 0)), "right": float(np.mean(side > 0))}
