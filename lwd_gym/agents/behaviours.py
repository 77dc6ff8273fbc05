"""Behaviour filtering's state and checks (:meth:`~lwd_gym.agents.latent.LatentDiffusionAgent.filter_behaviours`).

A latent-diffusion agent trained on mixed-quality demonstrations can be told at acting time
which of its behaviours to sample: by task id (a task-conditioned diffusion, one dataset per
behaviour) or by the nearest centroid of labelled demonstrations' latents (rejection sampling).
This module holds what the agent keeps for that (:class:`BehaviourFilter`) and the checks of
the ids it is given; the sampling itself is the agent's.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class BehaviourFilter:
    """What :meth:`LatentDiffusionAgent.filter_behaviours` set: the behaviours sampled from now on.

    :param keep: the kept behaviour ids (sorted).
    :param centroids: ``None``: the behaviours are the diffusion's task ids, and each re-plan
        draws its task from ``keep``.  Else ``[n_behaviours, latent_dim]``, the mean latent of
        each labelled behaviour's snippets in the diffusion's (min-max scaled) latent space: a
        sampled latent is kept when its nearest centroid is a kept behaviour.
    :param max_tries: samplings per latent before giving up (the latents of rejected samples are
        sampled again, up to this many times in all).
    :param labelled_accuracy: per labelled behaviour, the fraction of its own snippets whose
        nearest centroid is its own: how well the centroids tell the behaviours apart (near 1:
        well; near chance: the filter keeps latents more or less at random).
    :param on_exhausted: what a latent still rejected after ``max_tries`` samplings gets:
        ``"raise"`` (``RuntimeError``) or ``"closest"`` (its sample closest to a kept behaviour).
    :param sampled, accepted: latents sampled and accepted since the filter was set (their ratio
        is the acceptance rate).
    :param fallbacks: latents that took their closest sample (``on_exhausted="closest"``) since
        the filter was set.
    """

    keep: tuple[int, ...]
    centroids: torch.Tensor | None = None
    max_tries: int = 16
    labelled_accuracy: tuple[float, ...] = ()
    on_exhausted: str = "raise"
    sampled: int = 0
    accepted: int = 0
    fallbacks: int = 0

    @property
    def by_task(self) -> bool:
        return self.centroids is None

    @property
    def acceptance_rate(self) -> float:
        """Fraction of the sampled latents that were kept (1 for task-id filtering); NaN before any."""
        return self.accepted / self.sampled if self.sampled else float("nan")

    def behaviour_of(self, scaled: torch.Tensor) -> torch.Tensor:
        """The nearest centroid's behaviour id of each scaled latent ``[n, latent_dim]``."""
        return torch.cdist(scaled, self.centroids.to(scaled.dtype)).argmin(dim=1)

    def kept_excess(self, scaled: torch.Tensor) -> torch.Tensor:
        """Per scaled latent ``[n, latent_dim]``: its distance to the nearest kept centroid minus
        that to the nearest centroid; 0 exactly when its nearest behaviour is kept."""
        distances = torch.cdist(scaled, self.centroids.to(scaled.dtype))
        kept = distances[:, torch.as_tensor(self.keep, device=scaled.device)].min(dim=1).values
        return kept - distances.min(dim=1).values


def behaviour_ids(keep: Sequence[int]) -> tuple[int, ...]:
    """``keep`` as sorted ids, refusing what is not a non-empty collection of distinct integers."""
    if isinstance(keep, (str, bytes)) or not hasattr(keep, "__iter__"):
        raise ValueError(f"keep must be a list of behaviour ids (integers), got {keep!r}")
    items = list(keep)
    if not items:
        raise ValueError("keep is empty: keep at least one behaviour (filter_behaviours(None) clears the filter)")
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise ValueError(f"keep must hold integer behaviour ids, got {item!r} in {items!r}")
    if len({int(i) for i in items}) != len(items):
        raise ValueError(f"keep holds repeated ids: {items!r}")
    return tuple(sorted(int(i) for i in items))


def check_known_ids(ids: tuple[int, ...], count: int, what: str) -> None:
    unknown = [i for i in ids if not 0 <= i < count]
    if unknown:
        raise ValueError(f"unknown behaviour id(s) {unknown}: there are {count} {what}, ids 0..{count - 1}")
