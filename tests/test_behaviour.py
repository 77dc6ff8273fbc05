"""Behaviour metrics (foot-contact fractions, histograms, JS divergence) and the MuJoCo
locomotion behaviour sources with their exported SAC actors (no SB3 needed here)."""
import math

import gymnasium as gym
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from lwd_gym.behaviour import (
    FootContacts,
    contact_fractions,
    contact_histogram,
    contact_js,
    source_bins,
    episode_contact_fractions,
    foot_contacts,
    js_divergence,
)
from lwd_gym.data.sources import available_sources, collect, get_source
from lwd_gym.envs.locomotion import BEHAVIOURS, EXPERTS_ENV_VAR, SACActor, actor_path, make_locomotion_env

pytest.importorskip("mujoco")


# ---------------------------------------------------------------------------------- metrics
def test_contact_fractions_of_a_hand_made_sequence():
    contacts = np.array([[1, 0], [1, 1], [0, 0], [1, 0]], dtype=bool)
    np.testing.assert_allclose(contact_fractions(contacts), [0.75, 0.25])
    np.testing.assert_allclose(contact_fractions(contacts.astype(int)), [0.75, 0.25])  # 0/1 ints too
    for bad in (np.zeros((0, 2)), np.zeros(4), np.full((3, 2), 0.5)):
        with pytest.raises(ValueError):
            contact_fractions(bad)


def test_js_divergence_is_zero_for_identical_and_ln2_for_disjoint_histograms():
    rng = np.random.default_rng(0)
    p = rng.random((10, 10))
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(p, 3 * p) == pytest.approx(0.0, abs=1e-12)  # normalised first
    a, b = np.zeros((10, 10)), np.zeros((10, 10))
    a[:5], b[5:] = 1, 1
    assert js_divergence(a, b) == pytest.approx(math.log(2))
    q = rng.random((10, 10))
    # scipy gives the distance (the square root), in base e when asked
    assert js_divergence(p, q) == pytest.approx(jensenshannon(p.ravel(), q.ravel(), base=math.e) ** 2)
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p))
    with pytest.raises(ValueError, match="same shape"):
        js_divergence(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="positive mass"):
        js_divergence(np.zeros(3), np.ones(3))


def test_contact_histogram_has_fixed_bins_on_the_unit_square():
    fractions = np.array([[0.0, 0.0], [1.0, 1.0], [0.55, 0.05], [0.56, 0.09]])
    h = contact_histogram(fractions, bins=10)
    assert h.shape == (10, 10) and h.sum() == pytest.approx(1.0)
    assert h[0, 0] == h[9, 9] == 0.25 and h[5, 0] == 0.5  # a fraction of exactly 1 is in the last bin
    assert contact_js(fractions, fractions) == contact_js(fractions, fractions, range="unit") == 0.0
    assert contact_js(np.array([[0.1, 0.1]]), np.array([[0.9, 0.9]]), range="unit") == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        contact_histogram(np.array([[1.2, 0.0]]))


def test_source_bins_resolve_behaviours_inside_one_unit_bin():
    # Two gaits whose feet touch the floor 5-7 % and 8-9 % of the time: one bin of ten on [0, 1].
    rng = np.random.default_rng(0)
    slow = rng.uniform(0.050, 0.069, size=(40, 2))
    fast = rng.uniform(0.080, 0.089, size=(40, 2))
    assert contact_js(slow, fast, range="unit") == 0.0  # fixed bins cannot tell them apart
    assert contact_js(slow, fast) == pytest.approx(math.log(2))  # the source's bins: disjoint
    assert contact_js(slow, slow) == 0.0
    edges = source_bins(slow, bins=4)
    assert edges[0][0] == 0.0 and edges[0][-1] == 1.0 and len(edges[0]) == 4 + 3  # under- and overflow bins
    assert edges[0][1:-1] == pytest.approx(np.linspace(slow[:, 0].min(), slow[:, 0].max(), 5))
    h = contact_histogram(fast, edges)
    assert h.shape == (6, 6) and h[-1, -1] == 1.0  # all of fast beyond the source's range
    assert source_bins(np.full((3, 1), 0.0), bins=2)[0] == pytest.approx([0.0, 0.005, 0.01, 1.0])  # a constant foot gets a width
    with pytest.raises(ValueError, match="increasing edges"):
        contact_histogram(fast, [np.array([0.0, 1.0])])
    with pytest.raises(ValueError, match="'source' or 'unit'"):
        contact_js(slow, fast, range="fixed")


