"""Metaworld, 10 tasks: success vs inference compute (paper Fig 6) and the hypernetwork-size ablation (Fig 8).

    python -m benchmarks.metaworld --profile quick                        # both experiments, ~16 CPU minutes (see below)
    python -m benchmarks.metaworld --profile quick --experiment compute   # Fig 6 only (~10 min)
    python -m benchmarks.metaworld --profile quick --experiment hypernet  # Fig 8 only (~6 min after compute, ~7 without)
    python -m benchmarks.metaworld --profile standard --threads 1 --only DP-xs,MLP   # a part of the competent sweep (hours in all)
    python -m benchmarks.metaworld --profile standard --threads 1 --experiment hypernet --only "LWD-256 hnet-xs H50" --vae-steps 6000  # a VAE-budget probe
    python -m benchmarks.metaworld --profile paper                        # the paper's settings, for a GPU

*compute* (Fig 6) trains, on scripted-expert demonstrations of the LWD paper's ten Metaworld tasks
(one Minari dataset per task, task id = position), task-conditioned agents:

* LWD, ``condition_on="task"``, one generated policy per episode (``H_a`` = snippet = 500), generated
  MLPs of 128/256/512 units (two hidden layers);
* Diffusion Policy at the UNet sizes xs/s/m/l/xl x ``H_a`` (predicted actions) 32 and 128, re-planning
  every ``H_a / 2`` steps as in the paper (``prediction_horizon = H_a``, ``action_horizon = H_a / 2``),
  with the task as a one-hot condition;
* multi-task behaviour-cloning MLPs (one-hot task input).

It rolls each out on every task and reports success against GFLOPs per environment step
(:meth:`~lwd_gym.agents.BaseAgent.flops_per_step`: a plan's FLOPs amortised over the steps it covers,
plus the per-step network), then the FLOPs ratio DP / LWD at comparable success (:func:`flops_ratio`;
the paper reports ~45x).  FLOPs are affine in the number of denoising steps, so they are counted at 1
and 2 steps and given for the evaluated sampler and for DDPM-100 (the paper's) for every configuration,
rolled out or not (:func:`flops_at`).

*hypernet* (Fig 8) trains LWD with hypernetwork decoders xs/s/m/l at snippet length 500 (one policy
per episode, task-conditioned) and 50 (``H_a`` = 50; a policy re-sampled every 50 steps needs the
state too, so ``condition_on="obs+task"``), and reports success and the VAE's behaviour-cloning MSE
(generated policy from the posterior mean vs the snippet's actions, normalised, on 256 fixed
training snippets).

Writes, under ``--out``: ``metaworld-compute.json`` / ``.png`` and ``metaworld-hypernet.json`` /
``.png`` (rows with every raw number, per-task success, settings, machine, wall-clock timings), and
prints markdown tables.  ``--out/minari`` holds the demonstrations (collected once per task and size);
``--out/cache/metaworld`` holds every trained agent (``.ckpt``, git-ignored; training resumes from
``*-state`` after an interruption), ``--out/cells/metaworld`` every finished evaluation / FLOPs
cell (small JSON, committed) and ``--out/logs/metaworld/<key>`` the standard profile's learning
curves (CSV, committed), so a rerun skips what is done, in another session too.  Keys hash the
full configuration: changing a setting retrains only what it touches.  Episodes are seeded (evaluation seeds 10000+, demonstrations 0+).

Profiles:

* ``tiny``: two tasks, one demonstration each, tiny networks, 2 gradient steps: a smoke test
  (seconds); its numbers mean nothing.
* ``quick``: all ten tasks, 10 demonstrations and 5 evaluation episodes per task, few gradient
  steps (VAE 300, latent diffusion 600, DP 600, MLP 2000; batch 32; lr 1e-3), DDIM-10 for LWD and
  DP.  **Subset**: DP is rolled out at sizes xs and s only (m/l/xl: FLOPs only); the ablation's
  generated policy is 128x128 (paper: 256x256).  Numbers are indicative: the agents are weakly
  trained and 50 episodes per cell give a +-14-point 95 % interval.
* ``standard``: agents trained to competence on 2 CPU cores (issue #22), 50 demonstrations and 50
  evaluation episodes per task (Wilson intervals); every agent keeps its learning curves (losses
  per step, in-training success on 2 episodes per task every 2,000 steps) under
  ``logs/metaworld/<key>``.  LWD: the VAE of ``benchmarks.diagnosis`` (hypernetwork xs,
  whole episodes, batch 32, 2,000 steps) with the denoiser its diffusion probe found (UNet m,
  6,000 steps, sampled with DDPM-100: once per episode, so ~0.01 GFLOP per step amortised); DP:
  batch 256, lr 3e-4, 30,000 steps (10,000 left DP-xs H32 at 61 %, its curve still rising), DDIM-10; MLP: batch 256, lr 1e-3, 5,000 steps.  Hours on this machine: run it in parts with ``--only`` (e.g.
  ``--only DP-xs,MLP --experiment compute``); every finished agent and cell is cached.  A part
  trains only the agents it names and writes the experiment's result file with every row whose
  cells are committed (the other parts', from this session or earlier ones):
  ``metaworld-compute-standard-partial.json`` while some agent has no row, then
  ``metaworld-compute-standard.json`` (the same for ``hypernet``).
* ``paper``: the paper's settings for a GPU: latent 256, batch 32, lr 3e-4 (VAE) / 1e-4 (diffusion,
  DP), DDPM-100 for LWD and DP, all ten tasks, all sizes, ablation with 256x256 policies; our
  choices where the issue gives none: 100 demonstrations and 50 evaluation episodes per task,
  50,000 gradient steps per stage.

CPU budget of ``quick``, from pieces measured on the 2-core sandbox with nothing else running (a
job on the shared cores made the same pieces 2-15x slower at times):

* data and envs: an expert episode (500 steps) ~0.21 s -> 100 episodes ~25 s; the 50 evaluation envs
  ~7 s to build; a vector step of the 50 envs ~13 ms, so an evaluation cell (50 episodes x 500 steps)
  takes ~8 s for LWD and MLP (predict 20-50 us per env-step) and 9-13 s for DP-xs/s (DDIM-10 queries
  on 50 envs, 70-330 ms each);
* LWD (compute): VAE step (batch 32, snippet 500, hypernetwork s) 90 / 133 / 394 ms for 128 / 256 /
  512-unit policies -> 300 steps ~185 s; latent diffusion (UNet xs) ~21 ms/step -> 600 steps ~13 s
  each; encoding the 50k snippets ~8 s each: ~250 s;
* DP-xs/s at H_a 32/128 (incl. EMA): ~32 / 50 / 48 / 91 ms per step -> 600 steps each ~135 s;
  DP-m/l/xl take 0.1-20 s per training step and up to minutes per DDIM-10 query on 50 envs here,
  hence FLOPs only: one training step + two counts each, 3-15 s (xl: 264 M parameters) -> ~45 s;
* MLPs, 2000 steps each: ~20 s; 11 evaluation cells: ~105 s.  compute: ~10 min;
* hypernet (128-unit policies; the 500/s cell is compute's LWD-128): 7 new agents, VAE step 96 / 105 /
  131 ms (xs/m/l, snippet 500) and 17 / 19 / 35 / 63 ms (xs/s/m/l, snippet 50) -> ~140 s; latent
  diffusion ~90 s; encoding ~30 s; 7 evaluation cells ~60 s: ~5.5 min;
* training-state saves (every 300 steps and at each stage's end, up to ~0.5 GB for LWD-512) ~30 s.
* Total ~16 min on a quiet machine (measured: 15 min 30 s for both experiments from an empty cache).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from benchmarks import common
from lwd_gym import BaseAgent, DPAgent, LWDAgent, MLPAgent, evaluate
from lwd_gym.agents.config import AgentConfig
from lwd_gym.envs.metaworld import PAPER_TASKS, make_metaworld_env
from lwd_gym.evaluation import wilson_interval
from lwd_gym.utils import get_device

EVAL_SEED = 10_000  # evaluation episodes never reuse a demonstration's seed (0 ... demos - 1)
PAPER_RATIO = 45.0  # the paper's DP / LWD FLOPs ratio at comparable Metaworld success
TOLERANCE = 0.05  # "comparable success": a DP within 5 points of LWD's best (see flops_ratio)
DP_SIZES = ("xs", "s", "m", "l", "xl")
HYPERNET_SIZES = ("xs", "s", "m", "l")

PROFILES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        tasks=("reach", "handle-press"), demos=1, episodes=1, copies=1, latent=16, latent_length=8, batch=4,
        vae_lr=1e-3, diffusion_lr=1e-3, dp_lr=1e-3, mlp_lr=1e-3, sampler=("ddim", 2),
        lwd_widths=(16, 32), hypernet="xs", lwd_unet="xs", vae_steps=2, diffusion_steps=2,
        dp_sizes=("xs", "s"), dp_horizons=(32, 128), dp_eval=(("xs", 32),), dp_steps=2,
        mlp_widths=(16,), mlp_steps=2,
        ablation_width=16, ablation_hypernets=("xs", "s"), ablation_snippets=(500, 50), checkpoint_every=1000,
    ),
    "quick": dict(
        tasks=PAPER_TASKS, demos=10, episodes=5, copies=5, latent=256, latent_length=16, batch=32,
        vae_lr=1e-3, diffusion_lr=1e-3, dp_lr=1e-3, mlp_lr=1e-3, sampler=("ddim", 10),
        lwd_widths=(128, 256, 512), hypernet="s", lwd_unet="xs", vae_steps=300, diffusion_steps=600,
        dp_sizes=DP_SIZES, dp_horizons=(32, 128), dp_eval=tuple((s, h) for s in ("xs", "s") for h in (32, 128)), dp_steps=600,
        mlp_widths=(128, 256, 512, 1024), mlp_steps=2000,
        ablation_width=128, ablation_hypernets=HYPERNET_SIZES, ablation_snippets=(500, 50), checkpoint_every=300,
    ),
    # Trained to competence on 2 CPU cores (issue #22): every agent keeps its learning curves
    # (training / validation loss per step, success on 2 in-training episodes per task every
    # `eval_every` steps, seeds apart from the test seeds) under logs/metaworld/<key>.
    "standard": dict(
        tasks=PAPER_TASKS, demos=50, episodes=50, copies=10, latent=256, latent_length=16, batch=32, dp_batch=256, mlp_batch=256,
        vae_lr=3e-4, diffusion_lr=3e-4, dp_lr=3e-4, mlp_lr=1e-3, sampler=("ddim", 10), lwd_sampler=("ddpm", 100),
        lwd_widths=(128, 256, 512), lwd_auto_condition_widths=(256,), hypernet="xs", lwd_unet="m", vae_windows="plan_starts", vae_steps=2000, diffusion_steps=6000,
        dp_sizes=DP_SIZES, dp_horizons=(32, 128), dp_eval=tuple((s, h) for s in ("xs", "s") for h in (32, 128)), dp_steps=30_000,
        mlp_widths=(128, 256, 512, 1024), mlp_steps=5000, eval_every=2000, eval_episodes_per_task=2,
        ablation_width=256, ablation_hypernets=HYPERNET_SIZES, ablation_snippets=(500, 50), checkpoint_every=1000,
    ),
    "paper": dict(
        tasks=PAPER_TASKS, demos=100, episodes=50, copies=10, latent=256, latent_length=16, batch=32,
        vae_lr=3e-4, diffusion_lr=1e-4, dp_lr=1e-4, mlp_lr=1e-3, sampler=("ddpm", 100),
        lwd_widths=(128, 256, 512), hypernet="s", lwd_unet="s", vae_steps=50_000, diffusion_steps=50_000,
        dp_sizes=DP_SIZES, dp_horizons=(32, 128), dp_eval=tuple((s, h) for s in DP_SIZES for h in (32, 128)), dp_steps=50_000,
        mlp_widths=(128, 256, 512, 1024), mlp_steps=50_000,
        ablation_width=256, ablation_hypernets=HYPERNET_SIZES, ablation_snippets=(500, 50), checkpoint_every=2000,
    ),
}  # fmt: skip

SUBSET_NOTES = {
    "tiny": "smoke test: 2 tasks, 1 demonstration and 1 evaluation episode per task, tiny networks, 2 gradient steps; numbers mean nothing",
    "quick": (
        "CPU subset: DP rolled out at sizes xs and s only (m/l/xl: FLOPs only); ablation with 128x128 generated policies "
        "(paper 256x256); 10 demonstrations / 5 evaluation episodes per task; few gradient steps; DDIM-10 for LWD and DP "
        "(FLOPs also given at DDPM-100); numbers indicative"
    ),
    "standard": (
        "trained to competence on 2 CPU cores: 50 demonstrations and 50 evaluation episodes per task; DP rolled out at sizes "
        "xs and s (m/l/xl: FLOPs only); DDPM-100 for LWD (one plan per episode), DDIM-10 for DP (FLOPs also at DDPM-100); "
        "learning curves in logs/metaworld/<key>"
    ),
    "paper": "full settings; demonstrations, evaluation episodes and gradient steps per stage are our choices (not given by the issue)",
}

AGENT_CLASSES: dict[str, type[BaseAgent]] = {"LWD": LWDAgent, "DP": DPAgent, "MLP": MLPAgent}


@dataclass(frozen=True)
class Spec:
    """One agent configuration: constructor arguments, training budget and the fields its row shows."""

    label: str
    family: str  # "LWD" | "DP" | "MLP"
    params: dict[str, Any]
    train: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> AgentConfig:
        """The agent's full, validated config."""
        return AGENT_CLASSES[self.family].config_class(**self.params)

    def key(self, data_ids: Sequence[str]) -> str:
        """Cache name of the trained agent (:func:`common.cache_key`; not the label, so both
        experiments share an agent they both use)."""
        slug = "-".join(str(self.info[k]) for k in ("size", "hypernet", "horizon") if k in self.info)
        return common.cache_key(f"{self.family.lower()}-{slug}", self.config, self.train, list(data_ids))

    def build(self, device: str) -> BaseAgent:
        return AGENT_CLASSES[self.family](self.config, device=device)


