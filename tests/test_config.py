"""Agents' hyperparameters as validated config dataclasses (lwd_gym.agents.config)."""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from lwd_gym import DPAgent, DPConfig, LDPAgent, LDPConfig, LWDAgent, LWDConfig, MLPAgent, MLPConfig, RandomAgent, RandomConfig, registry
from lwd_gym.agents.learning import RUN_OPTIONS
from lwd_gym.checkpoint import load_checkpoint, save_checkpoint
from lwd_gym.cli import main

PAIRS = [(LWDAgent, LWDConfig), (LDPAgent, LDPConfig), (DPAgent, DPConfig), (MLPAgent, MLPConfig), (RandomAgent, RandomConfig)]
TINY_LWD = dict(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs", num_inference_steps=2)


@pytest.mark.parametrize("agent_class, config_class", PAIRS)
def test_every_agent_has_its_config_and_it_round_trips_through_json(agent_class, config_class):
    agent = agent_class(seed=7, device="cpu")
    assert type(agent.config) is config_class and agent.config_class is config_class
    restored = config_class.from_dict(json.loads(json.dumps(agent.config.to_dict())))
    assert restored == agent.config and restored.seed == 7
    # every field reads as an attribute, and every field is documented
    for f in dataclasses.fields(config_class):
        assert getattr(agent, f.name) == getattr(agent.config, f.name)
    assert all(doc.split(" (default")[0] for doc in config_class.describe().values()), config_class.describe()


def test_a_config_a_dict_and_keywords_build_the_same_agent():
    config = LWDConfig(**TINY_LWD)
    assert LWDAgent(config, device="cpu").config == LWDAgent(**TINY_LWD, device="cpu").config == config
    assert LWDAgent(config.to_dict(), device="cpu").config == config
    changed = LWDAgent(config, seed=3, device="cpu").config  # keywords apply on top of a config
    assert changed.seed == 3 and changed.latent_dim == 16 and config.seed == 0
    assert registry.make("lwd", config).config == config


def test_configs_are_frozen_and_replace_validates():
    config = LWDConfig(**TINY_LWD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.latent_dim = 8  # type: ignore[misc]
    assert config.replace(latent_dim=32).latent_dim == 32
    with pytest.raises(ValueError, match=r"\blatent_dim\b"):
        config.replace(latent_dim=17)  # not divisible by latent_length


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: LWDConfig(latent_dim=0), "latent_dim"),
        (lambda: LWDConfig(vae_windows="some"), "vae_windows"),
        (lambda: LWDConfig(denoiser_size="huge"), "denoiser_size"),
        (lambda: LWDConfig(world_model=True, world_model_history=4, action_horizon=4), "world_model_history"),
        (lambda: LDPConfig(action_horizon=9, snippet_length=8), "action_horizon"),
        (lambda: DPConfig(action_horizon=20), "action_horizon"),
        (lambda: DPConfig(scheduler="euler"), "scheduler"),
        (lambda: MLPConfig(bc_lr=0), "bc_lr"),
        (lambda: MLPConfig(hidden=()), "hidden"),
    ],
)
def test_a_bad_field_fails_at_construction_naming_it(make, field):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        make()


def test_an_unknown_field_is_a_type_error_listing_the_fields():
    with pytest.raises(TypeError, match="no field.*'latnet_dim'.*latent_dim"):
        LWDAgent(latnet_dim=16)
    with pytest.raises(TypeError, match="expected a LWDConfig"):
        LWDAgent(DPConfig())


