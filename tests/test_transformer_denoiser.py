"""The transformer denoiser: same interface as the 1-D UNet, selectable on ConditionalDiffusion
and on every diffusion agent (``denoiser="transformer"``), saved and restored with checkpoints."""
import numpy as np
import pytest
import torch

from lwd_gym import BaseAgent, DPAgent, LDPAgent, LWDAgent
from lwd_gym.checkpoint import load_checkpoint, save_checkpoint
from lwd_gym.nn import DENOISERS, TRANSFORMER_PRESETS, ConditionalDiffusion, ConditionalUnet1D, TransformerForDiffusion


@pytest.mark.parametrize("size", sorted(TRANSFORMER_PRESETS))
@pytest.mark.parametrize(
    "channels, length, cond_dim",
    [(4, 16, 20), (16, 4, 3), (64, 1, 5), (2, 16, 0), (3, 5, 2)],  # LWD layouts incl. one token; DP actions; unconditional; odd length
)
def test_output_has_the_sample_shape(size, channels, length, cond_dim):
    model = TransformerForDiffusion(channels, cond_dim, size=size, horizon=length)
    cond = torch.randn(3, cond_dim) if cond_dim else None
    out = model(torch.randn(3, channels, length), torch.tensor([0, 50, 99]), cond)
    assert out.shape == (3, channels, length) and torch.isfinite(out).all()
    assert model(torch.randn(1, channels, length), 7, cond[:1] if cond_dim else None).shape == (1, channels, length)  # scalar timestep


def test_shorter_sequences_use_the_first_positions_and_longer_ones_are_refused():
    model = TransformerForDiffusion(2, 3, size="xs", horizon=8)
    assert model(torch.randn(2, 2, 5), 3, torch.randn(2, 3)).shape == (2, 2, 5)
    with pytest.raises(ValueError, match="exceeds the transformer's horizon 8"):
        model(torch.randn(2, 2, 9), 3, torch.randn(2, 3))


def test_condition_and_timestep_change_the_output():
    torch.manual_seed(0)
    model = TransformerForDiffusion(4, 6, size="xs", horizon=8)
    x, cond = torch.randn(5, 4, 8), torch.randn(5, 6)
    base = model(x, 10, cond)
    assert not torch.allclose(base, model(x, 10, cond + 1.0))
    assert not torch.allclose(base, model(x, 90, cond))
    with pytest.raises(ValueError, match="global condition of size 6"):
        model(x, 10)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_is_bidirectional_unless_causal(causal):
    torch.manual_seed(0)
    model = TransformerForDiffusion(2, 3, size="xs", horizon=6, causal=causal)
    x, cond = torch.randn(2, 2, 6), torch.randn(2, 3)
    changed = x.clone()
    changed[..., -1] += 1.0  # only the last position changes
    first = lambda inp: model(inp, 5, cond)[..., :-1]  # noqa: E731
    assert torch.allclose(first(x), first(changed), atol=1e-6) == causal


def test_diffusion_picks_the_denoiser_and_rejects_unknown_names():
    assert set(DENOISERS) == {"unet", "transformer"}
    assert isinstance(ConditionalDiffusion((2, 8), 3, size="xs").denoiser, ConditionalUnet1D)  # default unchanged
    model = ConditionalDiffusion((4, 1), 3, size="xs", denoiser="transformer")  # a length the UNet cannot take
    assert isinstance(model.denoiser, TransformerForDiffusion)
    assert model.sample(torch.randn(5, 3), 5, num_inference_steps=2).shape == (5, 4, 1)
    with pytest.raises(ValueError, match=r"unknown denoiser 'mlp'; choose one of \['transformer', 'unet'\]"):
        ConditionalDiffusion((2, 8), 3, denoiser="mlp")
    with pytest.raises(ValueError, match="unknown diffusion size 'xl'"):
        ConditionalDiffusion((2, 8), 3, size="xl", denoiser="transformer")


