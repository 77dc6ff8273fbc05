"""Latent behaviour filtering on robosuite Lift: keep only the better operators' behaviours.

    python -m benchmarks.filtering --profile standard --threads 1   # the horizon benchmark's standard Lift agent

The paper says LWD's latent space "can filter unwanted behaviours"; this measures it.  The agent
is the horizon benchmark's LWD at its shortest action horizon on Lift (``benchmarks.horizon
--env lift``: the same recipe, data and cache, so whichever benchmark runs first trains it),
trained on demonstrations by all six synthetic operators (``lwd-gym collect robosuite/lift``:
two operators per proficiency, 0 better, 1 okay, 2 worse, drawn per episode).  Its diffusion
is conditioned on the state only, so filtering is by nearest labelled cluster
(:meth:`~lwd_gym.agents.LatentDiffusionAgent.filter_behaviours` with ``labelled=``): the training
demonstrations, labelled by proficiency, give one centroid per proficiency in latent space, and
a sampled latent whose nearest centroid is not kept is sampled again, up to 8 samplings (and
the same with the other classifier, ``classifier="knn"``: the proficiency most of the latent's 10
nearest labelled latents have, which compares a latent only with snippets of the same phase
of the task, where the centroids mix the phases); in a
state where none of them is kept, the plan takes the sample closest to a kept behaviour
(``on_exhausted="closest"``), and the share of such plans is reported (``fallback_rate``).

Conditions, each evaluated on the same ``episodes`` new seeds without perturbation: keep every
behaviour (no filter: the horizon benchmark's unperturbed evaluation, on the same trained agent as
the filtered rows), keep only "better", only
"better" and "okay", only "worse".  Reported per condition: success (95 % Wilson interval), mean
episode length (of all and of successful episodes), the filter's acceptance and fallback rates; per
proficiency, the demonstrations' own episode length and how well the centroids tell the
labelled snippets apart.  Writes ``filtering-lift-<profile>.json`` / ``.png``; cells under
``--out/cells/filtering-lift-<profile>`` (committed).
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common, horizon
from lwd_gym import evaluate
from lwd_gym.data import load_demonstrations
from lwd_gym.envs.robosuite import PROFICIENCY_LEVELS

ENV = "lift"
EVAL_SEED = 10_000  # the horizon benchmark's evaluation seeds
# Samplings per latent before the filter falls back on its closest sample.  Each is a DDPM-100
# sampling: 32 made one condition take over 15 CPU minutes (50 episodes), where some states
# rarely produce a kept latent.
MAX_TRIES = 8
ON_EXHAUSTED = "closest"  # a state where no kept latent came within MAX_TRIES must not end the episode
#: how a sampled latent's proficiency is named: nearest centroid, or the vote of its K nearest labelled latents
CLASSIFIERS = ("centroid", "knn")
K = 10
#: (label, kept proficiency ids or None for no filter)
CONDITIONS: tuple[tuple[str, tuple[int, ...] | None], ...] = (
    ("all (no filter)", None),
    ("better", (0,)),
    ("worse", (2,)),
    ("better + okay", (0, 1)),
)


def conditions() -> list[tuple[str, tuple[int, ...] | None, str | None]]:
    """``(label, kept proficiencies, classifier)`` of every row: no filter once, then each
    filtered condition with each classifier."""
    rows: list[tuple[str, tuple[int, ...] | None, str | None]] = []
    for label, keep in CONDITIONS:
        if keep is None:
            rows.append((label, None, None))
        else:
            rows += [(f"{label} ({'nearest centroid' if c == 'centroid' else f'{K}-NN vote'})", keep, c) for c in CLASSIFIERS]
    return rows


def setting(profile: str) -> horizon.Setting:
    s = horizon.setting(ENV, profile)
    if profile == "tiny":  # enough episodes that every proficiency is drawn at least once
        s = dataclasses.replace(s, num_demos=12)
    return s


def labelled(dataset: Any) -> Any:
    """The dataset's demonstrations with each episode's task id set to its operator's proficiency."""
    demos = load_demonstrations(dataset)
    proficiency = np.array([int(ep.infos["proficiency"][0]) for ep in dataset.iterate_episodes() if len(ep.actions)], dtype=np.int64)
    return dataclasses.replace(demos, tasks=proficiency, num_tasks=len(PROFICIENCY_LEVELS))


def evaluate_condition(agent: Any, demos: Any, keep: tuple[int, ...], classifier: str, s: horizon.Setting, path: Path) -> dict[str, Any]:
    """Success and lengths of ``agent`` sampling only the proficiencies ``keep``, named by
    ``classifier`` (cached at ``path``)."""
    if path.exists():
        return json.loads(path.read_text())
    agent.filter_behaviours(keep, demos, classifier=classifier, k=K, max_tries=MAX_TRIES, on_exhausted=ON_EXHAUSTED)
    try:
        result = evaluate(agent, horizon.env_factory(ENV, s, 0.0), s.episodes, seed=EVAL_SEED, n_envs=s.n_envs, count_flops=False, progress=False)
        filt = agent.behaviour_filter
        cell: dict[str, Any] = {
            "success_rate": result.success_rate, "success_ci95": list(result.success_ci95), "mean_length": result.mean_length,
            "acceptance_rate": filt.acceptance_rate, "labelled_accuracy": list(filt.labelled_accuracy),
            # plans that took their closest sample (no kept latent within MAX_TRIES), of all plans
            "fallback_rate": filt.fallbacks / (filt.accepted + filt.fallbacks), "episodes": result.episodes,
        }  # fmt: skip
    finally:
        agent.filter_behaviours(None)
    common.write_json(path.parent, path.stem, cell)
    return cell


