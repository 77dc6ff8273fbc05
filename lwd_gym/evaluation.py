"""Roll an agent in a Gymnasium vector env and collect per-episode results."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm


def evaluate(
    agent: Any,
    env_id: str,
    num_episodes: int = 50,
    *,
    num_envs: int = 8,
    seed: int = 0,
    deterministic: bool = False,
    info_keys: Sequence[str] = (),
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run ``num_episodes`` episodes of ``agent.predict`` in ``num_envs`` parallel copies of ``env_id``.

    Returns one record per episode: ``return``, ``length``, ``is_success`` (true if any step
    reported ``info["is_success"]``) and the final step's value of every key in ``info_keys``.
    Results depend only on ``seed`` and ``num_envs`` (env ``i`` is reset with ``seed + i``).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    num_envs = min(num_envs, num_episodes)
    envs = gym.make_vec(
        env_id,
        num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **(env_kwargs or {}),
    )
    records: list[dict[str, Any]] = []
    try:
        obs, _ = envs.reset(seed=seed)
        starts = np.ones(num_envs, dtype=bool)
        returns, lengths, success = np.zeros(num_envs), np.zeros(num_envs, dtype=int), np.zeros(num_envs, dtype=bool)
        bar = tqdm(total=num_episodes, desc=f"evaluate {env_id}", disable=not progress, leave=False)
        while len(records) < num_episodes:
            actions, _ = agent.predict(obs, episode_start=starts, deterministic=deterministic)
            obs, reward, terminated, truncated, info = envs.step(actions)
            done = terminated | truncated
            returns += reward
            lengths += 1
            # With SAME_STEP autoreset a finished env's `info` already belongs to its next
            # episode; its last step's info is in `final_info`.
            final = info.get("final_info", {})
            step_success = np.where(done, final.get("is_success", False), info.get("is_success", False))
            success |= np.asarray(step_success, dtype=bool)
            for i in np.flatnonzero(done):
                if len(records) < num_episodes:
                    record = {"return": float(returns[i]), "length": int(lengths[i]), "is_success": bool(success[i])}
                    record.update({k: final[k][i].item() for k in info_keys if k in final})
                    records.append(record)
                    bar.update()
                returns[i], lengths[i], success[i] = 0.0, 0, False
            starts = done
        bar.close()
    finally:
        envs.close()
    return records


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Means of every numeric field over episodes (``is_success`` becomes the success rate)."""
    keys = [k for k, v in records[0].items() if isinstance(v, (bool, int, float, np.number))]
    return {k: float(np.mean([r[k] for r in records])) for k in keys}
