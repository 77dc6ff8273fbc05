"""Training reliability: resumable and reproducible runs, NaN stops that keep the last good state."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from lwd_gym import DPAgent, LWDAgent, MLPAgent
from lwd_gym.checkpoint import load_checkpoint
from lwd_gym.training import TensorBatches, TrainCheckpoint, fit

TINY_LWD = dict(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs", num_inference_steps=2, batch_size=16)
AGENTS = {
    "lwd": (lambda: LWDAgent(**TINY_LWD, device="cpu", seed=3), dict(vae_steps=9, diffusion_steps=9)),
    "lwd-wm": (
        lambda: LWDAgent(**TINY_LWD, world_model=True, world_model_hidden=(16,), world_model_warmup_epochs=0, device="cpu", seed=3),
        dict(vae_steps=9, diffusion_steps=4),
    ),
    "dp": (lambda: DPAgent(action_horizon=4, prediction_horizon=8, denoiser_size="xs", num_inference_steps=2, batch_size=16, device="cpu", seed=3), dict(steps=9)),
    "mlp": (lambda: MLPAgent(hidden=(8,), batch_size=16, device="cpu", seed=3), dict(steps=9)),
}


def weights(agent):
    return {f"{m}.{k}": v.detach().clone() for m, module in agent._modules().items() for k, v in module.state_dict().items()}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


class Interrupt(Exception):
    pass


def interrupt_after(monkeypatch, n_steps):
    """Make the optimiser raise (as a crash or Ctrl-C would) at its ``n_steps``-th step of the run."""
    calls = {"n": 0}
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_steps:
            raise Interrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)


@pytest.mark.parametrize("name", sorted(AGENTS))
@pytest.mark.parametrize("stop_at", [4, 11])  # inside the first stage / inside the second stage (or after a one-stage run)
def test_interrupted_run_resumes_to_the_same_weights(tiny_datasets, tmp_path, monkeypatch, name, stop_at):
    make, steps = AGENTS[name]
    reference = make().learn(tiny_datasets[0], **steps, progress_bar=False)

    interrupt_after(monkeypatch, stop_at)
    try:
        make().learn(tiny_datasets[0], **steps, checkpoint_dir=tmp_path, checkpoint_every=2, progress_bar=False)
    except Interrupt:
        pass
    monkeypatch.undo()
    assert list(tmp_path.glob("*.safetensors")), "nothing was checkpointed before the interruption"
    resumed = make().learn(tiny_datasets[0], **steps, checkpoint_dir=tmp_path, checkpoint_every=2, progress_bar=False)
    assert_same_weights(reference, resumed)
    for log in resumed.training_log:  # the wall-clock column continues across the resume
        assert (np.diff(log.seconds) >= 0).all(), log.stage
    obs = np.zeros((3, 2), np.float32)
    np.testing.assert_array_equal(reference.predict(obs, deterministic=True)[0], resumed.predict(obs, deterministic=True)[0])


def test_resuming_a_finished_run_trains_nothing(tiny_datasets, tmp_path, monkeypatch):
    first = MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets[0], steps=5, checkpoint_dir=tmp_path, progress_bar=False)
    interrupt_after(monkeypatch, 0)  # any optimiser step would raise
    again = MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets[0], steps=5, checkpoint_dir=tmp_path, progress_bar=False)
    assert_same_weights(first, again)


def test_checkpoint_of_another_run_is_refused(tiny_datasets, tmp_path):
    MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets[0], steps=5, checkpoint_dir=tmp_path, progress_bar=False)
    with pytest.raises(ValueError, match="different training run"):
        MLPAgent(hidden=(8,), bc_lr=0.1, device="cpu").learn(tiny_datasets[0], steps=5, checkpoint_dir=tmp_path, progress_bar=False)
    with pytest.raises(ValueError, match="different training run"):
        MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets[1], steps=5, checkpoint_dir=tmp_path, progress_bar=False)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from lwd_gym import MLPAgent
    from lwd_gym.envs import make_bimodal_dataset

    ds = make_bimodal_dataset(5, seed=0, dataset_id="lwd/kill-v0", progress=False)
    original, calls = torch.optim.AdamW.step, [0]

    def step(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 37:  # between two saves (every 10 steps): no cleanup, no flush
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = step
    MLPAgent(hidden=(16, 16), batch_size=8, device="cpu", seed=1).learn(
        ds, steps=60, checkpoint_dir=sys.argv[1], checkpoint_every=10, progress_bar=False
    )
    """
)