# ---------------------------------------------------------------------------- configurations
def lwd_spec(cfg: dict[str, Any], width: int, hypernet: str, snippet: int, label: str, condition: str | None = None) -> Spec:
    # One policy per episode needs only the task; a policy re-sampled mid-episode needs the state too.
    # `condition` overrides that choice ("auto": the agent's own default, "obs+task" for a list of tasks).
    condition = condition or ("task" if snippet >= 500 else "obs+task")
    # LWD samples once per plan (here once per episode), so a profile may give it a finer sampler than DP's.
    scheduler, steps = cfg.get("lwd_sampler", cfg["sampler"])
    params = dict(
        action_horizon=snippet, snippet_length=snippet, latent_dim=cfg["latent"], latent_length=cfg["latent_length"],
        policy_hidden=[width, width], hypernet_size=hypernet, denoiser_size=cfg["lwd_unet"], condition_on=condition,
        scheduler=scheduler, num_inference_steps=steps, batch_size=cfg["batch"], vae_lr=cfg["vae_lr"], diffusion_lr=cfg["diffusion_lr"], seed=0,
    )  # fmt: skip
    if "vae_windows" in cfg and snippet >= 500:  # whole episodes for one policy per episode (benchmarks.diagnosis);
        params["vae_windows"] = cfg["vae_windows"]  # only where a profile sets it, so the others' cache keys stay
    info = dict(size=f"{width}x{width}", hypernet=hypernet, horizon=snippet, action_horizon=snippet, condition_on=condition)
    return Spec(label, "LWD", params, dict(vae_steps=cfg["vae_steps"], diffusion_steps=cfg["diffusion_steps"]), info)


