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
        each labelled behaviour's snippets in the diffusion's (min-max scaled) latent space.
    :param classifier: how a sampled latent's behaviour is named: ``"centroid"``, its nearest
        centroid; ``"knn"``, the most votes among its ``k`` nearest labelled latents.
    :param k: neighbours that vote (``"knn"``).
    :param latents, labels: the labelled snippets' scaled latents ``[n, latent_dim]`` and
        behaviour ids ``[n]`` (``"knn"`` only).
    :param max_tries: samplings per latent before giving up (the latents of rejected samples are
        sampled again, up to this many times in all).
    :param labelled_accuracy: per labelled behaviour, the fraction of its own snippets the
        classifier names as that behaviour (``"knn"``: voted by snippets of other episodes only):
        how well it tells the behaviours apart (near 1: well; near chance: the filter keeps
        latents more or less at random).
    :param on_exhausted: what a latent still rejected after ``max_tries`` samplings gets:
        ``"raise"`` (``RuntimeError``) or ``"closest"`` (its sample closest to a kept behaviour).
    :param sampled, accepted: latents sampled and accepted since the filter was set (their ratio
        is the acceptance rate).
    :param fallbacks: latents that took their closest sample (``on_exhausted="closest"``) since
        the filter was set.
    """

    keep: tuple[int, ...]
    centroids: torch.Tensor | None = None
    classifier: str = "centroid"
    k: int = 10
    latents: torch.Tensor | None = None
    labels: torch.Tensor | None = None
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

    def votes(self, scaled: torch.Tensor, exclude_groups: torch.Tensor | None = None, chunk: int = 1024) -> torch.Tensor:
        """Per scaled latent ``[n, latent_dim]``, the votes ``[n, n_behaviours]`` of its ``k``
        nearest labelled latents (``"knn"``).  With ``exclude_groups`` (``[n]`` ids, for the
        labelled latents themselves: ``scaled`` is :attr:`latents`), a latent's own group
        (episode) does not vote for it.  Computed ``chunk`` rows at a time."""
        n_behaviours = len(self.centroids)
        reference = self.latents.to(scaled.dtype)
        out = []
        for rows in torch.arange(len(scaled), device=scaled.device).split(chunk):
            distances = torch.cdist(scaled[rows], reference)
            if exclude_groups is not None:
                distances[exclude_groups[rows, None] == exclude_groups[None, :]] = float("inf")
            k = min(self.k, reference.shape[0])
            nearest = distances.topk(k, dim=1, largest=False).indices
            valid = torch.gather(distances, 1, nearest).isfinite()
            labels = torch.where(valid, self.labels[nearest], n_behaviours)  # excluded: an extra, ignored column
            out.append(torch.nn.functional.one_hot(labels, n_behaviours + 1)[..., :n_behaviours].sum(dim=1))
        return torch.cat(out) if out else torch.zeros(0, n_behaviours, dtype=torch.long, device=scaled.device)

    def behaviour_of(self, scaled: torch.Tensor, exclude_groups: torch.Tensor | None = None) -> torch.Tensor:
        """The behaviour id the classifier names for each scaled latent ``[n, latent_dim]``."""
        if self.classifier == "knn":
            return self.votes(scaled, exclude_groups).argmax(dim=1)
        return torch.cdist(scaled, self.centroids.to(scaled.dtype)).argmin(dim=1)

    def kept_excess(self, scaled: torch.Tensor) -> torch.Tensor:
        """Per scaled latent ``[n, latent_dim]``: how far it is from being kept, 0 when it is kept.
        ``"centroid"``: its distance to the nearest kept centroid minus that to the nearest
        centroid; ``"knn"``: the votes of the most-voted behaviour minus those of the most-voted
        kept one."""
        keep = torch.as_tensor(self.keep, device=scaled.device)
        if self.classifier == "knn":
            votes = self.votes(scaled)
            return (votes.max(dim=1).values - votes[:, keep].max(dim=1).values).to(scaled.dtype)
        distances = torch.cdist(scaled, self.centroids.to(scaled.dtype))
        return distances[:, keep].min(dim=1).values - distances.min(dim=1).values


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
