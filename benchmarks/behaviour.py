"""Behaviour reconstruction on HalfCheetah (paper App. G.2 / H, Table 2, Figs 8, 17, 19).

    python -m benchmarks.behaviour --profile quick --threads 1      # ~25 CPU minutes
    python -m benchmarks.behaviour --profile standard --threads 1   # trained to competence (resumable)

Does LWD reproduce the *behaviours* of the policies that made a mixed dataset?  Three sources
roll ``HalfCheetah-v5`` (``lwd-gym collect mujoco/halfcheetah-{expert,medium,random}``: the SAC
expert and medium actors of ``lwd_gym/data/experts``, and uniform random actions); one
behaviour-conditioned agent of each kind is trained on the three datasets (task id = behaviour
id: 0 expert, 1 medium, 2 random).  Each behaviour is judged by its feet
(:mod:`lwd_gym.behaviour`): per trajectory, the fraction of steps the back and front foot touch
the floor; then the Jensen-Shannon divergence (nats) between the 2-D histogram of the source's
training trajectories and that of another set of trajectories (:func:`lwd_gym.behaviour.contact_js`:
10 bins per foot spanning the source's fractions, plus an under- and an overflow bin; also
reported with ten fixed bins per foot on [0, 1], ``js_unit_*``, which put every expert
trajectory in one bin).  Rows, per behaviour:

* **SOS**: the source policy's own trajectories from other seeds (the noise floor of the metric);
* **LWD VAE-decoded**: the policy decoded from each source trajectory's posterior mean, rolled
  out from that trajectory's seed (:func:`lwd_gym.reconstruction_rollout`);
* **LWD diffusion-sampled**: the latent diffusion conditioned on the behaviour id, new seeds;
* **MLP**: a behaviour-conditioned 5 x 512 MSE MLP (the paper's baseline), new seeds.

LWD is trained twice, as in the paper (App. C): on full 1000-step trajectories (one policy per
episode, diffusion conditioned on the behaviour only) and on 100-step snippets (re-sampled every
100 steps, conditioned on the state and the behaviour).  Also measured: mean return per
behaviour (Fig 19), and the latents of the source snippets: 2-D PCA coloured by behaviour
(Fig 8) and how often a snippet's latent is nearest its own behaviour's centroid
(:meth:`~lwd_gym.agents.LatentDiffusionAgent.filter_behaviours`' ``labelled_accuracy``).

The paper's JS values are not directly comparable: its MLP expert value (2.81) exceeds ln 2, the
largest JS divergence in nats, so it used another estimator or scale.  Compare each row with this
benchmark's own SOS row instead.

Resumable: datasets under ``--out/minari``, trained agents under ``--out/cache/behaviour``
(git-ignored), every finished cell under ``--out/cells/behaviour-<profile>`` and learning curves
under ``--out/logs/behaviour/<key>`` (committed).  Writes ``behaviour-<profile>.json`` and
``behaviour-<profile>.png`` (contact scatter per behaviour, returns, latent PCA).
"""
from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from lwd_gym import BaseAgent, LWDAgent, MLPAgent, evaluate, reconstruction_rollout
from lwd_gym.agents.config import AgentConfig
from lwd_gym.behaviour import contact_js, episode_contact_fractions
from lwd_gym.data import load_demonstrations
from lwd_gym.envs.locomotion import BEHAVIOURS, make_locomotion_env
from lwd_gym.wrappers import TaskId

TASK = "halfcheetah"
EVAL_SEED = 10_000  # new-seed rows never reuse a training demonstration's seed (0 ... demos - 1)
FRACTION_KEY = "foot_contact_fraction"
BINS = 10
#: the paper's Table 2 (HalfCheetah): JS of foot-contact distributions, source vs each row
PAPER_JS: dict[str, dict[str, float]] = {
    "expert": {"LWD": 0.088, "MLP": 2.810, "SOS": 0.158},
    "medium": {"LWD": 0.194, "MLP": 0.692, "SOS": 0.275},
    "random": {"LWD": 0.104, "MLP": 0.11, "SOS": 0.0467},
}

