"""Behaviour analysis (paper Fig. 9): do LWD's latents separate who demonstrated a Lift episode?

    python -m benchmarks.latents --profile quick                 # ~4 CPU minutes
    python -m benchmarks.latents --profile standard              # 300 episodes, a 2,000-step VAE with its learning curve
    python -m benchmarks.latents --profile paper [--kl-coef 1e-6] # the paper's VAE settings (GPU)

Collects robosuite Lift demonstrations from the scripted expert played by each of the six
synthetic operators (two per proficiency level: better, okay, worse), the same number of
episodes each, trains the LWD VAE on them (hypernetwork decoder; the analysis needs only the
encoder, so the latent diffusion stage gets a single step), and encodes every episode's
non-overlapping snippets (consecutive full windows of ``snippet_length`` steps; the remainder
shorter than a window is dropped) into posterior means.

Scores, for operator and for proficiency labels: the silhouette (euclidean; -1..1, > 0 = points
lie nearer their own label's points than the next label's) and the 5-NN balanced accuracy (the
majority label of a point's 5 nearest points from *other* episodes; chance = 1 / labels); per
snippet and per episode (the mean of its snippets' vectors), in the full space and in 2-D PCA
and t-SNE embeddings.
Controls: the same scores of the raw snippets (normalised states and actions, flattened:
exactly what the encoder reads) and of shuffled labels (mean over permutations), so one sees
whether the latent separates behaviours better than the data it was computed from.  torch runs
on one thread unless ``--threads`` is given (see :func:`main`).

The Lift dataset (``lwd-bench/latents-lift-v0``, under ``--out/minari``) is reused when it holds
enough episodes per operator, and the trained agent is cached (its training resumable) under
``--out/cache``, its learning curve (training and held-out VAE loss per step) under
``--out/logs/latents-PROFILE/<key>/vae.csv``.  Writes ``latents.json`` (every score, counts,
timings, and the plotted 2-D snippet embeddings) and ``latents.png`` (PCA and t-SNE coloured by operator and by proficiency); ``latents-PROFILE.*`` for the
standard and paper profiles.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from lwd_gym import BaseAgent, LWDAgent

DATASET_ID = "lwd-bench/latents-lift-v0"
SEED = 0
SHUFFLES = 20  # label permutations averaged for the shuffled-label control
K_NEIGHBOURS = 5


@dataclass(frozen=True)
class Profile:
    """Data and VAE settings of one profile (``vae_steps=None``: ``vae_epochs`` epochs)."""

    episodes_per_operator: int
    snippet_length: int
    latent_dim: int
    hypernet_size: str
    policy_hidden: tuple[int, ...]
    batch_size: int
    vae_lr: float
    kl_coef: float
    vae_epochs: int = 1
    vae_steps: int | None = None


PROFILES = {
    "tiny": Profile(2, 8, 16, "xs", (16,), 64, 1e-3, 1e-8, vae_steps=10),
    "quick": Profile(20, 16, 64, "xs", (128, 128), 256, 1e-3, 1e-8, vae_epochs=40),
    # Issue #22: the paper's 50 episodes per operator with horizon.py's standard VAE (latent 64,
    # hypernetwork xs, 256x256 policy, batch 256, lr 1e-3), trained in steps; its curve says
    # whether the held-out loss has levelled off.
    "standard": Profile(50, 16, 64, "xs", (256, 256), 256, 1e-3, 1e-8, vae_steps=2000),
    # The paper's VAE: latent 256, batch 32, lr 3e-4, beta_KL in 1e-6..1e-10 (--kl-coef);
    # 50 episodes per operator is the size of robomimic's multi-human datasets.
    "paper": Profile(50, 32, 256, "s", (256, 256), 32, 3e-4, 1e-8, vae_epochs=100),
}


def lift_dataset(episodes_per_operator: int, progress: bool) -> Any:
    """A Lift dataset with the first ``episodes_per_operator`` successful episodes of every
    operator: reused from ``DATASET_ID`` when it holds enough, else collected anew (and saved).

    The one benchmark dataset not from :func:`common.demonstrations`: it fixes the operator per
    block of episodes (a ``collect`` source draws one per episode), so a longer collection
    starts with the same episodes and a shorter request reuses its prefix."""
    import minari

    from lwd_gym.envs.robosuite import OPERATORS

    if DATASET_ID in minari.list_local_datasets():
        dataset = minari.load_dataset(DATASET_ID)
        picked = _first_per_operator(dataset, episodes_per_operator, len(OPERATORS))
        if picked is not None:
            return minari.MinariDataset(dataset.storage, episode_indices=picked)
    from lwd_gym.data.collect import rollout_episodes, write_minari_dataset
    from lwd_gym.data.sources import get_source
    from lwd_gym.envs.robosuite import make_expert

    env = get_source("robosuite/lift").make_env()
    try:
        buffers = []
        for op in range(len(OPERATORS)):
            expert = make_expert(env, operator=op)
            # Episode i of operator op resets with seed 100_000 * op + i: a longer collection
            # starts with the same episodes, which is what makes reusing a prefix valid.
            episodes, _ = rollout_episodes(
                env, expert, episodes_per_operator, seed=100_000 * op, progress=progress, desc=f"collect Lift, {OPERATORS[op].name}",
                episode_info=lambda e=expert: {"operator_id": e.operator_id, "proficiency": e.proficiency_id},
            )  # fmt: skip
            buffers += episodes
        dataset = write_minari_dataset(
            DATASET_ID, buffers, env, algorithm_name="lwd_gym scripted expert (robosuite/lift, fixed operators)", author="lwd_gym",
            description=f"robosuite Lift, {episodes_per_operator} seeded episodes per synthetic operator (successful ones kept).",
        )  # fmt: skip
    finally:
        env.close()
    return dataset


def _first_per_operator(dataset: Any, n: int, num_operators: int) -> np.ndarray | None:
    """Episode indices of the first ``n`` episodes of each operator, or ``None`` if one has fewer."""
    by_operator: dict[int, list[int]] = {op: [] for op in range(num_operators)}
    for index, episode in zip(dataset.episode_indices, dataset.iterate_episodes()):
        by_operator[int(episode.infos["operator_id"][0])].append(int(index))
    if min(len(v) for v in by_operator.values()) < n:
        return None
    return np.sort(np.concatenate([v[:n] for v in by_operator.values()]))


def cache_path(cfg: Profile, profile: str, out: str) -> Path:
    """Where the trained agent of this profile is kept: named by its full config, budget and data,
    so editing a hyperparameter retrains rather than reusing an old agent."""
    train = {"vae_steps": cfg.vae_steps, "diffusion_steps": 1}
    return Path(out) / "cache" / f"{common.cache_key(f'latents-{profile}', make_agent(cfg, 'cpu').config, train, dataclasses.asdict(cfg))}.ckpt"


def make_agent(cfg: Profile, device: str) -> LWDAgent:
    """The (untrained) LWD agent of profile ``cfg``."""
    return LWDAgent(
        action_horizon=cfg.snippet_length, latent_dim=cfg.latent_dim, hypernet_size=cfg.hypernet_size, policy_hidden=cfg.policy_hidden,
        kl_coef=cfg.kl_coef, denoiser_size="xs", batch_size=cfg.batch_size, vae_lr=cfg.vae_lr, vae_epochs=cfg.vae_epochs, device=device, seed=SEED,
    )  # fmt: skip


def trained_agent(dataset: Any, cfg: Profile, profile: str, out: str, device: str) -> LWDAgent:
    """The LWD agent whose VAE encodes the snippets (trained once, then loaded from the cache)."""
    cache = cache_path(cfg, profile, out)
    if cache.exists():
        return BaseAgent.load(cache, device=device)
    agent = make_agent(cfg, device)
    # One diffusion step: learn() always runs both stages, and only the VAE's encoder is analysed.
    agent.learn(dataset, vae_steps=cfg.vae_steps, diffusion_steps=1, checkpoint_dir=cache.parent / f"{cache.stem}-state", progress_bar=profile != "tiny",
                log_dir=Path(out) / "logs" / f"latents-{profile}" / cache.stem)  # fmt: skip
    agent.save(cache)
    return agent


def snippet_features(agent: LWDAgent, dataset: Any) -> dict[str, np.ndarray]:
    """Per non-overlapping snippet: latent (posterior mean), raw (normalised, flattened), labels, episode."""
    h = agent.snippet_length
    latent, raw, operator, proficiency, episode = [], [], [], [], []
    for i, ep in enumerate(dataset.iterate_episodes()):
        obs, act = np.asarray(ep.observations[:-1], np.float32), np.asarray(ep.actions, np.float32)
        starts = np.arange(0, len(act) - h + 1, h)
        if len(starts) == 0:
            continue  # shorter than one snippet (the VAE never saw it either)
        states, actions = np.stack([obs[s : s + h] for s in starts]), np.stack([act[s : s + h] for s in starts])
        latent.append(agent.encode(states, actions))
        # Normalised and laid out as the encoder's input (state and action of a step side by side).
        both = np.concatenate([agent.obs_normalizer.normalize(states), agent.action_normalizer.normalize(actions)], axis=-1)
        raw.append(both.reshape(len(starts), -1))
        operator += [int(ep.infos["operator_id"][0])] * len(starts)
        proficiency += [int(ep.infos["proficiency"][0])] * len(starts)
        episode += [i] * len(starts)
    return {
        "latent": np.concatenate(latent).astype(np.float64), "raw": np.concatenate(raw).astype(np.float64),
        "operator": np.array(operator), "proficiency": np.array(proficiency), "episode": np.array(episode),
    }  # fmt: skip


def episode_means(snippets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per episode: its snippets' mean latent / raw vector, and its labels."""
    episodes, first = np.unique(snippets["episode"], return_index=True)
    out = {k: snippets[k][first] for k in ("operator", "proficiency", "episode")}
    for key in ("latent", "raw"):
        out[key] = np.stack([snippets[key][snippets["episode"] == e].mean(axis=0) for e in episodes])
    return out


