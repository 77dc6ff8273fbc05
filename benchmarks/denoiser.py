"""UNet vs transformer denoiser (paper Fig 7): LWD's latent denoiser, and DP's, on PushT at H_a = 16.

    python -m benchmarks.denoiser --profile quick               # LWD and DP, each with both denoisers
    python -m benchmarks.denoiser --profile quick --methods LWD --train-seeds 0 1 2
    python -m benchmarks.denoiser --profile standard --threads 1 --methods LWD --denoisers transformer  # a part
    python -m benchmarks.denoiser --profile standard --threads 1 --methods LWD --transformer-size s  # a size probe

Everything but the denoiser is benchmarks/horizon.py's agent for that profile: same
demonstrations, constructor arguments, gradient steps and evaluation (its :func:`setting`,
:func:`trained_agent`, :func:`evaluate_cell`), at ``H_a`` = 16.  The UNet agents are therefore
horizon.py's LWD and DP at ``H_a`` = 16 (same cache names and seeds, so the same training, redone
in this benchmark's own cache so that the two never write the same files); the transformer ones add ``denoiser="transformer"`` with the same size preset name
(:data:`~lwd_gym.nn.TRANSFORMER_PRESETS`: "xs" = 2 layers x 64, "s" = 4 x 128, "m" = 8 x 256,
Diffusion Policy's low-dim transformer; bidirectional attention, see
:mod:`lwd_gym.nn.transformer`).  The two denoisers of a size do not have equal parameter
counts; both are reported.  ``--transformer-size`` probes another transformer preset against the
same UNets: its agents are labelled ``METHOD-Transformer-SIZE`` where the size is not the method's
own, and the run writes ``denoiser-pusht[-PROFILE]-transformer-SIZE[-partial]``, beside (not over)
the grid's results.

Reported per (method, denoiser): success rate and mean max reward (PushT: coverage) at each
perturbation magnitude of the profile, the denoiser's parameter count, the latency of one
diffusion query (one sample with the agent's sampler and steps, 1 env, median of repeats,
without LWD's hypernetwork decode) and the training seconds (both stages for LWD).  Trained
agents and evaluated cells are cached under ``--out/cache/denoiser-pusht-PROFILE/``.  Writes
``denoiser-pusht.json`` and ``denoiser-pusht.png``.

Standard profile (issue #22): horizon.py's standard agents at ``H_a`` = 16, LWD with the
VAE-budget probe's steps (:data:`~benchmarks.horizon.PROBE_VAE_STEPS`), each trained to
competence with its learning curves.  They live in horizon.py's own standard cache, cells and
logs (``horizon-pusht-standard``), so the UNet agents are that sweep's (``--horizons 16``, with
``--vae-steps`` for LWD) and no agent is trained twice; ``--methods`` / ``--denoisers`` run a
part.  Each agent's size, query latency and training seconds go to ``<key>-denoiser.json`` beside
its cells (committed at the standard profile), so a part's results hold every agent of the grid
evaluated so far, its own and earlier parts', and an agent with cells and info is not retrained
in a checkout without the cache.  Writes ``denoiser-pusht-standard[-partial].json`` / ``.png`` (the paper profile: ``denoiser-pusht-paper``).
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import common
from benchmarks.horizon import PROBE_VAE_STEPS, Setting, agent_key, aggregate, cell_path, demonstrations, evaluate_cell, setting, trained_agent, with_vae_steps
from lwd_gym import BaseAgent
from lwd_gym.nn import TRANSFORMER_PRESETS

HORIZON = 16
METHODS = ("LWD", "DP")
DENOISERS = ("unet", "transformer")


def variant(s: Setting, method: str, denoiser: str, transformer_size: str | None = None) -> Setting:
    """``s`` with ``method``'s agent using ``denoiser``.  The UNet leaves the arguments untouched,
    so its cache name (and agent) is horizon.py's; the transformer takes the method's size preset
    unless ``transformer_size`` names another."""
    if denoiser == "unet":
        return s
    kwargs = dict(s.agent_kwargs[method], denoiser=denoiser)
    if transformer_size is not None:
        kwargs["denoiser_size"] = transformer_size
    return dataclasses.replace(s, agent_kwargs={**s.agent_kwargs, method: kwargs})


def profile_setting(profile: str) -> Setting:
    """horizon.py's PushT setting for ``profile`` (standard: LWD with the probe's VAE budget)."""
    s = setting("pusht", profile)
    return with_vae_steps(s, PROBE_VAE_STEPS["pusht"]) if profile == "standard" else s


def locations(profile: str, out: str) -> tuple[Path, Path, Path | None]:
    """(trained agents, evaluated cells, learning curves) of ``profile``: the standard profile's
    are horizon.py's standard sweep's (committed cells and curves), the others this benchmark's cache."""
    if profile == "standard":
        run = "horizon-pusht-standard"
        return Path(out) / "cache" / run, Path(out) / "cells" / run, Path(out) / "logs" / run
    cache = Path(out) / "cache" / f"denoiser-pusht-{profile}"
    return cache, cache, None


