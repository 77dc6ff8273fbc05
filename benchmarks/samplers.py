"""Success vs denoising steps per sampler (DDPM, DDIM, DPM-Solver++) for one trained LWD agent.

    python -m benchmarks.samplers --profile quick               # two-paths env, ~6 CPU minutes
    python -m benchmarks.samplers --profile quick --env pusht   # PushT (longer: trains on expert data)
    python -m benchmarks.samplers --profile standard --env pusht --threads 1  # a competent PushT agent (~15 min; ~30 more if it is not cached)

All samplers share the one model trained with the 100-step DDPM schedule; only the sampling
loop changes.  Picks the fastest setting that is >= 8x faster per query than DDPM-100 with a
success rate within 2 points of it and a mean max reward within 0.02 (see :func:`pick_setting`).  The trained agent is cached (and its training resumable)
under ``--out/cache``.  Writes ``samplers-ENV.json`` / ``.png`` (``samplers-ENV-PROFILE`` for the standard and paper profiles).

The standard profile (issue #22) samples agents trained to competence: on the two-paths task the
demo's LWD (100 % success with DDPM-100 over the paper profile's 500 episodes); on PushT horizon.py's standard LWD at ``H_a`` 16 with
its probe's VAE budget (``python -m benchmarks.horizon --profile standard --methods LWD
--horizons 16 --vae-steps 1500``: 0.76 coverage), the very agent of that sweep's cache (loaded
if that sweep trained it, else trained here into it, with its learning curves).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import common, horizon
from lwd_gym import BaseAgent, LWDAgent, evaluate
from lwd_gym.demo import DEMO_STEPS, demo_agents

SETTINGS = {
    "tiny": [("ddpm", 4), ("ddim", 2), ("dpmsolver++", 2)],
    "quick": [("ddpm", 100), ("ddim", 2), ("ddim", 5), ("ddim", 10), ("ddim", 20), ("dpmsolver++", 2), ("dpmsolver++", 5), ("dpmsolver++", 10)],
}
SETTINGS["paper"] = SETTINGS["quick"] + [("ddim", 50), ("dpmsolver++", 20)]
SETTINGS["standard"] = SETTINGS["quick"]
EPISODES = {"tiny": 4, "quick": 100, "standard": 100, "paper": 500}
#: the one table of this benchmark's agents, per env: config, demonstrations per profile, budget
#: (None: the config's epochs; the two-paths agent is the demo's, hyperparameters from lwd_gym.demo)
AGENTS: dict[str, dict[str, Any]] = {
    "bimodal": dict(config=None, episodes={"tiny": 10, "quick": 200, "standard": 200, "paper": 200}, steps=dict(DEMO_STEPS["LWD"])),
    "pusht": dict(
        config=dict(action_horizon=16, latent_dim=64, hypernet_size="xs", policy_hidden=(256, 256), denoiser_size="xs", vae_lr=1e-3,
                    diffusion_lr=3e-3, vae_epochs=10, diffusion_epochs=10, seed=0),
        episodes={"tiny": 2, "quick": 100, "paper": 100}, steps={},
    ),
}  # fmt: skip
TINY_STEPS = dict(vae_steps=2, diffusion_steps=2)


#: PushT's standard agent: horizon.py's (method, H_a) at the standard profile with the probe's VAE budget
HORIZON_AGENT = ("LWD", 16)


def horizon_setting() -> horizon.Setting:
    """horizon.py's standard PushT setting that :data:`HORIZON_AGENT` is trained with."""
    return horizon.with_vae_steps(horizon.setting("pusht", "standard"), horizon.PROBE_VAE_STEPS["pusht"])