def plot(results: dict[str, Any], out: str, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4.5))
    x = np.arange(len(rows))
    rates = np.array([r["success_rate"] for r in rows])
    low, high = np.array([r["success_ci95"] for r in rows]).T
    ax1.bar(x, rates, yerr=[rates - low, high - rates], capsize=4, color="C0")
    ax1.set_xticks(x, [r["keep"] for r in rows], rotation=30, ha="right", fontsize=7)
    ax1.set(ylabel="success rate", ylim=(0, 1.05), title="success (95 % Wilson)")
    ax2.bar(x, [r["mean_successful_length"] or 0 for r in rows], color="C1", label="generated (successful episodes)")
    for p, length in enumerate(results["demo_lengths"].values()):
        ax2.axhline(length, linestyle="--", color=f"C{p + 2}", label=f"demonstrations: {PROFICIENCY_LEVELS[p]}")
    ax2.set_xticks(x, [r["keep"] for r in rows], rotation=30, ha="right", fontsize=7)
    ax2.set(ylabel="steps", title="episode length")
    ax2.legend(fontsize=7)
    fig.suptitle(f"Lift, LWD H_a={results['horizon']}: sampling only some operators' behaviours ({results['profile']} profile)")
    path = common.save_figure(fig, out, name)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=("tiny", "quick", "standard"))
    args = p.parse_args(argv)
    common.setup(args)
    s = setting(args.profile)
    h = s.horizons[0]
    run = f"horizon-{ENV}-{args.profile}"  # the horizon benchmark's cache and curves: one agent for both
    logs = Path(args.out) / "logs" / run if s.eval_every else None
    start = time.perf_counter()
    dataset, _ = horizon.demonstrations(s, args.profile)
    agent, train_seconds = horizon.trained_agent("LWD", h, s, 0, dataset, Path(args.out) / "cache" / run, args.device, ENV, logs)
    demos = labelled(dataset)
    counts = np.bincount(demos.tasks, minlength=len(PROFICIENCY_LEVELS))
    if (counts == 0).any():
        raise SystemExit(f"the demonstrations hold no episode of proficiency {[PROFICIENCY_LEVELS[i] for i in np.flatnonzero(counts == 0)]}")
    key = horizon.agent_key("LWD", h, 0, s)
    cells_dir = Path(args.out) / "cells" / f"filtering-{ENV}-{args.profile}"
    rows = []
    for label, keep, classifier in conditions():
        if keep is None:
            # The horizon benchmark's unperturbed evaluation, but in this benchmark's cells: the
            # horizon cell may come from an earlier training of this agent (a retrained agent is
            # another draw, as a new seed would be), and every row here must be the same agent's.
            cell = horizon.evaluate_cell(agent, ENV, s, 0.0, cells_dir / f"{key}-all-{s.episodes}ep.json")
        else:
            name = f"{key}-keep{''.join(map(str, keep))}-{classifier}{K if classifier == 'knn' else ''}-{ON_EXHAUSTED}{MAX_TRIES}-{s.episodes}ep.json"
            cell = evaluate_condition(agent, demos, keep, classifier, s, cells_dir / name)
        row = {"keep": label, "kept": None if keep is None else list(keep), "classifier": classifier,
               **{k: v for k, v in cell.items() if k != "episodes"}}  # fmt: skip
        if "episodes" in cell:
            successes = [e["length"] for e in cell["episodes"] if e["is_success"]]
            row["mean_successful_length"] = float(np.mean(successes)) if successes else None
        rows.append(row)
    demo_lengths = {PROFICIENCY_LEVELS[b]: float(np.mean(demos.lengths[demos.tasks == b])) for b in range(len(PROFICIENCY_LEVELS))}
    results = {
        "benchmark": "filtering", "env": s.env_id, "profile": args.profile, "machine": common.machine(), "horizon": h, "agent": key,
        "train_seconds": train_seconds, "episodes_per_condition": s.episodes, "eval_seed": EVAL_SEED, "max_tries": MAX_TRIES, "on_exhausted": ON_EXHAUSTED, "k": K,
        "demos": int(len(demos)), "demos_per_proficiency": dict(zip(PROFICIENCY_LEVELS, counts.tolist())), "demo_lengths": demo_lengths,
        "rows": rows, "seconds": time.perf_counter() - start,
    }  # fmt: skip
    name = f"filtering-{ENV}-{args.profile}"
    common.write_json(args.out, name, results)
    plot(results, args.out, name)
    columns = [("keep", "keep", "{}"), ("success", "success_rate", "{:.1%}"), ("mean length", "mean_length", "{:.0f}"),
               ("length (successes)", "mean_successful_length", "{:.0f}"), ("acceptance", "acceptance_rate", "{:.2f}"), ("fallbacks", "fallback_rate", "{:.2f}")]  # fmt: skip
    print(common.format_table(rows, columns))
    return results


if __name__ == "__main__":
    main()
