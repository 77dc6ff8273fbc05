"""Evaluation videos: the checks and the Gymnasium ``RecordVideo`` wrapper that
:func:`lwd_gym.evaluate` (``video_dir=``, ``n_videos=``) and ``lwd-gym eval --video`` use."""
from __future__ import annotations

import os
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordVideo

#: File name prefix of the recorded videos: RecordVideo writes ``eval-episode-<k>.mp4``.
VIDEO_PREFIX = "eval"


def video_path(video_dir: str | os.PathLike, episode: int) -> str:
    """Where :func:`evaluate` writes the video of ``episode`` (an absolute path)."""
    return os.path.join(os.path.abspath(video_dir), f"{VIDEO_PREFIX}-episode-{episode}.mp4")


def require_moviepy() -> None:
    """RecordVideo writes MP4s through moviepy; fail before any env is built if it is missing."""
    try:
        import moviepy  # noqa: F401
    except ImportError as err:
        raise ImportError("recording evaluation videos needs moviepy: pip install 'lwd-gym[video]'") from err


def checked_rendering_env(make: Callable[[], gym.Env], what: str, *, from_id: bool = False, owned: bool = True) -> gym.Env:
    """``make()``, checked to render RGB images (``render_mode="rgb_array"``), else a ValueError
    naming the env (``what``); the env is reset once to check that ``render()`` returns an image.

    :param from_id: ``make`` is ``gymnasium.make(id, render_mode="rgb_array")``: its errors (an
        env that takes no ``render_mode``) become that ValueError too.
    :param owned: close the env when it fails the check (not a caller's env instance).
    """
    try:
        probe = make()
    except (ValueError, TypeError, gym.error.Error) as err:
        if not from_id:
            raise
        raise ValueError(f"recording videos needs {what}, which fails: {err}") from err
    try:
        mode = getattr(probe, "render_mode", None)
        if mode != "rgb_array":
            hint = "" if from_id else " (make it with render_mode='rgb_array')"
            raise ValueError(f"recording videos needs render_mode='rgb_array'; {what} has render_mode={mode!r}{hint}")
        probe.reset()
        frame = probe.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3:
            got = f"an array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"recording videos needs RGB frames (H, W, 3) from render(); {what} returned {got}")
    except Exception:
        if owned:
            probe.close()
        raise
    return probe


def recorder(env: gym.Env, video_dir: str | os.PathLike, n_videos: int) -> RecordVideo:
    """``env`` recording its first ``n_videos`` episodes (whole episodes, one file each)."""
    return RecordVideo(env, os.fspath(video_dir), episode_trigger=lambda k: k < n_videos, name_prefix=VIDEO_PREFIX)
