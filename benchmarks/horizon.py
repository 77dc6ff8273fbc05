"""Action horizon x perturbation: how each method degrades as its plans run longer and the world is pushed.

    python -m benchmarks.horizon --profile quick               # PushT (paper Fig 3): LWD, LWD+WM, DP, LDP, MLP, Random
    python -m benchmarks.horizon --profile quick --env lift    # robosuite Lift, end-effector pushes (Fig 5): LWD, DP (standard: + LWD+WM, LDP)
    python -m benchmarks.horizon --profile quick --env can     # robosuite PickPlaceCan (Fig 5)
    python -m benchmarks.horizon --profile standard --env pusht-keypoints  # PushT seen as the T's 8 corners (18-d)

For every method and action horizon ``H_a`` one agent is trained (LWD / LDP on snippets of
``H_a`` steps, LWD conditioned on the state at which it samples a policy; DP predicting
``H_a + n_obs_steps - 1`` actions, rounded up to a multiple of 4); MLP and Random have no horizon
and are trained once.  Each agent is evaluated on the same seeded episodes at every perturbation
magnitude (PushT: the T block is moved by ``magnitude`` px with probability ``p`` per step,
:class:`~lwd_gym.wrappers.PushTPerturbation`; robosuite: the end effector is pushed by
``magnitude`` m, :class:`~lwd_gym.wrappers.EndEffectorPerturbation`).  Reported: success rate,
mean max reward (PushT: coverage), the *drop* from each method's best horizon, and the agent's
own compute time per episode (``predict`` time x episode length; paper Fig 19).

"LWD+WM" is LWD with the co-trained world model and rollout loss (issue #7); it answers whether
the world model helps most at long horizons and large perturbations.

Demonstrations shorter than a snippet are end-padded and masked
(``pad_short_episodes=True``): PushT expert episodes are 34-133 steps long, so at ``H_a`` = 64
and 128 most of them would otherwise be dropped.

Each trained agent (and its resumable training state while it trains) is cached under
``--out/cache/horizon-ENV-PROFILE/`` and each evaluated cell is a small JSON under
``--out/cells/horizon-ENV-PROFILE/``, so a sweep that stops resumes where it stopped.  Writes ``horizon-ENV.json`` (every cell, every episode's outcome
summarised), ``horizon-ENV.png`` (success and reward vs ``H_a``, one panel per magnitude) and
``horizon-ENV-time.png`` (compute per episode vs ``H_a``).

Standard profile (issue #22: agents trained to competence on 2 CPU cores, run in parts with
``--methods`` / ``--horizons``): 200 demonstrations, 50 test episodes per cell; PushT at ``H_a``
8, 16, 32, 128 (``--env pusht-keypoints``: the same on the 18-d keypoint observation), Lift / Can at 8, 32, 128; LWD / LWD+WM / LDP latent 64, UNet xs, hypernetwork xs,
256x256 generated policy, batch 256, lr 1e-3, 6,000 + 6,000 gradient steps; DP UNet s, batch 256,
lr 3e-4, 20,000 steps; MLP 20,000 steps; DDPM-100 for every diffusion.  Every agent keeps its
learning curves (losses per step, success on 10 unperturbed in-training episodes every 2,000
steps) under ``--out/logs/horizon-ENV-standard/<key>``; evaluated cells go to
``--out/cells/horizon-ENV-standard/`` (committed), so a fresh checkout only retrains what has no
cell yet.  An agent's resumable training state lives in the git-ignored cache: a training that
outlasts a session (DP at ``H_a`` 128 on PushT: ~1.2-1.7 s per step on one thread, ~8 h) continues
in the next one only where that cache survived; its recorded training time is the curves' (every
part).  Writes
``horizon-ENV-standard.json`` (``-partial`` while some agent of the sweep has no cell yet; a part
run with ``--methods`` / ``--horizons`` writes every cell of its recipe evaluated so far, its own
and earlier parts', so parts add up).
Every generated-policy agent (LWD, LWD+WM) also gets the paper's "VAE-decoded" bar (Figs 17b / 19): the
policies decoded from the first 50 demonstrations' posterior means (2 tiny, 20 quick), each rolled out
unperturbed from its own demonstration's reset seed, with no diffusion (``lwd_gym.reconstruction_rollout``;
a committed ``...-decodedN.json`` cell, made where the agent is at hand: trained now or in the cache).
Beside the sampled agent's cell it tells a weak VAE from a weak latent diffusion.
Recipe probes train one stage for N gradient steps instead of the profile's, keyed apart (own
cache keys, cells and JSON name): ``--vae-steps N`` the latent methods' VAE (``-vaeN``),
``--diffusion-steps N`` their latent diffusion (``-diffN``), ``--dp-steps N`` DP (``-dpN``); ``--keep-best-vae`` ends the latent methods' VAE with its
lowest-validation weights (``learn(..., keep_best_validation=True)``; ``-bestvae``); ``--no-train-eval`` trains
without the in-training episodes and keeps the last (EMA) weights (``-noeval``).  ``--deterministic`` is an
acting probe: the same agents (same keys, no retraining) act with ``predict(..., deterministic=True)``,
their sampling noise fixed per env as under SB3's ``evaluate_policy`` default (cells keyed apart, ``-det``).
``--train-seeds 0 1`` trains more seeds of the same recipe (cells and agents are per seed, so seed 0's are
reused; the rows average the seeds and pool their episodes; ``-seeds0-1``).  ``--train-only`` trains
(or finds cached) the agents that have no cells and stops there: with ``--no-train-eval`` another machine
without the simulator (a lent GPU) can train, and a run here over its cache entries evaluates.  When every cell of a run exists, the JSON is assembled from
the cells and the learning curves alone: no demonstrations are collected and nothing trains.

Quick profile (2-core CPU, measured in benchmarks/README.md): small networks, 200 gradient
steps per training stage (~7 epochs), a few-step DDIM sampler for every diffusion method (DP too, so its cost fits), one training
seed and 30 seeded episodes per cell: the numbers are indicative only.  Paper profile: the
paper's sizes and learning rates (latent 256, batch 32, lr 3e-4 VAE / 1e-4 diffusion), DP with
DDPM-100, 3 training seeds x 500 episodes per cell (50 initial states x 10 repeats); for a GPU.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from benchmarks import common
from lwd_gym import BaseAgent, DPAgent, LDPAgent, LWDAgent, MLPAgent, RandomAgent, StageLog, evaluate, reconstruction_rollout
from lwd_gym.evaluation import wilson_interval

#: Methods whose agent depends on the action horizon; the others are trained once.
HORIZON_METHODS = ("LWD", "LWD+WM", "DP", "LDP")
DECODED_METHODS = ("LWD", "LWD+WM")  # methods that act with generated policies: their VAE alone can be rolled out
#: PushT's observation per ``--env``: the demo source and gym-pusht's ``obs_type``.  ``pusht`` is
#: the 5-d state (agent xy, block xy, angle); ``pusht-keypoints`` the agent xy and the T's 8
#: corners (18-d, Diffusion Policy's low-dimensional PushT observation), which tells whether the
#: 5-d state (an angle that wraps at 2 pi) is what limits a method.
PUSHT_OBS = {"pusht": ("pusht", "state"), "pusht-keypoints": ("pusht/keypoints", "environment_state_agent_pos")}
AGENT_CLASSES = {"LWD": LWDAgent, "LWD+WM": LWDAgent, "DP": DPAgent, "LDP": LDPAgent, "MLP": MLPAgent, "Random": RandomAgent}


@dataclass
class Setting:
    """One (env, profile): the grid, the data and every method's constructor arguments."""

    source: str  # demo source for lwd_gym.data.sources.collect
    env_id: str
    methods: tuple[str, ...]
    horizons: tuple[int, ...]
    magnitudes: tuple[float, ...]
    unit: str
    p: float
    num_demos: int
    episodes: int
    train_seeds: tuple[int, ...]
    agent_kwargs: dict[str, dict[str, Any]]
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    train_steps: dict[str, int] | None = None  # fixed gradient steps per stage instead of epochs (MLP: only with "mlp_steps")
    n_envs: int = 10
    eval_every: int | None = None  # in-training evaluation (learning curves under --out/logs) every this many steps
    keep_best_vae: bool = False  # the latent methods' VAE ends with its lowest-validation weights (learn's keep_best_validation)
    train_eval: bool = True  # with eval_every: evaluate in training and keep the best-by-success weights (needs the simulator)
    deterministic: bool = False  # an acting probe: the cells' episodes call predict(..., deterministic=True) (same agents)
    eval_episodes: int = 10
    #: the paper's "VAE-decoded" bars (Fig 17b / 19): how many demonstrations' posterior-mean
    #: policies each generated-policy agent replays from their own reset seeds (0: none)
    decoded_demos: int = 0


