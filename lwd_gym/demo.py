"""The main demo: LWD vs. behaviour cloning on the built-in two-paths environment.

Both agents learn from the same scripted demonstrations, which pass the obstacle on the left
or the right with equal probability.  LWD samples one of the two behaviours per policy; the
MSE-trained MLP regresses to their mean and drives into the obstacle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lwd_gym.agents import LWDAgent, MLPAgent
from lwd_gym.envs import make_bimodal_dataset
from lwd_gym.evaluation import evaluate

ENV_ID = "lwd_gym/Bimodal-v0"
DATASET_ID = "lwd/bimodal/expert-v0"


def demo_agents(seed: int, device: str) -> dict[str, Any]:
    """The two agents of the demo, sized to train in a few CPU minutes."""
    return {
        "LWD": LWDAgent(
            action_horizon=32,
            latent_dim=64,
            hypernet_size="xs",
            policy_hidden=(128, 128),
            denoiser_size="xs",
            vae_lr=1e-3,
            diffusion_lr=3e-3,
            device=device,
            seed=seed,
        ),
        "MLP (BC)": MLPAgent(hidden=(256, 256), device=device, seed=seed),
    }


#: ``learn`` budgets of the demo's agents, in gradient steps at batch 256 (about 25 and 30 epochs
#: of the 200 demonstrations' snippets; the library's default would be at least 2,000 steps).
DEMO_STEPS = {"LWD": {"vae_steps": 700, "diffusion_steps": 700}, "MLP (BC)": {"steps": 800}}


def run_demo(
    seed: int = 0,
    num_demos: int = 200,
    eval_episodes: int = 100,
    device: str = "auto",
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Collect demonstrations, train LWD and an MLP, evaluate both; returns a row per agent."""
    dataset = make_bimodal_dataset(num_demos, seed=seed, dataset_id=DATASET_ID, progress=progress)
    rows: dict[str, dict[str, float]] = {}
    for name, agent in demo_agents(seed, device).items():
        agent.learn(dataset, progress_bar=progress, **DEMO_STEPS[name])
        if out_dir is not None:
            agent.save(Path(out_dir) / f"{type(agent).__name__.lower()}.ckpt")
        result = evaluate(
            agent, ENV_ID, eval_episodes, seed=10_000 + seed, n_envs=10, info_keys=("side", "is_collision"), count_flops=False, progress=progress
        )
        records = result.episodes
        side = np.array([r["side"] for r in records])
        rows[name] = {
            "success": float(np.mean([r["is_success"] for r in records])),
            "left": float(np.mean(side < 0)),
            "right": float(np.mean(side > 0)),
            "collision": float(np.mean([r["is_collision"] for r in records])),
            "length": float(np.mean([r["length"] for r in records])),
        }
    return rows


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table of :func:`run_demo`'s rows."""
    header = f"{'agent':<10} {'success':>8} {'left':>6} {'right':>6} {'collision':>10} {'ep. length':>11}"
    lines = [header, "-" * len(header)]
    for name, r in rows.items():
        lines.append(f"{name:<10} {r['success']:>8.0%} {r['left']:>6.0%} {r['right']:>6.0%} {r['collision']:>10.0%} {r['length']:>11.1f}")
    return "\n".join(lines)
