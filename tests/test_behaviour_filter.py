"""``LatentDiffusionAgent.filter_behaviours``: sampling only some of the behaviours an agent learned.

The toy data: behaviours that act differently from the same states (constant actions of
opposite signs over shared random-walk states), so their snippets' latents separate.  The
assertions are what the filter guarantees by construction (every kept latent is nearest a kept
behaviour; a one-id task filter samples exactly that task's plans), not how well a briefly
trained agent reproduces the behaviours.
"""
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from minari.data_collector.episode_buffer import EpisodeBuffer

from lwd_gym import BaseAgent, LDPAgent, LWDAgent
from lwd_gym.agents import BehaviourFilter
from lwd_gym.data import load_demonstrations, write_minari_dataset

#: each behaviour's action direction (behaviour id = position)
DIRECTIONS = [(0.8, 0.8), (-0.8, -0.8), (0.8, -0.8)]
OBS_DIM, EPISODES, LENGTH, H = 3, 10, 24, 4


def _behaviour_dataset(behaviour: int, seed: int):
    rng = np.random.default_rng(seed)
    buffers = []
    for i in range(EPISODES):
        obs = np.cumsum(rng.normal(0, 0.1, (LENGTH + 1, OBS_DIM)), axis=0).astype(np.float32)
        actions = (np.asarray(DIRECTIONS[behaviour]) + rng.normal(0, 0.05, (LENGTH, 2))).clip(-1, 1).astype(np.float32)
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=actions, rewards=np.zeros(LENGTH), terminations=np.zeros(LENGTH, bool),
                                     truncations=np.r_[np.zeros(LENGTH - 1, bool), True], infos={}))  # fmt: skip
    spaces = {"observation_space": gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32), "action_space": gym.spaces.Box(-1, 1, (2,), np.float32)}
    return write_minari_dataset(f"lwd-test/behaviour-{behaviour}-v0", buffers, **spaces)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path_factory.mktemp("minari-behaviours"))
    try:
        yield [_behaviour_dataset(b, seed=b) for b in range(len(DIRECTIONS))]
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _agent(cls, condition_on: str):
    kw = dict(action_horizon=H, latent_dim=16, denoiser_size="xs", num_inference_steps=4, condition_on=condition_on, batch_size=64,
              vae_lr=1e-3, diffusion_lr=1e-3, device="cpu", seed=0)  # fmt: skip
    if cls is LWDAgent:
        kw.update(hypernet_size="xs", policy_hidden=(8,))
    return cls(**kw)


@pytest.fixture(scope="module")
def unconditioned(datasets):
    """An LWD whose diffusion sees the state only, trained on behaviours 0 and 1 mixed."""
    return _agent(LWDAgent, "obs").learn(datasets[:2], vae_steps=300, diffusion_steps=300, progress_bar=False)


@pytest.fixture(scope="module")
def task_conditioned(datasets):
    """An LWD conditioned on the task id, one dataset (task) per behaviour."""
    return _agent(LWDAgent, "obs+task").learn(datasets, vae_steps=50, diffusion_steps=50, progress_bar=False)


def _scaled_centroids(agent, datasets):
    """Each behaviour's mean latent (scaled space) over the windows the diffusion was trained on
    (one starting at every step; past an episode's end its last step repeated), with ``encode``."""
    out = []
    for ds in datasets:
        demos = load_demonstrations(ds)
        rows = lambda s, n: np.minimum(np.arange(s, s + H), n - 1)  # noqa: E731
        windows = [(o[rows(s, len(a))], a[rows(s, len(a))]) for o, a in zip(demos.observations, demos.actions) for s in range(len(a))]
        z = agent.encode(np.stack([w[0] for w in windows]), np.stack([w[1] for w in windows]))
        out.append(agent.latent_normalizer.normalize(torch.as_tensor(z)).mean(dim=0))
    return torch.stack(out)


def _nearest(agent, centroids, latents):
    return torch.cdist(agent.latent_normalizer.normalize(torch.as_tensor(latents)), centroids).argmin(dim=1)