def denoiser_params(agent: BaseAgent) -> int:
    """Parameters of the agent's denoiser (UNet or transformer) alone."""
    return sum(p.numel() for p in agent.diffusion.denoiser.parameters())


def query_seconds(agent: BaseAgent, profile: str) -> float:
    """Median seconds of one diffusion query for 1 env (the agent's sampler and steps)."""
    diffusion = agent.diffusion
    device = next(diffusion.parameters()).device
    cond = torch.zeros(1, diffusion.cond_dim, device=device) if diffusion.cond_dim else None
    generator = torch.Generator(device).manual_seed(0)

    def query() -> torch.Tensor:
        return diffusion.sample(cond, 1, num_inference_steps=agent.num_inference_steps, scheduler=agent.scheduler, generator=generator)

    tiny = profile == "tiny"
    return common.median_time(query, repeats=1 if tiny else 7, number=1 if tiny else 5)


def label(method: str, denoiser: str, size: str | None = None) -> str:
    """``METHOD-UNet`` / ``METHOD-Transformer``, then ``-SIZE`` for a size other than the method's own."""
    return f"{method}-{'UNet' if denoiser == 'unet' else 'Transformer'}" + (f"-{size}" if size else "")


def info_path(cells: Path, method: str, seed: int, sv: Setting) -> Path:
    """File of an agent's size, cost and training seconds, beside its evaluated cells (committed at
    the standard profile), so a later part reports the agent without it."""
    return cells / f"{agent_key(method, HORIZON, seed, sv)}-denoiser.json"


def agent_info(agent: BaseAgent, method: str, denoiser: str, seed: int, s: Setting, sv: Setting, seconds: float, profile: str) -> dict[str, Any]:
    """Size, cost and training seconds of ``method``'s agent in ``sv``, the variant of ``s`` that
    uses ``denoiser`` (its label names the size where it is not the method's own in ``s``)."""
    kwargs = sv.agent_kwargs[method]
    own = kwargs.get("denoiser_size") == s.agent_kwargs[method].get("denoiser_size")
    return {
        "label": label(method, denoiser, None if own else kwargs["denoiser_size"]), "method": method, "denoiser": denoiser, "seed": seed, "size": kwargs.get("denoiser_size", kwargs.get("size")),
        "sample_shape": list(agent.diffusion.sample_shape), "denoiser_params": denoiser_params(agent),
        "query_ms": query_seconds(agent, profile) * 1e3, "train_seconds": seconds,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=("tiny", "quick", "standard", "paper"))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--denoisers", nargs="+", choices=DENOISERS, default=list(DENOISERS))
    p.add_argument("--train-seeds", type=int, nargs="+", default=None, help="training seeds (default: the profile's; quick: 0)")
    p.add_argument("--transformer-size", choices=tuple(TRANSFORMER_PRESETS), default=None,
                   help="the transformers' size preset (default: each method's own); a probe with its own result file")  # fmt: skip
    args = p.parse_args(argv)
    common.setup(args)
    s = profile_setting(args.profile)
    if args.train_seeds:
        s = dataclasses.replace(s, train_seeds=tuple(args.train_seeds))
    cache, cells_dir, logs = locations(args.profile, args.out)
    start = time.perf_counter()
    data: list[tuple[Any, float]] = []  # the demonstrations, collected (or loaded) once an agent must train

    def dataset() -> Any:
        if not data:
            data.append(demonstrations(s, args.profile))
        return data[0][0]

    # The whole grid, so that parts run one after another add up: an agent outside this part is
    # reported from its committed cells and info, an agent of this part is trained (or loaded) only
    # where those are missing.
    cells, agents, missing = [], [], False
    for seed in s.train_seeds:
        for method in METHODS:
            for denoiser in DENOISERS:
                sv = variant(s, method, denoiser, args.transformer_size)
                paths = {m: cell_path(cells_dir, method, HORIZON, seed, sv, m) for m in s.magnitudes}
                info = info_path(cells_dir, method, seed, sv)
                done = info.exists() and all(path.exists() for path in paths.values())
                if not done and not (method in args.methods and denoiser in args.denoisers):
                    missing = True
                    continue
                agent = None
                if done:
                    record = json.loads(info.read_text())
                else:
                    agent, seconds = trained_agent(method, HORIZON, sv, seed, dataset(), cache, args.device, "pusht", logs)
                    record = agent_info(agent, method, denoiser, seed, s, sv, seconds, args.profile)
                    common.write_json(info.parent, info.stem, record)
                agents.append(record)
                name = record["label"]
                for magnitude in s.magnitudes:
                    cell = evaluate_cell(agent, "pusht", sv, magnitude, paths[magnitude])
                    cells.append({"method": name, "horizon": HORIZON, "magnitude": magnitude, "seed": seed, **cell})
                    print(
                        f"{name:16s} {magnitude:>5g} {s.unit}: success {cell['success_rate']:.0%}, max reward {cell['mean_max_reward']:.3f}",
                        flush=True,
                    )  # fmt: skip
    rows = []
    for row in aggregate(cells):  # means over training seeds; "method" is the label here
        mine = [a for a in agents if a["label"] == row["method"]]
        row = {"label": row.pop("method"), "method": mine[0]["method"], "denoiser": mine[0]["denoiser"], **row}
        row["denoiser_params"] = mine[0]["denoiser_params"]
        for k in ("query_ms", "train_seconds"):
            row[k] = float(np.mean([a[k] for a in mine]))
        rows.append(row)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    data_seconds = data[0][1] if data else 0.0
    results = {
        "benchmark": "denoiser", "env": s.env_id, "profile": args.profile, "machine": common.machine(), "action_horizon": HORIZON,
        "methods": methods, "denoisers": list(dict.fromkeys(r["denoiser"] for r in rows)), "magnitudes": list(s.magnitudes), "unit": s.unit,
        "transformer_size": args.transformer_size, "p": s.p, "episodes_per_cell": s.episodes, "train_seeds": list(s.train_seeds), "num_demos": s.num_demos, "train_steps": s.train_steps,
        "agent_kwargs": {m: s.agent_kwargs[m] for m in methods}, "dataset_seconds": data_seconds, "agents": agents, "rows": rows,
        "cells": cells, "seconds": time.perf_counter() - start, "partial": missing,
    }  # fmt: skip
    name = common.result_name("denoiser-pusht", args.profile, missing, f"transformer-{args.transformer_size}" if args.transformer_size else "")
    json_path = common.write_json(args.out, name, results)
    png_path = plot(rows, s, args.out, name)
    print(f"\n{s.env_id}, H_a = {HORIZON}: {s.episodes} episodes x {len(s.train_seeds)} training seeds per cell, p = {s.p} per step\n")
    print(table(rows, s))
    print(f"\n{results['seconds']:.0f} s (demonstrations {data_seconds:.0f} s); wrote {json_path}, {png_path}")
    return results


