"""Lazily indexed windows ("snippets") of consecutive (state, action) steps.

All steps of all episodes sit in one flat tensor (that *is* the dataset); a snippet is just
its start row, so memory stays O(steps) however many overlapping windows there are.
Padding policy: episodes shorter than ``snippet_length`` are skipped (they cannot fill one
snippet; a dataset without any long-enough episode is an error).  In the others a snippet
starts at *every* step; past the episode's end it repeats the last (state, action) and its
``mask`` is false there, so losses can ignore the padding.  Starting windows at every step
matters because agents re-plan from states late in an episode too.
"""
from __future__ import annotations

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
    """

    def __init__(self, demos: Demonstrations, snippet_length: int, obs_normalizer: Normalizer, action_normalizer: Normalizer) -> None:
        if snippet_length < 1:
            raise ValueError(f"snippet_length must be >= 1, got {snippet_length}")
        lengths = demos.lengths
        if not (lengths >= snippet_length).any():
            raise ValueError(
                f"no episode is at least snippet_length={snippet_length} steps long (longest: {lengths.max()} steps "
                f"over {len(lengths)} episodes); use a shorter snippet_length or longer episodes"
            )
        self.snippet_length = snippet_length
        self.states = torch.from_numpy(obs_normalizer.normalize(np.concatenate(demos.observations)).astype(np.float32))
        self.actions = torch.from_numpy(action_normalizer.normalize(np.concatenate(demos.actions)).astype(np.float32))
        self.step_tasks = torch.from_numpy(np.repeat(demos.tasks, lengths))
        episode_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        long_enough = lengths >= snippet_length
        self.starts = torch.from_numpy(np.concatenate([s + np.arange(n) for s, n in zip(episode_starts[long_enough], lengths[long_enough])]))
        self.ends = torch.from_numpy(np.repeat(episode_starts[long_enough] + lengths[long_enough] - 1, lengths[long_enough]))
        self._offsets = torch.arange(snippet_length)

    def __len__(self) -> int:
        return len(self.starts)

    def get_batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gather a batch of snippets at once (one indexing op, no per-item Python)."""
        start, end = self.starts[index], self.ends[index]
        rows = start[:, None] + self._offsets
        mask = rows <= end[:, None]
        rows = torch.minimum(rows, end[:, None])
        return {"states": self.states[rows], "actions": self.actions[rows], "mask": mask, "task": self.step_tasks[start]}

    # DataLoader's batched fetch path uses __getitems__ when present.
    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.get_batch(torch.as_tensor(indices))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.get_batch(torch.as_tensor([i])).items()}