# ---------------------------------------------------------------------------------- by nearest labelled cluster
@pytest.mark.parametrize("keep", [0, 1])
def test_cluster_filter_only_yields_latents_of_the_kept_behaviour(unconditioned, datasets, keep):
    agent = unconditioned
    assert agent.filter_behaviours([keep], labelled=datasets[:2], max_tries=64) is agent
    centroids = _scaled_centroids(agent, datasets[:2])
    torch.testing.assert_close(agent.behaviour_filter.centroids, centroids, rtol=1e-4, atol=1e-5)
    states = torch.as_tensor(agent.obs_normalizer.normalize(np.random.default_rng(0).normal(0, 0.3, (64, OBS_DIM)).astype(np.float32)))
    for deterministic in (False, True):
        z = agent.sample_latents(states, deterministic=deterministic)
        assert (_nearest(agent, centroids, z) == keep).all()
    # through predict: every re-plan's latents, in several environments
    seen = []
    sample = agent.sample_latents
    agent.sample_latents = lambda *a, **k: seen.append(sample(*a, **k)) or seen[-1]
    try:
        agent.reset()
        obs = np.concatenate([np.random.default_rng(1).normal(0, 0.3, (8, OBS_DIM)), np.tile([1.0, 0.0], (8, 1))], axis=1).astype(np.float32)
        for _ in range(3 * H):
            agent.predict(obs)
    finally:
        del agent.sample_latents
    assert len(seen) == 3 and all((_nearest(agent, centroids, z) == keep).all() for z in seen)
    assert 0 < agent.behaviour_filter.acceptance_rate <= 1
    assert agent.filter_behaviours(None).behaviour_filter is None


def _scaled_windows(agent, datasets):
    """Every training window's scaled latent and its behaviour, with ``encode`` (as _scaled_centroids)."""
    latents, labels = [], []
    for b, ds in enumerate(datasets):
        demos = load_demonstrations(ds)
        rows = lambda s, n: np.minimum(np.arange(s, s + H), n - 1)  # noqa: E731
        windows = [(o[rows(s, len(a))], a[rows(s, len(a))]) for o, a in zip(demos.observations, demos.actions) for s in range(len(a))]
        z = agent.encode(np.stack([w[0] for w in windows]), np.stack([w[1] for w in windows]))
        latents.append(agent.latent_normalizer.normalize(torch.as_tensor(z)))
        labels.append(torch.full((len(z),), b))
    return torch.cat(latents), torch.cat(labels)


@pytest.mark.parametrize("keep", [0, 1])
def test_neighbour_filter_only_yields_latents_most_of_whose_neighbours_are_kept(unconditioned, datasets, keep):
    agent = unconditioned.acting_copy()
    agent.filter_behaviours([keep], labelled=datasets[:2], classifier="knn", k=7, max_tries=64)
    filt = agent.behaviour_filter
    assert (filt.classifier, filt.k) == ("knn", 7) and not filt.by_task
    reference, labels = _scaled_windows(agent, datasets[:2])
    assert len(filt.latents) == len(reference) and torch.bincount(filt.labels).tolist() == torch.bincount(labels).tolist()
    # the behaviours act in opposite directions: other episodes' neighbours name them almost always
    assert min(filt.labelled_accuracy) > 0.9
    states = torch.as_tensor(agent.obs_normalizer.normalize(np.random.default_rng(0).normal(0, 0.3, (64, OBS_DIM)).astype(np.float32)))
    z = agent.latent_normalizer.normalize(agent.sample_latents(states))
    nearest = torch.cdist(z, reference).topk(7, dim=1, largest=False).indices
    votes = torch.stack([(labels[nearest] == b).sum(dim=1) for b in range(2)], dim=1)
    assert (votes[:, keep] >= votes[:, 1 - keep]).all()


def test_neighbour_votes_skip_the_latents_own_episode():
    latents = torch.tensor([[0.0], [0.1], [1.0], [1.1]])
    filt = BehaviourFilter(keep=(0,), centroids=torch.tensor([[0.05], [1.05]]), classifier="knn", k=1, latents=latents, labels=torch.tensor([0, 0, 1, 1]))
    assert filt.behaviour_of(torch.tensor([[0.04], [1.2]])).tolist() == [0, 1]
    assert filt.kept_excess(torch.tensor([[0.04], [1.2]])).tolist() == [0.0, 1.0]
    filt.k = 3  # 0.4: two votes for 0, one for 1
    assert filt.votes(torch.tensor([[0.4]])).tolist() == [[2, 1]] and filt.kept_excess(torch.tensor([[0.4]])).tolist() == [0.0]
    filt.k = 1  # with each pair one episode, a latent's nearest other-episode neighbour is the other behaviour
    assert filt.behaviour_of(latents, exclude_groups=torch.tensor([0, 0, 1, 1])).tolist() == [1, 1, 0, 0]
    assert filt.votes(latents, exclude_groups=torch.tensor([0, 0, 1, 1]), chunk=1).sum(dim=1).tolist() == [1, 1, 1, 1]