def test_killed_process_resumes_to_the_same_weights(tmp_path, minari_dir):
    """SIGKILL mid-training (no cleanup runs); a new run resumes from the last save and ends
    with the weights of an uninterrupted run."""
    from lwd_gym.envs import make_bimodal_dataset

    ckpt_dir = tmp_path / "ckpt"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_dir)}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(ckpt_dir)], env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(ckpt_dir / "bc.safetensors")[1]["step"] == 30

    ds = make_bimodal_dataset(5, seed=0, dataset_id="lwd/kill-v0", progress=False)
    kwargs = dict(hidden=(16, 16), batch_size=8, device="cpu", seed=1)
    reference = MLPAgent(**kwargs).learn(ds, steps=60, progress_bar=False)
    resumed = MLPAgent(**kwargs).learn(ds, steps=60, checkpoint_dir=ckpt_dir, checkpoint_every=10, progress_bar=False)
    assert_same_weights(reference, resumed)


def test_nan_loss_stops_and_keeps_the_last_good_state(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = TensorBatches(x=torch.randn(32, 3))

    def loss(batch, step):
        out = model(batch["x"]).pow(2).mean()
        return out * float("nan") if step == 7 else out

    checkpoint = TrainCheckpoint(tmp_path / "state.safetensors", every=5, fingerprint={"test": 1})
    with pytest.raises(FloatingPointError, match=r"at step 7.*last good state \(step 5\) is kept in .*state.safetensors"):
        fit(model, loss, data, steps=20, batch_size=8, lr=1e-2, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"), checkpoint=checkpoint, progress=False)
    assert load_checkpoint(tmp_path / "state.safetensors")[1]["step"] == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_gradients_stop_training_before_the_update():
    model = nn.Linear(3, 1)
    data = TensorBatches(x=torch.randn(32, 3))
    before = [p.detach().clone() for p in model.parameters()]

    def loss(batch, step):
        # finite value (0), infinite derivative: sqrt at 0
        return torch.sqrt((model.weight - model.weight.detach()).pow(2).sum()) + 0 * model.bias.sum()

    with pytest.raises(FloatingPointError, match="gradients became"):
        fit(model, loss, data, steps=3, batch_size=8, lr=1e-2, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("name", ["lwd", "dp"])
def test_same_seed_gives_identical_weights_and_actions(tiny_datasets, name):
    make, steps = AGENTS[name]
    a = make().learn(tiny_datasets[0], **steps, progress_bar=False)
    b = make().learn(tiny_datasets[0], **steps, progress_bar=False)
    assert_same_weights(a, b)
    obs = np.random.default_rng(0).uniform(-1, 1, (4, 2)).astype(np.float32)
    for deterministic in (False, True):
        a.set_random_seed(5)
        b.set_random_seed(5)
        np.testing.assert_array_equal(a.predict(obs, deterministic=deterministic)[0], b.predict(obs, deterministic=deterministic)[0])


def test_deterministic_fixes_the_diffusion_noise_per_env(tiny_datasets):
    make, steps = AGENTS["dp"]
    agent = make().learn(tiny_datasets[0], **steps, progress_bar=False)
    obs = np.zeros((3, 2), np.float32)
    first = agent.predict(obs, episode_start=np.ones(3, bool), deterministic=True)[0]
    again = agent.predict(obs, episode_start=np.ones(3, bool), deterministic=True)[0]
    np.testing.assert_array_equal(first, again)
    stochastic = agent.predict(obs, episode_start=np.ones(3, bool))[0]
    assert not np.array_equal(first, stochastic)


def test_tensor_batches_to_device_is_a_moved_copy():
    data = TensorBatches(x=torch.randn(6, 3), y=torch.arange(6))
    moved = data.to("meta")  # shapes without data: stands in for an accelerator
    batch = moved.get_batch(torch.tensor([4, 1], device="meta"))
    assert {k: (v.device.type, tuple(v.shape)) for k, v in batch.items()} == {"x": ("meta", (2, 3)), "y": ("meta", (2,))}
    assert data.tensors["x"].device.type == "cpu" and len(moved) == len(data)