PROFILES: dict[str, dict[str, Any]] = {
    # smoke test: 2 demonstrations per behaviour, 60-step evaluation episodes, 2 gradient steps
    "tiny": dict(demos=2, eval_episodes=2, episode_steps=60, snippets=(50,), latent=16, latent_length=8, batch=4, width=16, unet="xs",
                 vae_lr=1e-3, diffusion_lr=1e-3, sampler=("ddim", 2), vae_steps=2, diffusion_steps=2, mlp_hidden=(16, 16), mlp_steps=2),
    "quick": dict(demos=20, eval_episodes=20, episode_steps=1000, snippets=(1000, 100), latent=64, latent_length=16, batch=32, width=256,
                  unet="xs", vae_lr=1e-3, diffusion_lr=1e-3, sampler=("ddim", 10), vae_steps=600, diffusion_steps=1000,
                  mlp_hidden=(512,) * 5, mlp_steps=3000),
    "standard": dict(demos=100, eval_episodes=50, episode_steps=1000, snippets=(1000, 100), latent=64, latent_length=16, batch=32,
                     width=256, unet="xs", vae_lr=1e-3, diffusion_lr=1e-3, sampler=("ddpm", 100), vae_steps=3000, diffusion_steps=4000,
                     mlp_hidden=(512,) * 5, mlp_steps=10_000),
}  # fmt: skip


# ---------------------------------------------------------------------------- data
def dataset_ids(n: int, seed: int) -> list[str]:
    """The Minari ids of :func:`source_data`'s datasets."""
    return [f"bench/{TASK}-{b}-{n}ep-seed{seed}-v0" for b in BEHAVIOURS]


def source_data(n: int, seed: int, progress: bool) -> list[Any]:
    """One Minari dataset of ``n`` episodes per behaviour (:data:`BEHAVIOURS` order), episode
    ``i`` reset with ``seed + i``; collected once, then loaded."""
    return [
        common.demonstrations(f"mujoco/{TASK}-{b}", n, seed, dataset_id=dataset_id, progress=progress)
        for b, dataset_id in zip(BEHAVIOURS, dataset_ids(n, seed))
    ]


def episodes_summary(dataset: Any) -> dict[str, Any]:
    """Per-episode contact fractions and returns of a collected dataset."""
    episodes = list(dataset.iterate_episodes())
    return {"fractions": episode_contact_fractions(episodes).tolist(), "returns": [float(np.sum(e.rewards)) for e in episodes]}


def env_factory(behaviour: int, steps: int) -> Callable[[], Any]:
    """HalfCheetah with foot contacts in its infos and the behaviour's one-hot id appended."""
    return lambda: TaskId(make_locomotion_env(TASK, max_episode_steps=steps), behaviour, len(BEHAVIOURS))


# ---------------------------------------------------------------------------- agents
def lwd_params(cfg: dict[str, Any], snippet: int) -> dict[str, Any]:
    # One policy per episode needs only the behaviour; a policy re-sampled mid-episode the state too.
    condition = "task" if snippet >= cfg["episode_steps"] else "obs+task"
    scheduler, steps = cfg["sampler"]
    return dict(
        action_horizon=snippet, snippet_length=snippet, latent_dim=cfg["latent"], latent_length=cfg["latent_length"],
        policy_hidden=[cfg["width"]] * 2, hypernet_size="xs", denoiser_size=cfg["unet"], condition_on=condition,
        scheduler=scheduler, num_inference_steps=steps, batch_size=cfg["batch"], vae_lr=cfg["vae_lr"], diffusion_lr=cfg["diffusion_lr"], seed=0,
    )  # fmt: skip


def specs(cfg: dict[str, Any]) -> list[tuple[str, type[BaseAgent], dict[str, Any], dict[str, int]]]:
    """``(label, class, constructor arguments, learn budget)`` of every trained agent."""
    rows = [(f"LWD H{h}", LWDAgent, lwd_params(cfg, h), dict(vae_steps=cfg["vae_steps"], diffusion_steps=cfg["diffusion_steps"])) for h in cfg["snippets"]]
    rows.append(("MLP", MLPAgent, dict(hidden=list(cfg["mlp_hidden"]), batch_size=256, bc_lr=1e-3, seed=0), dict(steps=cfg["mlp_steps"])))
    return rows


