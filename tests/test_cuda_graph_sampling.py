"""The CUDA-graph sampling path of ConditionalDiffusion: same samples as the eager loop.

The CPU test checks the loop variant the graph records (scheduler state on the CPU, the
denoiser's timesteps from a device table); the CUDA tests run only where a GPU is present.
"""
from __future__ import annotations

import pytest
import torch

from lwd_gym.nn.diffusion import ConditionalDiffusion, _sampling_loop

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _model(device: str = "cpu") -> ConditionalDiffusion:
    torch.manual_seed(0)
    return ConditionalDiffusion((8, 4), cond_dim=3, size="xs").to(device).eval()


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver++"])
def test_loop_with_cpu_scheduler_state_equals_the_eager_loop(scheduler: str) -> None:
    model = _model()
    sampler = model._sampler(scheduler)
    noise, cond = torch.randn(5, 8, 4), torch.randn(5, 3)
    eager = _sampling_loop(model.denoiser, sampler, 6, noise, cond)
    table = torch.arange(model.train_scheduler.config.num_train_timesteps)
    recorded = _sampling_loop(model.denoiser, sampler, 6, noise, cond, timestep_table=table)
    torch.testing.assert_close(recorded, eager)


def test_no_graph_on_cpu() -> None:
    model = _model()
    model.sample(torch.randn(2, 3), 2, scheduler="ddim")
    assert not model._graphs


@needs_cuda
@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver++"])
def test_graph_replay_equals_eager_sampling(scheduler: str) -> None:
    model = _model("cuda")
    for n in (3, 4, 1, 3):  # buckets 4, 4, 1, 4: padded rows must not leak into results
        cond = torch.randn(n, 3, device="cuda")
        seeds = [torch.Generator("cuda").manual_seed(i) for i in range(n)]
        graphed = model.sample(cond, n, scheduler=scheduler, num_inference_steps=5, generator=seeds)
        model.cuda_graphs = False
        seeds = [torch.Generator("cuda").manual_seed(i) for i in range(n)]
        eager = model.sample(cond, n, scheduler=scheduler, num_inference_steps=5, generator=seeds)
        model.cuda_graphs = True
        torch.testing.assert_close(graphed, eager, rtol=1e-4, atol=1e-5)
    assert {key[-1] for key in model._graphs} == {1, 4}


@needs_cuda
def test_graphs_follow_weight_updates_and_are_dropped_on_train() -> None:
    model = _model("cuda")
    cond = torch.randn(2, 3, device="cuda")
    before = model.sample(cond, 2, generator=torch.Generator("cuda").manual_seed(0))
    with torch.no_grad():  # in-place updates (optimizer steps, load_state_dict) keep the storage
        for p in model.parameters():
            p.mul_(0.5)
    after = model.sample(cond, 2, generator=torch.Generator("cuda").manual_seed(0))
    model.cuda_graphs = False
    eager = model.sample(cond, 2, generator=torch.Generator("cuda").manual_seed(0))
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, eager, rtol=1e-4, atol=1e-5)
    model.cuda_graphs = True
    model.train()
    assert not model._graphs
    model.eval()
    model.sample(cond, 2)
    assert len(model._graphs) == 1


@needs_cuda
def test_ddpm_stays_eager() -> None:
    model = _model("cuda")
    model.sample(torch.randn(2, 3, device="cuda"), 2, scheduler="ddpm", num_inference_steps=4)
    assert not model._graphs


@needs_cuda
def test_graph_captured_under_inference_mode_replays_outside_it() -> None:
    model = _model("cuda")
    cond = torch.randn(2, 3, device="cuda")
    with torch.inference_mode():  # as inside an agent's predict
        inside = model.sample(cond, 2, generator=torch.Generator("cuda").manual_seed(0))
    outside = model.sample(cond, 2, generator=torch.Generator("cuda").manual_seed(0))
    with torch.inference_mode():
        again = model.sample(cond, 2, generator=torch.Generator("cuda").manual_seed(0))
    torch.testing.assert_close(outside, inside)
    torch.testing.assert_close(again, inside)