def _latent(size: str, *, latent_dim: int, batch: int, vae_lr: float, diffusion_lr: float, epochs: int, steps: int, sampler: str) -> dict[str, Any]:
    return dict(latent_dim=latent_dim, latent_length=16 if latent_dim >= 64 else 4, denoiser_size=size, batch_size=batch, vae_lr=vae_lr,
                diffusion_lr=diffusion_lr, vae_epochs=epochs, diffusion_epochs=epochs, scheduler=sampler, num_inference_steps=steps,
                pad_short_episodes=True)  # fmt: skip


def _agent_kwargs(profile: str) -> dict[str, dict[str, Any]]:
    """Constructor arguments per method (without the horizon-dependent ones)."""
    if profile == "paper":
        shared = _latent("s", latent_dim=256, batch=32, vae_lr=3e-4, diffusion_lr=1e-4, epochs=100, steps=10, sampler="ddim")
        lwd = dict(shared, hypernet_size="s", policy_hidden=(256, 256), kl_coef=1e-7)
        return {
            "LWD": lwd,
            "LWD+WM": dict(lwd, world_model=True, world_model_hidden=(1024, 1024), world_model_warmup_epochs=10),
            "LDP": dict(shared, decoder_hidden=(256, 256), kl_coef=1e-7),
            "DP": dict(denoiser_size="m", scheduler="ddpm", num_inference_steps=100, batch_size=32, diffusion_lr=1e-4, diffusion_epochs=100, pad_short_episodes=True),
            "MLP": dict(hidden=(256, 256), batch_size=32, bc_lr=1e-4, bc_epochs=100),
            "Random": {},
        }
    if profile == "standard":
        # Trained to competence on 2 CPU cores (issue #22): the recipe of the PushT LWD run
        # (latent 64, hypernetwork xs, 256x256 policy, UNet xs: 0.74 coverage after 5,000 + 5,000
        # steps) at LWD's default learning rates; DP at size s with Diffusion Policy's own sampler
        # (DDPM-100: on Metaworld it gained DP 14 points over DDIM-10), and so every diffusion here.
        shared = _latent("xs", latent_dim=64, batch=256, vae_lr=1e-3, diffusion_lr=1e-3, epochs=10, steps=100, sampler="ddpm")
        lwd = dict(shared, hypernet_size="xs", policy_hidden=(256, 256), kl_coef=1e-7)
        return {
            "LWD": lwd,
            "LWD+WM": dict(lwd, world_model=True, world_model_hidden=(512, 512), world_model_warmup_epochs=2),
            "LDP": dict(shared, decoder_hidden=(256, 256), kl_coef=1e-7),
            "DP": dict(denoiser_size="s", scheduler="ddpm", num_inference_steps=100, batch_size=256, diffusion_lr=3e-4, diffusion_epochs=10, pad_short_episodes=True),
            "MLP": dict(hidden=(256, 256), batch_size=256, bc_lr=1e-3, bc_epochs=30),
            "Random": {},
        }  # fmt: skip
    small = profile == "tiny"
    shared = _latent("xs", latent_dim=16 if small else 64, batch=256, vae_lr=1e-3, diffusion_lr=3e-3, epochs=10, steps=2 if small else 10, sampler="ddim")
    lwd = dict(shared, hypernet_size="xs", policy_hidden=(16, 16) if small else (128, 128), kl_coef=1e-7)
    return {
        "LWD": lwd,
        "LWD+WM": dict(lwd, world_model=True, world_model_hidden=(16, 16) if small else (256, 256), world_model_warmup_epochs=2),
        "LDP": dict(shared, decoder_hidden=(16, 16) if small else (256, 256), kl_coef=1e-7),
        "DP": dict(denoiser_size="xs", scheduler="ddim", num_inference_steps=2 if small else 10, batch_size=256, diffusion_lr=1e-3, diffusion_epochs=10, pad_short_episodes=True),
        "MLP": dict(hidden=(16, 16) if small else (256, 256), batch_size=256, bc_lr=1e-3, bc_epochs=30),
        "Random": {},
    }