def test_rejected_latents_are_resampled_with_their_own_noise_streams_and_give_up_after_max_tries(unconditioned, datasets):
    """With a scripted sampler: rows nearest a rejected behaviour are sampled again (only them, each
    with its own generator and condition), and a latent never accepted raises after max_tries."""
    agent = unconditioned.acting_copy()
    agent.filter_behaviours([0], labelled=datasets[:2], max_tries=3)
    c0, c1 = agent.behaviour_filter.centroids
    calls = []

    def scripted(cond, n, generator):
        calls.append((n, None if cond is None else cond.clone(), generator))
        rows = [c1] * n if len(calls) == 1 else [c0 if k % 2 == 0 else c1 for k in range(n)]  # first all rejected, then half
        return torch.stack(rows)

    agent._sample_scaled = scripted
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    cond = torch.arange(4.0)[:, None]
    with pytest.raises(RuntimeError, match="still nearest a behaviour not kept after 3 samplings"):
        agent._rejecting(scripted(cond, 4, gens), cond, gens)
    # sampled 4, then all 4 again (2 accepted), then the 2 rejected ones again (1 accepted)
    assert [n for n, _, _ in calls] == [4, 4, 2]
    assert calls[2][2] == [gens[1], gens[3]] and calls[2][1].flatten().tolist() == [1.0, 3.0]
    assert (agent.behaviour_filter.sampled, agent.behaviour_filter.accepted) == (10, 3)
    calls.clear()
    agent.behaviour_filter.max_tries = 4
    z = agent._rejecting(scripted(cond, 4, gens), cond, gens)
    assert torch.equal(z, c0.expand(4, -1))


def test_on_exhausted_closest_takes_each_latents_sample_nearest_a_kept_behaviour(unconditioned, datasets):
    """A latent never accepted within max_tries gets, with on_exhausted='closest', the one of its
    samples that came closest to the kept centroid; accepted rows are untouched; fallbacks count."""
    agent = unconditioned.acting_copy()
    agent.filter_behaviours([0], labelled=datasets[:2], max_tries=3, on_exhausted="closest")
    c0, c1 = agent.behaviour_filter.centroids
    toward = iter([0.1, 0.3, 0.2])  # fractions of the way from c1 to c0: all still nearer c1

    def scripted(cond, n, generator):
        t = next(toward)
        rows = [c1 + t * (c0 - c1)] * n
        if n == 2:  # the first call: row 0 is kept at once
            rows[0] = c0
        return torch.stack(rows)

    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    agent._sample_scaled = scripted
    z = agent._rejecting(scripted(None, 2, gens), None, gens)
    torch.testing.assert_close(z[0], c0)
    torch.testing.assert_close(z[1], c1 + 0.3 * (c0 - c1))
    filt = agent.behaviour_filter
    assert (filt.sampled, filt.accepted, filt.fallbacks) == (4, 1, 1)
    assert float(filt.kept_excess(c0[None])) == 0.0 and float(filt.kept_excess(c1[None])) > 0
    with pytest.raises(ValueError, match="on_exhausted must be 'raise' or 'closest'"):
        agent.filter_behaviours([0], labelled=datasets[:2], on_exhausted="best")
    with pytest.raises(ValueError, match="classifier must be 'centroid' or 'knn'"):
        agent.filter_behaviours([0], labelled=datasets[:2], classifier="nearest")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        agent.filter_behaviours([0], labelled=datasets[:2], classifier="knn", k=0)
    with pytest.raises(ValueError, match="names behaviours of labelled demonstrations"):
        agent.filter_behaviours([0], classifier="knn")
    assert agent.behaviour_filter is filt  # the refused call left the filter as it was


# ---------------------------------------------------------------------------------- by task id
def test_one_kept_task_samples_exactly_that_tasks_plans(task_conditioned):
    agent = task_conditioned
    states = torch.as_tensor(agent.obs_normalizer.normalize(np.random.default_rng(0).normal(0, 0.3, (16, OBS_DIM)).astype(np.float32)))
    expected = agent.sample_latents(states, torch.full((16,), 2), deterministic=True)
    agent.filter_behaviours([2])
    try:
        torch.testing.assert_close(agent.sample_latents(states, torch.zeros(16, dtype=torch.long), deterministic=True), expected)
        # predict ignores the observation's task id while the filter is set
        obs = np.concatenate([np.random.default_rng(1).normal(0, 0.3, (4, OBS_DIM)), np.tile(np.eye(3)[0], (4, 1))], axis=1).astype(np.float32)
        filtered = agent.acting_copy()
        plain = agent.acting_copy()
        plain.filter_behaviours(None)
        task_2 = obs.copy()
        task_2[:, OBS_DIM:] = np.eye(3)[2]
        np.testing.assert_array_equal(filtered.predict(obs, deterministic=True)[0], plain.predict(task_2, deterministic=True)[0])
        assert filtered.behaviour_filter is not agent.behaviour_filter and filtered.behaviour_filter.keep == (2,)  # acting_copy copies it
    finally:
        agent.filter_behaviours(None)