def measure_transformer_fit(seed: int, steps: int = 600) -> dict[str, float]:
    """Two conditions, one fixed target each: train the transformer denoiser for ``steps`` and
    return the held-out denoising loss before/after and the fraction of 64 samples landing
    nearest their own condition's target (``tests/margin_study.py`` runs it over seeds)."""
    torch.manual_seed(seed)
    targets = torch.tensor([[0.8, -0.5, 0.3, -0.9], [-0.6, 0.7, -0.2, 0.5]]).view(2, 2, 2)  # [cond, C, L]
    conds = torch.eye(2)
    model = ConditionalDiffusion((2, 2), 2, size="xs", denoiser="transformer")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    which = torch.arange(128) % 2

    def held_out_loss() -> float:
        with torch.no_grad():
            return model.loss(targets[which], conds[which], torch.Generator().manual_seed(123)).item()

    before = held_out_loss()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = model.loss(targets[which], conds[which], gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    samples = model.sample(conds[which[:64]], 64, num_inference_steps=10, generator=torch.Generator().manual_seed(seed))
    nearest = torch.cdist(samples.flatten(1), targets.flatten(1)).argmin(dim=1)
    return {"loss_ratio": after / before, "own_target": (nearest == which[:64]).float().mean().item()}


def test_transformer_diffusion_fits_a_tiny_conditional_problem():
    """The denoising loss drops and samples land on the target of their own condition: with
    the condition ignored, half of them would land on the other one."""
    m = measure_transformer_fit(seed=0)
    assert m["loss_ratio"] < 0.1, m
    assert m["own_target"] >= 0.8, m


def _actions(agent: BaseAgent, obs: np.ndarray) -> np.ndarray:
    agent.set_random_seed(1)
    return np.stack([agent.predict(obs)[0] for _ in range(3)])


@pytest.mark.parametrize(
    "make, steps",
    [
        (lambda: LWDAgent(action_horizon=4, latent_dim=16, latent_length=4, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs",
                          denoiser="transformer", num_inference_steps=2, device="cpu"), {"vae_steps": 2, "diffusion_steps": 2}),  # fmt: skip
        (lambda: LWDAgent(action_horizon=4, latent_dim=16, latent_length=1, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs",
                          denoiser="transformer", num_inference_steps=2, device="cpu"), {"vae_steps": 2, "diffusion_steps": 2}),  # fmt: skip
        (lambda: LDPAgent(action_horizon=4, latent_dim=16, latent_length=4, decoder_hidden=(8,), denoiser_size="xs", denoiser="transformer",
                          num_inference_steps=2, device="cpu"), {"vae_steps": 2, "diffusion_steps": 2}),  # fmt: skip
        (lambda: DPAgent(action_horizon=4, prediction_horizon=6, denoiser_size="xs", denoiser="transformer", num_inference_steps=2, scheduler="ddim",
                         device="cpu"), {"steps": 2}),  # fmt: skip
    ],
    ids=["lwd", "lwd-one-token", "ldp", "dp"],
)
def test_agents_learn_predict_and_round_trip_the_denoiser(make, steps, tiny_datasets, tmp_path):
    agent = make().learn(tiny_datasets[0], progress_bar=False, **steps)
    assert agent.config.denoiser == "transformer"
    assert isinstance(agent.diffusion.denoiser, TransformerForDiffusion)
    obs = np.zeros((2, 2), dtype=np.float32)
    expected = _actions(agent, obs)
    assert expected.shape == (3, 2, 2) and np.isfinite(expected).all()
    agent.save(tmp_path / "agent.ckpt")
    loaded = BaseAgent.load(tmp_path / "agent.ckpt", device="cpu")
    assert type(loaded) is type(agent) and loaded.denoiser == "transformer" and loaded.config == agent.config
    assert isinstance(loaded.diffusion.denoiser, TransformerForDiffusion)
    np.testing.assert_array_equal(_actions(loaded, obs), expected)


@pytest.mark.parametrize("klass, kwargs", [(LWDAgent, {"vae_steps": 1, "diffusion_steps": 1}), (DPAgent, {"steps": 1})])
def test_checkpoints_without_the_key_load_as_unet(klass, kwargs, tiny_datasets, tmp_path):
    """Checkpoints written before the option existed have no "denoiser" in their config."""
    size = dict(denoiser_size="xs", latent_dim=16, hypernet_size="xs", policy_hidden=(8,)) if klass is LWDAgent else dict(denoiser_size="xs", prediction_horizon=8)
    agent = klass(action_horizon=4, num_inference_steps=2, device="cpu", **size).learn(tiny_datasets[0], progress_bar=False, **kwargs)
    agent.save(tmp_path / "new.ckpt")
    tensors, meta = load_checkpoint(tmp_path / "new.ckpt")
    assert meta["config"].pop("denoiser") == "unet"
    save_checkpoint(tmp_path / "old.ckpt", tensors, {k: v for k, v in meta.items() if k != "format_version"})
    loaded = klass.load(tmp_path / "old.ckpt", device="cpu")
    assert loaded.denoiser == "unet" and isinstance(loaded.diffusion.denoiser, ConditionalUnet1D)
    obs = np.zeros((2, 2), dtype=np.float32)
    np.testing.assert_array_equal(_actions(loaded, obs), _actions(agent, obs))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LWDAgent(denoiser="Transformer"), r"denoiser must be one of \['transformer', 'unet'\], got 'Transformer'"),
        (lambda: LDPAgent(denoiser="mlp"), "denoiser must be one of"),
        (lambda: DPAgent(denoiser="dit"), "denoiser must be one of"),
        (lambda: LWDAgent(denoiser="transformer", denoiser_size="xl"), r"denoiser_size must be one of \['m', 's', 'xs'\] for the transformer denoiser"),
        (lambda: DPAgent(denoiser="transformer", denoiser_size="l"), "size must be one of .* for the transformer denoiser"),
    ],
)
def test_bad_denoiser_or_size_is_a_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