def _train_steps(profile: str) -> dict[str, int] | None:
    """Gradient steps per stage (``learn``'s ``vae_steps`` / ``diffusion_steps`` / ``steps``), or
    None for the agents' epochs.  Quick fixes them (~7 epochs of 100 PushT demos at batch 256) so
    that 21 trainings fit its budget whatever the snippet length."""
    if profile == "paper":
        return None
    if profile == "standard":  # a budget per agent that fits a session; the learning curves say whether it converged
        return {"vae_steps": 6000, "diffusion_steps": 6000, "steps": 20_000, "mlp_steps": 20_000}
    n = 2 if profile == "tiny" else 200
    return {"vae_steps": n, "diffusion_steps": n, "steps": n}


#: The VAE-budget probe's shorter VAE stage per env (``--vae-steps``; benchmarks/README.md): on
#: one training seed it kept the agents competent at ~1/3 of the standard training time (Lift LWD
#: H8 1,000 steps: 98 / 96 / 78 % vs 98 / 98 / 88 %; PushT LWD H16 1,500 steps: 0.76 coverage vs
#: 0.83).  The ablations built on horizon.py's standard agents (kl, denoiser, samplers) train with it.
PROBE_VAE_STEPS = {"pusht": 1500, "lift": 1000}


def with_steps(s: Setting, stage: str, steps: int) -> Setting:
    """``s`` with one stage's budget (a key of :func:`_train_steps`: ``"vae_steps"`` / ``"diffusion_steps"``
    for the latent methods' VAE / latent diffusion, ``"steps"`` for DP) set to ``steps`` gradient steps:
    another agent, its cache key changes."""
    if steps < 1 or s.train_steps is None or stage not in s.train_steps:
        raise ValueError(f"{stage} needs N >= 1 and a profile with fixed steps (got {steps}, train_steps {s.train_steps})")
    return dataclasses.replace(s, train_steps={**s.train_steps, stage: steps})


def with_vae_steps(s: Setting, vae_steps: int) -> Setting:
    """``s`` with the latent methods' VAE stage trained ``vae_steps`` gradient steps."""
    return with_steps(s, "vae_steps", vae_steps)


def setting(env: str, profile: str) -> Setting:
    """The grid of ``env`` at ``profile``."""
    kwargs = _agent_kwargs(profile)
    tiny = profile == "tiny"
    paper = profile == "paper"
    standard = profile == "standard"
    common_args: dict[str, Any] = dict(
        agent_kwargs=kwargs,
        episodes=2 if tiny else 500 if paper else 50 if standard else 30,
        train_seeds=(0, 1, 2) if paper else (0,),
        train_steps=_train_steps(profile),
        n_envs=2 if tiny else 10,
        eval_every=2 if tiny else 2000 if standard else None,
        eval_episodes=2 if tiny else 10,
        decoded_demos=2 if tiny else 50 if standard or paper else 20,
    )
    if env in PUSHT_OBS:
        return Setting(
            source=PUSHT_OBS[env][0], env_id="gym_pusht/PushT-v0", unit="px", p=0.1,
            methods=("LWD", "LWD+WM", "DP", "LDP", "MLP", "Random"),
            horizons=(4, 8) if tiny else (8, 16, 32, 128) if standard else (8, 16, 32, 64, 128),
            magnitudes=(0.0, 25.0) if tiny else (0.0, 25.0, 50.0), num_demos=2 if tiny else 200 if paper or standard else 100, env_kwargs={"max_episode_steps": 12} if tiny else {},
            **common_args,
        )  # fmt: skip
    if env in ("lift", "can"):
        env_kwargs: dict[str, Any] = {"max_episode_steps": 12} if tiny else {}
        if env == "can" and profile in ("quick", "standard"):
            # Failed Can episodes run to the time limit (~190 env-steps/s here), which took the
            # quick run to 28 min.  400 steps is robomimic's rollout horizon and above the longest
            # scripted demonstration (360 steps); 20 episodes per cell keep it near 17 min.
            env_kwargs = {"max_episode_steps": 400}
            common_args["episodes"] = 20 if profile == "quick" else common_args["episodes"]
        return Setting(
            source=f"robosuite/{env}", env_id=f"lwd_gym/{env.capitalize()}-v0", unit="m", p=0.1,
            # Fig 5 compares LWD with DP; the standard and paper profiles add LWD+WM and LDP (issue
            # #22: the world-model and latent-action peers), quick keeps its two for its budget.
            methods=("LWD", "LWD+WM", "DP", "LDP") if standard or paper else ("LWD", "DP"), horizons=(4, 8) if tiny else (8, 32, 128), magnitudes=(0.0, 0.05) if tiny else (0.0, 0.05, 0.1),
            num_demos=2 if tiny else 200 if paper or standard else 30, env_kwargs=env_kwargs, **common_args,
        )  # fmt: skip
    raise ValueError(f"unknown env {env!r}")


def demonstrations(s: Setting, profile: str) -> tuple[Any, float]:
    """The setting's demonstrations (collected once, then cached) and the seconds that took."""
    start = time.perf_counter()
    dataset = common.demonstrations(s.source, s.num_demos, seed=0, progress=profile != "tiny")
    return dataset, time.perf_counter() - start


