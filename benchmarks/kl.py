"""KL-coefficient ablation on PushT (paper Fig 14/15): what beta_KL does to LWD's latent space and policy.

    python -m benchmarks.kl --profile quick                      # beta_KL in 1e-6, 1e-7, 1e-9, 1e-10, 0 (~5.5 min)
    python -m benchmarks.kl --profile quick --kl-coefs 1e-7 1e-9 # a subset (or other values)
    python -m benchmarks.kl --profile standard --threads 1      # agents trained to competence (~35 min per beta_KL here)
    python -m benchmarks.kl --profile paper                      # the paper's sizes and learning rates (GPU)

One LWD agent per beta_KL and training seed, all on the same PushT expert demonstrations
(``common.demonstrations("pusht", N, seed=0)``) minus the last 10 % of episodes, which are held
out; everything else is horizon.py's LWD at ``H_a`` = snippet length = 16 (its quick profile:
latent 64, hypernetwork "xs", generated policy 128x128, 200 + 200 gradient steps; its paper
profile: latent 256, batch 32, lr 3e-4 VAE / 1e-4 diffusion, 100 + 100 epochs; its standard
profile, issue #22: 200 demonstrations (180 trained on), hypernetwork xs, 256x256 policy, UNet
xs, DDPM-100, 1,500 VAE + 6,000 diffusion steps, one training seed, 50 test episodes, learning
curves under ``--out/logs/kl-pusht-standard/<key>``).

Reported per beta_KL (means over training seeds):

* VAE losses on every snippet window (as in training, padded steps masked) of the held-out and
  of the training episodes: BC-MSE of the generated policy for one posterior sample (the
  training loss term, seeded noise) and at the posterior mean (the latents the diffusion model
  is fitted to, so the policies the acting agent samples), and the KL to N(0, I) in nats.
* Latent statistics of the training windows' posteriors: mean posterior std sigma, spread of the
  posterior means (their std across windows, averaged over dimensions), spread / sigma (how many
  posterior widths the data's latents span: a scale-free resolution), and the effective
  dimensionality of the means (PCA components for 90 % of their variance; participation ratio).
* The full agent on seeded PushT episodes without perturbation, evaluated as horizon.py does:
  success rate (95 % Wilson interval) and mean max coverage (+- standard error over episodes).

Writes ``kl.json`` (every run's numbers, the aggregated rows, the plotted 2-D PCA coordinates)
and ``kl.png`` (top: PCA of the training-seed-0 agent's latents of non-overlapping snippets, one
panel per beta_KL, coloured by the snippet's first step within its episode; bottom: the
metrics vs beta_KL).  Trained agents are cached under ``--out/cache/kl-pusht-PROFILE/`` (training
resumable, git-ignored); each agent's evaluated cell and its measured metrics (with the plot's
points) are small JSONs under ``--out/cells/kl-pusht-PROFILE/`` (committed), so a rerun resumes
where it stopped and a fresh checkout assembles the results without agents or demonstrations.
``--kl-coefs`` runs a part of the sweep; its results also hold every other beta_KL whose cells are
committed, so parts add up.  The standard profile writes ``kl-standard.json`` (``-partial`` while
some beta_KL of the profile has no cells).
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import common, horizon
from benchmarks.latents import embed
from lwd_gym import LWDAgent
from lwd_gym.data.demonstrations import load_demonstrations
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.vae import masked_mse

METHOD = "LWD"  # horizon.py's method whose settings are ablated
METRIC_SEED = 12_345  # posterior noise of the sampled-BC metric (not a training seed)


@dataclass(frozen=True)
class Profile:
    """What the ablation sweeps and how much data / evaluation each profile gets."""

    kl_coefs: tuple[float, ...]
    horizon: int  # H_a = snippet length
    num_demos: int  # collected; the last held_out of them are not trained on
    held_out: int
    train_seeds: tuple[int, ...]
    episodes: int  # evaluation episodes per (beta_KL, training seed)
    vae_steps: int | None = None  # the VAE stage's gradient steps instead of horizon.py's profile's


PROFILES = {
    # Three demos: two to train on, one held out; 2-step training (horizon.py's tiny).
    "tiny": Profile((1e-7, 0.0), 8, 3, 1, (0,), 2),
    # Two training seeds: horizon.py's quick coverage of one agent varied by ~0.1 between
    # neighbouring horizons, so one seed could not separate beta_KL's effect from training noise.
    "quick": Profile((1e-6, 1e-7, 1e-9, 1e-10, 0.0), 16, 100, 10, (0, 1), 50),
    # horizon.py's standard LWD with the VAE budget its probe supported on PushT (0.76 coverage in
    # 29.6 min vs 0.83 in ~79 min with 6,000 steps), so the five agents fit ~3 h; one training seed.
    "standard": Profile((1e-6, 1e-7, 1e-9, 1e-10, 0.0), 16, 200, 20, (0,), 50, vae_steps=horizon.PROBE_VAE_STEPS["pusht"]),
    "paper": Profile((1e-6, 1e-7, 1e-9, 1e-10, 0.0), 16, 200, 20, (0, 1, 2), 500),
}


def kl_setting(profile: str, cfg: Profile, kl_coef: float) -> horizon.Setting:
    """horizon.py's PushT setting reduced to LWD at one horizon and no perturbation, with ``kl_coef``.

    ``source`` names the training split: it enters the trained agent's cache key."""
    base = horizon.setting("pusht", profile)
    n_train = cfg.num_demos - cfg.held_out
    if cfg.vae_steps is not None:
        base = horizon.with_vae_steps(base, cfg.vae_steps)
    return dataclasses.replace(
        base, source=f"pusht-{cfg.num_demos}ep-seed0[:{n_train}]", num_demos=n_train, methods=(METHOD,), horizons=(cfg.horizon,),
        magnitudes=(0.0,), train_seeds=cfg.train_seeds, episodes=cfg.episodes,
        agent_kwargs={METHOD: dict(base.agent_kwargs[METHOD], kl_coef=float(kl_coef))},
    )  # fmt: skip


