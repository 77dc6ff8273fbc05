"""``LatentDiffusionAgent.encode``: posterior means of raw snippets, the latents training used."""
import numpy as np
import pytest
import torch

from lwd_gym import LDPAgent, LWDAgent
from lwd_gym.data import load_demonstrations
from lwd_gym.data.snippets import SnippetDataset


def _tiny(cls):
    kw = dict(action_horizon=4, latent_dim=16, denoiser_size="xs", num_inference_steps=2, device="cpu", seed=0)
    if cls is LWDAgent:
        kw.update(hypernet_size="xs", policy_hidden=(8,))
    return cls(**kw)


@pytest.mark.parametrize("cls", [LWDAgent, LDPAgent])
def test_encode_matches_the_training_latents(tiny_datasets, cls):
    agent = _tiny(cls).learn(tiny_datasets[0], vae_steps=2, diffusion_steps=1, progress_bar=False)
    demos = load_demonstrations(tiny_datasets[0])
    obs, act = demos.observations[0], demos.actions[0]
    h = agent.snippet_length
    starts = np.arange(0, len(act) - h + 1, h)
    states = np.stack([obs[s : s + h] for s in starts])
    actions = np.stack([act[s : s + h] for s in starts])

    z = agent.encode(states, actions)
    assert z.shape == (len(starts), agent.latent_dim) and z.dtype == np.float32 and np.isfinite(z).all()
    # The same windows, normalised and encoded the way learn() encodes them for the diffusion stage.
    snippets = SnippetDataset(demos, h, agent.obs_normalizer, agent.action_normalizer)
    expected, _ = agent._encode_snippets(snippets)
    np.testing.assert_allclose(z, expected[torch.as_tensor(starts)].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(agent.encode(torch.as_tensor(states), torch.as_tensor(actions)), z)  # tensors in, same out


def test_encode_rejects_wrong_shapes_and_untrained_agents(tiny_datasets):
    with pytest.raises(RuntimeError, match="not been trained"):
        _tiny(LWDAgent).encode(np.zeros((1, 4, 2)), np.zeros((1, 4, 2)))
    agent = _tiny(LWDAgent).learn(tiny_datasets[0], vae_steps=1, diffusion_steps=1, progress_bar=False)
    o, a = agent.state_space.shape[0], agent.action_space.shape[0]
    assert agent.encode(np.zeros((0, 4, o)), np.zeros((0, 4, a))).shape == (0, 16)
    for states, actions in [
        (np.zeros((2, 3, o)), np.zeros((2, 3, a))),  # not snippet_length steps
        (np.zeros((2, 4, o + 1)), np.zeros((2, 4, a))),  # wrong state size (e.g. with a task id)
        (np.zeros((4, o)), np.zeros((4, a))),  # one snippet without the batch axis
        (np.zeros((2, 4, o)), np.zeros((3, 4, a))),  # different counts
    ]:
        with pytest.raises(ValueError, match="expected states"):
            agent.encode(states, actions)