def make_agent(method: str, horizon: int, s: Setting, seed: int, device: str) -> BaseAgent:
    """A fresh agent of ``method`` for action horizon ``horizon``."""
    kwargs = dict(s.agent_kwargs[method], device=device, seed=seed)
    if method in ("LWD", "LWD+WM", "LDP"):
        kwargs.update(action_horizon=horizon, snippet_length=horizon)
        if method == "LWD+WM":
            kwargs["world_model_history"] = 1
    elif method == "DP":
        n_obs = 2
        kwargs.update(action_horizon=horizon, n_obs_steps=n_obs, prediction_horizon=max(16, 4 * math.ceil((horizon + n_obs - 1) / 4)))
    return AGENT_CLASSES[method](**kwargs)


def _steps(method: str, s: Setting) -> dict[str, int]:
    """``learn``'s step arguments for ``method`` (empty: the agent's epochs)."""
    if s.train_steps is None or method == "Random":
        return {}
    if method == "MLP":  # the MLP is cheap: its epochs, unless the profile fixes its steps
        return {"steps": s.train_steps["mlp_steps"]} if "mlp_steps" in s.train_steps else {}
    names = ("vae_steps", "diffusion_steps") if method in ("LWD", "LWD+WM", "LDP") else ("steps",)
    return {k: s.train_steps[k] for k in names}


def _learn_options(method: str, s: Setting) -> dict[str, Any]:
    """``learn``'s recipe options for ``method`` beyond its budgets (part of its cache key)."""
    return {"keep_best_validation": True} if s.keep_best_vae and method in ("LWD", "LWD+WM", "LDP") else {}


def agent_key(method: str, horizon: int | None, seed: int, s: Setting) -> str:
    """Cache name of a trained agent (:func:`common.cache_key`): changing any field of its
    config, its training steps or its data retrains it."""
    config = make_agent(method, horizon or 1, s, seed, "cpu").config
    slug = f"{method.replace('+', '_')}-H{horizon if horizon is not None else 'na'}-s{seed}"
    recipe = {**_steps(method, s), **_learn_options(method, s), **({} if s.train_eval else {"train_eval": False})}
    return common.cache_key(slug, config, recipe, [s.source, s.num_demos])


def trained_agent(
    method: str, horizon: int | None, s: Setting, seed: int, dataset: Any, cache: Path, device: str, env: str = "pusht", logs: Path | None = None
) -> tuple[BaseAgent, float]:
    """The agent (loaded from ``cache`` if it was trained before) and its training seconds; with
    ``logs`` and the setting's ``eval_every``, its learning curves (losses per step, success on
    ``eval_episodes`` unperturbed in-training episodes) go to ``logs/<key>``."""
    agent = make_agent(method, horizon or 1, s, seed, device)
    key = agent_key(method, horizon, seed, s)
    path = cache / f"{key}.ckpt"
    meta = cache / f"{key}.json"
    if path.exists() and meta.exists():
        return BaseAgent.load(path, device=device), json.loads(meta.read_text())["train_seconds"]
    start = time.perf_counter()
    kwargs: dict[str, Any] = {"progress_bar": False, **_steps(method, s), **_learn_options(method, s)}
    if method != "Random":
        kwargs["checkpoint_dir"] = cache / f"{key}-state"
        if logs is not None:
            kwargs["log_dir"] = logs / key
        if logs is not None and s.eval_every and s.train_eval:
            kwargs.update(eval_env=env_factory(env, s, 0.0), eval_every=s.eval_every, n_eval_episodes=s.eval_episodes)
    agent.learn(dataset, **kwargs)
    # A training resumed from its state (an earlier process was stopped) ran in several processes:
    # its curves' clocks hold the whole training, this process's clock only the last part.
    curves = curve_seconds(logs / key) if logs is not None else None
    seconds = curves if curves is not None else time.perf_counter() - start
    agent.save(path)
    common.write_json(cache, key, {"method": method, "horizon": horizon, "seed": seed, "train_seconds": seconds})
    return agent, seconds


def recorded_train_seconds(method: str, horizon: int | None, seed: int, s: Setting, cache: Path, logs: Path | None) -> float | None:
    """The training seconds of an agent trained before, without loading it: from its cache entry,
    else from its learning curves (the sum over stages of each CSV's last ``seconds``), else None."""
    key = agent_key(method, horizon, seed, s)
    meta = cache / f"{key}.json"
    if meta.exists():
        return json.loads(meta.read_text())["train_seconds"]
    return curve_seconds(logs / key) if logs is not None else None


def curve_seconds(log_dir: Path) -> float | None:
    """Training seconds from the learning curves in ``log_dir``: the sum over stages of each CSV's
    last ``seconds`` (a stage's clock continues across resumes), or None without complete curves."""
    seconds = [StageLog.from_csv(path).seconds for path in sorted(log_dir.glob("*.csv"))]
    return float(sum(col[-1] for col in seconds)) if seconds and all(len(col) for col in seconds) else None


def env_factory(env: str, s: Setting, magnitude: float) -> Callable[[], gym.Env]:
    """A zero-argument factory of the perturbed env (picklable for subprocess vector envs)."""
    return _Factory(env, s.env_id, dict(s.env_kwargs), s.p, magnitude)


@dataclass
class _Factory:
    env: str
    env_id: str
    env_kwargs: dict[str, Any]
    p: float
    magnitude: float

    def __call__(self) -> gym.Env:
        if self.env in PUSHT_OBS:
            from lwd_gym.envs.pusht import make_pusht_env
            from lwd_gym.wrappers import PushTPerturbation

            inner = make_pusht_env(PUSHT_OBS[self.env][1], **self.env_kwargs)
            return PushTPerturbation(inner, p=self.p, magnitude=self.magnitude) if self.magnitude > 0 else inner
        from lwd_gym.wrappers import EndEffectorPerturbation

        inner = gym.make(self.env_id, **self.env_kwargs)
        return EndEffectorPerturbation(inner, p=self.p, magnitude=self.magnitude) if self.magnitude > 0 else inner


