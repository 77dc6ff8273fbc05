"""The benchmarks' paper profiles build valid agents and take a training step.

They are meant for a GPU and are not run in CI; this checks that each of their configurations is
accepted by the agents and trains for one step on a small dataset, so a GPU session does not
find a configuration error hours in.  (Metaworld's: constructor only, as its DP-xl alone has
264 M parameters.)
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import denoiser, horizon, kl, latents, metaworld



def _learn_one_step(agent, dataset) -> None:
    agent.learn(dataset, steps=1, progress_bar=False)  # one gradient step per stage
    obs = np.zeros((1, *agent.observation_space.shape), np.float32)
    assert np.isfinite(agent.predict(obs, episode_start=np.ones(1, bool))[0]).all()


@pytest.mark.parametrize("env", ["pusht", "lift", "can"])
def test_horizon_paper_agents_train(env: str, tiny_datasets) -> None:
    s = horizon.setting(env, "paper")
    assert s.episodes == 500 and s.train_seeds == (0, 1, 2)
    # every horizon method runs at the paper and standard profiles (robosuite too: LWD+WM and LDP
    # are the peers there); quick keeps robosuite to LWD and DP for its budget
    for profile in ("paper", "standard"):
        assert set(horizon.HORIZON_METHODS) <= set(horizon.setting(env, profile).methods)
    if env != "pusht":
        assert horizon.setting(env, "quick").methods == ("LWD", "DP")
    for method in s.methods:
        for h in (s.horizons[0], s.horizons[-1]) if method in horizon.HORIZON_METHODS else (None,):
            _learn_one_step(horizon.make_agent(method, h or 1, s, 0, "cpu"), tiny_datasets[0])


def test_denoiser_and_kl_paper_agents_train(tiny_datasets) -> None:
    s = horizon.setting("pusht", "paper")
    for method in denoiser.METHODS:
        _learn_one_step(horizon.make_agent(method, denoiser.HORIZON, denoiser.variant(s, method, "transformer"), 0, "cpu"), tiny_datasets[0])
    cfg = kl.PROFILES["paper"]
    sk = kl.kl_setting("paper", cfg, cfg.kl_coefs[-2])
    _learn_one_step(horizon.make_agent(kl.METHOD, cfg.horizon, sk, 0, "cpu"), tiny_datasets[0])


def test_latents_paper_agent_trains(tiny_datasets) -> None:
    _learn_one_step(latents.make_agent(latents.PROFILES["paper"], "cpu"), tiny_datasets[0])


@pytest.mark.parametrize("profile", ["standard", "paper"])
def test_metaworld_specs_build(profile) -> None:
    cfg = metaworld.PROFILES[profile]
    specs = [spec for spec, _ in metaworld.compute_specs(cfg)] + metaworld.hypernet_specs(cfg)
    assert len({spec.label for spec in specs}) == len(specs)
    for spec in specs:
        agent = spec.build("cpu")
        assert type(agent).__name__.startswith(spec.family)


def test_metaworld_only_runs_the_named_part_of_the_sweep() -> None:
    specs = metaworld.compute_specs(metaworld.PROFILES["standard"])
    part = metaworld.selected(specs, ["DP-xs", "MLP"], lambda s: s[0].label)
    assert {s.label for s, _ in part} == {"DP-xs H32", "DP-xs H128", "MLP-128", "MLP-256", "MLP-512", "MLP-1024"}
    assert metaworld.selected(specs, None, lambda s: s[0].label) == specs


def test_metaworld_standard_has_lwd_with_its_default_conditioning() -> None:
    """Issue #22's Metaworld target names LWD's default conditioning for a list of task datasets:
    the standard compute sweep runs LWD-256 with ``condition_on="auto"`` (obs+task) beside the
    task-only row, keyed apart, the rest of the recipe the same."""
    specs = {spec.label: spec for spec, rollout in metaworld.compute_specs(metaworld.PROFILES["standard"]) if rollout}
    task, auto = specs["LWD-256"], specs["LWD-256 auto-cond"]
    assert task.params["condition_on"] == "task" and auto.params["condition_on"] == "auto"
    assert {k: v for k, v in auto.params.items() if k != "condition_on"} == {k: v for k, v in task.params.items() if k != "condition_on"}
    assert auto.train == task.train and auto.key(["d"]) != task.key(["d"])
    assert metaworld.lwd_spec(metaworld.PROFILES["standard"], 256, "xs", 500, "x").params["condition_on"] == "task"
