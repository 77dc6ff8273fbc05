"""Acting between plans on host copies of the weights (numpy) gives the torch path's actions."""
import copy

import numpy as np
import pytest

from lwd_gym import DPAgent, LDPAgent, LWDAgent, MLPAgent

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def agents(bimodal_dataset, tiny_multitask):
    lwd = LWDAgent(action_horizon=1000, snippet_length=8, latent_dim=16, hypernet_size="xs", policy_hidden=(32, 32), denoiser_size="xs", num_inference_steps=2, device="cpu")
    return {
        "lwd": lwd.learn(bimodal_dataset, vae_steps=20, diffusion_steps=2, progress_bar=False),
        "mlp": MLPAgent(hidden=(32, 32), device="cpu").learn(bimodal_dataset, steps=20, progress_bar=False),
        "lwd-multitask": LWDAgent(lwd.config.replace(condition_on="obs+task"), device="cpu").learn(tiny_multitask, vae_steps=5, diffusion_steps=2, progress_bar=False),
        "mlp-multitask": MLPAgent(hidden=(32,), device="cpu").learn(tiny_multitask, steps=20, progress_bar=False),
        # open-loop chunks; DP's observation history is updated on the host between plans
        "dp": DPAgent(action_horizon=4, n_obs_steps=2, denoiser_size="xs", num_inference_steps=2, scheduler="ddim", device="cpu").learn(bimodal_dataset, steps=5, progress_bar=False),
        "ldp": LDPAgent(action_horizon=4, snippet_length=8, latent_dim=16, denoiser_size="xs", num_inference_steps=2, device="cpu").learn(
            bimodal_dataset, vae_steps=5, diffusion_steps=2, progress_bar=False),
    }


@pytest.fixture(scope="module")
def tiny_multitask(session_minari_dir):
    from lwd_gym.envs import make_bimodal_dataset

    with pytest.MonkeyPatch.context() as patch:  # module-scoped: undone when the datasets are written
        patch.setenv("MINARI_DATASETS_PATH", str(session_minari_dir))
        return [make_bimodal_dataset(5, seed=s, dataset_id=f"lwd/fast/{s}-v0", side=side, progress=False) for s, side in ((0, -1), (1, 1))]


@pytest.mark.parametrize("name", ["lwd", "mlp", "lwd-multitask", "mlp-multitask", "dp", "ldp"])
@pytest.mark.parametrize("n_envs", [1, 3, 40])  # one policy / numpy batched matmul / torch baddbmm
def test_host_path_equals_torch_path(agents, name, n_envs):
    fast = copy.deepcopy(agents[name])
    slow = copy.deepcopy(agents[name])
    slow.act_on_host = False
    rng = np.random.default_rng(n_envs)
    obs = rng.uniform(-1, 1, (n_envs, 2)).astype(np.float32)
    if "multitask" in name:
        obs = np.concatenate([obs, np.eye(2, dtype=np.float32)[rng.integers(0, 2, n_envs)]], axis=1)
    starts = np.ones(n_envs, bool)
    for t in range(6):  # DP and LDP re-plan at t = 4, on the host-kept history
        a_fast, _ = fast.predict(obs, episode_start=starts if t == 0 else None, deterministic=True)
        a_slow, _ = slow.predict(obs, episode_start=starts if t == 0 else None, deterministic=True)
        np.testing.assert_allclose(a_fast, a_slow, **TOL)
        obs[:, :2] += rng.normal(0, 0.3, (n_envs, 2)).astype(np.float32)  # move: the policy is closed-loop
    assert fast.num_replans == slow.num_replans


def test_new_samples_reach_the_host_copies(agents):
    """After a re-sample of some envs, their host policies are the new ones, the others unchanged."""
    agent = copy.deepcopy(agents["lwd"])
    agent.action_horizon = 2
    obs = np.random.default_rng(0).uniform(-1, 1, (4, 2)).astype(np.float32)
    agent.predict(obs, episode_start=np.ones(4, bool))
    for t in range(6):
        starts = np.array([t % 3 == 0, False, t == 4, False])
        agent.predict(obs, episode_start=starts)
        torch_actions = agent.vae.policy(agent._acting.plans.weights, agent.obs_normalizer.normalize(__import__("torch").as_tensor(obs)))
        expected = agent.action_normalizer.unnormalize(torch_actions.detach().numpy())
        np.testing.assert_allclose(agent._acting.plans.host(obs), expected, **TOL)


@pytest.mark.parametrize("name", ["lwd", "dp"])
def test_the_host_path_is_used_between_plans(agents, monkeypatch, name):
    agent = copy.deepcopy(agents[name])
    obs = np.zeros((2, 2), np.float32)
    agent.predict(obs, episode_start=np.ones(2, bool))
    monkeypatch.setattr(type(agent), "_act", lambda *a: pytest.fail("torch path used between plans"))
    agent.predict(obs)
