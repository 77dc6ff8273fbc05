"""How the margins of the learning tests were set; run by hand, not collected by pytest.

A learning test asserts a contrast (trained agent vs. a floor, task 0 vs. task 1) whose margin
must hold on any machine.  A different CPU or thread count changes training like a different
seed does, so each margin is the worst value over several training seeds, with 1 and 2 torch
threads, less some slack.  Each test module exposes the ``measure_*`` function its test calls;
this script runs it over seeds and prints one JSON line per run and the minimum of each metric:

    OMP_NUM_THREADS=1 python tests/margin_study.py task_following --seeds 0 1 2 3 4
    OMP_NUM_THREADS=2 python tests/margin_study.py all --seeds 0 1 2 3 4

Results of the last study are in ``tests/MARGINS.md``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

STUDIES = {
    "demo": ("test_lwd_agent", "measure_demo_agent"),
    "task_following": ("test_task_following", "measure_task_following"),
    "world_model": ("test_world_model", "measure_world_model_agent"),
    "baselines": ("test_baselines", "measure_baselines"),
    "transformer": ("test_transformer_denoiser", "measure_transformer_fit"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=[*STUDIES, "all"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    sys.path.insert(0, str(Path(__file__).parent.parent))
    import torch

    threads = torch.get_num_threads()
    for name in STUDIES if args.study == "all" else [args.study]:
        module, function = STUDIES[name]
        measure = getattr(importlib.import_module(module), function)
        rows = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                os.environ["MINARI_DATASETS_PATH"] = tmp
                t0 = time.perf_counter()
                row = measure(seed)
            rows.append(row)
            print(json.dumps({"study": name, "seed": seed, "threads": threads, "seconds": round(time.perf_counter() - t0, 1), **row}), flush=True)
        print(json.dumps({"study": name, "threads": threads, "min": {k: min(r[k] for r in rows) for k in rows[0]}, "max": {k: max(r[k] for r in rows) for k in rows[0]}}), flush=True)


if __name__ == "__main__":
    main()
