"""Checkpoint files: one safetensors file whose header metadata holds the JSON config.

Tensors go through safetensors (no pickle, so loading a file cannot run code) and
everything else (config, spaces, normalisers) is JSON stored under the ``"lwd_gym"`` key of
the safetensors metadata.  A single file can be replaced atomically: it is written to a
temporary file in the same directory, fsynced, then renamed over the target.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

FORMAT_VERSION = 1
_META_KEY = "lwd_gym"


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON-able ``meta`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"format_version": FORMAT_VERSION, **meta})
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_META_KEY: header})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_checkpoint`; never unpickles.

    :raises FileNotFoundError: no such file.
    :raises ValueError: the file is not a readable lwd-gym checkpoint of a known version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            raw = (f.metadata() or {}).get(_META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(f"{path} is not a valid lwd-gym checkpoint (unreadable or truncated safetensors file: {err})") from err
    if raw is None:
        raise ValueError(f"{path} is a safetensors file but not an lwd-gym checkpoint (no '{_META_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupted checkpoint metadata ({err})") from err
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {version!r} is not supported (this lwd-gym reads version {FORMAT_VERSION})")
    return tensors, meta
