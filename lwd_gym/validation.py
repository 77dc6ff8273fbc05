"""Argument checks shared by every agent's constructor, so a bad value is refused at
construction, with a ``ValueError`` naming the argument, before any training time is spent."""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from lwd_gym.nn.diffusion import DENOISERS, NUM_TRAIN_TIMESTEPS, SAMPLERS
from lwd_gym.nn.unet1d import UNET_PRESETS


def integer(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an int; booleans and non-integral numbers are refused (``seed=1.5``, ``action_horizon=True``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def positive_int(name: str, value: Any) -> int:
    return integer(name, value, minimum=1)


def positive_float(name: str, value: Any) -> float:
    """A finite number > 0 (learning rates)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def widths(name: str, value: Any, allow_empty: bool = False) -> list[int]:
    """Hidden-layer widths: a sequence of positive integers."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of positive layer widths, got {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must list at least one layer width, got {value!r}")
    return [positive_int(f"{name}[{i}]", w) for i, w in enumerate(value)]


def choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return value


def denoiser(denoiser: str, size: str, size_name: str, length: int, length_name: str) -> None:
    """The denoiser exists, has that size, and can take a sequence of ``length`` positions
    (the UNet halves the sequence ``len(down_dims) - 1`` times)."""
    choice("denoiser", denoiser, sorted(DENOISERS))
    if size not in DENOISERS[denoiser]:
        raise ValueError(f"{size_name} must be one of {sorted(DENOISERS[denoiser])} for the {denoiser} denoiser, got {size!r}")
    if denoiser == "unet":
        factor = 2 ** (len(UNET_PRESETS[size][1]) - 1)
        if length % factor:
            raise ValueError(
                f"{length_name}={length} must be a multiple of {factor} for the UNet denoiser (it halves the sequence "
                f"{len(UNET_PRESETS[size][1]) - 1} times); or use denoiser='transformer'"
            )


def sampler(scheduler: str, num_inference_steps: Any) -> int:
    choice("scheduler", scheduler, sorted(SAMPLERS))
    steps = positive_int("num_inference_steps", num_inference_steps)
    if steps > NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"num_inference_steps must be at most the {NUM_TRAIN_TIMESTEPS} diffusion steps the model is trained with, got {steps}")
    return steps