def cell_path(cells: Path, method: str, horizon: int | None, seed: int, s: Setting, magnitude: float) -> Path:
    """File of one evaluated cell under ``cells`` (small JSON, committed, so a sweep resumes in
    another checkout too): changing the agent or the evaluation settings re-evaluates it."""
    acting = [s.episodes, s.p, s.env_kwargs] + (["deterministic"] if s.deterministic else [])  # the stochastic cells' names unchanged
    digest = hashlib.sha256(json.dumps(acting, sort_keys=True).encode()).hexdigest()[:6]
    return cells / f"{agent_key(method, horizon, seed, s)}-m{magnitude:g}-{digest}.json"


def evaluate_cell(agent: BaseAgent | None, env: str, s: Setting, magnitude: float, path: Path) -> dict[str, Any]:
    """Success, reward and compute of ``agent`` at one perturbation magnitude (cached at ``path``;
    ``agent`` may be None only where that cell exists)."""
    if path.exists():
        return json.loads(path.read_text())
    if agent is None:
        raise ValueError(f"no agent to evaluate and no cell at {path}")
    result = evaluate(
        agent, env_factory(env, s, magnitude), s.episodes, seed=10_000, n_envs=s.n_envs, deterministic=s.deterministic, count_flops=False, progress=False
    )
    successes = [r for r in result.episodes if r["is_success"]]
    cell = {
        "success_rate": result.success_rate,
        "success_ci95": list(result.success_ci95),
        "mean_max_reward": result.mean_max_reward,
        "max_reward_sem": float(np.std([r["max_reward"] for r in result.episodes], ddof=1) / math.sqrt(s.episodes)) if s.episodes > 1 else 0.0,
        "mean_length": result.mean_length,
        "queries_per_episode": result.diffusion_queries_per_episode,
        "predict_ms_per_step": result.predict_time_per_step * 1e3,
        # Fig 19: the agent's own compute per episode (predict time x steps), env time excluded.
        "compute_s_per_episode": result.predict_time_per_step * result.mean_length,
        "compute_s_per_successful_episode": (
            result.predict_time_per_step * float(np.mean([r["length"] for r in successes])) if successes else None
        ),
        "episodes": result.episodes,
    }
    common.write_json(path.parent, path.stem, cell)
    return cell


