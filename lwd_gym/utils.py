"""Small helpers shared by every module: device selection and seeding."""
from __future__ import annotations

import random

import numpy as np
import torch


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU; pass anything else to ``torch.device``."""
    if device == "auto":
        from lwd_gym.distributed import local_device  # under torchrun: this process's own GPU

        return local_device() or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available on this machine (torch {torch.__version__}); use device='cpu' or 'auto'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global RNGs (the library itself uses explicit generators)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
