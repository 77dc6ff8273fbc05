"""Time to competence on Metaworld-10 (issue #22, item 7): success against training wall-clock.

    python -m benchmarks.competence          # after (parts of) python -m benchmarks.metaworld --profile standard

Reads what the Metaworld standard sweep left behind, trains nothing: each agent's learning curves
(``--out/logs/metaworld/<key>/<stage>.csv``: the ``seconds`` column is the stage's wall-clock,
``eval_success`` the success on the 2 in-training episodes per task, 20 in all, every 2,000
steps of the agent's last stage) and its test cell (``--out/cells/metaworld/<key>-eval500-...``,
500 episodes).  A multi-stage agent's clock runs on from one stage to the next (LWD: VAE, then
latent diffusion), so a curve starts where its acting stage starts.

Writes ``--out/competence-metaworld.json`` / ``.png``: per agent, the curve, the first training
time at which the in-training success reached 90 % (a 20-episode estimate: +-15 points), the
total training time and the test success.  Agents whose logs predate the ``seconds`` column are
listed without a time.  Times are those of the machine and thread count that trained them
(``--threads 1`` in the standard sweep; the other core was often busy).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from lwd_gym.train_log import StageLog

#: the order stages run in, per agent family (the key's first word)
STAGE_ORDER = {"lwd": ("vae", "latent-diffusion"), "dp": ("diffusion",), "mlp": ("bc",)}
TARGET = 0.9


def curve(logs: Path, family: str) -> dict[str, Any]:
    """One agent's in-training success against its cumulative training seconds."""
    offset, points, timed = 0.0, [], True
    for stage in STAGE_ORDER[family]:
        path = logs / f"{stage}.csv"
        if not path.exists():
            continue
        log = StageLog.from_csv(path)
        seconds = log.seconds
        if len(seconds) == 0 or np.isnan(seconds).all():
            timed = False
            seconds = np.full(len(log.rows), np.nan)
        steps, success = log.evaluations()
        at = {int(s): float(seconds[int(s) - 1]) for s in steps}
        points += [{"stage": stage, "step": int(s), "seconds": offset + at[int(s)], "success": float(v)} for s, v in zip(steps, success)]
        offset += float(seconds[-1]) if len(seconds) else 0.0
    reached = next((p["seconds"] for p in points if p["success"] >= TARGET), None) if timed else None
    total = offset if timed else None
    return {"points": points, "train_seconds": total, "seconds_to_target": reached, "timed": timed,
            "train_minutes": None if total is None else total / 60, "minutes_to_target": None if reached is None else reached / 60}  # fmt: skip


def collect(out: Path) -> list[dict[str, Any]]:
    rows = []
    for logs in sorted((out / "logs" / "metaworld").glob("*")):
        key = logs.name
        family = key.split("-")[0]
        if family not in STAGE_ORDER or not logs.is_dir():
            continue
        cells = sorted((out / "cells" / "metaworld").glob(f"{key}-eval*-seed*.json"))
        test = json.loads(cells[0].read_text()) if cells else {}
        rows.append({"key": key, "family": family.upper(), **curve(logs, family),
                     "test_success": test.get("success_rate"), "test_ci95": test.get("success_ci95"), "test_episodes": test.get("episodes")})  # fmt: skip
    return rows


def plot(rows: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        pts = [p for p in r["points"] if p["seconds"] == p["seconds"]]
        if pts:
            line, = ax.plot([p["seconds"] / 60 for p in pts], [p["success"] for p in pts], marker="o", label=r["key"].rsplit("-", 1)[0])
            if r["test_success"] is not None:
                ax.plot([pts[-1]["seconds"] / 60], [r["test_success"]], marker="*", markersize=12, color=line.get_color())
    ax.axhline(TARGET, color="k", linestyle=":", linewidth=1)
    ax.set(xlabel="training wall-clock (min, 1 torch thread)", ylabel="success (o: 20 in-training episodes, *: 500 test episodes)",
           ylim=(-0.03, 1.03), title="Metaworld-10: time to competence (standard profile)")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    return common.save_figure(fig, out, "competence-metaworld")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=("standard",), default="standard")
    args = p.parse_args(argv)
    out = Path(args.out)
    rows = collect(out)
    if not rows:
        raise SystemExit(f"no learning curves under {out / 'logs' / 'metaworld'}: run python -m benchmarks.metaworld --profile standard first")
    results = {"benchmark": "competence-metaworld", "target": TARGET, "rows": rows}
    json_path = common.write_json(out, "competence-metaworld", results)
    png_path = plot(rows, out)
    print(common.format_table(rows, [
        ("agent", "key", "{}"), ("minutes to 90 % (in training)", "minutes_to_target", "{:.1f}"),
        ("training minutes", "train_minutes", "{:.1f}"), ("test success", "test_success", "{:.1%}"),
    ]))  # fmt: skip
    print(f"wrote {json_path} and {png_path}")
    return results


if __name__ == "__main__":
    main()