def compute_specs(cfg: dict[str, Any]) -> list[tuple[Spec, bool]]:
    """Every Fig 6 configuration with whether it is rolled out (else: FLOPs only)."""
    scheduler, steps = cfg["sampler"]
    specs = [(lwd_spec(cfg, w, cfg["hypernet"], 500, f"LWD-{w}"), True) for w in cfg["lwd_widths"]]
    # The same LWD with the agent's default conditioning ("auto": obs+task for a list of task
    # datasets), which issue #22's Metaworld target names, beside the task-only rows above.
    specs += [(lwd_spec(cfg, w, cfg["hypernet"], 500, f"LWD-{w} auto-cond", condition="auto"), True) for w in cfg.get("lwd_auto_condition_widths", ())]
    for size in cfg["dp_sizes"]:
        for horizon in cfg["dp_horizons"]:
            params = dict(
                action_horizon=horizon // 2, prediction_horizon=horizon, n_obs_steps=2, denoiser_size=size, scheduler=scheduler,
                num_inference_steps=steps, batch_size=cfg.get("dp_batch", cfg["batch"]), diffusion_lr=cfg["dp_lr"], seed=0,
            )  # fmt: skip
            info = dict(size=size, horizon=horizon, action_horizon=horizon // 2)
            specs.append((Spec(f"DP-{size} H{horizon}", "DP", params, dict(steps=cfg["dp_steps"]), info), (size, horizon) in cfg["dp_eval"]))
    for w in cfg["mlp_widths"]:
        params = dict(hidden=[w, w], batch_size=cfg.get("mlp_batch", cfg["batch"]), bc_lr=cfg["mlp_lr"], seed=0)
        specs.append((Spec(f"MLP-{w}", "MLP", params, dict(steps=cfg["mlp_steps"]), dict(size=f"{w}x{w}", horizon=1, action_horizon=1)), True))
    return specs


def hypernet_specs(cfg: dict[str, Any]) -> list[Spec]:
    w = cfg["ablation_width"]
    return [lwd_spec(cfg, w, hs, snippet, f"LWD-{w} hnet-{hs} H{snippet}") for snippet in cfg["ablation_snippets"] for hs in cfg["ablation_hypernets"]]


# ---------------------------------------------------------------------------- data, agents, cache
def cached(path: Path, compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """``(value, was_cached)``: the JSON at ``path`` if a previous run finished it, else computed and written."""
    if path.exists():
        return json.loads(path.read_text()), True
    value = compute()
    common.write_json(path.parent, path.stem, value)
    return value, False


def demonstrations(tasks: Sequence[str], n: int, progress: bool) -> tuple[list[Any], dict[str, float]]:
    """One expert dataset per task (:func:`common.demonstrations`: collected once, then loaded)
    and the expert's success rates."""
    datasets = [common.demonstrations(f"metaworld/{task}", n, seed=0, dataset_id=f"bench/metaworld-{task}/expert{n}-v0", progress=progress) for task in tasks]
    return datasets, {task: common.expert_success(d) for task, d in zip(tasks, datasets)}


def trained(spec: Spec, datasets: list[Any], cache: Path, logs: Path, key: str, device: str, cfg: dict[str, Any], progress: bool) -> BaseAgent:
    """The agent of ``spec``: loaded from the cache, or trained (resumably) and cached."""
    ckpt = cache / f"{key}.ckpt"
    if ckpt.exists():
        return BaseAgent.load(ckpt, device=device)
    state = cache / f"{key}-state"
    options: dict[str, Any] = {}
    if "eval_every" in cfg:  # learning curves: losses per step, and success while training (seeds apart from the test's)
        envs = EvalEnvs(cfg["tasks"], 1)
        options = dict(log_dir=logs / key, eval_env=envs.get(), eval_every=cfg["eval_every"],
                       n_eval_episodes=cfg["eval_episodes_per_task"] * len(cfg["tasks"]))  # fmt: skip
    try:
        agent = spec.build(device).learn(datasets, checkpoint_dir=state, checkpoint_every=cfg["checkpoint_every"], progress_bar=progress, **spec.train, **options)
    finally:
        if options:
            envs.close()
    agent.save(ckpt)
    shutil.rmtree(state, ignore_errors=True)  # only needed to resume an unfinished training
    return agent


def flops_at(agent: BaseAgent, steps: Sequence[int]) -> list[float]:
    """FLOPs per environment step with ``steps[i]`` denoising steps, for each ``i``.

    ``flops_per_step`` is affine in the number of denoising steps (``FlopCounterMode`` counts matmuls
    and convolutions: one denoiser call per step, whatever the sampler; the decode and the acting
    network are fixed), so two counts, at 1 and 2 DDIM steps, give every step count exactly
    without running a 100-step sampler through the counter (DP-xl: minutes on a CPU).
    """
    if not hasattr(agent, "num_inference_steps"):  # the BC MLP: no plan
        return [agent.flops_per_step()] * len(steps)
    saved = agent.scheduler, agent.num_inference_steps
    counts = []
    try:
        agent.scheduler = "ddim"
        for n in (1, 2):
            agent.num_inference_steps = n
            counts.append(agent.flops_per_step())
    finally:
        agent.scheduler, agent.num_inference_steps = saved
    return [counts[0] + (n - 1) * (counts[1] - counts[0]) for n in steps]


class TaskIndex(gym.Wrapper):
    """Puts the env's task index in every ``info``, so each evaluated episode can be credited to its task."""

    def __init__(self, env: gym.Env, index: int) -> None:
        super().__init__(env)
        self.index = int(index)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "task_index": self.index}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "task_index": self.index}


