"""Behaviour sources of the mixed-quality experiment (paper App. G.2/H): SAC expert and medium actors.

    nohup python -m benchmarks.sac_experts > sac.log 2>&1 &         # HalfCheetah, standard: 200k steps, ~1 h
    python -m benchmarks.sac_experts --env walker2d                  # Walker2d-v5 instead
    python -m benchmarks.sac_experts --profile tiny --out /tmp/sac   # smoke test: 2,000 steps, ~1 min

Trains Stable-Baselines3's SAC (its defaults: 256x256 ReLU actor and critics, lr 3e-4, batch 256,
one gradient step per env step; SB3 is a test extra, needed here only) on gymnasium's
``HalfCheetah-v5`` (or ``Walker2d-v5``), evaluates the deterministic policy every
``eval_every`` steps on fixed seeds (episode ``k`` reset with ``EVAL_SEED + k``) and keeps every
evaluated actor as a snapshot.  When the run is done, two snapshots are exported (safetensors +
JSON metadata: architecture, spaces, measured mean return, training steps) for the
``mujoco/<task>-expert`` and ``-medium`` demonstration sources
(:mod:`lwd_gym.envs.locomotion`; ``-random`` needs no actor):

* *expert*: the final actor;
* *medium*: the first evaluated actor whose return reaches a third of the expert's (D4RL's
  "medium" is a policy stopped at about a third of the expert's return); if none before the
  final one does, the one closest to that.

SAC trains at ~65 steps/s on these 2 CPU cores (1 torch thread; gradient steps dominate, the
MuJoCo env runs at thousands of steps/s; 1,000 steps of the tiny profile, all with gradient
updates, took 11.7 s, 86 steps/s, beside two other jobs), so the standard 200k steps take about
an hour: run it in the background.  It is resumable: every ``save_every`` steps the model (``SAC.save``), its
replay buffer (``save_replay_buffer``) and the evaluations so far are written under
``--out/cache/sac-<task>-<profile>-<hash>/``; a rerun loads them (``SAC.load`` +
``load_replay_buffer``) and trains the remaining steps (the interrupted episode is restarted and
random streams are not restored, so a resumed run is not bit-identical to an uninterrupted one).
A finished run only re-exports.  Exports go to the package's ``lwd_gym/data/experts/`` for the
standard and paper profiles and to ``--out/sac-experts-<profile>/`` otherwise (so a smoke test never
replaces the shipped actors); ``--export-dir`` overrides.  Writes ``--out/sac_experts-<task>.json``
(profile, evaluations, exports, steps/s).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from lwd_gym.checkpoint import atomic_write
from lwd_gym.envs.locomotion import (
    BEHAVIOURS,
    LOCOMOTION,
    PACKAGE_EXPERTS,
    SACActor,
    export_sac_actor,
)

SEED = 0
EVAL_SEED = 10_000  # evaluation episode k resets with EVAL_SEED + k (training episodes use SB3's seeding)
MEDIUM_FRACTION = 1 / 3


@dataclass(frozen=True)
class Profile:
    """Training budget of one profile (SAC's other hyperparameters are SB3's defaults)."""

    steps: int
    eval_every: int
    eval_episodes: int
    save_every: int
    learning_starts: int


PROFILES = {
    "tiny": Profile(steps=2_000, eval_every=500, eval_episodes=1, save_every=1_000, learning_starts=500),
    "quick": Profile(steps=30_000, eval_every=5_000, eval_episodes=3, save_every=10_000, learning_starts=5_000),
    "standard": Profile(steps=200_000, eval_every=10_000, eval_episodes=5, save_every=20_000, learning_starts=10_000),
    "paper": Profile(steps=1_000_000, eval_every=20_000, eval_episodes=10, save_every=50_000, learning_starts=10_000),
}


def run_dir(task: str, profile: str, cfg: Profile, out: str | Path) -> Path:
    """The cache folder of a run: named by everything that makes it, so a changed budget starts
    a new run rather than resuming one with other settings."""
    blob = json.dumps({"task": task, "env": LOCOMOTION[task].env_id, "seed": SEED, **dataclasses.asdict(cfg)}, sort_keys=True)
    return Path(out) / "cache" / f"sac-{task}-{profile}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def evaluate_actor(actor: SACActor, env_id: str, episodes: int) -> tuple[float, float]:
    """Mean and standard deviation of the return of ``actor`` over ``episodes`` seeded episodes."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=EVAL_SEED + k)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(actor(obs))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return float(np.mean(returns)), float(np.std(returns))