def embed(x: np.ndarray, space: str) -> np.ndarray:
    """``x`` itself (``"full"``) or its 2-D PCA / t-SNE embedding (seeded)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if space == "full":
        return x
    if space == "pca":
        return PCA(n_components=2, svd_solver="full", random_state=SEED).fit_transform(x)
    # Perplexity must stay below the number of points (the tiny profile has a dozen episodes);
    # exact gradients are both more accurate and faster than Barnes-Hut for a few hundred points.
    perplexity = min(30.0, (len(x) - 1) / 3)
    method = "exact" if len(x) <= 300 else "barnes_hut"
    return TSNE(n_components=2, perplexity=perplexity, init="pca", method=method, random_state=SEED).fit_transform(x)


def separation(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Silhouette and k-NN accuracy of ``labels`` on ``x``, each also averaged over
    :data:`SHUFFLES` permutations of the labels (the chance level of this data).

    k-NN accuracy: each point gets the majority label of its :data:`K_NEIGHBOURS` nearest points
    from *other* ``groups`` (episodes: a snippet's neighbours in its own episode would give its
    label away; ties go to the label of the nearer neighbour), scored as balanced accuracy (the
    mean recall over labels; chance is 1 / number of labels whatever the class sizes: the worse
    operators' longer episodes give more snippets).  Unlike the silhouette it does not assume one
    compact cluster per label (an operator's snippets spread over the task's phases).
    """
    from sklearn.metrics import balanced_accuracy_score, pairwise_distances, silhouette_score

    distances = pairwise_distances(x)
    distances[groups[:, None] == groups[None, :]] = np.inf
    neighbours = np.argsort(distances, axis=1, kind="stable")[:, :K_NEIGHBOURS]
    weights = 1.0 - 1e-3 * np.arange(K_NEIGHBOURS)  # breaks ties only

    def knn_accuracy(y: np.ndarray) -> float:
        votes = np.zeros((len(y), int(y.max()) + 1))
        np.add.at(votes, (np.arange(len(y))[:, None], y[neighbours]), weights)
        return float(balanced_accuracy_score(y, votes.argmax(axis=1)))

    shuffled = [rng.permutation(labels) for _ in range(SHUFFLES)]
    return {
        "silhouette": float(silhouette_score(x, labels)),
        "silhouette_shuffled": float(np.mean([silhouette_score(x, y) for y in shuffled])),
        "knn": knn_accuracy(labels),
        "knn_shuffled": float(np.mean([knn_accuracy(y) for y in shuffled])),
    }


