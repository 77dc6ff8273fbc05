"""Lazily indexed windows ("snippets") of consecutive (state, action) steps.

All steps of all episodes sit in one flat tensor (that *is* the dataset); a snippet is just
its start row, so memory stays O(steps) however many overlapping windows there are.
Padding policy: by default episodes shorter than ``snippet_length`` are skipped (they cannot
fill one snippet; a dataset without any long-enough episode is an error); with
``pad_short_episodes=True`` they are kept and end-padded like any other snippet (LeRobot's
convention, for horizons longer than some demonstrations).  In every kept episode a snippet
starts at *every* step; past the episode's end it repeats the last (state, action) and its
``mask`` is false there, so losses can ignore the padding.  Starting windows at every step
matters because agents re-plan from states late in an episode too.
With ``pad_before = k`` windows also start up to ``k`` steps *before* an episode, repeating its
first (state, action) (masked out), as Diffusion Policy does so that an observation history
at the first step, padded with copies of the first observation, is seen in training.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lwd_gym.data.demonstrations import Demonstrations
from lwd_gym.data.normalizer import Normalizer


class SnippetDataset(Dataset):
    """Normalised snippets ``{"states": [H, o], "actions": [H, a], "mask": [H], "task": ()}``.

    :param demos: episodes from :func:`~lwd_gym.data.load_demonstrations`.
    :param snippet_length: steps per snippet ``H``.
    :param obs_normalizer: applied to states.
    :param action_normalizer: applied to actions.
    :param pad_before: windows may start this many steps before an episode (edge-padded).
    :param pad_short_episodes: keep episodes shorter than ``snippet_length`` (end-padded, masked)
        instead of skipping them.
    """

    def __init__(
        self,
        demos: Demonstrations,
        snippet_length: int,
        obs_normalizer: Normalizer,
        action_normalizer: Normalizer,
        *,
        pad_before: int = 0,
        pad_short_episodes: bool = False,
    ) -> None:
        if snippet_length < 1:
            raise ValueError(f"snippet_length must be >= 1, got {snippet_length}")
        if not 0 <= pad_before < snippet_length:
            raise ValueError(f"pad_before must be in [0, snippet_length={snippet_length}), got {pad_before}")
        lengths = demos.lengths
        if not pad_short_episodes and not (lengths >= snippet_length).any():
            raise ValueError(
                f"no episode is at least snippet_length={snippet_length} steps long (longest: {lengths.max()} steps "
                f"over {len(lengths)} episodes); use a shorter snippet_length, longer episodes or pad_short_episodes=True"
            )
        self.snippet_length = snippet_length
        self.states = torch.from_numpy(obs_normalizer.normalize(np.concatenate(demos.observations)).astype(np.float32))
        self.actions = torch.from_numpy(action_normalizer.normalize(np.concatenate(demos.actions)).astype(np.float32))
        self.step_tasks = torch.from_numpy(np.repeat(demos.tasks, lengths))
        episode_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        long_enough = np.ones_like(lengths, dtype=bool) if pad_short_episodes else lengths >= snippet_length
        begins, counts = episode_starts[long_enough], lengths[long_enough] + pad_before
        self.starts = torch.from_numpy(np.concatenate([b - pad_before + np.arange(n) for b, n in zip(begins, counts)]))
        self.begins = torch.from_numpy(np.repeat(begins, counts))
        self.ends = torch.from_numpy(np.repeat(begins + lengths[long_enough] - 1, counts))
        self._offsets = torch.arange(snippet_length)

    def __len__(self) -> int:
        return len(self.starts)

    def starting_every(self, interval: int) -> SnippetDataset:
        """A view of the windows that start ``0, interval, 2 * interval, ...`` steps into their
        episode: where an agent re-planning every ``interval`` steps starts its plans."""
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        offset = self.starts - self.begins
        keep = torch.nonzero((offset >= 0) & (offset % interval == 0)).flatten()
        view = copy.copy(self)
        view.starts, view.begins, view.ends = self.starts[keep], self.begins[keep], self.ends[keep]
        return view

    def to(self, device: torch.device | str) -> SnippetDataset:
        """A copy whose tensors live on ``device``: batches are then gathered there (pass indices on it too)."""
        moved = copy.copy(self)
        for name in ("states", "actions", "step_tasks", "starts", "begins", "ends", "_offsets"):
            setattr(moved, name, getattr(self, name).to(device))
        return moved

    def get_batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gather a batch of snippets at once (one indexing op, no per-item Python)."""
        start, begin, end = self.starts[index], self.begins[index], self.ends[index]
        rows = start[:, None] + self._offsets
        mask = (rows >= begin[:, None]) & (rows <= end[:, None])
        rows = rows.clamp(min=begin[:, None], max=end[:, None])
        return {"states": self.states[rows], "actions": self.actions[rows], "mask": mask, "task": self.step_tasks[begin]}

    # DataLoader's batched fetch path uses __getitems__ when present (auto-collation on).
    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.get_batch(torch.as_tensor(indices))

    def __getitem__(self, i: int | Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """One snippet, or a whole batch for a sequence of indices (``DataLoader(ds, sampler=BatchSampler(...),
        batch_size=None)`` passes the batch's indices at once: one gather instead of per-item Python)."""
        if isinstance(i, (int, np.integer)) or (isinstance(i, torch.Tensor) and i.ndim == 0):
            return {k: v[0] for k, v in self.get_batch(torch.as_tensor([int(i)])).items()}
        return self.get_batch(torch.as_tensor(i))