# ---------------------------------------------------------------------------------- MuJoCo contacts
def test_halfcheetah_foot_contacts_and_the_wrapper_infos():
    env = make_locomotion_env("halfcheetah")
    obs, info = env.reset(seed=0)
    assert set(info) >= {"foot_contact", "foot_contact_fraction", "x_velocity"}
    keys, steps = set(info), []
    rng = np.random.default_rng(0)
    for _ in range(300):
        obs, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 6).astype(np.float32))
        assert set(info) == keys  # the same keys at reset and at every step (Minari needs it)
        assert info["foot_contact"].dtype == bool and info["foot_contact"].shape == (2,)
        np.testing.assert_array_equal(info["foot_contact"], foot_contacts(env))
        steps.append(info["foot_contact"])
    np.testing.assert_allclose(info["foot_contact_fraction"], contact_fractions(np.array(steps)))
    assert np.array(steps).any(axis=0).all()  # random actions put both feet down at some point
    with pytest.raises(ValueError, match="no geom named.*bfoot"):
        foot_contacts(env, feet=("bfoot", "paw"))
    with pytest.raises(ValueError, match="not a MuJoCo env"):
        foot_contacts(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="no default foot geoms"):
        FootContacts(gym.make("Hopper-v5"))
    env.close()


# ---------------------------------------------------------------------------------- actors and sources
def _random_actor(rng, obs_dim=17, action_dim=6, hidden=(16, 16), low=-1.0, high=1.0, **meta):
    sizes = (obs_dim, *hidden, action_dim)
    layers = [(rng.normal(0, 0.5, (o, i)).astype(np.float32), rng.normal(0, 0.1, o).astype(np.float32)) for i, o in zip(sizes, sizes[1:])]
    return SACActor(layers, "relu", np.full(action_dim, low), np.full(action_dim, high), meta)


@pytest.fixture
def experts_dir(tmp_path, monkeypatch):
    """A folder of random-initialised HalfCheetah actors, read by the sources through the env var."""
    rng = np.random.default_rng(0)
    for behaviour in ("expert", "medium"):
        _random_actor(rng, behaviour=behaviour).save(actor_path("halfcheetah", behaviour, tmp_path / "experts"))
    monkeypatch.setenv(EXPERTS_ENV_VAR, str(tmp_path / "experts"))
    return tmp_path / "experts"


def test_actor_save_load_round_trip_and_action_rescaling(tmp_path):
    rng = np.random.default_rng(1)
    actor = _random_actor(rng, low=-2.0, high=3.0, behaviour="expert", mean_return=12.5)
    path = actor.save(tmp_path / "a.safetensors")
    loaded = SACActor.load(path)
    obs = rng.normal(size=(32, 17))
    np.testing.assert_array_equal(loaded(obs), actor(obs))
    assert loaded.metadata["mean_return"] == 12.5 and loaded.metadata["hidden"] == [16, 16]
    # tanh(mu) in [-1, 1] rescaled to [low, high]
    x = obs.astype(np.float32)
    for i, (w, b) in enumerate(actor.layers):
        x = x @ w.T + b
        x = np.maximum(x, 0) if i < len(actor.layers) - 1 else x
    np.testing.assert_allclose(loaded(obs), -2.0 + 2.5 * (np.tanh(x) + 1), rtol=1e-6, atol=1e-6)
    assert loaded(obs[0]).shape == (6,)
    with pytest.raises(ValueError, match="shape"):
        loaded(np.zeros(5))
    with pytest.raises(FileNotFoundError):
        SACActor.load(tmp_path / "missing.safetensors")


def test_locomotion_sources_are_registered():
    names = available_sources()
    for behaviour in BEHAVIOURS:
        assert f"mujoco/halfcheetah-{behaviour}" in names and f"mujoco/walker2d-{behaviour}" in names
    assert get_source("mujoco/halfcheetah-expert").has_success is False


def test_missing_actor_says_how_to_train_it(tmp_path, monkeypatch):
    monkeypatch.setenv(EXPERTS_ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"python -m benchmarks\.sac_experts"):
        collect("mujoco/halfcheetah-expert", 1, progress=False)
    with pytest.raises(FileNotFoundError, match=r"python -m benchmarks\.sac_experts --env walker2d"):
        collect("mujoco/walker2d-medium", 1, progress=False)


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_behaviour_sources_write_their_id_and_contacts(experts_dir, behaviour):
    dataset, success = collect(f"mujoco/halfcheetah-{behaviour}", 2, seed=3, progress=False)
    assert math.isnan(success)  # locomotion reports no success: every episode is kept
    episodes = list(dataset.iterate_episodes())
    assert len(episodes) == 2 and all(len(ep.actions) == 1000 for ep in episodes)
    for ep in episodes:
        np.testing.assert_array_equal(ep.infos["behaviour_id"], BEHAVIOURS.index(behaviour))
        assert ep.infos["foot_contact"].shape == (1001, 2)
    fractions = episode_contact_fractions(episodes)
    np.testing.assert_allclose(fractions, [ep.infos["foot_contact_fraction"][-1] for ep in episodes])
    assert "mean return" in dataset.storage.metadata["description"]
    if behaviour != "random":  # the dataset's actions are the exported actor's
        actor = SACActor.load(actor_path("halfcheetah", behaviour, experts_dir))
        np.testing.assert_allclose(episodes[0].actions, actor(episodes[0].observations[:-1]), rtol=1e-5, atol=1e-5)  # batched vs one-row matmul rounding