def trained_agent(env: str, profile: str, out: str, device: str) -> tuple[BaseAgent, str]:
    """The LWD agent for ``env`` (trained once, then loaded from the cache, named by its full
    config, budget and data) and the env id to run."""
    env_id = {"bimodal": "lwd_gym/Bimodal-v0", "pusht": "gym_pusht/PushT-v0"}[env]
    if env == "pusht" and profile == "standard":
        s, (method, h) = horizon_setting(), HORIZON_AGENT
        run = "horizon-pusht-standard"  # horizon.py's own cache and logs: one agent, whichever benchmark trains it
        dataset, _ = horizon.demonstrations(s, profile)
        agent, _ = horizon.trained_agent(method, h, s, 0, dataset, Path(out) / "cache" / run, device, "pusht", Path(out) / "logs" / run)
        return agent, env_id
    table = AGENTS[env]
    agent = demo_agents(seed=0, device=device)["LWD"] if table["config"] is None else LWDAgent(table["config"], device=device)
    episodes, steps = table["episodes"][profile], dict(TINY_STEPS if profile == "tiny" else table["steps"])
    cache = Path(out) / "cache" / f"{common.cache_key(f'samplers-{env}-{profile}', agent.config, steps, {'source': env, 'episodes': episodes, 'seed': 0})}.ckpt"
    if cache.exists():
        return BaseAgent.load(cache, device=device), env_id
    dataset = common.demonstrations(env, episodes, seed=0, progress=profile != "tiny")  # the "bimodal" / "pusht" collect sources
    steps.setdefault("progress_bar", profile != "tiny")
    agent.learn(dataset, checkpoint_dir=cache.parent / f"{cache.stem}-state", **steps)
    agent.save(cache)
    return agent, env_id


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=tuple(EPISODES))
    p.add_argument("--env", choices=("bimodal", "pusht"), default="bimodal")
    args = p.parse_args(argv)
    common.setup(args)
    agent, env_id = trained_agent(args.env, args.profile, args.out, args.device)
    episodes = EPISODES[args.profile]
    probe = torch.zeros(1, agent.state_space.shape[0], device=agent.device)
    rows = []
    for scheduler, steps in SETTINGS[args.profile]:
        agent.scheduler, agent.num_inference_steps = scheduler, steps
        query = common.median_time(lambda: agent.sample_policies(probe), repeats=5 if args.profile != "tiny" else 1)
        result = evaluate(agent, env_id, episodes, seed=10_000, n_envs=10 if episodes >= 10 else 1, count_flops=False, progress=False)
        rows.append({
            "sampler": scheduler, "steps": steps, "query_ms": query * 1e3, "success_rate": result.success_rate,
            "success_ci95": list(result.success_ci95), "mean_max_reward": result.mean_max_reward,
        })  # fmt: skip
        print(f"{scheduler:12s} {steps:4d} steps: success {result.success_rate:.1%}, query {query * 1e3:.2f} ms", flush=True)
    reference = next(r for r in rows if r["sampler"] == "ddpm")
    for r in rows:
        r["speedup_vs_ddpm"] = reference["query_ms"] / r["query_ms"]
    pick = pick_setting(rows)
    results = {
        "benchmark": "samplers", "env": env_id, "profile": args.profile, "episodes_per_setting": episodes, "machine": common.machine(),
        "reference": f"ddpm-{reference['steps']}", "rows": rows, "pick": None if pick is None else f"{pick['sampler']}-{pick['steps']}",
    }  # fmt: skip
    name = common.result_name(f"samplers-{args.env}", args.profile)
    json_path = common.write_json(args.out, name, results)
    png_path = plot(rows, env_id, args.out, name)
    print(f"\nLWD on {env_id}: success vs denoising steps ({episodes} seeded episodes each)\n")
    print(common.format_table(rows, [
        ("sampler", "sampler", "{}"), ("steps", "steps", "{}"), ("success", "success_rate", "{:.1%}"), ("95% CI", "success_ci95", "[{0[0]:.1%}, {0[1]:.1%}]"),
        ("mean max reward", "mean_max_reward", "{:.3f}"), ("query ms", "query_ms", "{:.2f}"), ("x faster than DDPM", "speedup_vs_ddpm", "{:.1f}"),
    ]))  # fmt: skip
    print(f"\npick (>= 8x faster than {results['reference']}, success within 2 points, mean max reward within 0.02): {results['pick']}")
    print(f"wrote {json_path} and {png_path}")
    return results


def pick_setting(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest setting >= 8x faster per query than the DDPM reference whose success rate is
    within 2 points of it *and* whose mean max reward (PushT: coverage) is within 0.02: with
    quickly trained agents PushT success is ~0 everywhere, and coverage still tells them apart."""
    reference = next(r for r in rows if r["sampler"] == "ddpm")
    eligible = [
        r for r in rows
        if reference["query_ms"] / r["query_ms"] >= 8
        and r["success_rate"] >= reference["success_rate"] - 0.02
        and r["mean_max_reward"] >= reference["mean_max_reward"] - 0.02
    ]  # fmt: skip
    return min(eligible, key=lambda r: r["query_ms"]) if eligible else None


def plot(rows: list[dict[str, Any]], env_id: str, out: str, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        pts = [r for r in rows if r["sampler"] == sampler]
        style = dict(marker="o", label=sampler, linestyle="-" if len(pts) > 1 else "none")
        ax1.plot([r["steps"] for r in pts], [r["success_rate"] for r in pts], **style)
        ax2.plot([r["query_ms"] for r in pts], [r["success_rate"] for r in pts], **style)
    ax1.set(xscale="log", xlabel="denoising steps", ylabel="success rate", title=f"LWD on {env_id}")
    ax2.set(xscale="log", xlabel="diffusion query (+decode) ms, 1 env", ylabel="success rate")
    ax1.legend()
    return common.save_figure(fig, out, name)


if __name__ == "__main__":
    main()
