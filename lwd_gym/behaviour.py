"""Behaviour metrics: how alike two sets of policies *move*, judged by their feet (paper App. G.2).

The paper measures whether LWD reproduces the behaviours of the source policies of a mixed
HalfCheetah dataset by the foot contacts of their trajectories:

1. per trajectory, the fraction of steps each foot touches the floor
   (:func:`contact_fractions`, from a boolean contact sequence ``[T, n_feet]``);
2. the distribution of those per-trajectory fractions as a histogram, 10 bins per foot spanning
   the source's fractions plus an under- and an overflow bin (:func:`contact_histogram`,
   :func:`source_bins`; 2-D for HalfCheetah's back and front foot);
3. the Jensen-Shannon divergence between the source's and the generated policies' histograms,
   in nats (:func:`js_divergence`: 0 for identical distributions, ``ln 2`` for disjoint ones).

Contacts are read from MuJoCo (:func:`foot_contacts`); the :class:`FootContacts` wrapper puts
them in every ``info`` (``foot_contact``, and ``foot_contact_fraction``, the fraction so far),
so a collected dataset's episodes carry their contact sequences and
``lwd_gym.evaluate(..., info_keys=("foot_contact_fraction",))`` gives each evaluation episode's
fractions without another rollout.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

#: Foot geoms of the MuJoCo locomotion models whose contacts the metrics count, per model (the
#: class name of ``env.unwrapped`` without ``Env``); HalfCheetah's are the back and front foot.
FOOT_GEOMS: dict[str, tuple[str, ...]] = {
    "HalfCheetah": ("bfoot", "ffoot"),
    "Walker2d": ("foot_geom", "foot_left_geom"),
}
#: The floor geom of gymnasium's MuJoCo locomotion models.
FLOOR_GEOM = "floor"


def contact_fractions(contacts: Any) -> np.ndarray:
    """Fraction of steps each foot is in contact: ``[n_feet]`` floats in ``[0, 1]`` of one
    trajectory's boolean contact sequence ``[T, n_feet]`` (``T >= 1``)."""
    c = np.asarray(contacts)
    if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
        raise ValueError(f"contacts must be a [T, n_feet] sequence with T >= 1 and n_feet >= 1, got shape {c.shape}")
    if c.dtype != np.bool_:
        if c.dtype.kind not in "biuf" or not ((c == 0) | (c == 1)).all():
            raise ValueError("contacts must hold booleans (or 0/1)")
        c = c.astype(bool)
    return c.mean(axis=0)


def _geom_ids(model: Any, names: Sequence[str]) -> np.ndarray:
    import mujoco

    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name) for name in names]
    missing = [name for name, i in zip(names, ids) if i < 0]
    if missing:
        known = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, i) for i in range(model.ngeom)]
        raise ValueError(f"the MuJoCo model has no geom named {missing}; its geoms: {known}")
    return np.asarray(ids)


def default_feet(env: gym.Env) -> tuple[str, ...]:
    """The foot geoms :data:`FOOT_GEOMS` lists for ``env``'s model (a clear error for others)."""
    model = type(env.unwrapped).__name__.removesuffix("Env")
    if model not in FOOT_GEOMS:
        raise ValueError(f"no default foot geoms for {type(env.unwrapped).__name__}; pass feet=(geom names) (known: {sorted(FOOT_GEOMS)})")
    return FOOT_GEOMS[model]


def foot_contacts(env: gym.Env, feet: Sequence[str] | None = None, floor: str = FLOOR_GEOM) -> np.ndarray:
    """Whether each of ``feet`` (geom names; default :func:`default_feet`, HalfCheetah's
    ``("bfoot", "ffoot")``) touches the ``floor`` geom now: bool ``[n_feet]``.

    Read from ``env.unwrapped.data.contact``, the contacts MuJoCo found at the last step (with
    ``frame_skip`` > 1, those of the step's last physics substep).
    """
    unwrapped = env.unwrapped
    if not hasattr(unwrapped, "model") or not hasattr(unwrapped, "data"):
        raise ValueError(f"{type(unwrapped).__name__} is not a MuJoCo env (no .model / .data)")
    feet = default_feet(env) if feet is None else tuple(feet)
    return _contacts(unwrapped.data, _geom_ids(unwrapped.model, feet), int(_geom_ids(unwrapped.model, [floor])[0]))


