"""Speed: acting latency, diffusion-query latency per sampler, VAE training throughput, FLOPs/step.

    python -m benchmarks.speed --profile quick      # ~5 CPU minutes on a fast host, ~20 on a slow one
    python -m benchmarks.speed --profile paper      # more repeats, GPU numbers when CUDA is present

Agents have Metaworld's sizes (39-d state, 4-d action; LWD's generated policy 39->256->256->4)
and are trained for a few steps on a synthetic dataset: latency depends on network sizes only.
Writes ``speed.json`` and ``speed.png`` under ``--out`` and prints the tables.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from benchmarks import common
from lwd_gym import DPAgent, LWDAgent, MLPAgent
from lwd_gym.data import SnippetDataset, load_demonstrations
from lwd_gym.nn.diffusion import GRAPH_SAFE_SAMPLERS
from lwd_gym.nn.generated_policy import GeneratedMLP

PROFILES: dict[str, dict[str, Any]] = {
    "tiny": dict(obs=6, act=2, hidden=(16, 16), latent=16, hypernet="xs", lwd_unet="xs", dp_sizes=("xs",), dp_steps=4,
                 envs=(1, 8), repeats=1, samplers=(("ddim", 2), ("dpmsolver++", 2), ("ddpm", 4)), train_batch=16, snippet=8),
    "quick": dict(obs=39, act=4, hidden=(256, 256), latent=256, hypernet="s", lwd_unet="s", dp_sizes=("s", "m", "l"), dp_steps=100,
                  envs=(1, 64), repeats=5, samplers=(("ddpm", 100), ("ddim", 5), ("ddim", 10), ("ddim", 20), ("dpmsolver++", 5), ("dpmsolver++", 10)),
                  train_batch=256, snippet=32),
}  # fmt: skip
PROFILES["paper"] = {**PROFILES["quick"], "repeats": 20}


class PerSamplePolicy(GeneratedMLP):
    """Reference for the training-throughput comparison: the generated policy run one sample at a time."""

    def __call__(self, flat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return torch.cat([super(PerSamplePolicy, self).__call__(flat[i : i + 1], obs[i : i + 1]) for i in range(len(flat))])


def make_agents(cfg: dict[str, Any], dataset: Any, device: str) -> dict[str, Any]:
    lwd = LWDAgent(action_horizon=32, snippet_length=cfg["snippet"], latent_dim=cfg["latent"], policy_hidden=cfg["hidden"],
                   hypernet_size=cfg["hypernet"], denoiser_size=cfg["lwd_unet"], batch_size=cfg["train_batch"],
                   scheduler="dpmsolver++", num_inference_steps=10, device=device)  # fmt: skip
    agents: dict[str, Any] = {"LWD": lwd.learn(dataset, vae_steps=2, diffusion_steps=2, progress_bar=False)}
    agents["MLP"] = MLPAgent(hidden=cfg["hidden"], device=device).learn(dataset, steps=2, progress_bar=False)
    for size in cfg["dp_sizes"]:
        dp = DPAgent(action_horizon=8, prediction_horizon=16, denoiser_size=size, num_inference_steps=cfg["dp_steps"], device=device)
        agents[f"DP-{size}"] = dp.learn(dataset, steps=2, progress_bar=False)
    return agents


def acting(agents: dict[str, Any], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-call latency between plans, latency of a call where every env re-plans, and the
    per-step cost amortised over the action horizon."""
    rows = []
    rng = np.random.default_rng(0)
    for name, agent in agents.items():
        for n in cfg["envs"]:
            obs = rng.normal(0, 1, (n, cfg["obs"])).astype(np.float32)
            starts = np.ones(n, bool)
            agent.action_horizon = agent.max_action_horizon or 10**9
            step, step_mean = _between_plans(agent, obs, cfg["repeats"], 200 if n == 1 else 20)
            plan_repeats = max(1, cfg["repeats"] // (5 if name.startswith("DP") else 1))
            plan = common.median_time(lambda: agent.predict(obs, episode_start=starts), repeats=plan_repeats, warmup=1)
            horizon = {"LWD": 32, "MLP": 1}.get(name, 8)
            per_step = step + (plan - step) / horizon if name != "MLP" else step
            rows.append({
                "agent": name, "n_envs": n, "action_horizon": horizon, "step_us": step * 1e6, "step_mean_us": step_mean * 1e6, "step_us_per_env": step * 1e6 / n,
                "plan_ms": plan * 1e3, "amortised_us_per_env_step": per_step * 1e6 / n,
            })  # fmt: skip
            agent.reset()
    return rows


def _between_plans(agent: Any, obs: np.ndarray, repeats: int, calls: int) -> tuple[float, float]:
    """Median and mean seconds of a ``predict`` call that does not re-plan, each call timed on its
    own, in SB3's call pattern (``episode_start`` all false): every group of calls follows an (untimed)
    plan and stays within the action horizon.
    (The mean includes the slower first calls after a plan, e.g. while torch's threads wind down.)"""
    calls = min(calls, agent.action_horizon - 1) if agent.max_action_horizon else calls
    running = np.zeros(len(obs), bool)  # SB3's evaluate_policy and lwd_gym.evaluate pass episode_start at every step
    times = []
    for group in range(repeats + 1):
        agent.predict(obs, episode_start=np.ones(len(obs), bool))
        for _ in range(calls):
            start = time.perf_counter()
            agent.predict(obs, episode_start=running)
            if group:  # the first group warms up
                times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.mean(times))