def agent_key(label: str, cls: type[BaseAgent], params: dict[str, Any], budget: dict[str, int], ids: list[str]) -> str:
    """The cache key of a spec's agent: its label, full config, budget and training dataset ids."""
    return common.cache_key(label.lower().replace(" ", "-"), cls.config_class(**params), budget, ids)


def trained(label: str, cls: type[BaseAgent], params: dict[str, Any], budget: dict[str, int], data: list[Any], out: Path, device: str,
            progress: bool) -> tuple[BaseAgent, str]:  # fmt: skip
    """The agent of a spec: loaded from the cache, or trained (resumably, with its learning curve) and cached."""
    config: AgentConfig = cls.config_class(**params)
    key = agent_key(label, cls, params, budget, [d.spec.dataset_id for d in data])
    ckpt = out / "cache" / "behaviour" / f"{key}.ckpt"
    if ckpt.exists():
        return BaseAgent.load(ckpt, device=device), key
    state = out / "cache" / "behaviour" / f"{key}-state"
    start = time.perf_counter()
    agent = cls(config, device=device).learn(data, checkpoint_dir=state, progress_bar=progress, log_dir=out / "logs" / "behaviour" / key, **budget)
    agent.save(ckpt)
    common.write_json(out / "logs" / "behaviour" / key, "train_time", {"seconds": time.perf_counter() - start})
    shutil.rmtree(state, ignore_errors=True)  # only needed to resume an unfinished training
    return agent, key