def task_env(task: str, index: int, num_tasks: int) -> gym.Env:
    return TaskIndex(make_metaworld_env(task, index, num_tasks), index)


class EvalEnvs:
    """One vector env with ``copies`` envs per task, built on first use and shared by every cell.

    Episodes are not cut at success (Metaworld counts success at any step), so all run 500 steps
    in lockstep and every task gets the same number of episodes; DP's queries batch over all tasks.
    """

    def __init__(self, tasks: Sequence[str], copies: int) -> None:
        self.tasks, self.copies = list(tasks), copies
        self._envs: gym.vector.VectorEnv | None = None

    def get(self) -> gym.vector.VectorEnv:
        if self._envs is None:
            fns = [partial(task_env, t, i, len(self.tasks)) for _ in range(self.copies) for i, t in enumerate(self.tasks)]
            # "different": each task's goal bounds differ (same shape and dtype, which is all an agent needs).
            self._envs = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.DISABLED, observation_mode="different")
        return self._envs

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()


def rollouts(agent: BaseAgent, envs: EvalEnvs, episodes_per_task: int, progress: bool) -> dict[str, Any]:
    """Success over ``episodes_per_task`` seeded episodes of every task (overall: mean over tasks)."""
    result = evaluate(
        agent, envs.get(), episodes_per_task * len(envs.tasks), seed=EVAL_SEED, info_keys=("task_index",), count_flops=False, progress=progress
    )  # fmt: skip
    per_task = {}
    for i, task in enumerate(envs.tasks):
        wins = [e["is_success"] for e in result.episodes if e.get("task_index") == i]
        per_task[task] = float(np.mean(wins)) if wins else None
    wins = sum(e["is_success"] for e in result.episodes)
    return {
        "success_rate": float(np.mean([v for v in per_task.values() if v is not None])), "success_ci95": list(wilson_interval(wins, result.n_episodes)),
        "per_task_success": per_task, "episodes": result.n_episodes, "mean_max_reward": result.mean_max_reward,
        "predict_us_per_env_step": result.predict_time_per_step * 1e6, "eval_wall_s": result.wall_time_per_episode * result.n_episodes,
    }  # fmt: skip