def host_vs_torch(agent: LWDAgent, cfg: dict[str, Any]) -> dict[str, float]:
    """The between-plan step with the host (numpy) path vs the torch path, 1 env (same agent)."""
    obs = np.random.default_rng(1).normal(0, 1, (1, cfg["obs"])).astype(np.float32)
    out = {}
    for label, on_host in (("host_us", True), ("torch_us", False)):
        probe = copy.copy(agent)
        probe.act_on_host = on_host
        probe.reset()
        probe.action_horizon = 10**9
        out[label] = _between_plans(probe, obs, cfg["repeats"], 500)[0] * 1e6
    return out


def sampler_latency(agent: LWDAgent, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """One diffusion query (sample + hypernetwork decode) of LWD's latent model per sampler and
    step count; on CUDA each deterministic sampler with and without its CUDA graph."""
    rows = []
    saved = agent.scheduler, agent.num_inference_steps
    on_cuda = agent.device.type == "cuda"
    for n in cfg["envs"]:
        states = torch.randn(n, cfg["obs"], device=agent.device)
        for scheduler, steps in cfg["samplers"]:
            agent.scheduler, agent.num_inference_steps = scheduler, steps
            graphable = on_cuda and scheduler in GRAPH_SAFE_SAMPLERS
            for graphs in (True, False) if graphable else (False,):
                agent.diffusion.cuda_graphs = graphs
                seconds = common.median_time(lambda: agent.sample_policies(states), repeats=cfg["repeats"])
                row = {"sampler": f"{scheduler}-{steps}", "n_envs": n, "query_ms": seconds * 1e3}
                rows.append({**row, "cuda_graph": graphs} if on_cuda else row)
    agent.diffusion.cuda_graphs = True
    agent.scheduler, agent.num_inference_steps = saved
    return rows


def training_throughput(agent: LWDAgent, dataset: Any, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """VAE gradient steps/s with the batched generated-policy forward vs a per-sample loop, and the
    share of each step spent fetching the batch (the data pipeline)."""
    demos = load_demonstrations(dataset)
    snippets = SnippetDataset(demos, cfg["snippet"], agent.obs_normalizer, agent.action_normalizer).to(agent.device)  # as fit() does
    rows = []
    for label, policy_cls in (("batched", GeneratedMLP), ("per-sample loop", PerSamplePolicy)):
        vae = copy.deepcopy(agent.vae).train()
        vae.policy = policy_cls(*[vae.policy.sizes[0], vae.policy.sizes[1:-1], vae.policy.sizes[-1]])
        optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-4)
        generator = torch.Generator(agent.device).manual_seed(0)
        order = torch.randperm(len(snippets), generator=torch.Generator().manual_seed(0))
        fetch, total, steps = 0.0, 0.0, max(2, cfg["repeats"])
        for i in range(steps + 1):
            t0 = time.perf_counter()
            index = order[(i * cfg["train_batch"]) % len(order) :][: cfg["train_batch"]]
            batch = snippets.get_batch(index.to(agent.device))
            t1 = time.perf_counter()
            loss, _ = vae.loss(batch["states"], batch["actions"], agent.kl_coef, generator, batch["mask"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if i > 0:  # the first step warms up
                fetch, total = fetch + (t1 - t0), total + (time.perf_counter() - t0)
        rows.append({"forward": label, "snippets_per_s": steps * len(index) / total, "data_share": fetch / total})
    rows[0]["speedup"] = rows[0]["snippets_per_s"] / rows[1]["snippets_per_s"]
    return rows


def flops(agents: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, agent in agents.items():
        horizons = (32, 500) if name == "LWD" else (8,) if name.startswith("DP") else (1,)
        for h in horizons:
            agent.action_horizon = h
            rows.append({"agent": name, "action_horizon": h, "gflops_per_step": agent.flops_per_step() / 1e9})
        agent.reset()
    lwd = next(r for r in rows if r["agent"] == "LWD" and r["action_horizon"] == 32)["gflops_per_step"]
    for r in rows:
        r["ratio_to_lwd_32"] = r["gflops_per_step"] / lwd
    return rows


def plot(results: dict[str, Any], out_dir: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for n, ax in zip(sorted({r["n_envs"] for r in results["acting"]}), axes[:2]):
        rows = [r for r in results["acting"] if r["n_envs"] == n]
        ax.bar([r["agent"] for r in rows], [r["amortised_us_per_env_step"] for r in rows], color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(f"amortised latency per env-step, {n} env(s)")
        ax.set_ylabel("us (log)")
    rows = [r for r in results["samplers"] if r.get("cuda_graph", True) or r["sampler"].split("-")[0] not in GRAPH_SAFE_SAMPLERS]
    n0 = min(r["n_envs"] for r in rows)
    axes[2].bar([r["sampler"] for r in rows if r["n_envs"] == n0], [r["query_ms"] for r in rows if r["n_envs"] == n0], color="tab:orange")
    axes[2].set_title(f"LWD diffusion query (+decode), {n0} env")
    axes[2].set_ylabel("ms")
    axes[2].tick_params(axis="x", rotation=30)
    return common.save_figure(fig, out_dir, "speed")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    common.setup(args)
    cfg = PROFILES[args.profile]
    dataset = common.synthetic_dataset(f"bench/synthetic-{cfg['obs']}x{cfg['act']}-v0", cfg["obs"], cfg["act"], episodes=20, length=100)
    agents = make_agents(cfg, dataset, args.device)
    results: dict[str, Any] = {"benchmark": "speed", "profile": args.profile, "machine": common.machine(), "device": str(agents["LWD"].device)}
    results["acting"] = acting(agents, cfg)
    results["host_vs_torch_1env"] = host_vs_torch(agents["LWD"], cfg)
    results["samplers"] = sampler_latency(agents["LWD"], cfg)
    results["training"] = training_throughput(agents["LWD"], dataset, cfg)
    results["flops"] = flops(agents)
    json_path = common.write_json(args.out, "speed", results)
    png_path = plot(results, args.out)

    m = results["machine"]
    print(f"\nspeed ({args.profile}) on {m['cpu']} ({m['cpu_cores']} cores, {m['torch_threads']} torch threads), device {results['device']}\n")
    print(common.format_table(results["acting"], [
        ("agent", "agent", "{}"), ("envs", "n_envs", "{}"), ("H_a", "action_horizon", "{}"), ("step us/call (median)", "step_us", "{:.1f}"), ("(mean)", "step_mean_us", "{:.1f}"),
        ("step us/env", "step_us_per_env", "{:.2f}"), ("plan ms", "plan_ms", "{:.2f}"), ("amortised us/env-step", "amortised_us_per_env_step", "{:.1f}"),
    ]))  # fmt: skip
    hv = results["host_vs_torch_1env"]
    print(f"\nLWD step between re-samples, 1 env: host {hv['host_us']:.1f} us vs torch {hv['torch_us']:.1f} us ({hv['torch_us'] / hv['host_us']:.1f}x)\n")
    graph_column = [("CUDA graph", "cuda_graph", "{}")] if results["device"].startswith("cuda") else []
    print(common.format_table(results["samplers"], [("sampler", "sampler", "{}"), ("envs", "n_envs", "{}"), *graph_column, ("query ms", "query_ms", "{:.2f}")]))
    print()
    print(common.format_table(results["training"], [("VAE forward", "forward", "{}"), ("snippets/s", "snippets_per_s", "{:.0f}"), ("data share", "data_share", "{:.1%}"), ("speed-up", "speedup", "{:.1f}x")]))
    print()
    print(common.format_table(results["flops"], [("agent", "agent", "{}"), ("H_a", "action_horizon", "{}"), ("GFLOPs/step", "gflops_per_step", "{:.4g}"), ("x LWD(H_a=32)", "ratio_to_lwd_32", "{:.1f}")]))
    print(f"\nwrote {json_path} and {png_path}")
    return results


if __name__ == "__main__":
    main()
