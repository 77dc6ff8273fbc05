"""The snippet pipeline every agent trains on: lazy windows, padding at episode ends, tasks, DataLoader."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from lwd_gym.data import Normalizer, SnippetDataset, load_demonstrations
from lwd_gym.data.demonstrations import Demonstrations


def _demos(lengths=(5, 2, 4), tasks=None):
    """Episode e, step t has state (e, t) and action (10 e + t): every row says where it came from."""
    obs = [np.array([[e, t] for t in range(n)], np.float32) for e, n in enumerate(lengths)]
    act = [np.array([[10 * e + t] for t in range(n)], np.float32) for e, n in enumerate(lengths)]
    space = gym.spaces.Box(-100, 100, (2,), np.float32)
    tasks = np.zeros(len(lengths), np.int64) if tasks is None else np.asarray(tasks)
    return Demonstrations(obs, act, tasks, space, gym.spaces.Box(-100, 100, (1,), np.float32), int(tasks.max()) + 1)


IDENTITY = Normalizer(np.zeros(2, np.float32), np.ones(2, np.float32)), Normalizer(np.zeros(1, np.float32), np.ones(1, np.float32))


def test_a_window_starts_at_every_step_of_long_enough_episodes():
    snippets = SnippetDataset(_demos(), 3, *IDENTITY)
    assert len(snippets) == 5 + 4  # the 2-step episode is shorter than a snippet: skipped
    batch = snippets.get_batch(torch.arange(len(snippets)))
    assert batch["states"].shape == (9, 3, 2) and batch["actions"].shape == (9, 3, 1)
    firsts = batch["states"][:, 0].tolist()
    assert firsts == [[0, t] for t in range(5)] + [[2, t] for t in range(4)]


def test_starting_every_keeps_the_windows_where_plans_start():
    snippets = SnippetDataset(_demos(lengths=(5, 2, 7)), 2, *IDENTITY, pad_before=1)
    view = snippets.starting_every(3)
    firsts = view.get_batch(torch.arange(len(view)))["states"][:, 0].tolist()
    assert firsts == [[0, 0], [0, 3], [1, 0], [2, 0], [2, 3], [2, 6]]  # never a window before its episode
    assert len(snippets.starting_every(1)) == 5 + 2 + 7 and len(snippets) == 5 + 2 + 7 + 3  # the view leaves the original alone
    with pytest.raises(ValueError, match="interval"):
        snippets.starting_every(0)


@pytest.mark.parametrize("condition_on, per_episode", [("task", lambda n, h: -(-n // h)), ("obs+task", lambda n, h: n)])
def test_latent_diffusion_learns_the_latents_plans_start_with(tiny_datasets, monkeypatch, condition_on, per_episode):
    """Without the state in its condition, the diffusion learns the latents of windows starting at
    re-plan steps only (0, H_a, 2 H_a, ... of each episode): a plan never starts elsewhere."""
    from lwd_gym import LWDAgent

    seen = []
    encode = LWDAgent._encode_snippets
    monkeypatch.setattr(LWDAgent, "_encode_snippets", lambda self, s: seen.append(len(s)) or encode(self, s))
    agent = LWDAgent(action_horizon=8, latent_dim=8, latent_length=4, policy_hidden=(8,), hypernet_size="xs", denoiser_size="xs",
                     condition_on=condition_on, batch_size=4, device="cpu")
    agent.learn(tiny_datasets, vae_steps=1, diffusion_steps=1, validation_fraction=0, progress_bar=False)
    lengths = load_demonstrations(tiny_datasets).lengths
    assert seen[0] == sum(per_episode(int(n), 8) for n in lengths if n >= 8)


@pytest.mark.parametrize("vae_windows, per_episode", [("all", lambda n, h: n), ("plan_starts", lambda n, h: -(-n // h))])
def test_the_vae_trains_on_the_windows_vae_windows_names(tiny_datasets, vae_windows, per_episode):
    """``vae_windows="plan_starts"`` trains the VAE on the windows where plans start only (whole
    episodes with one policy per episode); ``"all"`` on a window at every step."""
    from lwd_gym import LWDAgent

    agent = LWDAgent(action_horizon=8, latent_dim=8, latent_length=4, policy_hidden=(8,), hypernet_size="xs", denoiser_size="xs",
                     vae_windows=vae_windows, device="cpu")  # fmt: skip
    agent.learn(tiny_datasets, vae_steps=1, diffusion_steps=1, validation_fraction=0, progress_bar=False)
    demos = load_demonstrations(tiny_datasets)
    snippets = agent._vae_snippets(demos)
    assert len(snippets) == sum(per_episode(int(n), 8) for n in demos.lengths if n >= 8)
    assert set(((snippets.starts - snippets.begins) % (8 if vae_windows == "plan_starts" else 1)).tolist()) == {0}
    assert LWDAgent(vae_windows=vae_windows, device="cpu").config.vae_windows == vae_windows
    with pytest.raises(ValueError, match="vae_windows must be one of"):
        LWDAgent(vae_windows="every", device="cpu")


def test_windows_past_the_end_repeat_the_last_step_and_are_masked():
    snippets = SnippetDataset(_demos(), 3, *IDENTITY)
    batch = snippets.get_batch(torch.tensor([3, 4]))  # episode 0 starting at steps 3 and 4 (of 0..4)
    assert batch["actions"][:, :, 0].tolist() == [[3, 4, 4], [4, 4, 4]]
    assert batch["mask"].tolist() == [[True, True, False], [True, False, False]]
    assert batch["states"][1].tolist() == [[0, 4]] * 3  # never crosses into the next episode


def test_to_device_moves_every_tensor_and_keeps_the_batches():
    snippets = SnippetDataset(_demos(), 3, *IDENTITY, pad_before=1)
    index = torch.tensor([4, 0, 7])
    # "meta" tensors have shapes but no data: any tensor left behind would fail to mix with them.
    on_meta = snippets.to("meta").get_batch(index.to("meta"))
    assert all(v.device.type == "meta" for v in on_meta.values())
    expected = snippets.get_batch(index)
    assert {k: v.shape for k, v in on_meta.items()} == {k: v.shape for k, v in expected.items()}
    assert snippets.states.device.type == "cpu"  # a copy: the original stays
    for key, value in snippets.to("cpu").get_batch(index).items():
        assert torch.equal(value, expected[key])


def test_pad_short_episodes_keeps_short_episodes_end_padded_and_masked():
    snippets = SnippetDataset(_demos(), 3, *IDENTITY, pad_short_episodes=True)
    assert len(snippets) == 5 + 2 + 4
    batch = snippets.get_batch(torch.tensor([5, 6]))  # the 2-step episode 1, starting at steps 0 and 1
    assert batch["actions"][:, :, 0].tolist() == [[10, 11, 11], [11, 11, 11]]
    assert batch["mask"].tolist() == [[True, True, False], [True, False, False]]
    assert batch["states"][1].tolist() == [[1, 1]] * 3
    # A snippet longer than every episode is then allowed: every window is mostly padding, never empty.
    whole = SnippetDataset(_demos(), 9, *IDENTITY, pad_short_episodes=True).get_batch(torch.arange(11))
    assert whole["mask"].any(dim=1).all() and whole["mask"][:, 0].all()


def test_pad_before_starts_windows_before_the_episode_with_its_first_step():
    snippets = SnippetDataset(_demos(lengths=(4,)), 3, *IDENTITY, pad_before=1)
    assert len(snippets) == 4 + 1
    batch = snippets.get_batch(torch.tensor([0]))
    assert batch["states"][0].tolist() == [[0, 0], [0, 0], [0, 1]]
    assert batch["mask"][0].tolist() == [False, True, True]
    with pytest.raises(ValueError, match="pad_before"):
        SnippetDataset(_demos(), 3, *IDENTITY, pad_before=3)


def test_normalisers_are_applied():
    obs_norm = Normalizer(np.array([1.0, 2.0], np.float32), np.array([2.0, 4.0], np.float32))
    act_norm = Normalizer(np.array([10.0], np.float32), np.array([5.0], np.float32))
    batch = SnippetDataset(_demos(), 1, obs_norm, act_norm).get_batch(torch.tensor([5]))  # episode 1, step 0
    assert batch["states"][0, 0].tolist() == [0.0, -0.5] and batch["actions"][0, 0].tolist() == [0.0]


def test_task_ids_follow_their_episode():
    snippets = SnippetDataset(_demos(lengths=(3, 3, 3), tasks=(0, 1, 1)), 2, *IDENTITY)
    batch = snippets.get_batch(torch.arange(len(snippets)))
    assert batch["task"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1]


def test_too_short_data_is_an_error():
    with pytest.raises(ValueError, match="snippet_length=9"):
        SnippetDataset(_demos(), 9, *IDENTITY)
    with pytest.raises(ValueError, match="snippet_length must be >= 1"):
        SnippetDataset(_demos(), 0, *IDENTITY)


def test_multi_task_datasets_concatenate_with_task_ids(tiny_datasets):
    demos = load_demonstrations(tiny_datasets)
    assert demos.num_tasks == 2 and len(demos.actions) == 10
    assert demos.tasks.tolist() == [0] * 5 + [1] * 5
    # each dataset's episodes, in order, with Minari's final observation dropped
    first = next(tiny_datasets[1].iterate_episodes())
    np.testing.assert_array_equal(demos.observations[5], first.observations[:-1])
    np.testing.assert_array_equal(demos.actions[5], first.actions)


def test_dataloader_batched_fetch_with_workers():
    """A DataLoader with a BatchSampler fetches whole batches through __getitems__, in worker processes."""
    snippets = SnippetDataset(_demos(), 3, *IDENTITY)
    sampler = BatchSampler(RandomSampler(snippets, generator=torch.Generator().manual_seed(0)), batch_size=4, drop_last=False)
    loader = DataLoader(snippets, sampler=sampler, batch_size=None, num_workers=2, collate_fn=lambda batch: batch)
    seen = []
    for batch in loader:
        assert batch["states"].shape[1:] == (3, 2)
        seen += batch["states"][:, 0].tolist()
    assert sorted(seen) == sorted(snippets.get_batch(torch.arange(len(snippets)))["states"][:, 0].tolist())


@pytest.mark.parametrize(
    "mean, std",
    [([0.0, 1e38], [1e-3, 2.0]), ([5.0, -3.0], [1e-30, 1e30]), ([-2e38, 0.0], [1.0, 1.0])],
)
def test_inputs_within_the_finite_bound_normalise_to_finite_values(mean, std):
    """``finite_bound`` lets predict skip the full overflow check: every input within it must
    normalise to finite float32, and the bound must be tight enough to let ordinary data through."""
    norm = Normalizer(np.array(mean, np.float32), np.array(std, np.float32))
    bound = np.float32(norm.finite_bound)
    if bound <= 0:  # a mean near float32's limit: no input is cheap to check, none may skip it
        assert norm.finite_bound <= 0
        return
    corners = np.array([[a, b] for a in (-bound, bound) for b in (-bound, bound)], np.float32)
    assert np.isfinite(norm.normalize(corners)).all()
    assert norm.finite_bound >= 1e6 or np.abs(norm.mean).max() > 1e30  # ordinary data stays on the fast path