def drops(rows: list[dict[str, Any]], metric: str) -> dict[tuple[str, float], dict[str, Any]]:
    """Per (method, magnitude) evaluated at two horizons or more: the best horizon, its value and
    the drop from it at every horizon."""
    out: dict[tuple[str, float], dict[str, Any]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        for magnitude in dict.fromkeys(r["magnitude"] for r in rows):
            cells = [r for r in rows if r["method"] == method and r["magnitude"] == magnitude and r["horizon"] is not None]
            if len(cells) < 2:  # one horizon: no drop to speak of
                continue
            best = max(cells, key=lambda r: r[metric])
            out[(method, magnitude)] = {
                "best_horizon": best["horizon"], "best": best[metric],
                "drop": {r["horizon"]: best[metric] - r[metric] for r in cells},
            }  # fmt: skip
    return out


def aggregate(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over training seeds, one row per (method, horizon, magnitude)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["method"], c["horizon"], c["magnitude"]), []).append(c)
    rows = []
    for (method, horizon, magnitude), group in groups.items():
        row = {"method": method, "horizon": horizon, "magnitude": magnitude, "train_seeds": len(group)}
        for k in ("success_rate", "mean_max_reward", "mean_length", "queries_per_episode", "compute_s_per_episode"):
            row[k] = float(np.mean([c[k] for c in group]))
        episodes = [e for c in group for e in c["episodes"]]
        row["episodes"] = len(episodes)
        row["success_ci95"] = list(wilson_interval(sum(e["is_success"] for e in episodes), len(episodes)))
        rewards = [e["max_reward"] for e in episodes]
        row["max_reward_sem"] = float(np.std(rewards, ddof=1) / math.sqrt(len(rewards))) if len(rewards) > 1 else 0.0
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=("tiny", "quick", "standard", "paper"))
    p.add_argument("--env", choices=(*PUSHT_OBS, "lift", "can"), default="pusht")
    p.add_argument("--methods", nargs="+", default=None, help="subset of the env's methods")
    p.add_argument("--horizons", nargs="+", type=int, default=None, help="subset of the profile's action horizons (a part of the sweep)")
    p.add_argument("--vae-steps", type=int, default=None, metavar="N",
                   help="a recipe probe: the latent methods' VAE stage trains N gradient steps instead of the profile's "
                        "(agents and cells are keyed apart; the JSON is named ...-vaeN)")  # fmt: skip
    p.add_argument("--diffusion-steps", type=int, default=None, metavar="N",
                   help="a recipe probe: the latent methods' latent-diffusion stage trains N gradient steps instead of the "
                        "profile's (agents and cells are keyed apart; the JSON is named ...-diffN)")  # fmt: skip
    p.add_argument("--dp-steps", type=int, default=None, metavar="N",
                   help="a recipe probe: DP trains N gradient steps instead of the profile's (JSON named ...-dpN)")
    p.add_argument("--keep-best-vae", action="store_true",
                   help="a recipe probe: the latent methods' VAE ends with its lowest-validation weights "
                        "(learn's keep_best_validation; JSON named ...-bestvae)")  # fmt: skip
    p.add_argument("--no-train-eval", action="store_true",
                   help="a recipe probe: no in-training evaluation, the last (EMA) weights are kept; for training on a "
                        "machine without the simulator (keyed apart; JSON named ...-noeval)")  # fmt: skip
    p.add_argument("--deterministic", action="store_true",
                   help="an acting probe: the same agents act with predict(..., deterministic=True), the sampling noise fixed "
                        "per env (SB3's evaluate_policy default); cells keyed apart, JSON named ...-det")  # fmt: skip
    p.add_argument("--train-seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="training seeds instead of the profile's (standard: 0); rows average over them, cells and agents "
                        "are kept per seed, so `--train-seeds 0 1` reuses seed 0's and trains seed 1 (JSON named ...-seeds0-1)")  # fmt: skip
    p.add_argument("--train-only", action="store_true",
                   help="train (or find in the cache) the agents that have no cells yet, then stop: another machine "
                        "(e.g. a GPU) trains, and a run here with its cache entries evaluates")  # fmt: skip
    args = p.parse_args(argv)
    common.setup(args)
    s = setting(args.env, args.profile)
    budgets = (("--vae-steps", "vae_steps", args.vae_steps), ("--diffusion-steps", "diffusion_steps", args.diffusion_steps), ("--dp-steps", "steps", args.dp_steps))
    for flag, stage, steps in budgets:
        if steps is not None:
            try:
                s = with_steps(s, stage, steps)
            except ValueError as e:
                p.error(f"{flag}: {e} (profile {args.profile})")
    if args.keep_best_vae:
        s = dataclasses.replace(s, keep_best_vae=True)
    if args.no_train_eval:
        s = dataclasses.replace(s, train_eval=False)
    if args.deterministic:
        s = dataclasses.replace(s, deterministic=True)
    if args.train_seeds:
        if len(set(args.train_seeds)) != len(args.train_seeds) or min(args.train_seeds) < 0:
            p.error(f"--train-seeds needs distinct seeds >= 0 (got {args.train_seeds})")
        s = dataclasses.replace(s, train_seeds=tuple(args.train_seeds))
    methods = tuple(args.methods or s.methods)
    unknown = set(methods) - set(s.methods)
    if unknown:
        p.error(f"--methods {sorted(unknown)} not run on {args.env}; choose from {s.methods}")
    sweep = s  # the whole sweep of this recipe; `s` becomes this run's part of it
    if args.horizons:
        if set(args.horizons) - set(s.horizons):
            p.error(f"--horizons {sorted(set(args.horizons) - set(s.horizons))} not in the {args.profile} profile's {s.horizons}")
        s = dataclasses.replace(s, horizons=tuple(h for h in s.horizons if h in args.horizons))
    run = f"horizon-{args.env}-{args.profile}"
    cache = Path(args.out) / "cache" / run  # trained agents and resumable training state (git-ignored)
    cells_dir = Path(args.out) / "cells" / run  # evaluated cells (committed)
    logs = Path(args.out) / "logs" / run if s.eval_every else None  # learning curves (committed)
    start = time.perf_counter()
    data: list[tuple[Any, float]] = []  # the demonstrations, collected (or loaded) once an agent must train

    def dataset() -> Any:
        if not data:
            data.append(demonstrations(s, args.profile))
        return data[0][0]

    cells, training = [], []
    for seed in s.train_seeds:
        for method in methods:
            for horizon in s.horizons if method in HORIZON_METHODS else (None,):
                paths = {m: cell_path(cells_dir, method, horizon, seed, s, m) for m in s.magnitudes}
                if all(path.exists() for path in paths.values()):  # evaluated before (e.g. in another checkout): no retraining
                    agent, seconds = None, recorded_train_seconds(method, horizon, seed, s, cache, logs)
                else:
                    agent, seconds = trained_agent(method, horizon, s, seed, dataset(), cache, args.device, args.env, logs)
                training.append({"method": method, "horizon": horizon, "seed": seed, "train_seconds": seconds})
                if args.train_only:
                    print(f"{method:7s} H_a={horizon or '-':>4}: trained ({seconds or 0:.0f} s), {cache / agent_key(method, horizon, seed, s)}.ckpt", flush=True)
                    continue
                for magnitude in s.magnitudes:
                    cell = evaluate_cell(agent, args.env, s, magnitude, paths[magnitude])
                    cells.append({"method": method, "horizon": horizon, "magnitude": magnitude, "seed": seed, **cell})
                    print(
                        f"{method:7s} H_a={horizon or '-':>4} {magnitude:>5g} {s.unit}: success {cell['success_rate']:.0%}, "
                        f"max reward {cell['mean_max_reward']:.3f}", flush=True,
                    )  # fmt: skip
                path = decoded_path(cells_dir, method, horizon, seed, s)
                if method in DECODED_METHODS and s.decoded_demos and not path.exists():
                    # Where the agent is at hand (trained now, or in the cache): agents evaluated in an
                    # earlier session whose cache is gone keep no decoded cell, and are not retrained for one.
                    if agent is None:
                        agent = cached_agent(method, horizon, s, seed, cache, args.device)
                    if agent is not None:
                        cell = decoded_cell(agent, dataset(), args.env, s, path)
                        print(f"{method:7s} H_a={horizon:>4} decoded from {s.decoded_demos} demonstrations: success {cell['success_rate']:.0%}, "
                              f"max reward {cell['mean_max_reward']:.3f}", flush=True)  # fmt: skip
    if args.train_only:
        return {"training": training}
    # A part's results hold every cell of its recipe evaluated so far (this part's and earlier
    # parts'), so parts run one after another add up instead of each overwriting the last.
    part = {(c["method"], c["horizon"], c["seed"]) for c in cells}
    earlier, training_earlier, partial = assembled_cells(sweep, cells_dir, cache, logs, skip=part)
    cells, training = sort_cells(cells + earlier, sweep), training + training_earlier
    rows = aggregate(cells)
    decoded = decoded_rows(sweep, cells_dir)
    shown = tuple(h for h in sweep.horizons if any(r["horizon"] == h for r in rows)) or s.horizons
    s = dataclasses.replace(s, horizons=shown)
    methods = tuple(dict.fromkeys(r["method"] for r in rows))
    data_seconds = data[0][1] if data else 0.0
    results = {
        "benchmark": "horizon", "env": s.env_id, "profile": args.profile, "machine": common.machine(), "methods": list(methods),
        "horizons": list(s.horizons), "magnitudes": list(s.magnitudes), "unit": s.unit, "p": s.p, "episodes_per_cell": s.episodes,
        "train_seeds": list(s.train_seeds), "num_demos": s.num_demos, "dataset_seconds": data_seconds, "training": training,
        "agent_kwargs": s.agent_kwargs, "rows": rows,
        "drops": {metric: [{"method": m, "magnitude": mag, **d} for (m, mag), d in drops(rows, metric).items()]
                  for metric in ("success_rate", "mean_max_reward")},
        "decoded": decoded, "cells": cells, "seconds": time.perf_counter() - start, "partial": partial,
    }  # fmt: skip
    name = common.result_name(f"horizon-{args.env}", args.profile, partial, probe_tag(args.vae_steps, args.dp_steps, args.keep_best_vae, args.no_train_eval, args.deterministic, args.train_seeds, diffusion_steps=args.diffusion_steps))
    json_path = common.write_json(args.out, name, results)
    png_paths = plot(rows, s, args.out, name)
    print_tables(rows, s)
    print_decoded(decoded, rows, s)
    print(f"\n{results['seconds']:.0f} s (demonstrations {data_seconds:.0f} s); wrote {json_path}, {', '.join(map(str, png_paths))}")
    return results


