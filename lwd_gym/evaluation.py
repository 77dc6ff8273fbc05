"""``evaluate()``: roll any agent in parallel Gymnasium envs, with seeded episodes, into an ``EvalResult``.

Episode ``k`` is always reset with seed ``seed + k`` and, when the agent supports it
(:meth:`~lwd_gym.agents.BaseAgent.seed_envs`), samples its plans from noise seeded with the same
number, so results do not depend on how many envs run in parallel or which env ran which
episode (vector envs' autoreset would otherwise re-seed nothing and hand episodes to whichever
env finishes first).  Envs run with autoreset disabled and are reset explicitly.

With ``video_dir``, the first ``n_videos`` episodes are recorded as MP4 files by Gymnasium's
:class:`~gymnasium.wrappers.RecordVideo` (which writes through moviepy, the ``video`` extra).
Only the last env of the vector env is wrapped (``AsyncVectorEnv`` builds a throwaway copy of
the first in this process to read its spaces), and it runs episodes ``0 .. n_videos - 1`` in
order before it takes any other (the other envs start at episode ``n_videos``); since every
episode is seeded by its index, this changes no result, and the recorder's own episode counter
equals the evaluation's episode index, so ``eval-episode-<k>.mp4`` is episode ``k``.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from gymnasium.wrappers import RecordVideo
from tqdm.auto import tqdm

from lwd_gym.data.recover import env_factory
from lwd_gym.video import checked_rendering_env, recorder, require_moviepy, video_path
from lwd_gym.validation import integer, positive_int

EnvLike = str | minari.MinariDataset | gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv


@dataclass
class EvalResult:
    """Summary of :func:`evaluate` (means over episodes) plus every episode's record."""

    agent: str
    env: str
    n_episodes: int
    seed: int
    success_rate: float
    success_ci95: tuple[float, float]
    mean_max_reward: float
    mean_return: float
    std_return: float
    mean_length: float
    diffusion_queries_per_episode: float
    wall_time_per_episode: float
    wall_time_per_step: float
    predict_time_per_step: float
    flops_per_step: float | None
    episodes: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (episodes included)."""
        return asdict(self)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The result as JSON; also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        return cls(**{**d, "success_ci95": tuple(d["success_ci95"])})

    def __str__(self) -> str:
        return compare([self])


_COLUMNS = (
    ("agent", "agent", "{}"),
    ("env", "env", "{}"),
    ("episodes", "n_episodes", "{}"),
    ("success", "success_rate", "{:.1%}"),
    ("95% CI", "success_ci95", "{0[0]:.0%}-{0[1]:.0%}"),
    ("max reward", "mean_max_reward", "{:.3f}"),
    ("return", "mean_return", "{:.2f}"),
    ("length", "mean_length", "{:.1f}"),
    ("queries/ep", "diffusion_queries_per_episode", "{:.1f}"),
    ("predict ms/step", "predict_time_per_step", "{:.3f}"),
    ("MFLOPs/step", "flops_per_step", "{:.4g}"),
)


def compare(results: Sequence[EvalResult]) -> str:
    """A plain-text table of several results, one row each."""

    def cell(result: EvalResult, key: str, fmt: str) -> str:
        value = getattr(result, key)
        if value is None:
            return "-"
        if key == "predict_time_per_step":
            value *= 1e3
        elif key == "flops_per_step":
            value /= 1e6
        return fmt.format(value)

    rows = [[title for title, _, _ in _COLUMNS]] + [[cell(r, key, fmt) for _, key, fmt in _COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (sane at 0 % and 100 %, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _make_vector_env(
    env: EnvLike, n_envs: int, vectorization: str, env_kwargs: dict[str, Any], video: tuple[str | os.PathLike, int] | None = None
) -> tuple[gym.vector.VectorEnv, str, bool, RecordVideo | None]:
    """``(vector env with autoreset disabled, a name for it, whether we own (and close) it,
    the recording env of a given env instance, which evaluate() must finish itself)``.

    ``video = (video_dir, n_videos)`` wraps the last env in RecordVideo, checked to render first.
    """
    disabled = {"autoreset_mode": gym.vector.AutoresetMode.DISABLED}
    if isinstance(env, gym.vector.VectorEnv):
        if video is not None:
            raise ValueError(
                "video_dir: evaluate() records by wrapping one env in gymnasium's RecordVideo, which a given "
                "VectorEnv's envs can't be; pass an env id, a factory or a gymnasium.Env"
            )
        if env.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.DISABLED:
            raise ValueError(
                "evaluate() seeds every episode itself and needs a vector env built with "
                "autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED (or pass an env id or a factory)"
            )
        return env, getattr(env.spec, "id", None) or type(env).__name__, False, None
    if isinstance(env, gym.Env):
        if n_envs != 1:
            raise ValueError(f"a single env instance runs one episode at a time: pass n_envs=1 (got {n_envs}) or an env id / factory")
        name = getattr(env.spec, "id", None) or type(env).__name__
        if video is None:
            return gym.vector.SyncVectorEnv([lambda: env], **disabled), name, False, None
        recording = recorder(checked_rendering_env(lambda: env, f"the env {name}", owned=False), *video)
        return gym.vector.SyncVectorEnv([lambda: recording], **disabled), name, False, recording
    if isinstance(env, (str, minari.MinariDataset)):
        name, factory = env_factory(env, **env_kwargs)
        render_factory = env_factory(env, **{"render_mode": "rgb_array", **env_kwargs})[1]
    elif callable(env):
        name, factory = getattr(env, "__name__", "env"), env
        render_factory = env
    else:
        raise TypeError(f"env must be an env id, a gymnasium.Env, a factory or a gymnasium VectorEnv, got {type(env).__name__}")
    if vectorization not in ("auto", "sync", "async"):
        raise ValueError(f"vectorization must be 'auto', 'sync' or 'async', got {vectorization!r}")
    if video is not None:
        # Built and checked first, in this process, so that an env that cannot render fails before anything runs.
        if isinstance(env, (str, minari.MinariDataset)):
            probe = checked_rendering_env(render_factory, f"gymnasium.make({name!r}, render_mode='rgb_array')", from_id=True)
        else:
            probe = checked_rendering_env(render_factory, f"the env from factory {name}")
    if video is not None and n_envs == 1:
        vectorization = "sync"  # a lone recorded env gains nothing from a subprocess (whose throwaway copy would record too)
    elif vectorization == "auto":
        vectorization = "async" if n_envs > 1 and (os.cpu_count() or 1) > 1 and _is_slow(factory) else "sync"
    factories = [factory] * n_envs
    if video is not None:
        if vectorization == "sync":
            factories[-1] = lambda: recorder(probe, *video)
        else:  # the subprocess builds its own
            probe.close()
            factories[-1] = lambda: recorder(render_factory(), *video)
    vector_class = gym.vector.SyncVectorEnv if vectorization == "sync" else gym.vector.AsyncVectorEnv
    return vector_class(factories, **disabled), name, True, None


def _is_slow(factory: Callable[[], gym.Env], threshold_s: float = 5e-4) -> bool:
    """Whether an env step costs more than ``threshold_s`` (then subprocesses pay for their IPC)."""
    probe = factory()
    try:
        probe.reset(seed=0)
        start, steps = time.perf_counter(), 0
        while steps < 20:
            _, _, terminated, truncated, _ = probe.step(probe.action_space.sample())
            steps += 1
            if terminated or truncated:
                probe.reset()
        return (time.perf_counter() - start) / steps > threshold_s
    finally:
        probe.close()


def _present(info: dict[str, Any], key: str, n: int) -> np.ndarray:
    """Which envs reported ``key`` in a vector env's ``info`` (its ``_key`` mask)."""
    if key not in info:
        return np.zeros(n, dtype=bool)
    return np.broadcast_to(np.asarray(info.get(f"_{key}", True), dtype=bool), (n,))