def split(dataset: Any, held_out: int) -> tuple[Any, Any]:
    """(training, held-out) views of a Minari dataset: the last ``held_out`` episodes are held out."""
    import minari

    indices = np.asarray(dataset.episode_indices)
    if not 0 < held_out < len(indices):
        raise ValueError(f"cannot hold out {held_out} of {len(indices)} episodes")
    return (minari.MinariDataset(dataset.storage, episode_indices=indices[:-held_out]),
            minari.MinariDataset(dataset.storage, episode_indices=indices[-held_out:]))  # fmt: skip


@torch.no_grad()
def posteriors(agent: LWDAgent, demos: Any, seed: int = METRIC_SEED) -> dict[str, Any]:
    """Losses over every snippet window of ``demos`` (windowed, normalised and masked as in
    training), plus each window's posterior mean / log-variance and its first step in its episode."""
    snippets = SnippetDataset(load_demonstrations(demos), agent.snippet_length, agent.obs_normalizer, agent.action_normalizer,
                              pad_short_episodes=agent.pad_short_episodes)  # fmt: skip
    vae = agent.vae
    generator = torch.Generator(agent.device).manual_seed(seed)
    sums = {"bc_sample": 0.0, "bc_mean": 0.0, "kl": 0.0}
    steps, mus, logvars = 0, [], []
    for index in torch.arange(len(snippets)).split(1024):  # bounded memory: a batch's generated weights
        b = {k: v.to(agent.device) for k, v in snippets.get_batch(index).items()}
        # The training loss's own terms (one reparameterised sample; batch-mean KL).
        _, bc, kl = vae.bc_terms(b["states"], b["actions"], generator, b["mask"])
        mu, logvar = vae.encoder(b["states"], b["actions"])
        bc_mean = masked_mse(vae.policy(vae.decoder(mu), b["states"]), b["actions"], b["mask"])
        n_steps = int(b["mask"].sum())  # the BC terms are means over valid steps, the KL over windows
        sums["bc_sample"] += float(bc) * n_steps
        sums["bc_mean"] += float(bc_mean) * n_steps
        sums["kl"] += float(kl) * len(index)
        steps += n_steps
        mus.append(mu.cpu().double().numpy())
        logvars.append(logvar.cpu().double().numpy())
    return {
        "bc_sample": sums["bc_sample"] / steps, "bc_mean": sums["bc_mean"] / steps, "kl": sums["kl"] / len(snippets),
        "windows": len(snippets), "mu": np.concatenate(mus), "logvar": np.concatenate(logvars),
        "step": (snippets.starts - snippets.begins).numpy(),
    }  # fmt: skip


def latent_stats(mu: np.ndarray, logvar: np.ndarray) -> dict[str, float]:
    """Posterior width, spread of the means and their effective dimensionality."""
    sigma = float(np.exp(0.5 * logvar).mean())
    spread = float(mu.std(axis=0).mean())
    eigenvalues = np.clip(np.linalg.eigvalsh(np.cov(mu, rowvar=False))[::-1], 0, None)
    share = np.cumsum(eigenvalues) / eigenvalues.sum()
    return {
        "posterior_std": sigma, "mean_spread": spread, "spread_over_std": spread / sigma,
        "pca_dims_90": int(np.searchsorted(share, 0.9) + 1),  # components needed for 90 % of the variance
        "participation_ratio": float(eigenvalues.sum() ** 2 / (eigenvalues**2).sum()),
    }  # fmt: skip