def pick_medium(evaluations: Sequence[dict[str, Any]], fraction: float = MEDIUM_FRACTION) -> dict[str, Any]:
    """The *medium* evaluation: the first before the final one whose ``mean_return`` reaches
    ``fraction`` of the final one's, else the one closest to that target (the final itself when
    it is the only evaluation, or when the expert's return is not positive and it is closest)."""
    if not evaluations:
        raise ValueError("no evaluations to pick from")
    final = evaluations[-1]
    target = fraction * final["mean_return"]
    earlier = list(evaluations[:-1])
    if final["mean_return"] > 0:
        for e in earlier:
            if e["mean_return"] >= target:
                return e
    return min(earlier or [final], key=lambda e: abs(e["mean_return"] - target))


class _Progress:
    """Evaluations and snapshots of a run, kept in ``progress.json`` beside the model."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "progress.json"
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.evaluations: list[dict[str, Any]] = data.get("evaluations", [])
        self.segments: list[dict[str, float]] = data.get("segments", [])  # (steps, seconds) of each training session

    def save(self) -> None:
        text = json.dumps({"evaluations": self.evaluations, "segments": self.segments}, indent=2)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))


def _callback(model_dir: Path, progress: _Progress, cfg: Profile, env_id: str, verbose: bool) -> Any:
    """The SB3 callback that evaluates, snapshots and checkpoints during ``learn``."""
    from stable_baselines3.common.callbacks import BaseCallback

    class EvalAndSave(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.eval_seconds = 0.0
            self.segment: dict[str, float] = {}

        def _on_training_start(self) -> None:
            # This session's training steps and seconds, kept up to date at every save, so the
            # steps/s survive an interruption.
            self.start = time.perf_counter()
            self.segment = {"from_step": self.num_timesteps, "steps": 0, "train_seconds": 0.0}
            progress.segments.append(self.segment)

        def update_segment(self) -> None:
            self.segment["steps"] = self.num_timesteps - self.segment["from_step"]
            self.segment["train_seconds"] = time.perf_counter() - self.start - self.eval_seconds

        def _on_step(self) -> bool:
            # Called after each env step, before that step's gradient update: the final step is
            # left to train(), which evaluates and saves the model learn() ends with (the expert).
            step = self.num_timesteps
            if step >= cfg.steps:
                return True
            if step % cfg.eval_every == 0 and all(e["step"] != step for e in progress.evaluations):
                start = time.perf_counter()
                snapshot = export_sac_actor(self.model, model_dir / "snapshots" / f"step-{step}.safetensors", training_steps=step, env_id=env_id)
                mean, std = evaluate_actor(SACActor.load(snapshot), env_id, cfg.eval_episodes)
                progress.evaluations.append({"step": step, "mean_return": mean, "std_return": std, "snapshot": snapshot.name})
                self.eval_seconds += time.perf_counter() - start
                if verbose:
                    print(f"step {step:>9,}: deterministic return {mean:9.1f} +- {std:.1f} over {cfg.eval_episodes} episode(s)", flush=True)
            if step % cfg.save_every == 0:
                self.update_segment()
                save_run(self.model, model_dir, progress)
            return True

    return EvalAndSave()


def save_run(model: Any, directory: Path, progress: _Progress) -> None:
    """Replay buffer, model, then the evaluations, each written whole: the model is what a rerun
    resumes from, so an interrupted save leaves the previous checkpoint (or none) usable."""
    atomic_write(directory / "replay_buffer.pkl", lambda tmp: model.save_replay_buffer(tmp))
    atomic_write(directory / "model.zip", lambda tmp: model.save(tmp))
    progress.save()


def train(task: str, profile: str, out: str | Path, device: str = "cpu", verbose: bool = True) -> tuple[Path, _Progress]:
    """Train (or resume, or find finished) the SAC run of ``task`` and ``profile``."""
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.monitor import Monitor

    cfg = PROFILES[profile]
    env_id = LOCOMOTION[task].env_id
    directory = run_dir(task, profile, cfg, out)
    directory.mkdir(parents=True, exist_ok=True)
    progress = _Progress(directory)
    env = Monitor(gym.make(env_id))
    model_path = directory / "model.zip"
    if model_path.exists():
        model = SAC.load(model_path, env=env, device=device)
        model.load_replay_buffer(directory / "replay_buffer.pkl")
        if verbose:
            print(f"resuming {directory.name} at step {model.num_timesteps:,} of {cfg.steps:,}", flush=True)
    else:
        # The buffer holds the whole run (SB3 allocates it up front, and saves it whole).
        model = SAC("MlpPolicy", env, learning_starts=cfg.learning_starts, buffer_size=max(cfg.steps, 1), seed=SEED, device=device, verbose=0)
    remaining = cfg.steps - model.num_timesteps
    if remaining > 0:
        callback = _callback(directory, progress, cfg, env_id, verbose)
        model.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=False, progress_bar=False)
        callback.update_segment()
        save_run(model, directory, progress)
    env.close()
    if not progress.evaluations or progress.evaluations[-1]["step"] != model.num_timesteps:
        # The final actor, the expert, is evaluated once learn() has made its last update.
        step = model.num_timesteps
        snapshot = export_sac_actor(model, directory / "snapshots" / f"step-{step}.safetensors", training_steps=step, env_id=env_id)
        mean, std = evaluate_actor(SACActor.load(snapshot), env_id, cfg.eval_episodes)
        progress.evaluations.append({"step": step, "mean_return": mean, "std_return": std, "snapshot": snapshot.name})
        progress.save()
    return directory, progress


def export(task: str, profile: str, directory: Path, progress: _Progress, export_dir: Path) -> dict[str, dict[str, Any]]:
    """Copy the expert and medium snapshots to ``export_dir`` as ``<task>-<behaviour>.*`` with
    their behaviour, measured return and how they were chosen in the metadata."""
    import stable_baselines3

    cfg = PROFILES[profile]
    expert = progress.evaluations[-1]
    chosen = {"expert": expert, "medium": pick_medium(progress.evaluations)}
    exported = {}
    for behaviour, evaluation in chosen.items():
        source = directory / "snapshots" / evaluation["snapshot"]
        meta = json.loads(source.with_suffix(".json").read_text())
        meta.update({
            "behaviour": behaviour, "behaviour_id": BEHAVIOURS.index(behaviour), "env_id": LOCOMOTION[task].env_id,
            "mean_return": evaluation["mean_return"], "std_return": evaluation["std_return"], "eval_episodes": cfg.eval_episodes,
            "eval_seeds": f"{EVAL_SEED}..{EVAL_SEED + cfg.eval_episodes - 1}", "training_steps": evaluation["step"],
            "run_steps": expert["step"], "expert_return": expert["mean_return"], "medium_fraction": MEDIUM_FRACTION,
            "profile": profile, "seed": SEED, "stable_baselines3": stable_baselines3.__version__,
        })  # fmt: skip
        target = export_dir / f"{task}-{behaviour}.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp, source=source: shutil.copyfile(source, tmp))
        text = json.dumps(meta, indent=2) + "\n"
        atomic_write(target.with_suffix(".json"), lambda tmp, text=text: Path(tmp).write_text(text))
        for path in (target, target.with_suffix(".json")):
            path.chmod(0o644)  # atomic_write's temporary files are private; package data must be readable
        exported[behaviour] = {"path": str(target), **{k: meta[k] for k in ("mean_return", "std_return", "training_steps")}}
    return exported


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0], profiles=tuple(PROFILES), default="standard")
    p.add_argument("--env", choices=sorted(LOCOMOTION), default="halfcheetah", help="locomotion task (default halfcheetah)")
    p.add_argument("--export-dir", default=None, help="where to export the actors (default: see the module docstring)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(threads=1, device="cpu")  # SAC's small networks: one thread; the GPU gains little here
    args = p.parse_args(argv)
    common.setup(args)
    start = time.perf_counter()
    directory, progress = train(args.env, args.profile, args.out, device=args.device, verbose=not args.quiet)
    if args.export_dir is not None:
        export_dir = Path(args.export_dir)
    elif args.profile in ("standard", "paper"):
        export_dir = PACKAGE_EXPERTS
    else:
        export_dir = Path(args.out) / f"sac-experts-{args.profile}"
    exported = export(args.env, args.profile, directory, progress, export_dir)
    steps = sum(s["steps"] for s in progress.segments)
    seconds = sum(s["train_seconds"] for s in progress.segments)
    results = {
        "benchmark": "sac_experts", "profile": args.profile, "task": args.env, "env_id": LOCOMOTION[args.env].env_id,
        "machine": common.machine(), "config": dataclasses.asdict(PROFILES[args.profile]), "seed": SEED, "run_dir": str(directory),
        "evaluations": progress.evaluations, "segments": progress.segments, "exported": exported,
        "train_steps_per_second": steps / seconds if seconds > 0 else None, "seconds": time.perf_counter() - start,
    }  # fmt: skip
    json_path = common.write_json(args.out, f"sac_experts-{args.env}", results)
    if not args.quiet:
        rate = results["train_steps_per_second"]
        print(f"\nSAC {args.env}: {steps:,} steps trained this far at {rate:.0f} steps/s (evaluation excluded)" if rate else "")
        for behaviour, e in exported.items():
            print(f"{behaviour:7s}: step {e['training_steps']:>9,}, return {e['mean_return']:.1f} +- {e['std_return']:.1f} -> {e['path']}")
        print(f"wrote {json_path}")
    return results


if __name__ == "__main__":
    main()