def _contacts(data: Any, feet: np.ndarray, floor: int) -> np.ndarray:
    pairs = data.contact.geom  # [ncon, 2] (the contact list is already cut to ncon)
    with_floor = np.where(pairs[:, 0] == floor, pairs[:, 1], np.where(pairs[:, 1] == floor, pairs[:, 0], -1))
    return np.isin(feet, with_floor)


class FootContacts(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds the feet's floor contacts to every ``info`` of a MuJoCo env.

    * ``info["foot_contact"]``: bool ``[n_feet]``, the contacts now (:func:`foot_contacts`);
    * ``info["foot_contact_fraction"]``: float ``[n_feet]``, the fraction of the episode's steps
      so far (reset excluded; zeros at reset) with each foot on the floor, so an episode's last
      info holds its :func:`contact_fractions` of the step contacts.

    :param feet: foot geom names (default: :func:`default_feet`).
    :param floor: the floor geom's name.
    :param reset_info: entries added to the reset ``info`` (e.g. ``{"x_velocity": 0.0}``):
        gymnasium's locomotion envs report some keys from ``step`` only, and Minari needs the
        same info keys at every step of an episode.
    """

    def __init__(self, env: gym.Env, feet: Sequence[str] | None = None, floor: str = FLOOR_GEOM, reset_info: Mapping[str, float] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, feet=None if feet is None else list(feet), floor=floor, reset_info=None if reset_info is None else dict(reset_info))
        gym.Wrapper.__init__(self, env)
        self.feet = default_feet(env) if feet is None else tuple(feet)
        model = env.unwrapped.model
        self._feet, self._floor = _geom_ids(model, self.feet), int(_geom_ids(model, [floor])[0])
        self._reset_info = dict(reset_info or {})
        self._counts = np.zeros(len(self.feet), np.int64)
        self._steps = 0

    def _now(self) -> np.ndarray:
        return _contacts(self.env.unwrapped.data, self._feet, self._floor)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._counts[:], self._steps = 0, 0
        info = {**self._reset_info, **info, "foot_contact": self._now(), "foot_contact_fraction": np.zeros(len(self.feet))}
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        now = self._now()
        self._counts += now
        self._steps += 1
        info = {**info, "foot_contact": now, "foot_contact_fraction": self._counts / self._steps}
        return obs, reward, terminated, truncated, info


def contact_histogram(fractions: Any, bins: int | Sequence[Any] = 10) -> np.ndarray:
    """Probability histogram of per-trajectory contact fractions ``[n_trajectories, n_feet]``.

    ``bins``: an int, that many equal bins per foot on ``[0, 1]`` (a fraction of exactly 1 falls
    in the last bin); or one increasing array of bin edges per foot covering ``[0, 1]``
    (:func:`source_bins`), as ``numpy.histogramdd`` takes them.  Histograms compare bin by bin
    only when they share their bins."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 2 or len(f) < 1 or f.shape[1] < 1:
        raise ValueError(f"fractions must be [n_trajectories >= 1, n_feet >= 1], got shape {f.shape}")
    if not (np.isfinite(f).all() and (f >= 0).all() and (f <= 1).all()):
        raise ValueError("contact fractions must lie in [0, 1]")
    if isinstance(bins, numbers.Integral):
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        counts, _ = np.histogramdd(f, bins=int(bins), range=[(0.0, 1.0)] * f.shape[1])
    else:
        edges = [np.asarray(e, dtype=np.float64) for e in bins]
        if len(edges) != f.shape[1] or any(e.ndim != 1 or len(e) < 2 or (np.diff(e) <= 0).any() or e[0] > 0 or e[-1] < 1 for e in edges):
            raise ValueError(f"bins must give, per foot ({f.shape[1]}), increasing edges from <= 0 to >= 1")
        counts, _ = np.histogramdd(f, bins=edges)
    return counts / counts.sum()


def source_bins(source: Any, bins: int = 10) -> list[np.ndarray]:
    """Per foot, ``bins`` equal bins spanning the ``source`` set's fractions ``[n, n_feet]``
    (at least 0.01 wide), plus one bin below and one above them up to 0 and 1 where there is room:
    the bins of :func:`contact_js`, the same for every set compared with that source."""
    f = np.asarray(source, dtype=np.float64)
    if f.ndim != 2 or len(f) < 1:
        raise ValueError(f"source fractions must be [n_trajectories >= 1, n_feet], got shape {f.shape}")
    edges = []
    for lo, hi in zip(f.min(axis=0), f.max(axis=0)):
        pad = max(0.0, 0.01 - (hi - lo)) / 2
        lo, hi = lo - pad, hi + pad
        lo, hi = max(0.0, lo) - max(0.0, hi - 1.0), min(1.0, hi) + max(0.0, -lo)  # shifted back inside [0, 1]
        inner = np.linspace(lo, hi, bins + 1)
        edges.append(np.concatenate([[0.0] if lo > 0 else [], inner, [1.0] if hi < 1 else []]))
    return edges


def js_divergence(p: Any, q: Any) -> float:
    """Jensen-Shannon divergence (natural log, nats) between two histograms of the same shape:
    ``(KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2``, each normalised to sum 1 first.

    0 for identical distributions, ``ln 2`` (~0.693) for disjoint ones.  Equal to
    ``scipy.spatial.distance.jensenshannon(p, q, base=e) ** 2`` (scipy returns the distance, the
    square root); written in numpy so the package needs no scipy.
    """
    a, b = np.asarray(p, dtype=np.float64).ravel(), np.asarray(q, dtype=np.float64).ravel()
    if np.shape(p) != np.shape(q):
        raise ValueError(f"histograms must have the same shape, got {np.shape(p)} and {np.shape(q)}")
    for name, h in (("p", a), ("q", b)):
        if not (np.isfinite(h).all() and (h >= 0).all() and h.sum() > 0):
            raise ValueError(f"{name} must be a non-negative histogram with positive mass")
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0  # 0 log 0 = 0; m > 0 wherever x > 0
        return float(np.sum(x[nz] * np.log(x[nz] / m[nz])))

    return max(0.0, (kl(a) + kl(b)) / 2)  # rounding can give -1e-17 for identical inputs


def contact_js(source: Any, generated: Any, bins: int = 10, range: str = "source") -> float:  # noqa: A002
    """JS divergence (nats) between the contact-fraction histograms (:func:`contact_histogram`)
    of two sets of trajectories, each ``[n_trajectories, n_feet]``: the paper's measure of how
    well ``generated`` policies reproduce a ``source`` behaviour.

    ``range="source"`` (default): ``bins`` per foot spanning the source's fractions, with an
    underflow and an overflow bin (:func:`source_bins`), so the metric resolves the spread of the
    behaviour at hand, and every set compared with one source is binned alike.  A HalfCheetah
    expert's feet touch the floor 6-9 % of the time: all inside one of ten bins on ``[0, 1]``,
    where every policy that runs like it would score 0.  ``range="unit"``: ``bins`` fixed bins
    on ``[0, 1]`` for every comparison.  The paper does not say which it used.  Either way, with
    tens of trajectories per set the divergence of two samples of one policy is well above 0:
    compare with that floor (the benchmark's SOS row).
    """
    if range == "source":
        edges: Any = source_bins(source, bins)
    elif range == "unit":
        edges = bins
    else:
        raise ValueError(f"range must be 'source' or 'unit', got {range!r}")
    return js_divergence(contact_histogram(source, edges), contact_histogram(generated, edges))


def episode_contact_fractions(episodes: Any, key: str = "foot_contact") -> np.ndarray:
    """Per-episode contact fractions ``[n_episodes, n_feet]`` of Minari episodes whose infos hold
    the :class:`FootContacts` sequence ``key`` (``[T + 1, n_feet]``: reset, then each step; the
    reset entry is left out, as the wrapper's own fractions do)."""
    rows = []
    for episode in episodes:
        infos = episode.infos
        if key not in infos:
            raise ValueError(f"episode infos have no {key!r} (keys: {sorted(infos)}); collect with the FootContacts wrapper")
        rows.append(contact_fractions(np.asarray(infos[key])[1:]))
    if not rows:
        raise ValueError("no episodes")
    return np.stack(rows)
