"""Probe the latent diffusion stage of the Metaworld diagnosis agent (run after ``benchmarks.diagnosis``).

    python -m benchmarks.diagnosis_diffusion empirical                  # plans = the task's training latents
    python -m benchmarks.diagnosis_diffusion fit --steps 6000 --lr 3e-4 --batch 32 --size xs --windows plan-starts

Reuses the cached standard-profile agent's VAE (``results/cache/diagnosis``) and changes only
where plans come from, so the rates isolate the diffusion stage:

* ``cached``: the agent's own trained diffusion, optionally with another sampler
  (``--scheduler ddpm --inference-steps 100``);
* ``empirical``: a plan is a random training latent (posterior mean of an episode-start snippet)
  of the task, i.e. a diffusion that reproduced its training latents exactly;
* ``fit``: a fresh denoiser fitted to the latents of ``all`` windows (what the library did
  before) or of ``plan-starts`` only (what it does now for ``condition_on="task"``), with sampled
  success measured every ``--eval-every`` steps (5 episodes per task, evaluation seeds 10000+).

A scratch probe: it reaches into the agent's private encoding helpers on purpose.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["empirical", "cached", "fit"])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", default="xs")
    parser.add_argument("--windows", choices=["all", "plan-starts"], default="plan-starts")
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--agent", default=None, help="diagnosis checkpoint to probe (default: the newest under --out/cache/diagnosis)")
    parser.add_argument("--inference-steps", type=int, default=None, help="override the agent's sampling steps")
    parser.add_argument("--scheduler", default=None, help="override the agent's sampler (ddim, ddpm, ...)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task (empirical, cached)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("MINARI_DATASETS_PATH", str(Path(args.out).resolve() / "minari"))
    from benchmarks.metaworld import EVAL_SEED, demonstrations
    from lwd_gym import BaseAgent, evaluate
    from lwd_gym.data.demonstrations import load_demonstrations
    from lwd_gym.data.normalizer import Normalizer
    from lwd_gym.data.snippets import SnippetDataset
    from lwd_gym.envs.metaworld import PAPER_TASKS, make_metaworld_env
    from lwd_gym.nn.diffusion import ConditionalDiffusion
    from lwd_gym.training import fit

    cache = Path(args.out) / "cache" / "diagnosis"
    ckpts = [Path(args.agent)] if args.agent else sorted(cache.glob("lwd-task-*.ckpt"), key=lambda p: p.stat().st_mtime)[-1:]
    if not ckpts or not ckpts[0].is_file():
        raise SystemExit(f"no diagnosis agent under {cache}: run python -m benchmarks.diagnosis --profile standard first")
    print(f"probing {ckpts[0]}", flush=True)
    agent = BaseAgent.load(ckpts[0], device="cpu")
    if args.scheduler is not None:
        agent.scheduler = args.scheduler
    if args.inference_steps is not None:
        agent.num_inference_steps = args.inference_steps
    tasks = list(PAPER_TASKS)
    datasets, _ = demonstrations(tasks, 50, False)
    snippets = SnippetDataset(load_demonstrations(datasets), agent.snippet_length, agent.obs_normalizer, agent.action_normalizer)

    def sampled_success(episodes: int) -> float:
        agent.reset()
        wins = 0
        for i, task in enumerate(tasks):
            r = evaluate(agent, lambda i=i, task=task: make_metaworld_env(task, i, len(tasks)), episodes, seed=EVAL_SEED,
                         n_envs=min(10, episodes), count_flops=False, progress=False)  # fmt: skip
            wins += sum(bool(e["is_success"]) for e in r.episodes)
        return wins / (episodes * len(tasks))

    if args.mode == "empirical":
        starts = snippets.starting_every(agent.action_horizon)
        latents, _ = agent._encode_snippets(starts)
        task_of = starts.step_tasks[starts.begins]
        g = torch.Generator().manual_seed(0)
        agent.sample_latents = lambda states, t, deterministic=False, env_ids=None: torch.cat(
            [latents[task_of == k][torch.randint(int((task_of == k).sum()), (1,), generator=g)] for k in t.tolist()]
        )
        result = {"mode": "empirical", "agent": str(ckpts[0]), "success": sampled_success(args.episodes),
                  "episodes": args.episodes * len(tasks)}  # fmt: skip
    elif args.mode == "cached":
        result = {"mode": "cached", "agent": str(ckpts[0]), "scheduler": agent.scheduler,
                  "inference_steps": agent.num_inference_steps, "success": sampled_success(args.episodes),
                  "episodes": args.episodes * len(tasks)}  # fmt: skip
    else:
        windows = snippets.starting_every(agent.action_horizon) if args.windows == "plan-starts" else snippets
        latents, conds = agent._encode_snippets(windows)
        agent.latent_normalizer = Normalizer.fit(latents, mode="minmax")
        data = agent._latent_batches(latents, conds)
        torch.manual_seed(0)
        model = ConditionalDiffusion(agent.diffusion.sample_shape, agent.cond_dim, size=args.size)
        ema, curve, t0 = copy.deepcopy(model), [], time.perf_counter()

        def probe(module) -> float:
            agent.diffusion = module
            curve.append({"seconds": round(time.perf_counter() - t0), "success": sampled_success(5)})
            print(curve[-1], flush=True)
            return curve[-1]["success"]

        losses = np.array(fit(model, lambda b, step: model.loss(b["x0"], b.get("cond"), None), data, steps=args.steps,
                              batch_size=args.batch, lr=args.lr, generator=torch.Generator().manual_seed(0),
                              device=torch.device("cpu"), warmup_steps=500, ema_model=ema, progress=False,
                              evaluate=probe, eval_every=args.eval_every))  # fmt: skip
        result = {"mode": "fit", **{k: v for k, v in vars(args).items() if k not in ("mode", "out")}, "rows": len(data),
                  "curve": curve, "final_loss_mean_last_100": float(losses[-100:].mean())}  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