def analyse(levels: dict[str, dict[str, np.ndarray]]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Score rows for every (level, features, space), and the snippet-level 2-D embeddings."""
    rng = np.random.default_rng(SEED)
    rows, embeddings = [], {}
    for level, data in levels.items():
        for features in ("latent", "raw"):
            for space in ("full", "pca", "tsne"):
                x = embed(data[features], space)
                if level == "snippet" and space != "full":
                    embeddings[f"{features}-{space}"] = x
                row: dict[str, Any] = {"level": level, "features": features, "space": space, "n": len(x), "dim": x.shape[1]}
                for label in ("operator", "proficiency"):
                    row.update({f"{label}_{k}": v for k, v in separation(x, data[label], data["episode"], rng).items()})
                rows.append(row)
    return rows, embeddings


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=tuple(PROFILES))
    p.add_argument("--kl-coef", type=float, default=None, help="beta_KL of the VAE (default: the profile's, 1e-8)")
    # One torch thread unless --threads says otherwise: this VAE's matrices are small, and on the
    # 2 shared cores a VAE step took 0.95 s with 2 threads beside another job vs 0.10 s with 1.
    p.set_defaults(threads=1)
    p.epilog = "Here torch runs on 1 thread unless --threads is given."
    args = p.parse_args(argv)
    common.setup(args)
    from lwd_gym.envs.robosuite import OPERATORS, PROFICIENCY_LEVELS
    from lwd_gym.utils import seed_everything

    cfg = PROFILES[args.profile]
    if args.kl_coef is not None:
        cfg = dataclasses.replace(cfg, kl_coef=args.kl_coef)
    seconds = {}
    start = time.perf_counter()
    dataset = lift_dataset(cfg.episodes_per_operator, progress=args.profile != "tiny")
    seconds["data"] = time.perf_counter() - start
    start, cached = time.perf_counter(), cache_path(cfg, args.profile, args.out).exists()
    agent = trained_agent(dataset, cfg, args.profile, args.out, args.device)
    seconds["train"] = time.perf_counter() - start
    start = time.perf_counter()
    snippets = snippet_features(agent, dataset)
    levels = {"snippet": snippets, "episode": episode_means(snippets)}
    seed_everything(SEED)  # t-SNE and PCA take random_state; this covers anything else that draws
    rows, embeddings = analyse(levels)
    seconds["analysis"] = time.perf_counter() - start

    counts = {
        op.name: {"episodes": int(len(np.unique(snippets["episode"][snippets["operator"] == i]))), "snippets": int((snippets["operator"] == i).sum())}
        for i, op in enumerate(OPERATORS)
    }  # fmt: skip
    results = {
        "benchmark": "latents", "profile": args.profile, "machine": common.machine(), "dataset": DATASET_ID,
        "config": {**cfg.__dict__, "policy_hidden": list(cfg.policy_hidden), "diffusion_steps": 1, "seed": SEED, "shuffles": SHUFFLES,
                   "k_neighbours": K_NEIGHBOURS},
        "operators": [op.name for op in OPERATORS], "proficiency_levels": list(PROFICIENCY_LEVELS), "counts": counts,
        "seconds": seconds, "agent_from_cache": cached, "rows": rows,
        "embeddings": {  # the plotted snippet-level 2-D embeddings, for re-plotting without a rerun
            "operator": snippets["operator"].tolist(), "proficiency": snippets["proficiency"].tolist(),
            **{k: np.round(v, 3).tolist() for k, v in embeddings.items()},
        },
    }  # fmt: skip
    name = common.result_name("latents", args.profile)
    json_path = common.write_json(args.out, name, results)
    png_path = plot(snippets, embeddings, rows, [op.name for op in OPERATORS], list(PROFICIENCY_LEVELS), args.out, name)
    n_eps = sum(c["episodes"] for c in counts.values())
    n_snippets = len(snippets["operator"])
    print(f"\nLift: {n_eps} episodes of six synthetic operators, {n_snippets} non-overlapping snippets of {cfg.snippet_length} steps; "
          f"LWD latents vs the raw snippets (shuffled: mean over {SHUFFLES} label permutations)")  # fmt: skip
    key = [("level", "level", "{}"), ("features", "features", "{}"), ("space", "space", "{}"), ("n", "n", "{}")]
    print("\nSilhouette (-1..1, higher = labels better separated)\n")
    print(common.format_table(rows, [*key, *[
        (f"{label}{tag}", f"{label}_silhouette{suffix}", "{:.3f}") for label in ("operator", "proficiency") for tag, suffix in (("", ""), (" shuffled", "_shuffled"))
    ]]))  # fmt: skip
    print(f"\n{K_NEIGHBOURS}-NN balanced accuracy (neighbours from other episodes; chance 1/6 operator, 1/3 proficiency)\n")
    print(common.format_table(rows, [*key, *[
        (f"{label}{tag}", f"{label}_knn{suffix}", "{:.1%}") for label in ("operator", "proficiency") for tag, suffix in (("", ""), (" shuffled", "_shuffled"))
    ]]))  # fmt: skip
    print(f"\ndata {seconds['data']:.0f} s, training {seconds['train']:.0f} s, analysis {seconds['analysis']:.0f} s")
    print(f"wrote {json_path} and {png_path}")
    return results


def plot(snippets: dict[str, np.ndarray], embeddings: dict[str, np.ndarray], rows: list[dict[str, Any]], operators: list[str],
         levels: list[str], out: str, name: str = "latents") -> Path:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Operators in shades of their proficiency level's colour (blue better, green okay, red worse).
    operator_colours = ["#1f4e9c", "#6fa8dc", "#1b7a3a", "#7ccf8e", "#a61c1c", "#f08080"]
    level_colours = ["#2b6cb0", "#2f9e44", "#c92a2a"]
    score = {(r["features"], r["space"]): r for r in rows if r["level"] == "snippet"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 9.5))
    panels = [("pca", "operator"), ("tsne", "operator"), ("tsne", "proficiency")]
    for row, features in enumerate(("latent", "raw")):
        for col, (space, label) in enumerate(panels):
            ax, xy = axes[row, col], embeddings[f"{features}-{space}"]
            names, colours = (operators, operator_colours) if label == "operator" else (levels, level_colours)
            for k, group in enumerate(names):
                pts = xy[snippets[label] == k]
                ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.7, color=colours[k % len(colours)], label=group)
            title = "LWD latent" if features == "latent" else "raw snippet"
            r = score[features, space]
            ax.set_title(f"{title}, {'PCA' if space == 'pca' else 't-SNE'} by {label}\n"
                         f"silhouette {r[f'{label}_silhouette']:.2f}, {K_NEIGHBOURS}-NN balanced accuracy {r[f'{label}_knn']:.0%}", fontsize=10)  # fmt: skip
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.legend(fontsize=8, markerscale=2, loc="best")
    fig.suptitle("Lift demonstrations of six synthetic operators: non-overlapping snippets")
    path = common.save_figure(fig, out, name)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