def _flag(info: dict[str, Any], key: str, n: int) -> np.ndarray:
    """``info[key]`` of a vector env step as a bool array (false where an env did not report it)."""
    if key not in info:
        return np.zeros(n, dtype=bool)
    return np.asarray(info[key], dtype=bool).reshape(n) & _present(info, key, n)


def check_action_space(agent_space: gym.Space | None, env_space: gym.Space) -> None:
    """The agent's actions fit the env: a Box of the same shape (bounds may differ: actions are
    clipped to the agent's space, which is the one it was trained in)."""
    if agent_space is None:
        return
    if not isinstance(env_space, gym.spaces.Box):
        raise ValueError(f"the env's action space is {env_space}; lwd-gym agents act in continuous (Box) action spaces only")
    if agent_space.shape != env_space.shape:
        raise ValueError(f"the agent's actions have shape {agent_space.shape}, the env expects {env_space.shape}")


def evaluate(
    agent: Any,
    env: EnvLike,
    n_episodes: int = 50,
    seed: int = 0,
    *,
    n_envs: int = 8,
    deterministic: bool = False,
    vectorization: str = "auto",
    env_kwargs: dict[str, Any] | None = None,
    info_keys: Sequence[str] = (),
    count_flops: bool = True,
    progress: bool = True,
    video_dir: str | os.PathLike | None = None,
    n_videos: int | None = None,
) -> EvalResult:
    """Run ``n_episodes`` seeded episodes of ``agent.predict`` and summarise them.

    :param agent: any object with SB3's ``predict`` (every lwd_gym agent; SB3 models too).
        Wall-clock and per-step times include the env; ``predict_time_per_step`` is the agent's share.
    :param env: an env id (``gymnasium.make(env, **env_kwargs)`` through :func:`lwd_gym.envs.make_env`),
        a Minari dataset (its recorded eval env, :func:`lwd_gym.data.recover_env`), a ``gymnasium.Env``
        (then ``n_envs=1``), a zero-argument factory, or a ``VectorEnv`` with autoreset disabled.
    :param n_episodes: episodes to run; episode ``k`` is reset with seed ``seed + k``.
    :param n_envs: parallel envs (ignored for a given vector env).
    :param deterministic: passed to ``predict``.
    :param vectorization: ``"sync"``, ``"async"`` (subprocesses) or ``"auto"`` (async when an
        env step is slow enough for subprocesses to pay off).
    :param info_keys: ``info`` keys whose value at an episode's last step goes in its record.
    :param count_flops: measure FLOPs per step (:meth:`~lwd_gym.agents.BaseAgent.flops_per_step`).
    :param progress: tqdm bar over episodes.
    :param video_dir: record episodes ``0 .. n_videos - 1`` as MP4 files
        ``<video_dir>/eval-episode-<k>.mp4`` (gymnasium's ``RecordVideo``; needs moviepy, the
        ``video`` extra, and an env that renders ``rgb_array``: an env id is made with
        ``render_mode="rgb_array"``, a factory or env instance must have it already, a given
        ``VectorEnv`` can't be recorded).  Each recorded episode's record gets a ``"video"`` path.
    :param n_videos: episodes to record (default 1 with ``video_dir``); more than ``n_episodes``
        records every episode; 0 records none.  Needs ``video_dir``.

    An episode succeeds if ``info["is_success"]`` or ``info["success"]`` was true at any step.
    """
    n_episodes, n_envs = positive_int("n_episodes", n_episodes), positive_int("n_envs", n_envs)
    if n_videos is not None and video_dir is None:
        raise ValueError(f"n_videos={n_videos!r} needs video_dir (the directory to write the videos in)")
    # Episodes 0 .. n_videos - 1 run in order on the last env (the recorded one), the rest on any env.
    n_videos = 0 if video_dir is None else min(integer("n_videos", 1 if n_videos is None else n_videos, minimum=0), n_episodes)
    n_envs = min(n_envs, n_episodes - max(n_videos - 1, 0))  # more envs would only idle
    video = None
    if n_videos:
        require_moviepy()
        video = (video_dir, n_videos)
    envs, env_name, owned, recorder = _make_vector_env(env, n_envs, vectorization, dict(env_kwargs or {}), video)
    n = envs.num_envs
    space = getattr(agent, "observation_space", None)
    try:
        if space is not None and space.shape != envs.single_observation_space.shape:
            raise ValueError(f"the agent expects observations of shape {space.shape}, the env gives {envs.single_observation_space.shape}")
        check_action_space(getattr(agent, "action_space", None), envs.single_action_space)
    except ValueError:
        if owned:
            envs.close()
        raise
    records: list[dict[str, Any]] = []
    episode = np.full(n, -1)  # episode index each env is running (-1: idle filler at the end)
    next_video, next_episode = 0, n_videos  # the last env runs the recorded episodes first, in order
    returns, max_rewards, lengths = np.zeros(n), np.full(n, -np.inf), np.zeros(n, dtype=int)
    queries, success = np.zeros(n, dtype=int), np.zeros(n, dtype=bool)
    predict_time, env_steps = 0.0, 0
    seed_envs = getattr(agent, "seed_envs", None)
    counts_queries = bool(getattr(agent, "plans_with_diffusion", False))
    bar = tqdm(total=n_episodes, desc=f"evaluate {type(agent).__name__} on {env_name}", disable=not progress, leave=False)
    start_time = time.perf_counter()
    try:
        resetting = np.ones(n, dtype=bool)
        obs = None
        while len(records) < n_episodes:
            if resetting.any():
                ids = np.flatnonzero(resetting)
                seeds: list[int | None] = [None] * n
                for i in ids:
                    if i == n - 1 and next_video < n_videos:
                        episode[i], next_video = next_video, next_video + 1
                    elif next_episode < n_episodes:
                        episode[i], next_episode = next_episode, next_episode + 1
                    else:
                        episode[i] = -1
                    seeds[i] = seed + int(episode[i]) if episode[i] >= 0 else None
                options = None if obs is None else {"reset_mask": resetting.copy()}
                obs, info = envs.reset(seed=seeds, options=options)
                returns[ids], max_rewards[ids], lengths[ids], queries[ids] = 0.0, -np.inf, 0, 0
                success[ids] = (_flag(info, "is_success", n) | _flag(info, "success", n))[ids]
                running = [int(i) for i in ids if episode[i] >= 0]
                if seed_envs is not None and running:
                    seed_envs(running, [seeds[i] for i in running], num_envs=n)
            t0 = time.perf_counter()
            actions, _ = agent.predict(obs, episode_start=resetting, deterministic=deterministic)
            predict_time += time.perf_counter() - t0
            if counts_queries:
                queries += np.asarray(agent.last_replanned, dtype=int)
            obs, reward, terminated, truncated, info = envs.step(actions)
            env_steps += n
            reward = np.asarray(reward, dtype=np.float64)
            returns += reward
            max_rewards = np.maximum(max_rewards, reward)
            lengths += 1
            success |= _flag(info, "is_success", n) | _flag(info, "success", n)
            resetting = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
            for i in np.flatnonzero(resetting & (episode >= 0)):
                record = {
                    "episode": int(episode[i]),
                    "seed": seed + int(episode[i]),
                    "return": float(returns[i]),
                    "max_reward": float(max_rewards[i]),
                    "length": int(lengths[i]),
                    "is_success": bool(success[i]),
                    "diffusion_queries": int(queries[i]),
                }
                if episode[i] < n_videos:
                    record["video"] = video_path(video_dir, int(episode[i]))
                for key in info_keys:
                    if _present(info, key, n)[i]:
                        value = np.asarray(info[key])[i]
                        record[key] = value.item() if np.ndim(value) == 0 else value.tolist()
                records.append(record)
                bar.update()
    finally:
        bar.close()
        if owned:
            envs.close()  # closes the recorder too, which writes the last video
        elif recorder is not None and recorder.recording:
            recorder.stop_recording()  # the caller's env stays open
    wall = time.perf_counter() - start_time
    records.sort(key=lambda r: r["episode"])
    flops = None
    if count_flops and hasattr(agent, "flops_per_step"):
        flops = float(agent.flops_per_step())
    returns_all = np.array([r["return"] for r in records])
    wins = sum(r["is_success"] for r in records)
    return EvalResult(
        agent=type(agent).__name__,
        env=env_name,
        n_episodes=len(records),
        seed=seed,
        success_rate=wins / len(records),
        success_ci95=wilson_interval(wins, len(records)),
        mean_max_reward=float(np.mean([r["max_reward"] for r in records])),
        mean_return=float(returns_all.mean()),
        std_return=float(returns_all.std()),
        mean_length=float(np.mean([r["length"] for r in records])),
        diffusion_queries_per_episode=float(np.mean([r["diffusion_queries"] for r in records])),
        wall_time_per_episode=wall / len(records),
        wall_time_per_step=wall / env_steps,
        predict_time_per_step=predict_time / env_steps,
        flops_per_step=flops,
        episodes=records,
    )
