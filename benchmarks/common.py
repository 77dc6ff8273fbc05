"""What every benchmark shares: profiles, machine description, timing, JSON + PNG + table output."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lwd_gym.agents.config import AgentConfig
from lwd_gym.checkpoint import atomic_write

PROFILES = ("tiny", "quick", "paper")  # tiny: seconds, for the smoke tests; quick: <= 20 CPU minutes


def parser(description: str, profiles: Sequence[str] = PROFILES, default: str = "quick") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--profile", choices=profiles, default=default, help="tiny (smoke test), quick (<= 20 min on 2 CPU cores), standard (trained to competence), paper")
    p.add_argument("--out", default="benchmarks/results", help="directory for the JSON and PNG")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return p


def setup(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MINARI_DATASETS_PATH", str(Path(args.out).resolve() / "minari"))  # Minari needs it absolute


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def median_time(fn: Callable[[], Any], *, repeats: int = 5, number: int = 1, warmup: int = 1) -> float:
    """Median over ``repeats`` of the mean wall-clock seconds of ``number`` calls (after warm-up)."""
    for _ in range(warmup):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """Rows as a GitHub-markdown table; ``columns`` = (header, key, format)."""
    head = "| " + " | ".join(h for h, _, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(("" if r.get(k) is None else f.format(r[k])) for _, k, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def cache_key(slug: str, config: AgentConfig, train: Mapping[str, Any], data: Any) -> str:
    """File-name-safe name of a cached trained agent: a readable ``slug`` plus a hash of
    everything that makes the agent: its config class and *every* field (defaults included, so
    changing a default retrains too), its ``learn`` budgets and its data (ids, counts)."""
    blob = json.dumps({"config": type(config).__name__, "fields": config.to_dict(), "train": dict(train), "data": data}, sort_keys=True, default=str)
    return f"{slug}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def result_name(base: str, profile: str, partial: bool = False, tag: str = "") -> str:
    """The JSON / PNG name of a benchmark run: ``base`` for the tiny and quick profiles, else
    ``base-PROFILE``; then ``-TAG`` (a recipe probe) and ``-partial`` (a part of the sweep)."""
    name = base if profile in ("tiny", "quick") else f"{base}-{profile}"
    return name + (f"-{tag}" if tag else "") + ("-partial" if partial else "")


def write_json(out_dir: str | os.PathLike, name: str, payload: dict[str, Any]) -> Path:
    path = Path(out_dir) / f"{name}.json"
    text = json.dumps(payload, indent=2, default=float)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_figure(fig: Any, out_dir: str | os.PathLike, name: str) -> Path:
    path = Path(out_dir) / f"{name}.png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return path


def synthetic_dataset(dataset_id: str, obs_dim: int, act_dim: int, episodes: int, length: int, seed: int = 0):
    """A smooth random-walk Minari dataset of the given sizes: for timing, where what the agent
    learns does not matter (latency depends on the network sizes only)."""
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    if dataset_id in minari.list_local_datasets():
        return minari.load_dataset(dataset_id)
    rng = np.random.default_rng(seed)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (act_dim,), np.float32)
    buffers = []
    for i in range(episodes):
        actions = np.tanh(np.cumsum(rng.normal(0, 0.2, (length, act_dim)), axis=0)).astype(np.float32)
        obs = np.cumsum(rng.normal(0, 0.1, (length + 1, obs_dim)), axis=0).astype(np.float32)
        buffers.append(
            EpisodeBuffer(id=i, observations=obs, actions=actions, rewards=np.zeros(length), terminations=np.zeros(length, bool),
                          truncations=np.r_[np.zeros(length - 1, bool), True], infos={})  # fmt: skip
        )
    return minari.create_dataset_from_buffers(dataset_id, buffers, observation_space=obs_space, action_space=act_space)


#: what collect() said about a dataset it wrote (the expert's success rate), kept in the Minari
#: dataset's own folder so it goes when the dataset goes
COLLECT_RECORD = "lwd_gym_collect.json"


def demonstrations(source: str, num_episodes: int, seed: int = 0, *, dataset_id: str | None = None, progress: bool = True):
    """The Minari dataset of ``num_episodes`` expert episodes of demo source ``source`` (see
    :func:`lwd_gym.data.sources.collect`), collected once and then loaded: its id names the
    request (unless ``dataset_id`` is given), so benchmarks asking for the same data share it.
    Every benchmark gets its demonstrations here; ``expert_success(dataset)`` is the expert's
    success rate over all the episodes it rolled (kept or not)."""
    import minari
    from minari.storage import get_dataset_path

    from lwd_gym.data.sources import collect

    dataset_id = dataset_id or f"bench/{source.replace('/', '-')}-{num_episodes}ep-seed{seed}-v0"
    record = get_dataset_path(dataset_id) / COLLECT_RECORD
    if dataset_id in minari.list_local_datasets() and record.exists():
        return minari.load_dataset(dataset_id)
    dataset, success = collect(source, num_episodes, seed, dataset_id=dataset_id, progress=progress)
    text = json.dumps({"source": source, "episodes": num_episodes, "seed": seed, "expert_success": success})
    atomic_write(record, lambda tmp: Path(tmp).write_text(text))
    return dataset


def expert_success(dataset: Any) -> float:
    """The success rate :func:`demonstrations` recorded for the expert that wrote ``dataset``."""
    from minari.storage import get_dataset_path

    return float(json.loads((get_dataset_path(dataset.spec.dataset_id) / COLLECT_RECORD).read_text())["expert_success"])