@torch.no_grad()
def vae_bc_mse(agent: LWDAgent, datasets: list[Any], n: int = 256) -> float:
    """Normalised action MSE of the policy decoded from each snippet's posterior mean, on ``n`` fixed
    training snippets (padding masked): how well the hypernetwork reconstructs behaviours.

    The snippets are the windows the agent's VAE trained on (its ``vae_windows``: whole episodes
    from their first step for the standard profile's one policy per episode), so the number says
    how well it fits what it learned, not how it extrapolates to windows starting mid-episode."""
    from lwd_gym.data import load_demonstrations
    from lwd_gym.nn.vae import masked_mse

    snippets = agent._vae_snippets(load_demonstrations(datasets))  # the agent's own rule, not a copy of it
    index = torch.randperm(len(snippets), generator=torch.Generator().manual_seed(0))[:n]
    batch = {k: v.to(agent.device) for k, v in snippets.get_batch(index).items()}
    vae = agent.vae.eval()
    mu, _ = vae.encoder(batch["states"], batch["actions"])
    return float(masked_mse(vae.policy(vae.decoder(mu), batch["states"]), batch["actions"], batch["mask"]))


class Runner:
    """What both experiments share: the data, the cache, the evaluation envs and a log of timings."""

    def __init__(self, profile: str, out: str, device: str, sampler: tuple[str, int] | None = None, vae_steps: int | None = None) -> None:
        self.profile, self.cfg, self.device = profile, PROFILES[profile], device
        #: a probe's sampler: the trained agents act with it instead of their config's (cells named apart)
        self.sampler = sampler
        if vae_steps is not None:  # a probe's VAE budget: LWD trained with it (another cache key, so cells and logs apart)
            self.cfg = {**self.cfg, "vae_steps": vae_steps}
        #: whether this run probes the profile (another sampler or VAE budget): only the chosen rows, no result file
        self.probe = sampler is not None or vae_steps is not None
        self.progress = profile != "tiny"
        if self.cfg["episodes"] % self.cfg["copies"]:
            raise ValueError("episodes per task must be a multiple of the env copies per task (every env runs whole rounds)")
        # Trained agents are large and stay local (cache/, git-ignored); what a result is made of is
        # small and committed, so a sweep run in parts across sessions keeps its finished cells
        # and learning curves even where its agents are gone.
        self.cache = Path(out) / "cache" / "metaworld"
        self.cells = Path(out) / "cells" / "metaworld"
        self.logs = Path(out) / "logs" / "metaworld"
        self.timings: list[dict[str, Any]] = []
        start = time.perf_counter()
        self.datasets, self.expert_success = demonstrations(self.cfg["tasks"], self.cfg["demos"], self.progress)
        self.timings.append({"what": "demonstrations", "seconds": time.perf_counter() - start})
        self.data_ids = [d.spec.dataset_id for d in self.datasets]
        self.envs = EvalEnvs(self.cfg["tasks"], self.cfg["copies"])

    def result_name(self, experiment: str, partial: bool = False) -> str:
        """File name (no suffix) of an experiment's results (:func:`common.result_name`: the quick
        profile's keep their historic names; ``-partial`` while some agent of the sweep has no row)."""
        return common.result_name(experiment, self.profile, partial)

    def agent(self, spec: Spec) -> BaseAgent:
        start = time.perf_counter()
        agent = trained(spec, self.datasets, self.cache, self.logs, spec.key(self.data_ids), self.device, self.cfg, self.progress)
        self.timings.append({"what": f"train/load {spec.label}", "seconds": time.perf_counter() - start})
        return agent

    def cell(self, spec: Spec, rollout: bool, committed_only: bool = False) -> dict[str, Any] | None:
        """The row of ``spec``: FLOPs (+ rollouts when ``rollout``), cached per cell.  With
        ``committed_only``: the row only where its cell is already written (None otherwise), with
        nothing trained, loaded or rolled out: how a part of the sweep assembles the other parts."""
        key = spec.key(self.data_ids)
        episodes = self.cfg["episodes"]
        scheduler, steps = spec.params.get("scheduler"), spec.params.get("num_inference_steps")
        name = f"{key}-eval{episodes}-seed{EVAL_SEED}" if rollout else f"{key}-flops"
        if self.sampler and scheduler:  # a probe: the same trained agent, acting with another sampler
            scheduler, steps = self.sampler
            name = f"{key}-{scheduler}{steps}-" + name.removeprefix(f"{key}-")

        def compute() -> dict[str, Any]:
            if rollout:
                agent = self.agent(spec)
            else:  # FLOPs depend on the sizes only: one small training step builds the networks
                probe = Spec(spec.label, spec.family, {**spec.params, "batch_size": 2}, {k: 1 for k in spec.train}, spec.info)
                agent = probe.build(self.device).learn(self.datasets, progress_bar=False, **probe.train)
            if self.sampler and scheduler:
                agent.scheduler, agent.num_inference_steps = scheduler, steps
            flops = flops_at(agent, [steps or 1, 100])  # the evaluated sampler's, DDPM-100's
            row: dict[str, Any] = {"gflops_per_step": flops[0] / 1e9, "gflops_per_step_ddpm100": flops[1] / 1e9}
            if rollout:
                start = time.perf_counter()
                row.update(rollouts(agent, self.envs, episodes, self.progress))
                self.timings.append({"what": f"evaluate {spec.label}", "seconds": time.perf_counter() - start})
            return row

        path = self.cells / f"{name}.json"
        if committed_only and not path.exists():
            return None
        start = time.perf_counter()
        row, was_cached = cached(path, compute)
        self.timings.append({"what": f"cell {spec.label}", "seconds": time.perf_counter() - start, "cached": was_cached})
        base = {"label": spec.label, "agent": spec.family, **spec.info, "sampler": f"{scheduler}-{steps}" if scheduler else None, **spec.train, "key": key}
        return {**base, "success_rate": None, "success_ci95": None, **row}

    def reconstruction(self, spec: Spec, committed_only: bool = False) -> dict[str, Any] | None:
        """VAE BC-MSE and hypernetwork size of a (trained) LWD spec, cached apart from its rollouts,
        which the compute experiment may already have cached (``committed_only``: as in :meth:`cell`)."""

        def compute() -> dict[str, Any]:
            agent = self.agent(spec)
            return {"vae_bc_mse": vae_bc_mse(agent, self.datasets), "hypernet_params": agent.vae.decoder.num_params}

        path = self.cells / f"{spec.key(self.data_ids)}-vae.json"
        if committed_only and not path.exists():
            return None
        return cached(path, compute)[0]

    def header(self, name: str) -> dict[str, Any]:
        cfg = self.cfg
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
        return {
            "benchmark": name, "profile": self.profile, "subset": SUBSET_NOTES[self.profile], "machine": common.machine(), "device": self.device,
            "tasks": list(cfg["tasks"]), "demos_per_task": cfg["demos"], "expert_success": self.expert_success,
            "eval": {"episodes_per_task": cfg["episodes"], "seed": EVAL_SEED, "parallel_envs": cfg["copies"] * len(cfg["tasks"]), "episode_steps": 500},
            "settings": settings,
        }  # fmt: skip


