"""Training is visible and budgets are sane: every stage logs its loss per step and a validation
loss on held-out episodes (CSV, ``agent.training_log``), default budgets reach a minimum number of
gradient steps, the in-training evaluation keeps the best weights, and the reconstruction rollout
replays each demonstration's own seed."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from lwd_gym import DPAgent, LWDAgent, MLPAgent, StageLog, make_bimodal_dataset, reconstruction_rollout
from lwd_gym import training
from lwd_gym.agents.base import BaseAgent
from lwd_gym.data.demonstrations import load_demonstrations
from lwd_gym.demo import ENV_ID

TINY_LWD = dict(action_horizon=8, latent_dim=16, hypernet_size="xs", policy_hidden=(16,), denoiser_size="xs", num_inference_steps=2, device="cpu")


@pytest.fixture
def twenty(minari_dir):
    return make_bimodal_dataset(20, seed=0, dataset_id="lwd/vis/twenty-v0", progress=False)


def test_default_budget_trains_at_least_min_steps(tiny_datasets, monkeypatch):
    """One epoch of 5 short episodes is a single step at batch 256; the default budget is not."""
    monkeypatch.setattr(training, "MIN_STEPS", 40)
    mlp = MLPAgent(hidden=(8,), bc_epochs=1, device="cpu").learn(tiny_datasets[0], progress_bar=False)
    assert len(mlp.training_log["bc"].rows) == 40
    lwd = LWDAgent(**TINY_LWD, vae_epochs=1, diffusion_epochs=1).learn(tiny_datasets[0], progress_bar=False)
    assert [len(lwd.training_log[s].rows) for s in ("vae", "latent-diffusion")] == [40, 40]
    # an epoch budget above the minimum is kept; explicit steps are exact
    monkeypatch.setattr(training, "MIN_STEPS", 1)
    assert len(MLPAgent(hidden=(8,), bc_epochs=3, batch_size=64, device="cpu").learn(tiny_datasets[0], progress_bar=False).training_log["bc"].rows) == 3 * 3
    assert len(MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets[0], steps=7, progress_bar=False).training_log["bc"].rows) == 7


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_zero_or_bad_step_budgets_are_refused(tiny_datasets, steps):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets[0], steps=steps, progress_bar=False)
    with pytest.raises(ValueError, match="vae_steps must be a positive integer"):
        LWDAgent(**TINY_LWD).learn(tiny_datasets[0], vae_steps=steps, diffusion_steps=1, progress_bar=False)


def test_validation_split_is_disjoint_by_episode_seeded_and_per_task(tiny_datasets, twenty):
    demos = load_demonstrations([twenty, *tiny_datasets])  # tasks of 20, 5 and 5 episodes
    train, val = demos.split(0.2, seed=3)
    assert len(train) + len(val) == len(demos)
    assert np.bincount(val.tasks, minlength=3).tolist() == [4, 1, 1]  # floor(0.2 n) of each task
    train_ids, val_ids = ({(int(t), int(s)) for t, s in zip(d.tasks, d.seeds)} for d in (train, val))  # (task, reset seed) names an episode
    assert train_ids.isdisjoint(val_ids) and train_ids | val_ids == {(int(t), int(s)) for t, s in zip(demos.tasks, demos.seeds)}
    for d in (train, val):  # whole episodes: each one's arrays moved together
        for obs, t, s in zip(d.observations, d.tasks, d.seeds):
            i = next(i for i in range(len(demos)) if demos.tasks[i] == t and demos.seeds[i] == s)
            assert np.array_equal(obs, demos.observations[i])
    again, other = demos.split(0.2, seed=3)[1], demos.split(0.2, seed=4)[1]
    assert np.array_equal(again.seeds, val.seeds) and not np.array_equal(other.seeds, val.seeds)
    assert demos.split(0.0, seed=3) == (demos, None)
    with pytest.raises(ValueError, match="validation_fraction"):
        demos.split(1.0, seed=0)


@pytest.mark.parametrize("make, stages", [
    (lambda: LWDAgent(**TINY_LWD), {"vae": 12, "latent-diffusion": 6}),
    (lambda: DPAgent(action_horizon=4, prediction_horizon=8, denoiser_size="xs", num_inference_steps=2, device="cpu"), {"diffusion": 6}),
    (lambda: MLPAgent(hidden=(8,), device="cpu"), {"bc": 6}),
])  # fmt: skip
def test_every_stage_writes_one_csv_row_per_step_with_a_validation_column(twenty, tmp_path, make, stages):
    budgets = {"vae_steps": 12, "diffusion_steps": 6} if "vae" in stages else {"steps": 6}
    agent = make().learn(twenty, log_dir=tmp_path / "logs", validation_fraction=0.2, progress_bar=False, **budgets)
    assert list(agent.training_log.stages) == list(stages)
    for stage, steps in stages.items():
        log = agent.training_log[stage]
        assert log.steps.tolist() == list(range(1, steps + 1))
        assert np.isfinite(log.loss).all() and (log.column("lr") > 0).all()
        assert (np.diff(log.seconds) >= 0).all() and log.seconds[0] >= 0  # the stage's wall-clock, never decreasing
        val_steps, val = log.validation()
        assert val_steps[-1] == steps and np.isfinite(val).all() and len(val) >= 2
        written = StageLog.from_csv(tmp_path / "logs" / f"{stage}.csv")
        assert written.columns()[:4] == ["step", "loss", "lr", "val_loss"]
        np.testing.assert_allclose(written.loss, log.loss)
        np.testing.assert_allclose(written.validation()[1], val)


def test_validation_loss_is_on_held_out_episodes_only(twenty):
    """The VAE's validation loss is its posterior-mean BC-MSE on the held-out episodes: training
    hard on the rest drives the training loss below it."""
    agent = LWDAgent(**{**TINY_LWD, "latent_dim": 32, "policy_hidden": (64,)}, batch_size=32, vae_lr=3e-3)
    agent.learn(twenty, vae_steps=150, diffusion_steps=1, validation_fraction=0.25, progress_bar=False)
    log = agent.training_log["vae"]
    assert log.validation()[1][-1] > 0 and log.validation()[1][-1] < log.validation()[1][0]
    # no held-out episodes: no validation loss
    agent.learn(twenty, vae_steps=3, diffusion_steps=1, validation_fraction=0.0, progress_bar=False)
    assert len(agent.training_log["vae"].validation()[0]) == 0


def test_in_training_evaluation_keeps_the_best_weights(twenty, monkeypatch):
    """Scores 0.2, 0.9, 0.1 at steps 5, 10, 15: the agent ends with step 10's weights."""
    scores, seen = iter([0.2, 0.9, 0.1]), []

    def fake_evaluate(self, acting_attr, module):
        seen.append({k: v.clone() for k, v in module.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(BaseAgent, "_evaluate_during_training", fake_evaluate)
    agent = MLPAgent(hidden=(8,), device="cpu").learn(twenty, steps=15, eval_env=ENV_ID, eval_every=5, progress_bar=False)
    assert agent.training_log["bc"].evaluations()[0].tolist() == [5, 10, 15]
    final = agent.net.state_dict()
    for name, value in seen[1].items():
        torch.testing.assert_close(final[name], value)
    assert any(not torch.equal(final[k], seen[2][k]) for k in final)  # not simply the last weights


def _scripted_validation_fit(tmp_path, val_values, *, stop_after=None, **kwargs):
    """A linear model trained 15 steps; ``validate`` returns ``val_values`` in turn (every 5
    steps) and records the weights it was called on."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = training.TensorBatches(x=torch.randn(32, 3))
    values, seen = iter(val_values), []

    def validate():
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(values)

    def loss(batch, step):
        if stop_after is not None and step == stop_after:
            raise KeyboardInterrupt
        return (model(batch["x"]) - 1).pow(2).mean()

    log = training.StageWriter(StageLog("toy"), None)
    training.fit(model, loss, data, steps=15, batch_size=8, lr=1e-2, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
                 progress=False, log=log, validate=validate, val_every=5, **kwargs)  # fmt: skip
    return model, seen, log.log


def test_keep_best_validation_restores_the_lowest_validation_weights(tmp_path):
    """Validation 0.5, 0.2, 0.9 at steps 5, 10, 15: the stage ends with step 10's weights."""
    model, seen, log = _scripted_validation_fit(tmp_path, [0.5, 0.2, 0.9], keep_best_validation=True)
    for name, value in seen[1].items():
        torch.testing.assert_close(model.state_dict()[name], value)
    assert log.kept_step == 10
    last, seen_last, plain = _scripted_validation_fit(tmp_path, [0.5, 0.2, 0.9])  # without the option: the last weights
    assert plain.kept_step is None and all(torch.equal(last.state_dict()[k], seen_last[2][k]) for k in seen_last[2])
    assert any(not torch.equal(model.state_dict()[k], seen_last[2][k]) for k in seen_last[2])


def test_keep_best_validation_survives_an_interrupted_run(tmp_path):
    """Stopped after the best validation (step 10) and resumed, it still ends with step 10's weights."""
    checkpoint = lambda: training.TrainCheckpoint(tmp_path / "state.safetensors", every=5, fingerprint={"test": 1})  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        _scripted_validation_fit(tmp_path, [0.5, 0.2], stop_after=12, keep_best_validation=True, checkpoint=checkpoint())
    model, seen, log = _scripted_validation_fit(tmp_path, [0.9], keep_best_validation=True, checkpoint=checkpoint())  # only step 15 is left
    reference, ref_seen, _ = _scripted_validation_fit(tmp_path / "ref", [0.5, 0.2, 0.9], keep_best_validation=True)
    assert log.kept_step == 10
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)


def test_keep_best_validation_is_refused_where_it_cannot_apply(twenty):
    model = torch.nn.Linear(3, 1)
    data = training.TensorBatches(x=torch.randn(8, 3))
    args = dict(steps=2, batch_size=4, lr=1e-2, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"), progress=False)
    with pytest.raises(ValueError, match="EMA"):
        training.fit(model, lambda b, s: model(b["x"]).mean(), data, ema_model=torch.nn.Linear(3, 1), validate=lambda: 0.0, keep_best_validation=True, **args)
    with pytest.raises(ValueError, match="validation loss"):
        training.fit(model, lambda b, s: model(b["x"]).mean(), data, keep_best_validation=True, **args)
    mlp = MLPAgent(hidden=(8,), device="cpu")
    with pytest.raises(ValueError, match="validation_fraction > 0"):  # before any training
        mlp.learn(twenty, steps=3, validation_fraction=0.0, keep_best_validation=True, progress_bar=False)
    with pytest.raises(ValueError, match="holds out none"):  # 0.04 of 20 episodes is no episode
        mlp.learn(twenty, steps=3, validation_fraction=0.04, keep_best_validation=True, progress_bar=False)
    with pytest.raises(TypeError, match="True or False"):
        mlp.learn(twenty, steps=3, keep_best_validation="yes", progress_bar=False)
    assert not mlp.training_log.stages  # nothing trained


def test_keep_best_validation_applies_to_the_stages_without_ema(twenty):
    """LWD's VAE keeps its lowest-validation step; the latent diffusion (EMA) its last; the agent acts."""
    agent = LWDAgent(**{**TINY_LWD, "latent_dim": 32, "policy_hidden": (64,)}, batch_size=32, vae_lr=3e-3)
    agent.learn(twenty, vae_steps=40, diffusion_steps=3, validation_fraction=0.25, keep_best_validation=True, progress_bar=False)
    steps, val = agent.training_log["vae"].validation()
    best = steps[len(val) - 1 - int(np.argmin(val[::-1]))]  # later wins a tie
    assert agent.training_log["vae"].kept_step == best
    assert agent.training_log["latent-diffusion"].kept_step is None
    assert agent.training_record["stages"]["vae"]["kept_step"] == best
    obs = gym.make(ENV_ID).reset(seed=0)[0]
    assert np.isfinite(agent.predict(obs)[0]).all()


def test_in_training_evaluation_runs_the_agent_in_the_env(twenty):
    agent = LWDAgent(**TINY_LWD).learn(twenty, vae_steps=4, diffusion_steps=4, eval_env=ENV_ID, eval_every=2, n_eval_episodes=2, progress_bar=False)
    steps, success = agent.training_log["latent-diffusion"].evaluations()
    assert steps.tolist() == [2, 4] and ((success >= 0) & (success <= 1)).all()
    assert "eval_success" not in {k for row in agent.training_log["vae"].rows for k, v in row.items() if v == v}  # only the acting stage
    with pytest.raises(ValueError, match="eval_every"):
        MLPAgent(device="cpu").learn(twenty, steps=1, eval_env=ENV_ID, progress_bar=False)


class RecordSeeds(gym.Wrapper):
    seeds: list = []

    def reset(self, *, seed=None, options=None):
        RecordSeeds.seeds.append(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        RecordSeeds.first_obs.append(obs)
        RecordSeeds.rewards.append([])
        return obs, info

    def step(self, action):
        out = self.env.step(action)
        RecordSeeds.rewards[-1].append(float(out[1]))
        return out


def test_reconstruction_rollout_replays_each_demonstrations_seed(twenty):
    agent = LWDAgent(**TINY_LWD).learn(twenty, vae_steps=3, diffusion_steps=1, progress_bar=False)
    demos = load_demonstrations(twenty)
    RecordSeeds.seeds, RecordSeeds.first_obs, RecordSeeds.rewards = [], [], []
    result = reconstruction_rollout(agent, twenty, lambda: RecordSeeds(gym.make(ENV_ID)), episodes=[0, 3, 7])
    own = [r for r in result.episodes if r["kind"] == "own"]
    other = [r for r in result.episodes if r["kind"] == "other"]
    assert [r["seed"] for r in own] == [int(demos.seeds[i]) for i in (0, 3, 7)] == RecordSeeds.seeds[:3]
    for obs, i in zip(RecordSeeds.first_obs[:3], (0, 3, 7)):
        np.testing.assert_allclose(obs, demos.observations[i][0])  # the demonstration's own start
    assert [r["seed"] for r in other] == [int(demos.seeds[i]) for i in (1, 4, 8)]  # the next demonstration's
    assert result.n_episodes == 3 and 0 <= result.own_success <= 1 and result.other_success is not None
    # each record's return, length and max reward are its episode's (PushT's coverage is a max reward)
    for record, rewards in zip(result.episodes, RecordSeeds.rewards):
        assert record["length"] == len(rewards) and record["max_reward"] == max(rewards) and record["return"] == pytest.approx(sum(rewards))
    with pytest.raises(TypeError, match="generated policies"):
        reconstruction_rollout(MLPAgent(hidden=(8,), device="cpu").learn(twenty, steps=1, progress_bar=False), twenty, ENV_ID)


class CountSteps(gym.Wrapper):
    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        return obs, reward, terminated, truncated, {**info, "steps_so_far": self.t, "pair": [self.t, -self.t]}


def test_reconstruction_rollout_records_the_last_info_of_the_asked_keys(twenty):
    agent = LWDAgent(**TINY_LWD).learn(twenty, vae_steps=2, diffusion_steps=1, progress_bar=False)
    result = reconstruction_rollout(agent, twenty, lambda: CountSteps(gym.make(ENV_ID)), episodes=[0, 1], other_seeds=False, max_steps=7,
                                    info_keys=("steps_so_far", "pair", "absent"))  # fmt: skip
    for record in result.episodes:
        assert record["steps_so_far"] == record["length"] and record["pair"] == [record["length"], -record["length"]]
        assert "absent" not in record  # a key the env never reports is left out, as in evaluate
    plain = reconstruction_rollout(agent, twenty, lambda: CountSteps(gym.make(ENV_ID)), episodes=[0], other_seeds=False, max_steps=7)
    assert "steps_so_far" not in plain.episodes[0]
