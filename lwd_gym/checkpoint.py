"""Checkpoint files: one safetensors file whose header metadata holds the JSON config.

Tensors go through safetensors (no pickle, so loading a file cannot run code) and
everything else (config, spaces, normalisers) is JSON stored under the ``"lwd_gym"`` key of
the safetensors metadata.  A single file can be replaced atomically: it is written to a
temporary file in the same directory, fsynced, then renamed over the target.

safetensors itself checks the header's structure but not the bytes of the tensors, so a
flipped bit in the weights would load silently; format version 2 therefore stores a SHA-256
of the JSON and of every tensor, checked on load.  Version 3 keeps the JSON and its checksum
under one metadata key: safetensors writes its metadata map in a random order, so two keys made
the bytes of the same checkpoint differ from save to save (and broke hash-based caching).

A *pretrained directory* (:func:`save_pretrained_files`, the shape Hugging Face and LeRobot use)
holds the same two parts as separate files: ``config.json`` (the JSON, with the SHA-256 of the
tensors) and ``model.safetensors`` (plain safetensors, readable by any safetensors tool).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 3
#: versions this code reads (version 1 had no checksum; 2 kept it under a second metadata key).
READABLE_VERSIONS = (1, 2, 3)
_META_KEY = "lwd_gym"
_SHA_KEY = "lwd_gym_sha256"
#: the files of a pretrained directory
CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME = "config.json", "model.safetensors", "README.md"


def _digest(header: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the JSON header and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(header.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """``write(temp_filename)`` beside ``path``, fsync, then rename over ``path``: a crash at any
    point leaves either the old file or the new one, never half a file.  Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON-able ``meta`` to ``path`` atomically; returns the path."""
    header = json.dumps({"format_version": FORMAT_VERSION, **meta}, sort_keys=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    # One metadata key (see the module docstring): the header string and its checksum.
    metadata = {_META_KEY: json.dumps({"header": header, "sha256": _digest(header, tensors)})}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


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
            metadata = f.metadata() or {}
            raw = metadata.get(_META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(f"{path} is not a valid lwd-gym checkpoint (unreadable or truncated safetensors file: {err})") from err
    if raw is None:
        raise ValueError(f"{path} is a safetensors file but not an lwd-gym checkpoint (no '{_META_KEY}' metadata)")
    try:
        meta = json.loads(raw)
        sha = metadata.get(_SHA_KEY)  # versions 1 and 2
        if isinstance(meta, dict) and set(meta) == {"header", "sha256"}:  # version 3's envelope
            raw, sha = meta["header"], meta["sha256"]
            meta = json.loads(raw)
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{path}: corrupted checkpoint metadata ({err})") from err
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path}: checkpoint format version {version!r} is not supported (this lwd-gym reads versions {READABLE_VERSIONS})")
    if version >= 2 and sha != _digest(raw, tensors):
        raise ValueError(f"{path}: checkpoint is corrupted (its SHA-256 checksum does not match its contents)")
    return tensors, meta


def save_pretrained_files(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` then ``config.json`` into ``directory``, each atomically.

    The config holds the tensors' SHA-256, so a directory left with new weights and an old
    config by a crash between the two renames fails to load instead of loading mixed files."""
    directory = Path(directory)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    config = {"format_version": FORMAT_VERSION, **meta, "weights_sha256": _digest("", tensors)}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return directory


def load_pretrained_files(directory: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a directory written by :func:`save_pretrained_files`; never unpickles.

    :raises FileNotFoundError: a file is missing.
    :raises ValueError: unreadable, of an unknown version, or weights and config do not match.
    """
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not an lwd-gym pretrained directory: no {name}")
    try:
        meta = json.loads((directory / CONFIG_NAME).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{directory / CONFIG_NAME}: not valid JSON ({err})") from err
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{directory / CONFIG_NAME}: format version {version!r} is not supported (this lwd-gym reads versions {READABLE_VERSIONS})")
    try:
        tensors = load_file(str(directory / WEIGHTS_NAME), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(f"{directory / WEIGHTS_NAME} is not a readable safetensors file ({err})") from err
    if meta.pop("weights_sha256", None) != _digest("", tensors):
        raise ValueError(f"{directory}: {WEIGHTS_NAME} does not match {CONFIG_NAME} (corrupted, or the two files come from different saves)")
    return tensors, meta


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's parameters and buffers by name, each tensor once.

    Not ``state_dict()``: hypnettorch registers each hypernetwork parameter under two names, and
    safetensors refuses aliased tensors.  ``named_parameters()`` lists each tensor once."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


@torch.no_grad()
def load_module_tensors(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict load of :func:`module_tensors`: same names, same shapes, or a clear error."""
    targets = module_tensors(module)
    missing, unexpected = sorted(targets.keys() - state.keys()), sorted(state.keys() - targets.keys())
    if missing or unexpected:
        raise ValueError(f"{where} weights do not match the saved config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, target in targets.items():
        if state[name].shape != target.shape:
            raise ValueError(f"{where} weight {name!r} has shape {tuple(state[name].shape)}, expected {tuple(target.shape)}")
        target.copy_(state[name])