# ---------------------------------------------------------------------------- experiments
def flops_ratio(rows: list[dict[str, Any]], tolerance: float = TOLERANCE) -> dict[str, Any] | None:
    """DP's FLOPs per step over LWD's at comparable success.

    LWD reference: the rolled-out LWD with the highest success (ties: the cheapest).  DP match: the
    cheapest rolled-out DP whose success is at least the reference's minus ``tolerance``; if none
    reaches it, the most successful DP (``dp_reaches_lwd`` false: DP needs at least that ratio and
    still does worse).  Ratios at the evaluated sampler and at DDPM-100 for both.
    """
    lwd = [r for r in rows if r["agent"] == "LWD" and r["success_rate"] is not None]
    dp = [r for r in rows if r["agent"] == "DP" and r["success_rate"] is not None]
    if not lwd or not dp:
        return None
    ref = max(lwd, key=lambda r: (r["success_rate"], -r["gflops_per_step"]))
    reaching = [r for r in dp if r["success_rate"] >= ref["success_rate"] - tolerance]
    match = min(reaching, key=lambda r: r["gflops_per_step"]) if reaching else max(dp, key=lambda r: (r["success_rate"], -r["gflops_per_step"]))
    out = {
        "lwd": ref["label"], "dp": match["label"], "lwd_success": ref["success_rate"], "dp_success": match["success_rate"],
        "dp_reaches_lwd": bool(reaching), "tolerance": tolerance, "ratio": match["gflops_per_step"] / ref["gflops_per_step"],
        "ratio_ddpm100": match["gflops_per_step_ddpm100"] / ref["gflops_per_step_ddpm100"], "paper_ratio": PAPER_RATIO,
    }  # fmt: skip
    if ref["success_rate"] == 0:
        out["note"] = "LWD's best success is 0: every DP 'matches', the ratio says nothing about comparable success"
    return out


def selected(specs: Sequence[Any], only: Sequence[str] | None, label: Callable[[Any], str]) -> list[Any]:
    """The specs ``only`` names (all of them without ``only``): an entry that is a whole label
    selects that spec alone (``hnet-s H50`` is not ``hnet-s H500``), any other entry every label
    it starts (``DP-xs``: both of DP-xs's horizons)."""
    if not only:
        return list(specs)
    labels = {label(s) for s in specs}
    return [s for s in specs if any(label(s) == o if o in labels else label(s).startswith(o) for o in only)]


def assemble(specs: Sequence[Any], only: Sequence[str] | None, label: Callable[[Any], str],
             row: Callable[[Any, bool], dict[str, Any] | None], part_columns: list[tuple[str, str, str]],
             probe: bool = False) -> tuple[list[dict[str, Any]], bool | None]:
    """``(rows, partial)`` of an experiment run on ``only`` (every spec without it).

    ``row(spec, committed_only)`` gives a spec's row; the specs ``only`` selects are computed
    (trained, rolled out) as usual and printed with ``part_columns``.  The others come in only
    where a previous part committed their cells, so a sweep run in parts, across sessions, adds up
    to one result file (``partial`` while some spec has no row yet) without training what this
    part did not name.  ``partial`` is None where no result file is due: a ``probe`` (another
    sampler: only the chosen rows, kept apart from the profile's results) or no spec selected.
    """
    chosen = selected(specs, only, label)
    if only and not chosen:
        print(f"no agent of this experiment matches --only {','.join(only)}: nothing to run")
        return [], None
    if probe:
        part = [row(spec, False) for spec in chosen]
        print(common.format_table(part, part_columns))
        return part, None
    ids = {id(s) for s in chosen}
    rows = [r for r in (row(spec, id(spec) not in ids) for spec in specs) if r is not None]
    if only:
        names = {label(spec) for spec in chosen}
        print(common.format_table([r for r in rows if r["label"] in names], part_columns))
    return rows, len(rows) < len(specs)


