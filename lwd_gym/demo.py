"""The main demo: LWD vs. behaviour cloning on the built-in two-paths environment.

Both agents learn from the same scripted demonstrations, which pass the obstacle on the left
or the right with equal probability.  LWD samples one of the two behaviours per policy; the
MSE-trained MLP regresses to their mean and drives into the obstacle.

:func:`run_demo` trains and evaluates both; :func:`rollout_demo_agent` evaluates one agent and
keeps every episode's path, which :func:`plot_demo` draws (``lwd-gym demo --plot demo.png``).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from lwd_gym.agents import LWDAgent, MLPAgent
from lwd_gym.envs import BimodalEnv, make_bimodal_dataset
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


@dataclass
class DemoRollouts:
    """One agent's evaluation episodes on the two-paths task, in episode order."""

    #: each episode's ``(length + 1, 2)`` positions, the reset position first
    paths: list[np.ndarray]
    #: the final ``info["side"]``: -1 passed the obstacle on the left, +1 on the right, 0 neither
    sides: np.ndarray
    collisions: np.ndarray
    successes: np.ndarray
    lengths: np.ndarray

    def row(self) -> dict[str, float]:
        """The demo table's row: success, left, right and collision rates, mean episode length."""
        return {
            "success": float(np.mean(self.successes)),
            "left": float(np.mean(self.sides < 0)),
            "right": float(np.mean(self.sides > 0)),
            "collision": float(np.mean(self.collisions)),
            "length": float(np.mean(self.lengths)),
        }


class _PathRecorder(gym.Wrapper):
    """Appends every observation (the point's position) of each seeded episode to
    ``paths[reset seed]``; episodes reset without a seed (evaluate's idle fillers) are not kept."""

    def __init__(self, env: gym.Env, paths: dict[int, list[np.ndarray]]) -> None:
        super().__init__(env)
        self._paths = paths
        self._path: list[np.ndarray] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._path = None if seed is None else self._paths.setdefault(seed, [])
        if self._path is not None:
            self._path[:] = [np.array(obs, dtype=np.float64)]
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._path is not None:
            self._path.append(np.array(obs, dtype=np.float64))
        return obs, reward, terminated, truncated, info


def rollout_demo_agent(agent: Any, eval_episodes: int = 100, seed: int = 0, progress: bool = True) -> DemoRollouts:
    """Evaluate a trained ``agent`` on ``lwd_gym/Bimodal-v0`` as :func:`run_demo` does (episode
    ``k`` reset with seed ``10_000 + seed + k``, 10 envs) and keep each episode's path.

    The envs run in this process (``vectorization="sync"``), where the paths are recorded;
    evaluation results do not depend on the vectorization.
    """
    paths: dict[int, list[np.ndarray]] = {}

    def bimodal() -> gym.Env:
        return _PathRecorder(gym.make(ENV_ID), paths)

    bimodal.__name__ = ENV_ID
    first_seed = 10_000 + seed
    result = evaluate(
        agent, bimodal, eval_episodes, seed=first_seed, n_envs=10, vectorization="sync", info_keys=("side", "is_collision"),
        count_flops=False, progress=progress,
    )  # fmt: skip
    records = result.episodes
    return DemoRollouts(
        paths=[np.stack(paths[r["seed"]]) for r in records],
        sides=np.array([r["side"] for r in records], dtype=int),
        collisions=np.array([r["is_collision"] for r in records], dtype=bool),
        successes=np.array([r["is_success"] for r in records], dtype=bool),
        lengths=np.array([r["length"] for r in records], dtype=int),
    )