@pytest.mark.parametrize(
    "agent_class, old, new, value",
    [
        (LWDAgent, "diffusion_size", "denoiser_size", "xs"),
        (LDPAgent, "diffusion_size", "denoiser_size", "xs"),
        (DPAgent, "size", "denoiser_size", "xs"),
        (DPAgent, "lr", "diffusion_lr", 1e-3),
        (DPAgent, "epochs", "diffusion_epochs", 3),
        (MLPAgent, "lr", "bc_lr", 1e-2),
        (MLPAgent, "epochs", "bc_epochs", 3),
    ],
)
def test_names_from_before_the_configs_still_work_with_a_warning(agent_class, old, new, value):
    with pytest.warns(FutureWarning, match=f"'{old}' is now called '{new}'") as record:
        agent = agent_class(**{old: value}, device="cpu")
    assert getattr(agent.config, new) == value
    assert record[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(FutureWarning), pytest.raises(TypeError, match="given twice"):
        agent_class(**{old: value, new: value})


def test_a_checkpoint_written_before_the_configs_loads(tiny_datasets, tmp_path):
    """Checkpoints store the config's fields; one from before the rename (its keys as the old
    constructor's) loads with the same weights and actions."""
    agent = LWDAgent(**TINY_LWD, device="cpu").learn(tiny_datasets[0], steps=2, progress_bar=False)
    agent.save(tmp_path / "new.ckpt")
    tensors, meta = load_checkpoint(tmp_path / "new.ckpt")
    meta["config"]["diffusion_size"] = meta["config"].pop("denoiser_size")
    save_checkpoint(tmp_path / "old.ckpt", tensors, {k: v for k, v in meta.items() if k != "format_version"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a user's old checkpoint is not their mistake: no warning
        old = LWDAgent.load(tmp_path / "old.ckpt", device="cpu")
    assert old.config == agent.config
    obs = np.zeros((3, 2), np.float32)
    agent.reset()
    expected = agent.predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(old.predict(obs, deterministic=True)[0], expected)


def test_only_acting_fields_change_on_an_agent_and_a_bad_value_leaves_it_as_it_was():
    agent = LDPAgent(action_horizon=4, snippet_length=8, latent_dim=16, denoiser_size="xs", device="cpu")
    agent.action_horizon, agent.scheduler, agent.num_inference_steps = 8, "ddpm", 50
    assert (agent.config.action_horizon, agent.config.scheduler, agent.config.num_inference_steps) == (8, "ddpm", 50)
    before = agent.config
    with pytest.raises(ValueError, match="action_horizon"):
        agent.action_horizon = 9  # a chunk holds 8 actions
    with pytest.raises(AttributeError, match="fixed at construction.*replace\\(latent_dim="):
        agent.latent_dim = 32
    assert agent.config is before
    assert agent.snippet_length == 8  # resolved once: a later action_horizon does not change it


def test_learn_options_are_the_stages_budgets_and_the_run_options():
    assert LWDAgent.learn_options() == ["steps", "vae_steps", "diffusion_steps", *RUN_OPTIONS]
    assert DPAgent.learn_options() == ["steps", "diffusion_steps", *RUN_OPTIONS]
    assert MLPAgent.learn_options() == ["steps", "bc_steps", *RUN_OPTIONS]
    for klass, _ in PAIRS:  # every stage has its learning rate and epochs, one name for one idea
        for stage in klass.config_class.STAGES:
            assert {f"{stage}_lr", f"{stage}_epochs"} <= set(klass.config_class.field_names())


def test_steps_sets_every_stage_and_a_stage_budget_overrides_it(tiny_datasets):
    agent = LWDAgent(**TINY_LWD, batch_size=8, device="cpu").learn(tiny_datasets[0], steps=3, diffusion_steps=5, progress_bar=False)
    assert [len(agent.training_log[s].rows) for s in ("vae", "latent-diffusion")] == [3, 5]
    mlp = MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets[0], bc_steps=4, progress_bar=False)
    assert len(mlp.training_log["bc"].rows) == 4


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(vae_step=3), r"unknown option.*'vae_step'.*vae_steps"),
        (dict(bc_steps=3), r"unknown option.*'bc_steps'"),  # not a stage of LWD
        (dict(diffusion_steps=0), "diffusion_steps"),  # checked before the VAE trains
        (dict(steps=1.5), "steps"),
    ],
)
def test_bad_learn_options_fail_before_any_training(tiny_datasets, options, message):
    agent = LWDAgent(**TINY_LWD, device="cpu")
    with pytest.raises((TypeError, ValueError), match=message):
        agent.learn(tiny_datasets[0], progress_bar=False, **options)
    assert not agent.is_trained and not agent.training_log.stages


def test_cli_set_and_learn_keys_are_the_config_fields_and_learn_options(tmp_path, capsys, monkeypatch, tiny_datasets):
    out = str(tmp_path / "a.ckpt")
    dataset = tiny_datasets[0].spec.dataset_id
    with pytest.raises(SystemExit):
        main(["train", "mlp", dataset, "--out", out, "--set", "hiden=[8]", "--quiet"])
    assert "MLPConfig has no field(s) ['hiden']; its fields are: action_horizon, seed, batch_size, hidden" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "mlp", dataset, "--out", out, "--learn", "vae_steps=3", "--quiet"])
    assert "has no option(s) ['vae_steps']; it accepts steps, bc_steps" in capsys.readouterr().err
    assert main(["train", "mlp", dataset, "--out", out, "--set", "hidden=[8]", "--learn", "bc_steps=3", "--quiet"]) == 0
    assert MLPAgent.load(out, device="cpu").config == MLPConfig(hidden=(8,))


def test_the_shared_configs_are_not_agents_configs():
    from lwd_gym.agents.config import DiffusionConfig

    with pytest.raises(TypeError, match="use DPConfig, LWDConfig or LDPConfig"):
        DiffusionConfig()
    with pytest.raises(ValueError, match="prediction_horizon=6 must be a multiple of 4"):
        DPConfig(prediction_horizon=6, action_horizon=4)