def run_compute(runner: Runner, out: str, only: Sequence[str] | None = None) -> dict[str, Any]:
    runner.timings = runner.timings[:1]  # the demonstrations', then this experiment's
    part_columns = [("agent", "label", "{}"), ("sampler", "sampler", "{}"), ("success", "success_rate", "{:.1%}"),
                    ("95% CI", "success_ci95", "[{0[0]:.2f}, {0[1]:.2f}]"), ("GFLOPs/step", "gflops_per_step", "{:.4g}")]  # fmt: skip
    rows, partial = assemble(compute_specs(runner.cfg), only, lambda s: s[0].label, lambda s, committed: runner.cell(*s, committed_only=committed),
                             part_columns, probe=bool(only and runner.probe))  # fmt: skip
    if partial is None:
        return {"rows": rows}
    ratio = flops_ratio(rows)
    ref = next((r for r in rows if ratio and r["label"] == ratio["lwd"]), None)
    for r in rows:  # FLOPs relative to the LWD the ratio refers to
        r["x_lwd_flops"] = r["gflops_per_step"] / ref["gflops_per_step"] if ref else None
    results = {**runner.header("metaworld-compute"), "tolerance": TOLERANCE, "rows": rows, "ratio": ratio, "timings": runner.timings, "partial": partial}
    name = runner.result_name("metaworld-compute", partial)
    json_path = common.write_json(out, name, results)
    png_path = plot_compute(results, out, name)
    print(f"\nMetaworld ({len(results['tasks'])} tasks, {results['eval']['episodes_per_task']} episode(s) per task): success vs GFLOPs/step ({runner.profile})\n")
    print(common.format_table(rows, [
        ("agent", "label", "{}"), ("H_a", "horizon", "{}"), ("re-plan every", "action_horizon", "{}"), ("sampler", "sampler", "{}"),
        ("GFLOPs/step", "gflops_per_step", "{:.4g}"), ("GFLOPs/step (DDPM-100)", "gflops_per_step_ddpm100", "{:.4g}"),
        ("success", "success_rate", "{:.1%}"), ("95% CI", "success_ci95", "[{0[0]:.2f}, {0[1]:.2f}]"),
        ("predict us/env-step", "predict_us_per_env_step", "{:.1f}"), ("x LWD FLOPs", "x_lwd_flops", "{:.1f}"),
    ]))  # fmt: skip
    if ratio:
        how = (
            f"the cheapest DP within {TOLERANCE * 100:.0f} points of LWD's best" if ratio["dp_reaches_lwd"]
            else f"no DP comes within {TOLERANCE * 100:.0f} points of LWD's best: the most successful DP"
        )  # fmt: skip
        print(
            f"\nFLOPs DP / LWD at comparable success: {ratio['ratio']:.1f}x ({ratio['ratio_ddpm100']:.1f}x with DDPM-100 for both; paper ~{PAPER_RATIO:.0f}x): "
            f"{ratio['dp']} ({ratio['dp_success']:.1%}) vs {ratio['lwd']} ({ratio['lwd_success']:.1%}), {how}.{' ' + ratio['note'] if 'note' in ratio else ''}"
        )
    print(f"wrote {json_path} and {png_path}")
    return results


def run_hypernet(runner: Runner, out: str, only: Sequence[str] | None = None) -> dict[str, Any]:
    runner.timings = runner.timings[:1]

    def row(spec: Spec, committed_only: bool) -> dict[str, Any] | None:
        # the reconstruction first: a committed rollout cell (compute's) with no VAE cell is not a row yet
        vae = runner.reconstruction(spec, committed_only)
        cell = None if vae is None else runner.cell(spec, True, committed_only)
        return None if cell is None else {**cell, **vae, "snippet_length": spec.params["snippet_length"]}

    part_columns = [("agent", "label", "{}"), ("success", "success_rate", "{:.1%}"), ("VAE BC-MSE", "vae_bc_mse", "{:.4f}")]
    rows, partial = assemble(hypernet_specs(runner.cfg), only, lambda s: s.label, row, part_columns, probe=bool(only and runner.probe))
    if partial is None:
        return {"rows": rows}
    results = {**runner.header("metaworld-hypernet"), "rows": rows, "timings": runner.timings, "partial": partial}
    name = runner.result_name("metaworld-hypernet", partial)
    json_path = common.write_json(out, name, results)
    png_path = plot_hypernet(results, out, name)
    print(f"\nMetaworld hypernetwork-size ablation ({runner.profile}): LWD with {rows[0]['size']} generated policies\n")
    print(common.format_table(rows, [
        ("hypernet", "hypernet", "{}"), ("params", "hypernet_params", "{:,}"), ("snippet = H_a", "snippet_length", "{}"),
        ("condition", "condition_on", "{}"), ("success", "success_rate", "{:.1%}"), ("95% CI", "success_ci95", "[{0[0]:.2f}, {0[1]:.2f}]"),
        ("VAE BC-MSE", "vae_bc_mse", "{:.4f}"), ("GFLOPs/step", "gflops_per_step", "{:.4g}"),
    ]))  # fmt: skip
    print(f"wrote {json_path} and {png_path}")
    return results