def cached_agent(method: str, horizon: int | None, s: Setting, seed: int, cache: Path, device: str) -> BaseAgent | None:
    """The trained agent from ``cache``, or None where it is not there (nothing is trained)."""
    path = cache / f"{agent_key(method, horizon, seed, s)}.ckpt"
    return BaseAgent.load(path, device=device) if path.exists() else None


def decoded_path(cells: Path, method: str, horizon: int | None, seed: int, s: Setting) -> Path:
    """File of an agent's decoded-policy cell (committed, beside its evaluated cells)."""
    return cells / f"{agent_key(method, horizon, seed, s)}-decoded{s.decoded_demos}.json"


def decoded_cell(agent: BaseAgent, dataset: Any, env: str, s: Setting, path: Path) -> dict[str, Any]:
    """The paper's "VAE-decoded" bar (Fig 17b / 19), cached at ``path``: the policies decoded from
    the posterior means of the first ``s.decoded_demos`` demonstrations, each rolled out without
    perturbation from its demonstration's own reset seed (:func:`lwd_gym.reconstruction_rollout`;
    re-decoded every ``H_a`` steps from that demonstration's snippets).  No diffusion is involved,
    so beside the sampled agent's cell it tells a weak VAE from a weak latent diffusion."""
    if path.exists():
        return json.loads(path.read_text())
    n = min(s.decoded_demos, dataset.total_episodes)
    result = reconstruction_rollout(agent, dataset, env_factory(env, s, 0.0), episodes=range(n), other_seeds=False)
    rewards = [e["max_reward"] for e in result.episodes]
    cell = {
        "success_rate": result.own_success, "success_ci95": list(result.own_ci95), "mean_max_reward": float(np.mean(rewards)),
        "max_reward_sem": float(np.std(rewards, ddof=1) / math.sqrt(n)) if n > 1 else 0.0, "demonstrations": n, "episodes": result.episodes,
    }  # fmt: skip
    common.write_json(path.parent, path.stem, cell)
    return cell


def decoded_rows(sweep: Setting, cells_dir: Path) -> list[dict[str, Any]]:
    """Every committed decoded-policy cell of the sweep's agents, without the per-episode records."""
    rows = []
    for seed in sweep.train_seeds:
        for method in (m for m in sweep.methods if m in DECODED_METHODS):
            for horizon in sweep.horizons:
                path = decoded_path(cells_dir, method, horizon, seed, sweep)
                if path.exists():
                    cell = json.loads(path.read_text())
                    rows.append({"method": method, "horizon": horizon, "seed": seed, **{k: v for k, v in cell.items() if k != "episodes"}})
    return rows


def print_decoded(decoded: list[dict[str, Any]], rows: list[dict[str, Any]], s: Setting) -> None:
    """Decoded (VAE only) against sampled (the agent as users run it), unperturbed."""
    if not decoded:
        return
    sampled = {(r["method"], r["horizon"]): r for r in rows if r["magnitude"] == s.magnitudes[0]}
    table = [{**d, "sampled_success": sampled.get((d["method"], d["horizon"]), {}).get("success_rate"),
              "sampled_reward": sampled.get((d["method"], d["horizon"]), {}).get("mean_max_reward")} for d in decoded]  # fmt: skip
    print(f"\nVAE-decoded policies from the demonstrations' own seeds vs the sampled agent ({s.env_id}, no perturbation)\n")
    print(common.format_table(table, [
        ("method", "method", "{}"), ("H_a", "horizon", "{}"), ("demonstrations", "demonstrations", "{}"),
        ("decoded success", "success_rate", "{:.0%}"), ("decoded max reward", "mean_max_reward", "{:.3f}"),
        ("sampled success", "sampled_success", "{:.0%}"), ("sampled max reward", "sampled_reward", "{:.3f}"),
    ]))  # fmt: skip


def assembled_cells(sweep: Setting, cells_dir: Path, cache: Path, logs: Path | None, skip: set[tuple]) -> tuple[list, list, bool]:
    """The committed cells of ``sweep``'s agents other than ``skip`` ((method, horizon, seed)),
    with their agents' recorded training seconds, and whether some agent of the sweep has none yet."""
    cells, training, missing = [], [], False
    for seed in sweep.train_seeds:
        for method in sweep.methods:
            for horizon in sweep.horizons if method in HORIZON_METHODS else (None,):
                if (method, horizon, seed) in skip:
                    continue
                paths = {m: cell_path(cells_dir, method, horizon, seed, sweep, m) for m in sweep.magnitudes}
                if not all(path.exists() for path in paths.values()):
                    missing = True
                    continue
                seconds = recorded_train_seconds(method, horizon, seed, sweep, cache, logs)
                training.append({"method": method, "horizon": horizon, "seed": seed, "train_seconds": seconds})
                cells += [{"method": method, "horizon": horizon, "magnitude": m, "seed": seed, **json.loads(path.read_text())}
                          for m, path in paths.items()]  # fmt: skip
    return cells, training, missing


def sort_cells(cells: list[dict[str, Any]], sweep: Setting) -> list[dict[str, Any]]:
    """``cells`` in the sweep's order: method, horizon, magnitude, training seed."""
    order = {m: i for i, m in enumerate(sweep.methods)}
    return sorted(cells, key=lambda c: (order[c["method"]], c["horizon"] or 0, c["magnitude"], c["seed"]))