# ---------------------------------------------------------------------------- cells
def cached(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    common.write_json(path.parent, path.stem, value)
    return value


def rollouts(agent: BaseAgent, behaviour: int, cfg: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Fractions and returns of ``eval_episodes`` new-seed episodes acted by ``agent`` given the behaviour id."""
    result = evaluate(agent, env_factory(behaviour, cfg["episode_steps"]), cfg["eval_episodes"], seed=EVAL_SEED, info_keys=(FRACTION_KEY,),
                      count_flops=False, progress=progress)  # fmt: skip
    return {"fractions": [e[FRACTION_KEY] for e in result.episodes], "returns": [e["return"] for e in result.episodes]}


def decoded(agent: LWDAgent, data: list[Any], behaviour: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Fractions and returns of the policies decoded from the first ``eval_episodes`` source
    trajectories of the behaviour, each rolled out from its own seed."""
    demos = load_demonstrations(data)
    episodes = np.flatnonzero(demos.tasks == behaviour)[: cfg["eval_episodes"]]
    plain = lambda: make_locomotion_env(TASK, max_episode_steps=cfg["episode_steps"])  # noqa: E731
    envs = [plain] * len(BEHAVIOURS)  # reconstruction_rollout appends the task id itself
    result = reconstruction_rollout(agent, demos, envs, episodes=episodes, other_seeds=False, info_keys=(FRACTION_KEY,))
    return {"fractions": [e[FRACTION_KEY] for e in result.episodes], "returns": [e["return"] for e in result.episodes]}


def latent_cell(agent: LWDAgent, data: list[Any]) -> dict[str, Any]:
    """2-D PCA of the posterior means of every source episode's snippets at plan starts (0, H,
    2H, ...), with their behaviour, and how often a snippet is nearest its own behaviour's centroid."""
    from sklearn.decomposition import PCA

    demos = load_demonstrations(data)
    h = agent.snippet_length
    states, actions, labels = [], [], []
    for obs, act, task in zip(demos.observations, demos.actions, demos.tasks):
        for start in range(0, len(act) - h + 1, h):
            states.append(obs[start : start + h])
            actions.append(act[start : start + h])
            labels.append(int(task))
    latents = agent.encode(np.stack(states), np.stack(actions))
    points = PCA(n_components=2, random_state=0).fit_transform(latents)
    accuracy = agent.filter_behaviours([0], labelled=data).behaviour_filter.labelled_accuracy
    agent.filter_behaviours(None)
    return {"pca": points.tolist(), "labels": labels, "nearest_centroid_accuracy": list(accuracy)}


# ---------------------------------------------------------------------------- the benchmark
def js_rows(reference: list[dict[str, Any]], cells: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One table row per method: JS (nats) to each behaviour's source (``js_*``: bins spanning the
    source's fractions; ``js_unit_*``: ten fixed bins per foot on [0, 1]) and mean return."""
    rows = []
    for method, per_behaviour in cells.items():
        row: dict[str, Any] = {"method": method}
        for b, name in enumerate(BEHAVIOURS):
            row[f"js_{name}"] = contact_js(reference[b]["fractions"], per_behaviour[b]["fractions"], BINS)
            row[f"js_unit_{name}"] = contact_js(reference[b]["fractions"], per_behaviour[b]["fractions"], BINS, range="unit")
            row[f"return_{name}"] = float(np.mean(per_behaviour[b]["returns"]))
        rows.append(row)
    return rows


def plot(results: dict[str, Any], out: Path, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["cells"])
    latents = results["latents"]
    fig, axes = plt.subplots(2, max(len(BEHAVIOURS) + 1, len(latents)), figsize=(4.2 * max(len(BEHAVIOURS) + 1, len(latents)), 8), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(["source", *methods])}
    for b, behaviour in enumerate(BEHAVIOURS):  # Fig 17: foot-contact fractions per trajectory
        ax = axes[0, b]
        for method, per_behaviour in [("source", results["source"]), *results["cells"].items()]:
            f = np.asarray(per_behaviour[b]["fractions"]).reshape(-1, 2)
            ax.scatter(f[:, 0], f[:, 1], s=10, alpha=0.6, color=colours[method], label=method, marker="x" if method == "source" else "o")
        ax.set(title=f"{behaviour}: foot contacts", xlabel="back foot on the floor (fraction)", ylabel="front foot on the floor (fraction)",
               xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))  # fmt: skip
    axes[0, 0].legend(fontsize=7)
    ax = axes[0, len(BEHAVIOURS)]  # Fig 19: returns
    groups = [("source", results["source"]), *results["cells"].items()]
    width = 0.8 / len(groups)
    for i, (method, per_behaviour) in enumerate(groups):
        means = [np.mean(per_behaviour[b]["returns"]) for b in range(len(BEHAVIOURS))]
        ax.bar(np.arange(len(BEHAVIOURS)) + (i - (len(groups) - 1) / 2) * width, means, width, color=colours[method], label=method)
    ax.set_xticks(range(len(BEHAVIOURS)), BEHAVIOURS)
    ax.set(title="mean return per behaviour", ylabel="return")
    for j in range(len(BEHAVIOURS) + 1, axes.shape[1]):
        axes[0, j].axis("off")
    for j, (label, cell) in enumerate(latents.items()):  # Fig 8: latents by behaviour
        ax = axes[1, j]
        points, labels = np.asarray(cell["pca"]), np.asarray(cell["labels"])
        for b, behaviour in enumerate(BEHAVIOURS):
            ax.scatter(*points[labels == b].T, s=8, alpha=0.6, label=behaviour)
        ax.set(title=f"{label}: latent PCA", xlabel="PC 1", ylabel="PC 2")
        ax.legend(fontsize=7)
    for j in range(len(latents), axes.shape[1]):
        axes[1, j].axis("off")
    fig.suptitle(f"HalfCheetah behaviour reconstruction ({results['profile']} profile)")
    fig.tight_layout()
    path = common.save_figure(fig, out, name)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=tuple(PROFILES))
    p.add_argument("--only", type=lambda v: [x for x in v.split(",") if x], default=None,
                   help="comma-separated agents (e.g. 'LWD H1000,MLP'): a part of the sweep (the source rows always run; "
                        "the other agents' rows come from their committed cells, and the result is -partial while one has none)")  # fmt: skip
    args = p.parse_args(argv)
    common.setup(args)
    cfg, out, progress = PROFILES[args.profile], Path(args.out), args.profile != "tiny"
    from lwd_gym.utils import get_device

    device = str(get_device(args.device))
    all_specs = specs(cfg)
    unknown = sorted(set(args.only or ()) - {label for label, *_ in all_specs})
    if unknown:
        raise SystemExit(f"--only: unknown agent(s) {unknown}; this profile has {', '.join(label for label, *_ in all_specs)}")
    cells_dir = out / "cells" / f"behaviour-{args.profile}"
    start = time.perf_counter()
    # Collected (or loaded), like the agents, only when a cell that needs them is missing.
    data = functools.cache(lambda: source_data(cfg["demos"], 0, progress))
    fresh = functools.cache(lambda: source_data(cfg["eval_episodes"], EVAL_SEED, progress))
    source = [cached(cells_dir / f"source-{name}-{cfg['demos']}ep.json", lambda b=b: episodes_summary(data()[b])) for b, name in enumerate(BEHAVIOURS)]
    cells: dict[str, list[dict[str, Any]]] = {"SOS": [cached(cells_dir / f"sos-{name}-{cfg['eval_episodes']}ep.json", lambda b=b: episodes_summary(fresh()[b]))
                                                      for b, name in enumerate(BEHAVIOURS)]}  # fmt: skip
    latents: dict[str, Any] = {}
    keys: dict[str, str] = {}
    partial = False
    for label, cls, params, budget in all_specs:
        key = agent_key(label, cls, params, budget, dataset_ids(cfg["demos"], 0))
        # trained (or loaded) only when one of its cells is missing: committed cells need no agent
        agent = functools.cache(lambda label=label, cls=cls, params=params, budget=budget: trained(label, cls, params, budget, data(), out, device, progress)[0])
        groups: dict[str, list[tuple[Path, Callable[[], dict[str, Any]]]]]
        if cls is LWDAgent:
            groups = {f"{label} VAE-decoded": [(cells_dir / f"{key}-decoded-{b}.json", lambda b=b: decoded(agent(), data(), b, cfg)) for b in range(len(BEHAVIOURS))],
                      f"{label} diffusion": [(cells_dir / f"{key}-diffusion-{b}.json", lambda b=b: rollouts(agent(), b, cfg, progress)) for b in range(len(BEHAVIOURS))]}  # fmt: skip
            latent = [(cells_dir / f"{key}-latents.json", lambda: latent_cell(agent(), data()))]
        else:
            groups = {label: [(cells_dir / f"{key}-rollouts-{b}.json", lambda b=b: rollouts(agent(), b, cfg, progress)) for b in range(len(BEHAVIOURS))]}
            latent = []
        # An agent --only leaves out comes in only where another part committed all its cells (nothing
        # is trained for it), so a sweep run in parts adds up to one result file, as metaworld's does.
        if args.only and label not in args.only and not all(path.exists() for path, _ in [*(cell for group in groups.values() for cell in group), *latent]):
            partial = True
            continue
        keys[label] = key
        cells.update({name: [cached(path, compute) for path, compute in group] for name, group in groups.items()})
        latents.update({label: cached(*cell) for cell in latent})
    rows = js_rows(source, cells)
    results = {
        "benchmark": "behaviour-halfcheetah", "profile": args.profile, "machine": common.machine(), "device": device,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}, "eval_seed": EVAL_SEED, "bins": BINS,
        "behaviours": list(BEHAVIOURS), "paper_js": PAPER_JS, "agents": keys, "only": args.only, "partial": partial,
        "source_returns": {b: float(np.mean(s["returns"])) for b, s in zip(BEHAVIOURS, source)},
        "rows": rows, "latent_separation": {label: c["nearest_centroid_accuracy"] for label, c in latents.items()},
        "source": source, "cells": cells, "latents": latents, "wall_s": time.perf_counter() - start,
    }  # fmt: skip
    name = f"behaviour-{args.profile}" + ("-partial" if partial else "")
    common.write_json(out, name, results)
    plot(results, out, name)
    columns = [("method", "method", "{}")] + [(f"JS {b}", f"js_{b}", "{:.3f}") for b in BEHAVIOURS] + [(f"return {b}", f"return_{b}", "{:.0f}") for b in BEHAVIOURS]
    print(common.format_table(rows, columns))
    return results


if __name__ == "__main__":
    main()