def run_demo(
    seed: int = 0,
    num_demos: int = 200,
    eval_episodes: int = 100,
    device: str = "auto",
    out_dir: str | Path | None = None,
    progress: bool = True,
    plot: str | os.PathLike | None = None,
) -> dict[str, dict[str, float]]:
    """Collect demonstrations, train LWD and an MLP, evaluate both; returns a row per agent.

    :param plot: also draw every evaluation episode's path into this PNG (:func:`plot_demo`).
    """
    if plot is not None:
        _figure_class()  # a missing matplotlib fails now, not after training
    dataset = make_bimodal_dataset(num_demos, seed=seed, dataset_id=DATASET_ID, progress=progress)
    rollouts: dict[str, DemoRollouts] = {}
    for name, agent in demo_agents(seed, device).items():
        agent.learn(dataset, progress_bar=progress, **DEMO_STEPS[name])
        if out_dir is not None:
            agent.save(Path(out_dir) / f"{type(agent).__name__.lower()}.ckpt")
        rollouts[name] = rollout_demo_agent(agent, eval_episodes, seed=seed, progress=progress)
    if plot is not None:
        plot_demo(rollouts, plot)
    return {name: r.row() for name, r in rollouts.items()}


def _figure_class() -> type:
    """matplotlib's ``Figure`` (drawn without pyplot, so no display or global state is involved)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("the demo's plot is drawn with matplotlib: pip install matplotlib (or 'lwd-gym[bench]')") from err
    return Figure


#: Colour and legend of :func:`plot_demo`'s paths, by how the episode ended.
PATH_STYLES = {
    "left": ("tab:blue", "goal, passed left"),
    "right": ("tab:orange", "goal, passed right"),
    "collision": ("tab:red", "hit the obstacle"),
    "other": ("tab:gray", "timed out"),
}


def plot_demo(rollouts: Mapping[str, DemoRollouts], path: str | os.PathLike, dpi: int = 80) -> None:
    """Draw each agent's evaluation paths on the two-paths task side by side, into a PNG at ``path``.

    Paths are coloured by outcome (:data:`PATH_STYLES`): episodes that reached the goal passing
    the obstacle on the left or on the right, episodes that ended in the obstacle (an ``x`` marks
    the contact point), and the rest (time-outs); the legend counts each.
    """
    if not rollouts:
        raise ValueError("plot_demo needs the rollouts of at least one agent")
    Figure = _figure_class()
    scene = BimodalEnv()
    fig = Figure(figsize=(3.6 * len(rollouts), 3.9))
    axes = fig.subplots(1, len(rollouts), squeeze=False)[0]
    for ax, (name, r) in zip(axes, rollouts.items()):
        ax.add_patch(_circle(scene.obstacle_center, scene.obstacle_radius, "0.55", "obstacle"))
        ax.add_patch(_circle(scene.goal, scene.goal_radius, "tab:green", "goal"))
        outcome = np.where(r.collisions, "collision", np.where(~r.successes, "other", np.where(r.sides < 0, "left", "right")))
        for kind, (colour, legend) in PATH_STYLES.items():
            chosen = [p for p, o in zip(r.paths, outcome) if o == kind]
            for i, p in enumerate(chosen):
                ax.plot(p[:, 0], p[:, 1], color=colour, lw=0.9, alpha=0.45, label=f"{legend} ({len(chosen)})" if i == 0 else None)
            if kind == "collision" and chosen:
                ends = np.array([p[-1] for p in chosen])
                ax.plot(ends[:, 0], ends[:, 1], "x", color=colour, ms=4)
        ax.set_title(f"{name}: {len(r.paths)} episodes, {np.mean(r.successes):.0%} success", fontsize=10)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="lower left", fontsize=7, frameon=False)
    fig.suptitle(f"{ENV_ID}: start below the obstacle, goal above it", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")


def _circle(centre: np.ndarray, radius: float, colour: str, label: str) -> Any:
    from matplotlib.patches import Circle

    return Circle(tuple(centre), radius, color=colour, alpha=0.6, lw=0, label=label)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table of :func:`run_demo`'s rows."""
    header = f"{'agent':<10} {'success':>8} {'left':>6} {'right':>6} {'collision':>10} {'ep. length':>11}"
    lines = [header, "-" * len(header)]
    for name, r in rows.items():
        lines.append(f"{name:<10} {r['success']:>8.0%} {r['left']:>6.0%} {r['right']:>6.0%} {r['collision']:>10.0%} {r['length']:>11.1f}")
    return "\n".join(lines)
