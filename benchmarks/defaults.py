"""Defaults as a new user meets them (issue #22, item 1): every agent built with only what the data
calls for, ``learn(dataset)`` with no budget, on a two-paths task that is not the demo's.

    python -m benchmarks.defaults --profile quick --threads 1     # ~20 CPU minutes
    python -m benchmarks.defaults --profile tiny                  # smoke test (seconds)

The task: ``lwd_gym/Bimodal-v0`` with a slower point (``max_step=0.035`` instead of the demo's
0.05, so ~50-step episodes instead of ~34), its scripted expert passing the obstacle on the left
or the right with probability 1/2, ``demos`` seeded expert episodes.  The issue's measurement on a
task like this: LWD with the constructor defaults and only ``action_horizon=16`` reached 3 %
after 800 + 800 gradient steps, before budgets had a floor.

Agents (constructor defaults plus the one argument the data calls for): ``LWDAgent(action_horizon=16)``,
``LDPAgent(action_horizon=16)``, ``DPAgent(action_horizon=8)``, ``MLPAgent()``; each trains its
default budget (``<stage>_epochs``, at least ``lwd_gym.training.MIN_STEPS`` per stage) and is
evaluated on ``episodes`` seeded episodes next to the uniform-random floor.  Writes
``defaults-bimodal.json`` (steps per stage, last validation losses, success with Wilson
intervals, left / right / collision shares, training seconds).

Resumable, like the other sweeps: each agent's row is a cell under ``--out/cells/defaults`` (keyed by
a hash of its *full* config, defaults included, the budget floor and the data, so changing a
default re-runs only what it touches), its learning curves go to ``--out/logs/defaults/<key>``
(committed) and an interrupted training resumes from ``--out/cache/defaults/<key>-state``.
``--only LWD,MLP`` runs a part of the sweep; the JSON lists every finished row.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from benchmarks import common
from lwd_gym import DPAgent, LDPAgent, LWDAgent, MLPAgent, RandomAgent, evaluate
from lwd_gym.data.collect import rollout_episodes, write_minari_dataset
from lwd_gym.envs.bimodal import ENV_ID, BimodalExpert
from lwd_gym.evaluation import wilson_interval
from lwd_gym.training import MIN_STEPS

ENV_KWARGS = {"max_step": 0.035}  # not the demo's geometry: a slower point, longer episodes
EVAL_SEED = 10_000

PROFILES: dict[str, dict[str, Any]] = {
    "tiny": dict(demos=4, episodes=4, agents={"LWD": dict(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs"),
                                             "MLP": dict(hidden=(8,))}, steps=2),  # fmt: skip
    "quick": dict(demos=300, episodes=100, agents={"LWD": dict(action_horizon=16), "LDP": dict(action_horizon=16),
                                                   "DP": dict(action_horizon=8), "MLP": {}}, steps=None),  # fmt: skip
}
CLASSES = {"LWD": LWDAgent, "LDP": LDPAgent, "DP": DPAgent, "MLP": MLPAgent}


def dataset(n: int, progress: bool) -> Any:
    """``n`` seeded expert episodes of the slower task (made once, then loaded)."""
    import minari

    dataset_id = f"bench/bimodal-slow/expert{n}-v0"
    if dataset_id in minari.list_local_datasets():
        return minari.load_dataset(dataset_id)
    env = gym.make(ENV_ID, **ENV_KWARGS)
    expert = BimodalExpert(max_step=ENV_KWARGS["max_step"])
    try:
        buffers, success = rollout_episodes(env, expert, n, seed=0, progress=progress, desc="bimodal-slow expert", episode_info=lambda: {"expert_side": expert.side})
    finally:
        env.close()
    return write_minari_dataset(dataset_id, buffers, env, algorithm_name="lwd_gym scripted expert (bimodal, max_step 0.035)",
                                description=f"Two-paths task with max_step=0.035; {len(buffers)} of {n} episodes succeeded ({success:.3f}).")  # fmt: skip


def row(name: str, agent: Any, episodes: int, seconds: float | None) -> dict[str, Any]:
    result = evaluate(agent, ENV_ID, episodes, seed=EVAL_SEED, n_envs=10, env_kwargs=ENV_KWARGS, info_keys=("side", "is_collision"), count_flops=False, progress=False)
    wins = round(result.success_rate * episodes)
    side = np.array([r.get("side", 0) for r in result.episodes])
    collision = np.array([bool(r.get("is_collision", False)) for r in result.episodes])
    log = getattr(agent, "training_log", None)
    stages = {s.stage: {"steps": len(s.rows), "last_val_loss": (lambda v: float(v[-1]) if len(v) else None)(s.validation()[1])} for s in log} if log else {}
    return {
        "agent": name, "success_rate": result.success_rate, "success_ci95": wilson_interval(wins, episodes), "episodes": episodes,
        "left": float(np.mean(side < 0)), "right": float(np.mean(side > 0)), "collision": float(collision.mean()),
        "stages": stages, "train_seconds": seconds,
        "config": agent.config.to_dict() if hasattr(agent, "config") else None,
    }  # fmt: skip


def agent_cell(name: str, kwargs: dict[str, Any], data: Any, cfg: dict[str, Any], args: Any, progress: bool) -> dict[str, Any]:
    """``name``'s row: read from its cell if a previous run finished it, else trained (resumably) and evaluated."""
    agent = CLASSES[name](**kwargs, device=args.device, seed=0)
    train = {"steps": cfg["steps"], "min_steps": MIN_STEPS, "episodes": cfg["episodes"], "eval_seed": EVAL_SEED}
    key = common.cache_key(name.lower(), agent.config, train, [data.spec.dataset_id, data.total_episodes])
    out = Path(args.out)
    cell = out / "cells" / "defaults" / f"{key}.json"
    if cell.exists():
        return json.loads(cell.read_text())
    state = out / "cache" / "defaults" / f"{key}-state"
    start = time.perf_counter()
    agent.learn(data, progress_bar=progress, log_dir=out / "logs" / "defaults" / key, checkpoint_dir=state,
                **({} if cfg["steps"] is None else {"steps": cfg["steps"]}))  # fmt: skip
    result = {**row(name, agent, cfg["episodes"], time.perf_counter() - start), "key": key}
    common.write_json(cell.parent, cell.stem, result)
    shutil.rmtree(state, ignore_errors=True)  # only needed to resume an unfinished training
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=tuple(PROFILES))
    p.add_argument("--only", type=lambda v: [x for x in v.split(",") if x], default=None, help="comma-separated agents (e.g. LWD,MLP): a part of the sweep")
    args = p.parse_args(argv)
    common.setup(args)
    cfg = PROFILES[args.profile]
    unknown = sorted(set(args.only or ()) - set(cfg["agents"]))
    if unknown:
        raise SystemExit(f"--only: unknown agent(s) {unknown}; this profile has {', '.join(cfg['agents'])}")
    progress = args.profile != "tiny"
    data = dataset(cfg["demos"], progress)
    rows = []
    for name, kwargs in cfg["agents"].items():
        if args.only and name not in args.only:
            continue
        rows.append(agent_cell(name, kwargs, data, cfg, args, progress))
        print(common.format_table(rows[-1:], [("agent", "agent", "{}"), ("success", "success_rate", "{:.1%}")]))
    env = gym.make(ENV_ID, **ENV_KWARGS)
    floor = RandomAgent(env.observation_space, env.action_space, device="cpu")
    env.close()
    rows.append(row("Random", floor, cfg["episodes"], None))
    results = {"benchmark": "defaults-bimodal", "profile": args.profile, "machine": common.machine(), "env": ENV_ID, "env_kwargs": ENV_KWARGS,
               "demos": cfg["demos"], "eval_seed": EVAL_SEED, "min_steps": MIN_STEPS, "only": args.only, "rows": rows}  # fmt: skip
    path = common.write_json(args.out, "defaults-bimodal" if args.profile == "quick" else f"defaults-bimodal-{args.profile}", results)
    print(common.format_table(rows, [
        ("agent", "agent", "{}"), ("success", "success_rate", "{:.1%}"), ("95% CI", "success_ci95", "[{0[0]:.2f}, {0[1]:.2f}]"),
        ("left", "left", "{:.0%}"), ("right", "right", "{:.0%}"), ("collision", "collision", "{:.0%}"), ("train s", "train_seconds", "{:.0f}"),
    ]))  # fmt: skip
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