# ---------------------------------------------------------------------------- plots
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_compute(results: dict[str, Any], out: str, filename: str = "metaworld-compute") -> Path:
    plt = _pyplot()
    rows = results["rows"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 2]})
    groups = [("LWD", lambda r: r["agent"] == "LWD", "tab:green", "o")]
    groups += [(f"DP H_a={h}", (lambda r, h=h: r["agent"] == "DP" and r["horizon"] == h), c, "s") for h, c in zip((32, 128), ("tab:blue", "tab:purple"))]
    groups += [("MLP", lambda r: r["agent"] == "MLP", "tab:gray", "^")]
    for name, pick, color, marker in groups:
        pts = sorted((r for r in rows if pick(r) and r["success_rate"] is not None), key=lambda r: r["gflops_per_step"])
        if pts:
            ax.plot([r["gflops_per_step"] for r in pts], [r["success_rate"] for r in pts], marker=marker, color=color, label=name)
            for r in pts:
                ax.annotate(str(r["size"]).split("x")[0], (r["gflops_per_step"], r["success_rate"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    unrun = [r for r in rows if r["success_rate"] is None]
    if unrun:  # configurations with FLOPs only: a rug under the axis
        ax.plot([r["gflops_per_step"] for r in unrun], [-0.04] * len(unrun), "|", color="k", markersize=12, label="FLOPs only (not rolled out)")
    ratio = results["ratio"]
    if ratio:  # an arrow from the LWD reference to its DP match, the ratio at its (log-x) middle
        a, b = (next(r for r in rows if r["label"] == ratio[k]) for k in ("lwd", "dp"))
        (x0, y0), (x1, y1) = ((r["gflops_per_step"], r["success_rate"]) for r in (a, b))
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "linestyle": "--", "color": "k"})
        ax.text((x0 * x1) ** 0.5, (y0 + y1) / 2, f"DP / LWD = {ratio['ratio']:.0f}x", ha="center", va="center", fontsize=9, bbox={"fc": "white", "ec": "none"})
    ax.set(xscale="log", xlabel="GFLOPs per env step (log)", ylabel="success rate", ylim=(-0.08, 1.05),
           title=f"Metaworld {len(results['tasks'])} tasks ({results['profile']})")  # fmt: skip
    ax.legend(fontsize=8)
    labels = [r["label"] for r in rows]
    y = np.arange(len(rows))
    ax2.barh(y - 0.2, [r["gflops_per_step"] for r in rows], height=0.4, label="evaluated sampler")
    ax2.barh(y + 0.2, [r["gflops_per_step_ddpm100"] for r in rows], height=0.4, label="DDPM-100")
    ax2.set_yticks(y, labels, fontsize=7)
    ax2.invert_yaxis()
    ax2.set(xscale="log", xlabel="GFLOPs per env step (log)", title="FLOPs of every configuration")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return common.save_figure(fig, out, filename)


def plot_hypernet(results: dict[str, Any], out: str, filename: str = "metaworld-hypernet") -> Path:
    plt = _pyplot()
    rows = results["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for snippet in dict.fromkeys(r["snippet_length"] for r in rows):
        pts = [r for r in rows if r["snippet_length"] == snippet]
        for ax, key in zip(axes, ("success_rate", "vae_bc_mse")):
            ax.plot([r["hypernet_params"] for r in pts], [r[key] for r in pts], marker="o", label=f"snippet {snippet}")
            for r in pts:
                ax.annotate(r["hypernet"], (r["hypernet_params"], r[key]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes[0].set(xscale="log", xlabel="hypernetwork parameters (log)", ylabel="success rate", ylim=(-0.05, 1.05),
                title=f"LWD, {rows[0]['size']} generated policies ({results['profile']})")  # fmt: skip
    axes[1].set(xscale="log", yscale="log", xlabel="hypernetwork parameters (log)", ylabel="VAE BC-MSE (normalised actions)", title="reconstruction")
    axes[0].legend()
    fig.tight_layout()
    return common.save_figure(fig, out, filename)


# ---------------------------------------------------------------------------- entry point
def _sampler(text: str) -> tuple[str, int]:
    scheduler, _, steps = text.partition(",")
    if scheduler not in ("ddpm", "ddim") or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"expected SCHEDULER,STEPS with SCHEDULER ddpm or ddim, e.g. 'ddpm,100'; got {text!r}")
    return scheduler, int(steps)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=tuple(PROFILES))
    p.add_argument("--experiment", choices=("all", "compute", "hypernet"), default="all", help="compute: Fig 6; hypernet: Fig 8")
    p.add_argument("--only", type=lambda v: [x for x in v.split(",") if x], default=None,
                   help="run only these agents (comma-separated): a whole label names one agent, e.g. 'LWD-256 hnet-s H50', "
                        "any other text every label it starts, e.g. 'DP-xs,MLP': a sweep in parts")  # fmt: skip
    p.add_argument("--sampler", type=_sampler, default=None, metavar="SCHEDULER,STEPS",
                   help="a probe, with --only: the agents (trained or loaded as usual) act with this sampler, e.g. 'ddpm,100'; "
                        "its cells are cached apart and the assembled results keep the profile's samplers")  # fmt: skip
    p.add_argument("--vae-steps", type=int, default=None, metavar="N",
                   help="a probe, with --only: the LWD agents it selects are trained with N VAE steps instead of the profile's "
                        "(another cache key: agents, cells and learning curves apart; the assembled results keep the profile's budget)")  # fmt: skip
    args = p.parse_args(argv)
    for flag, value in (("--sampler", args.sampler), ("--vae-steps", args.vae_steps)):
        if value is not None and not args.only:
            p.error(f"{flag} is a probe of some agents: give --only too")
    if args.vae_steps is not None and args.vae_steps < 1:
        p.error(f"--vae-steps must be a positive number of gradient steps, got {args.vae_steps}")
    common.setup(args)
    device = str(get_device(args.device))
    runner = Runner(args.profile, args.out, device, args.sampler, args.vae_steps)
    results: dict[str, Any] = {}
    try:
        if args.experiment in ("all", "compute"):
            results["compute"] = run_compute(runner, args.out, args.only)
        if args.experiment in ("all", "hypernet"):
            results["hypernet"] = run_hypernet(runner, args.out, args.only)
    finally:
        runner.envs.close()
    return results


if __name__ == "__main__":
    main()