def run_metrics(agent: LWDAgent, train: Any, held: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One agent's losses and latent statistics, and its training windows' latents (for the plot)."""
    tr, ho = posteriors(agent, train), posteriors(agent, held)
    metrics: dict[str, Any] = {f"heldout_{k}": ho[k] for k in ("bc_sample", "bc_mean", "kl")}
    metrics.update({f"train_{k}": tr[k] for k in ("bc_sample", "bc_mean", "kl")})
    metrics.update(train_windows=tr["windows"], heldout_windows=ho["windows"], **latent_stats(tr["mu"], tr["logvar"]))
    return metrics, {"mu": tr["mu"], "step": tr["step"]}


LOSS_KEYS = ("heldout_bc_sample", "heldout_bc_mean", "heldout_kl", "train_bc_sample", "train_bc_mean", "train_kl")
STAT_KEYS = ("posterior_std", "mean_spread", "spread_over_std", "pca_dims_90", "participation_ratio")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=tuple(PROFILES))
    p.add_argument("--kl-coefs", type=float, nargs="+", default=None, help="beta_KL values (default: the profile's)")
    args = p.parse_args(argv)
    common.setup(args)
    cfg = PROFILES[args.profile]
    asked = tuple(dict.fromkeys(args.kl_coefs or cfg.kl_coefs))  # a repeated value would be one row
    run = f"kl-pusht-{args.profile}"
    cache = Path(args.out) / "cache" / run  # trained agents and resumable training state (git-ignored)
    cells_dir = Path(args.out) / "cells" / run  # evaluated cells and measured metrics (committed)
    start = time.perf_counter()
    data: list[tuple[Any, Any]] = []  # (training, held-out) demonstrations, loaded once an agent is needed
    data_seconds = 0.0

    def demos() -> tuple[Any, Any]:
        nonlocal data_seconds
        if not data:
            begin = time.perf_counter()
            data.append(split(common.demonstrations("pusht", cfg.num_demos, seed=0, progress=args.profile != "tiny"), cfg.held_out))
            data_seconds = time.perf_counter() - begin
        return data[0]

    # A part (--kl-coefs) also shows every other beta_KL of the profile whose cells are committed,
    # so parts run one after another add up; -partial while some beta_KL has none yet.
    def done(kl_coef: float) -> bool:
        s = kl_setting(args.profile, cfg, kl_coef)
        return all(path.exists() for seed in s.train_seeds for path in cell_paths(cells_dir, s, seed))

    kl_coefs = tuple(k for k in dict.fromkeys((*cfg.kl_coefs, *asked)) if k in asked or done(k))
    partial = not all(done(k) or k in asked for k in cfg.kl_coefs)
    runs, cells, plotted = [], [], {}
    for kl_coef in kl_coefs:
        s = kl_setting(args.profile, cfg, kl_coef)
        logs = Path(args.out) / "logs" / run if s.eval_every else None  # learning curves (committed)
        for seed in s.train_seeds:
            eval_path, metrics_path = cell_paths(cells_dir, s, seed)
            if eval_path.exists() and metrics_path.exists():  # measured before (e.g. in another checkout): no agent needed
                agent, seconds = None, horizon.recorded_train_seconds(METHOD, cfg.horizon, seed, s, cache, logs)
            else:
                agent, seconds = horizon.trained_agent(METHOD, cfg.horizon, s, seed, demos()[0], cache, args.device, logs=logs)
            cell = horizon.evaluate_cell(agent, "pusht", s, 0.0, eval_path)
            measured = metrics_cell(agent, demos, cfg.horizon, metrics_path)
            metrics = measured["metrics"]
            if seed == s.train_seeds[0]:
                plotted[kl_coef] = measured["plotted"]
            label = f"{kl_coef:g}"
            cells.append({"method": label, "horizon": cfg.horizon, "magnitude": 0.0, "seed": seed, **cell})
            runs.append({"kl_coef": kl_coef, "seed": seed, "train_seconds": seconds, **metrics,
                         **{k: cell[k] for k in ("success_rate", "mean_max_reward", "max_reward_sem", "mean_length")}})  # fmt: skip
            print(f"beta_KL={label:>6} seed {seed}: held-out BC {metrics['heldout_bc_sample']:.4f}, KL {metrics['heldout_kl']:.1f}, "
                  f"sigma {metrics['posterior_std']:.3g}, PCA-90 {metrics['pca_dims_90']}, coverage {cell['mean_max_reward']:.3f}", flush=True)  # fmt: skip
    rows = aggregate(runs, horizon.aggregate(cells), kl_coefs)
    base = dict(horizon.setting("pusht", args.profile).agent_kwargs[METHOD])
    base.pop("kl_coef")
    results = {
        "benchmark": "kl", "env": "gym_pusht/PushT-v0", "profile": args.profile, "machine": common.machine(), "kl_coefs": list(kl_coefs),
        "horizon": cfg.horizon, "num_demos": cfg.num_demos, "held_out_episodes": cfg.held_out, "train_seeds": list(cfg.train_seeds),
        "episodes_per_cell": cfg.episodes, "agent_kwargs": base, "train_steps": s.train_steps, "partial": partial,
        "metric_seed": METRIC_SEED, "dataset_seconds": data_seconds, "runs": runs, "rows": rows,
        "embeddings": {f"{k:g}": v for k, v in plotted.items()}, "seconds": time.perf_counter() - start,
    }  # fmt: skip
    name = common.result_name("kl", args.profile, partial)
    json_path = common.write_json(args.out, name, results)
    png_path = plot(rows, plotted, results, args.out, name)
    print_table(rows, results)
    print(f"\n{results['seconds']:.0f} s (demonstrations {data_seconds:.0f} s); wrote {json_path}, {png_path}")
    return results


def cell_paths(cells_dir: Path, s: horizon.Setting, seed: int) -> tuple[Path, Path]:
    """The committed files of one (beta_KL, training seed): its evaluated cell and its measured
    metrics (with the plot's points), both named by the agent's key."""
    metrics = cells_dir / f"{horizon.agent_key(METHOD, s.horizons[0], seed, s)}-metrics-seed{METRIC_SEED}.json"
    return horizon.cell_path(cells_dir, METHOD, s.horizons[0], seed, s, 0.0), metrics


def metrics_cell(agent: LWDAgent | None, demos: Callable[[], tuple[Any, Any]], snippet_length: int, path: Path) -> dict[str, Any]:
    """:func:`run_metrics` of ``agent`` on the (training, held-out) ``demos()``, with the 2-D PCA
    points the plot shows, cached at ``path`` (small JSON, committed), so a later checkout
    assembles the table and the plot without the agent; ``agent`` may be None only where it exists."""
    if path.exists():
        return json.loads(path.read_text())
    if agent is None:
        raise ValueError(f"no agent to measure and no metrics at {path}")
    metrics, latents = run_metrics(agent, *demos())
    cell = {"metrics": metrics, "plotted": plot_points({0.0: latents}, snippet_length)[0.0]}
    common.write_json(path.parent, path.stem, cell)
    return json.loads(path.read_text())  # as a later run reads it (JSON numbers), so both give the same rows


def aggregate(runs: list[dict[str, Any]], evaluated: list[dict[str, Any]], kl_coefs: Sequence[float]) -> list[dict[str, Any]]:
    """One row per beta_KL: losses and statistics averaged over training seeds, evaluation pooled."""
    by_label = {r["method"]: r for r in evaluated}
    rows = []
    for kl_coef in kl_coefs:
        group = [r for r in runs if r["kl_coef"] == kl_coef]
        ev = by_label[f"{kl_coef:g}"]
        row: dict[str, Any] = {"kl_coef": kl_coef, "train_seeds": len(group)}
        row.update({k: float(np.mean([r[k] for r in group])) for k in (*LOSS_KEYS, *STAT_KEYS)})
        row["heldout_bc_sample_seed_std"] = float(np.std([r["heldout_bc_sample"] for r in group]))
        row.update({k: ev[k] for k in ("success_rate", "success_ci95", "mean_max_reward", "max_reward_sem", "episodes", "mean_length")})
        rows.append(row)
    return rows


def plot_points(embeddings: dict[float, dict[str, np.ndarray]], snippet_length: int) -> dict[float, dict[str, list]]:
    """2-D PCA of each beta_KL's non-overlapping training snippets (windows starting at multiples
    of ``snippet_length``: neighbouring windows are near-copies and would only crowd the plot)."""
    out = {}
    for kl_coef, e in embeddings.items():
        keep = e["step"] % snippet_length == 0
        xy = embed(e["mu"][keep], "pca")
        out[kl_coef] = {"pca": np.round(xy, 4).tolist(), "step": e["step"][keep].tolist()}
    return out


def print_table(rows: list[dict[str, Any]], results: dict[str, Any]) -> None:
    table = [{**r, "coverage": f"{r['mean_max_reward']:.3f} ± {r['max_reward_sem']:.3f}"} for r in rows]
    columns = [
        ("β_KL", "kl_coef", "{:g}"), ("held-out BC (sample)", "heldout_bc_sample", "{:.4f}"),
        ("held-out BC (mean)", "heldout_bc_mean", "{:.4f}"),
        ("train BC (sample)", "train_bc_sample", "{:.4f}"), ("held-out KL (nats)", "heldout_kl", "{:.4g}"),
        ("posterior σ", "posterior_std", "{:.3g}"), ("spread of μ", "mean_spread", "{:.3g}"), ("spread / σ", "spread_over_std", "{:.3g}"),
        ("PCA dims 90 %", "pca_dims_90", "{:.1f}"), ("participation ratio", "participation_ratio", "{:.1f}"),
        ("coverage ± SE", "coverage", "{}"), ("success", "success_rate", "{:.0%}"),
    ]  # fmt: skip
    print(f"\nPushT, LWD H_a = {results['horizon']}, {results['num_demos'] - results['held_out_episodes']} training / "
          f"{results['held_out_episodes']} held-out demos, {len(results['train_seeds'])} training seed(s), "
          f"{results['episodes_per_cell']} episodes per seed (no perturbation)\n")  # fmt: skip
    print(common.format_table(table, columns))


def plot(rows: list[dict[str, Any]], points: dict[float, dict[str, list]], results: dict[str, Any], out: str, name: str = "kl") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    n = len(rows)
    panels = 4
    cols = max(n, panels)
    fig, axes = plt.subplots(2, cols, figsize=(3.4 * cols, 7), squeeze=False)
    vmax = max((max(p["step"], default=0) for p in points.values()), default=1) or 1
    for j in range(cols):
        ax = axes[0, j]
        if j >= n:
            ax.axis("off")
            continue
        r = rows[j]
        xy = np.asarray(points[r["kl_coef"]]["pca"]).reshape(-1, 2)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=points[r["kl_coef"]]["step"], cmap="viridis", vmin=0, vmax=vmax, s=8, alpha=0.8)
        ax.set_title(f"β_KL = {r['kl_coef']:g}\nPCA-90 dims {r['pca_dims_90']:.0f}, σ {r['posterior_std']:.2g}", fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(sc, ax=axes[0, :n].tolist(), label="snippet start step in episode", fraction=0.02)
    x = np.arange(n)
    labels = [f"{r['kl_coef']:g}" for r in rows]

    def column(key: str) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=float)

    ax = axes[1, 0]
    for key, label in (("heldout_bc_sample", "held-out, sample"), ("heldout_bc_mean", "held-out, mean"), ("train_bc_sample", "train, sample")):
        ax.plot(x, column(key), marker="o", label=label)
    ax.set(ylabel="VAE BC-MSE (normalised actions)", title="behaviour cloning loss")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.plot(x, column("heldout_kl"), marker="o", color="C3", label="held-out KL (nats)")
    ax.plot(x, column("spread_over_std"), marker="s", color="C4", label="spread of μ / σ")
    ax.set(yscale="log", title="KL and latent resolution")
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap over narrow ranges
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    ax.bar(x - 0.2, column("pca_dims_90"), width=0.4, label="PCA dims for 90 %")
    ax.bar(x + 0.2, column("participation_ratio"), width=0.4, label="participation ratio")
    ax.set(title="effective latent dimensionality")
    ax.legend(fontsize=8)
    ax = axes[1, 3]
    cov, sem = column("mean_max_reward"), column("max_reward_sem")
    ax.errorbar(x, cov, yerr=sem, marker="o", capsize=3, label="mean max coverage ± SE")
    low, high = np.array([r["success_ci95"] for r in rows]).T
    ax.errorbar(x, column("success_rate"), yerr=[column("success_rate") - low, high - column("success_rate")], marker="s", capsize=3,
                label="success (95 % CI)")  # fmt: skip
    ax.set(ylim=(-0.03, 1.03), title=f"PushT, {results['episodes_per_cell']} ep. x {len(results['train_seeds'])} seed(s)")
    ax.legend(fontsize=8)
    for ax in axes[1, :panels]:
        ax.set_xticks(x, labels)
        ax.set_xlabel("β_KL")
    for ax in axes[1, panels:]:
        ax.axis("off")
    fig.suptitle(f"LWD on PushT: KL coefficient ablation (H_a = {results['horizon']}, profile {results['profile']})")
    path = common.save_figure(fig, out, name)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