def table(rows: list[dict[str, Any]], s: Setting) -> str:
    """One markdown row per (method, denoiser): size, cost, then success / coverage per magnitude."""
    lines = []
    for name in dict.fromkeys(r["label"] for r in rows):
        mine = {r["magnitude"]: r for r in rows if r["label"] == name}
        first = next(iter(mine.values()))
        line: dict[str, Any] = {
            "label": name, "params": first["denoiser_params"] / 1e3, "query_ms": first["query_ms"], "train_s": first["train_seconds"],
        }  # fmt: skip
        for m, r in mine.items():
            line[f"success{m:g}"] = f"{r['success_rate']:.0%}"
            line[f"reward{m:g}"] = f"{r['mean_max_reward']:.3f} ± {r['max_reward_sem']:.3f}"
        lines.append(line)
    columns = [("agent", "label", "{}"), ("denoiser params (k)", "params", "{:.0f}"), ("query ms", "query_ms", "{:.2f}"), ("train s", "train_s", "{:.1f}")]
    for m in s.magnitudes:
        columns += [(f"success @{m:g} {s.unit}", f"success{m:g}", "{}"), (f"coverage @{m:g} {s.unit}", f"reward{m:g}", "{}")]
    return common.format_table(lines, columns)


def plot(rows: list[dict[str, Any]], s: Setting, out: str, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in rows))
    colors = {lab: f"C{i}" for i, lab in enumerate(labels)}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x, width = np.arange(len(s.magnitudes)), 0.8 / len(labels)
    for i, lab in enumerate(labels):
        mine = sorted((r for r in rows if r["label"] == lab), key=lambda r: r["magnitude"])
        offset = x + (i - (len(labels) - 1) / 2) * width
        success = np.array([r["success_rate"] for r in mine])
        low, high = np.array([r["success_ci95"] for r in mine]).T
        axes[0].bar(offset, success, width, yerr=[success - low, high - success], color=colors[lab], label=lab, capsize=3)
        reward = np.array([r["mean_max_reward"] for r in mine])
        axes[1].bar(offset, reward, width, yerr=[r["max_reward_sem"] for r in mine], color=colors[lab], label=lab, capsize=3)
        axes[2].scatter(mine[0]["denoiser_params"], mine[0]["query_ms"], color=colors[lab], label=lab, s=60)
    for ax, ylabel in ((axes[0], "success rate (95% CI)"), (axes[1], "mean max reward (coverage) ± SE")):
        ax.set(xticks=x, xticklabels=[f"{m:g} {s.unit}" for m in s.magnitudes], xlabel="perturbation", ylabel=ylabel, ylim=(0, 1.03))
    axes[2].set(xscale="log", xlabel="denoiser parameters", ylabel="diffusion query ms (1 env)", title="cost")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"{s.env_id}, H_a = {HORIZON}: UNet vs transformer denoiser")
    path = common.save_figure(fig, out, name)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