def test_task_filter_draws_only_kept_ids(task_conditioned):
    agent = task_conditioned.acting_copy()
    agent.filter_behaviours([2, 0])
    assert agent.behaviour_filter.keep == (0, 2) and agent.behaviour_filter.by_task
    drawn = []
    condition = agent._condition
    agent._condition = lambda states, tasks: drawn.append(tasks.clone()) or condition(states, tasks)
    states = torch.zeros(200, OBS_DIM)
    agent.sample_latents(states, torch.ones(200, dtype=torch.long))
    agent.reset()
    obs = np.concatenate([np.zeros((6, OBS_DIM)), np.tile(np.eye(3)[1], (6, 1))], axis=1).astype(np.float32)
    for _ in range(2 * H):
        agent.predict(obs)
    ids = torch.cat(drawn)
    assert set(ids.tolist()) == {0, 2}  # 200 uniform draws from two ids: both appear, task 1 never
    assert len(drawn) == 3 and agent.behaviour_filter.acceptance_rate == 1.0


# ---------------------------------------------------------------------------------- the setting itself
def test_filter_is_an_acting_setting_not_saved_and_cleared_by_learn(task_conditioned, datasets, tmp_path):
    agent = task_conditioned.acting_copy()
    agent.filter_behaviours([1])
    agent.reset()
    assert agent.behaviour_filter.keep == (1,)  # reset forgets plans, not the filter
    agent.save(tmp_path / "agent.ckpt")
    assert BaseAgent.load(tmp_path / "agent.ckpt").behaviour_filter is None
    other = _agent(LDPAgent, "obs").learn(datasets[:2], vae_steps=2, diffusion_steps=2, progress_bar=False)
    other.filter_behaviours([0], labelled=datasets[:2])
    assert isinstance(other.behaviour_filter, BehaviourFilter) and len(other.behaviour_filter.labelled_accuracy) == 2
    other.learn(datasets[:2], vae_steps=1, diffusion_steps=1, progress_bar=False)
    assert other.behaviour_filter is None  # new networks: the old centroids would be meaningless


def test_filter_validates_its_inputs(task_conditioned, unconditioned, datasets):
    with pytest.raises(RuntimeError, match="not been trained"):
        _agent(LWDAgent, "obs").filter_behaviours([0])
    agent = task_conditioned.acting_copy()
    for keep, match in [([], "empty"), ([0, 0], "repeated"), ([3], r"unknown behaviour id\(s\) \[3\]"), ([-1], "unknown"),
                        (["a"], "integer"), ([True], "integer"), ([0.5], "integer"), (0, "list of behaviour ids"), ("0", "list")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            agent.filter_behaviours(keep)
    for max_tries in (0, 1.5, True):
        with pytest.raises(ValueError, match="max_tries"):
            agent.filter_behaviours([0], max_tries=max_tries)
    with pytest.raises(ValueError, match="clears the filter"):
        agent.filter_behaviours(None, labelled=datasets)
    assert agent.behaviour_filter is None  # nothing was set by the refused calls
    obs_only = unconditioned.acting_copy()
    with pytest.raises(ValueError, match="pass labelled="):
        obs_only.filter_behaviours([0])
    with pytest.raises(ValueError, match="one behaviour"):
        obs_only.filter_behaviours([0], labelled=datasets[0])
    with pytest.raises(ValueError, match=r"unknown behaviour id\(s\) \[2\]: there are 2 labelled behaviours"):
        obs_only.filter_behaviours([2], labelled=datasets[:2])
    with pytest.raises(ValueError, match="no snippet"):
        short = load_demonstrations(datasets[:2])
        short = short.subset(np.flatnonzero(short.tasks == 0))
        short.num_tasks = 2
        obs_only.filter_behaviours([0], labelled=short)
    assert np.int64(1) in obs_only.filter_behaviours(np.array([1]), labelled=datasets[:2]).behaviour_filter.keep  # numpy ids are fine