@needs_cuda
def test_agent_with_captured_graphs_copies_retrains_and_round_trips(tiny_datasets, tmp_path) -> None:
    import copy

    import numpy as np

    from lwd_gym import BaseAgent, LWDAgent

    agent = LWDAgent(action_horizon=4, snippet_length=8, latent_dim=16, policy_hidden=(16, 16), hypernet_size="xs",
                     denoiser_size="xs", device="cuda")  # fmt: skip
    agent.learn(tiny_datasets[0], vae_steps=2, diffusion_steps=2, progress_bar=False)
    obs = np.stack([agent._probe_observation()[0]] * 2)
    agent.predict(obs, episode_start=np.ones(2, bool), deterministic=True)
    assert agent.diffusion._graphs
    twin = copy.deepcopy(agent)  # graphs stay behind; the copy captures its own
    np.testing.assert_allclose(twin.predict(obs, episode_start=np.ones(2, bool), deterministic=True)[0],
                               agent.predict(obs, episode_start=np.ones(2, bool), deterministic=True)[0], rtol=1e-4, atol=1e-5)  # fmt: skip
    agent.save(tmp_path / "agent.ckpt")
    loaded = BaseAgent.load(tmp_path / "agent.ckpt", device="cuda")
    np.testing.assert_allclose(loaded.predict(obs, episode_start=np.ones(2, bool), deterministic=True)[0],
                               agent.predict(obs, episode_start=np.ones(2, bool), deterministic=True)[0], rtol=1e-4, atol=1e-5)  # fmt: skip
    agent.learn(tiny_datasets[0], vae_steps=2, diffusion_steps=2, progress_bar=False)  # again: EMA deep-copies the model
    assert np.isfinite(agent.predict(obs, episode_start=np.ones(2, bool))[0]).all()


@needs_cuda
def test_agent_on_cuda_acts_and_counts_flops_as_without_graphs(tiny_datasets) -> None:
    import numpy as np

    from lwd_gym import LWDAgent

    agent = LWDAgent(action_horizon=4, snippet_length=8, latent_dim=16, policy_hidden=(16, 16), hypernet_size="xs",
                     denoiser_size="xs", device="cuda").learn(tiny_datasets[0], vae_steps=2, diffusion_steps=2, progress_bar=False)  # fmt: skip
    obs = np.stack([agent._probe_observation()[0]] * 3)
    starts = np.ones(3, bool)
    graphed = [agent.predict(obs, episode_start=starts, deterministic=True)[0] for _ in range(2)]
    flops_graphed = agent.flops_per_step()  # replayed graphs are invisible to FlopCounterMode
    agent.diffusion.cuda_graphs = False
    agent.reset()
    eager = [agent.predict(obs, episode_start=starts, deterministic=True)[0] for _ in range(2)]
    assert agent.diffusion._graphs, "the graphed predict should have captured a graph"
    np.testing.assert_allclose(graphed, eager, rtol=1e-4, atol=1e-5)
    assert flops_graphed == agent.flops_per_step()


def test_copies_leave_captured_graphs_behind() -> None:
    """A CUDA graph cannot be copied: deepcopy (EMA at the next learn()) must not try."""
    import copy
    import threading

    model = _model()
    model._graphs["stand-in"] = threading.Lock()  # uncopyable, like a captured CUDAGraph
    clone = copy.deepcopy(model)
    assert not clone._graphs and "stand-in" in model._graphs
    torch.testing.assert_close(clone.sample(torch.zeros(1, 3), 1, generator=torch.Generator().manual_seed(0)),
                               model.sample(torch.zeros(1, 3), 1, generator=torch.Generator().manual_seed(0)))  # fmt: skip
