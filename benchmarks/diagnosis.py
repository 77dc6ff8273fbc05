"""Metaworld-10 diagnosis of LWD with one policy per episode: which stage fails?

    python -m benchmarks.diagnosis --profile standard --threads 1     # ~50 CPU minutes, resumable
    python -m benchmarks.diagnosis --profile tiny                      # smoke test (seconds)

The issue's setting (H_a = snippet = 500, ``condition_on="task"``, hypernetwork xs, generated
256x256 MLP, 2,000 VAE + 2,000 diffusion steps at batch 32, 50 scripted demonstrations per task)
reached 31 % success where a BC MLP reached 99 %.  The standard profile now trains the VAE on
whole episodes (``vae_windows="plan_starts"``) and the latent diffusion with UNet s at lr 3e-4
for 6,000 steps (benchmarks/README.md has both runs).  Three rollouts separate the stages:

* **own seed** (:func:`lwd_gym.reconstruction_rollout`): the policy decoded from a demonstration's
  posterior mean, from that demonstration's reset seed.  Low: the VAE does not reproduce its
  own episodes.
* **other seed**: the same policy from another demonstration's seed of the task (other goal and
  object layout).  Own high but other low: the policy baked its episode's goal into its
  weights instead of reading it from the state.
* **sampled**: the agent as users run it, ``z ~ p(z | task)`` from the latent diffusion.  Own and
  other high but sampled low: the diffusion stage (or the latents it is trained on) is at fault.

Writes ``--out/diagnosis-metaworld.json`` (per task and overall, with Wilson intervals, the
training-log summary and settings) and the stages' learning curves as CSV under
``--out/cache/diagnosis/<key>-logs``.  The trained agent is cached (resumable training state).
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.metaworld import EVAL_SEED, demonstrations
from lwd_gym import BaseAgent, LWDAgent, LWDConfig, evaluate, reconstruction_rollout
from lwd_gym.envs.metaworld import PAPER_TASKS, make_metaworld_env
from lwd_gym.evaluation import wilson_interval

PROFILES: dict[str, dict[str, Any]] = {
    "tiny": dict(tasks=("reach", "handle-press"), demos=2, replay=1, episodes=1, latent=16, latent_length=8, width=16, hypernet="xs",
                 vae_windows="plan_starts", diffusion="xs", diffusion_lr=3e-4, vae_steps=2, diffusion_steps=2, batch=4),  # fmt: skip
    "standard": dict(tasks=PAPER_TASKS, demos=50, replay=10, episodes=10, latent=256, latent_length=16, width=256, hypernet="xs",
                     vae_windows="plan_starts", diffusion="s", diffusion_lr=3e-4, vae_steps=2000, diffusion_steps=6000, batch=32),  # fmt: skip
}


def agent_params(cfg: dict[str, Any]) -> dict[str, Any]:
    return dict(
        action_horizon=500, snippet_length=500, latent_dim=cfg["latent"], latent_length=cfg["latent_length"],
        policy_hidden=[cfg["width"], cfg["width"]], hypernet_size=cfg["hypernet"], vae_windows=cfg["vae_windows"],
        denoiser_size=cfg["diffusion"], condition_on="task", batch_size=cfg["batch"], vae_lr=3e-4, diffusion_lr=cfg["diffusion_lr"], seed=0,
    )  # fmt: skip


def rate(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    wins = sum(bool(r["is_success"]) for r in records)
    return {"success": wins / max(1, len(records)), "ci95": wilson_interval(wins, len(records)) if records else None, "n": len(records)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = common.parser(__doc__.splitlines()[0], profiles=tuple(PROFILES), default="standard").parse_args(argv)
    common.setup(args)
    cfg = PROFILES[args.profile]
    out, progress = Path(args.out), args.profile != "tiny"
    cache = out / "cache" / "diagnosis"
    cache.mkdir(parents=True, exist_ok=True)
    tasks = list(cfg["tasks"])
    datasets, expert = demonstrations(tasks, cfg["demos"], progress)
    params, train = agent_params(cfg), dict(vae_steps=cfg["vae_steps"], diffusion_steps=cfg["diffusion_steps"])
    config = LWDConfig(**params)
    key = common.cache_key("lwd-task", config, train, {"tasks": tasks, "demos": cfg["demos"]})
    ckpt, logs = cache / f"{key}.ckpt", cache / f"{key}-logs"
    start = time.perf_counter()
    if ckpt.exists():
        agent = BaseAgent.load(ckpt, device=args.device)
        summary = json.loads((cache / f"{key}.json").read_text())["log"]
    else:
        agent = LWDAgent(config, device=args.device)
        agent.learn(datasets, checkpoint_dir=cache / f"{key}-state", checkpoint_every=500, log_dir=logs, progress_bar=progress, **train)
        agent.save(ckpt)
        summary = agent.training_log.summary()
        common.write_json(cache, key, {"log": summary, "train_seconds": time.perf_counter() - start})
        shutil.rmtree(cache / f"{key}-state", ignore_errors=True)
    train_seconds = json.loads((cache / f"{key}.json").read_text())["train_seconds"]

    # Replay the first `replay` demonstrations of each task (own and next demonstration's seed).
    from lwd_gym.data.demonstrations import load_demonstrations

    demos = load_demonstrations(datasets)
    replay = [i for t in range(len(tasks)) for i in [j for j in range(len(demos)) if demos.tasks[j] == t][: cfg["replay"]]]
    factories = [lambda t=t: make_metaworld_env(t) for t in tasks]
    t0 = time.perf_counter()
    recon = reconstruction_rollout(agent, demos, factories, episodes=replay, stop_on_success=True)
    recon_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampled = {}
    for i, task in enumerate(tasks):
        result = evaluate(agent, lambda i=i, task=task: make_metaworld_env(task, i, len(tasks)), cfg["episodes"], seed=EVAL_SEED,
                          n_envs=min(10, cfg["episodes"]), count_flops=False, progress=False)  # fmt: skip
        sampled[task] = result.episodes
    sampled_seconds = time.perf_counter() - t0

    per_task = {}
    for i, task in enumerate(tasks):
        per_task[task] = {
            "own": rate([r for r in recon.episodes if r["task"] == i and r["kind"] == "own"]),
            "other": rate([r for r in recon.episodes if r["task"] == i and r["kind"] == "other"]),
            "sampled": rate(sampled[task]),
        }
    overall = {
        "own": rate([r for r in recon.episodes if r["kind"] == "own"]),
        "other": rate([r for r in recon.episodes if r["kind"] == "other"]),
        "sampled": rate([r for task in tasks for r in sampled[task]]),
    }
    payload = {
        "benchmark": "diagnosis-metaworld", "profile": args.profile, "settings": {**cfg, "agent": params, "train": train},
        "expert_success": expert, "overall": overall, "per_task": per_task, "training_log": summary,
        "timings": {"train_seconds": train_seconds, "reconstruction_seconds": recon_seconds, "sampled_seconds": sampled_seconds},
        "log_dir": str(logs), "machine": common.machine(),
    }  # fmt: skip
    if args.profile != "tiny":
        common.write_json(out, "diagnosis-metaworld", payload)
    rows = [{"task": t, **{k: f"{v['success']:.0%}" for k, v in per_task[t].items()}} for t in tasks]
    rows.append({"task": "all", **{k: f"{v['success']:.0%}" for k, v in overall.items()}})
    print(common.format_table(rows, [("task", "task", "{}"), ("own seed", "own", "{}"), ("other seed", "other", "{}"), ("sampled", "sampled", "{}")]))
    return payload


if __name__ == "__main__":
    main()