def probe_tag(
    vae_steps: int | None, dp_steps: int | None, keep_best_vae: bool = False, no_train_eval: bool = False, deterministic: bool = False,
    train_seeds: Sequence[int] | None = None, *, diffusion_steps: int | None = None,
) -> str:
    """The results' name tag of a probe: ``vaeN``, ``diffN`` (the latent diffusion's steps), ``dpN``, ``bestvae``,
    ``noeval``, ``det``, ``seedsA-B`` (other training seeds), joined by ``-`` (e.g. ``vaeN-dpM``), or none."""
    budgets = (("vae", vae_steps), ("diff", diffusion_steps), ("dp", dp_steps))
    parts = [f"{name}{n}" for name, n in budgets if n is not None]
    flags = (("bestvae", keep_best_vae), ("noeval", no_train_eval), ("det", deterministic))
    seeds = ["seeds" + "-".join(map(str, train_seeds))] if train_seeds else []
    return "-".join(parts + [tag for tag, on in flags if on] + seeds)


def print_tables(rows: list[dict[str, Any]], s: Setting) -> None:
    """Per metric: one row per (method, magnitude), one column per horizon, then the drop at the longest."""
    longest = s.horizons[-1]
    for metric, title, fmt in (("success_rate", "success rate", "{:.0%}"), ("mean_max_reward", "mean max reward", "{:.2f}")):
        table, d = [], drops(rows, metric)
        for method in dict.fromkeys(r["method"] for r in rows):
            for magnitude in s.magnitudes:
                cells = {r["horizon"]: r for r in rows if r["method"] == method and r["magnitude"] == magnitude}
                line: dict[str, Any] = {"method": method, "magnitude": f"{magnitude:g} {s.unit}"}
                for h in s.horizons:
                    cell = cells.get(h, cells.get(None))
                    line[f"H{h}"] = None if cell is None else fmt.format(cell[metric])
                    if cell is not None and metric == "mean_max_reward":
                        line[f"H{h}"] += f" ± {cell['max_reward_sem']:.2f}"
                if (method, magnitude) in d:
                    line["best"] = f"H_a={d[(method, magnitude)]['best_horizon']}"
                    drop = d[(method, magnitude)]["drop"].get(longest)  # None where this method lacks that horizon
                    line["drop"] = None if drop is None else fmt.format(drop)
                table.append(line)
        columns = [("method", "method", "{}"), ("perturbation", "magnitude", "{}")]
        columns += [(f"H_a={h}", f"H{h}", "{}") for h in s.horizons] + [("best H_a", "best", "{}"), (f"drop at H_a={longest}", "drop", "{}")]
        note = " ± standard error" if metric == "mean_max_reward" else ""
        print(f"\n{title}{note} ({s.env_id}, p = {s.p} per step, {s.episodes} episodes x {len(s.train_seeds)} training seeds per cell; MLP/Random have no horizon)\n")
        print(common.format_table(table, columns))
    compute = [r for r in rows if r["magnitude"] == s.magnitudes[0]]
    print("\ncompute per episode (predict time x episode length, no perturbation), s\n")
    table = []
    for method in dict.fromkeys(r["method"] for r in compute):
        cells = {r["horizon"]: r for r in compute if r["method"] == method}
        table.append({"method": method, **{f"H{h}": cell["compute_s_per_episode"] for h in s.horizons if (cell := cells.get(h, cells.get(None)))}})
    print(common.format_table(table, [("method", "method", "{}")] + [(f"H_a={h}", f"H{h}", "{:.3f}") for h in s.horizons]))


def plot(rows: list[dict[str, Any]], s: Setting, out: str, name: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(2, len(s.magnitudes), figsize=(4.2 * len(s.magnitudes), 7), squeeze=False, sharey="row")
    for j, magnitude in enumerate(s.magnitudes):
        for i, (metric, label) in enumerate((("success_rate", "success rate"), ("mean_max_reward", "mean max reward"))):
            ax = axes[i, j]
            for method in methods:
                cells = [r for r in rows if r["method"] == method and r["magnitude"] == magnitude]
                if cells[0]["horizon"] is None:  # no horizon: a flat line
                    ax.axhline(cells[0][metric], linestyle="--", label=method, color=_color(method))
                    continue
                cells.sort(key=lambda r: r["horizon"])
                x, y = [r["horizon"] for r in cells], np.array([r[metric] for r in cells])
                ax.plot(x, y, marker="o", label=method, color=_color(method))
                # Bands: 95 % Wilson interval of the success rate; +-1 standard error of the reward.
                if metric == "success_rate":
                    low, high = np.array([r["success_ci95"] for r in cells]).T
                else:
                    sem = np.array([r["max_reward_sem"] for r in cells])
                    low, high = y - sem, y + sem
                ax.fill_between(x, low, high, color=_color(method), alpha=0.12, linewidth=0)
            ax.set(xscale="log", xticks=list(s.horizons), xticklabels=[str(h) for h in s.horizons], xlabel="action horizon $H_a$",
                   ylabel=label if j == 0 else None, title=f"perturbation {magnitude:g} {s.unit}" if i == 0 else None)  # fmt: skip
            ax.set_ylim(-0.03, 1.03)
            ax.minorticks_off()
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{s.env_id}: horizon x perturbation (p = {s.p})")
    paths = [common.save_figure(fig, out, name)]
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    for method in methods:
        cells = sorted((r for r in rows if r["method"] == method and r["magnitude"] == s.magnitudes[0] and r["horizon"] is not None),
                       key=lambda r: r["horizon"])  # fmt: skip
        if cells:
            ax.plot([r["horizon"] for r in cells], [r["compute_s_per_episode"] for r in cells], marker="o", label=method, color=_color(method))
    ax.set(xscale="log", yscale="log", xlabel="action horizon $H_a$", ylabel="agent compute per episode (s)", title=f"{s.env_id} (Fig 19 view)")
    ax.legend(fontsize=8)
    paths.append(common.save_figure(fig, out, f"{name}-time"))
    plt.close(fig)
    return paths


def _color(method: str) -> str:
    return {"LWD": "C0", "LWD+WM": "C4", "DP": "C1", "LDP": "C2", "MLP": "C3", "Random": "C7"}[method]


if __name__ == "__main__":
    main()
