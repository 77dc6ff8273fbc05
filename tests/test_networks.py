"""Shapes and invariants of the building blocks: generated policy, hypernetwork, UNet, VAE."""
import math

import pytest
import torch
import torch.nn.functional as F

from lwd_gym.nn import ConditionalDiffusion, ConditionalUnet1D, GeneratedMLP, HypernetDecoder, PolicyVAE


def reference_forward(policy: GeneratedMLP, flat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """One sample at a time with F.linear: the obviously-correct (slow) version."""
    outs = []
    for weights, x in zip(flat, obs):
        layers = policy.layers(weights[None])
        for i, (w, b) in enumerate(layers):
            x = F.linear(x, w[0], b[0])
            if i < len(layers) - 1:
                x = torch.relu(x)
        outs.append(x)
    return torch.stack(outs)


def test_batched_generated_policy_equals_per_sample_reference():
    torch.manual_seed(0)
    policy = GeneratedMLP(7, (32, 16), 3)
    assert policy.num_params == 7 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3
    flat, obs = torch.randn(5, policy.num_params), torch.randn(5, 11, 7)
    torch.testing.assert_close(policy(flat, obs), reference_forward(policy, flat, obs))
    # a single observation per policy
    torch.testing.assert_close(policy(flat, obs[:, 0]), reference_forward(policy, flat, obs)[:, 0])


def test_generated_policy_rejects_wrong_weight_size():
    policy = GeneratedMLP(2, (4,), 2)
    with pytest.raises(ValueError, match="generated weights"):
        policy(torch.zeros(1, policy.num_params + 1), torch.zeros(1, 2))


@pytest.mark.parametrize(
    "size, expected",
    [("xs", 3_945_460), ("s", 7_818_860), ("m", 15_580_660), ("l", 31_164_260)],
)
def test_hypernetwork_parameter_count_per_preset(size, expected):
    decoder = HypernetDecoder(256, GeneratedMLP(39, (256, 256), 4), size)
    assert decoder.num_params == expected
    assert sum(p.numel() for p in decoder.parameters()) == expected


def test_generated_weights_have_linear_init_scale():
    torch.manual_seed(0)
    policy = GeneratedMLP(39, (256, 256), 4)
    weights = HypernetDecoder(256, policy, "xs")(torch.randn(64, 256))
    assert weights.shape == (64, policy.num_params)
    for w, _ in policy.layers(weights):
        target = 1 / math.sqrt(3 * w.shape[-1])
        assert w.std().item() == pytest.approx(target, rel=0.2)


def test_unknown_hypernet_size():
    with pytest.raises(ValueError, match="hypernet_size"):
        HypernetDecoder(8, GeneratedMLP(2, (4,), 2), "huge")


@pytest.mark.parametrize("cond_dim", [0, 6])
def test_unet_shapes_and_condition(cond_dim):
    unet = ConditionalUnet1D(4, cond_dim, size="xs")
    x = torch.randn(3, 4, 16)
    cond = torch.randn(3, cond_dim) if cond_dim else None
    assert unet(x, torch.tensor([0, 5, 99]), cond).shape == x.shape
    if cond_dim:  # FiLM: the output must depend on the condition
        assert not torch.allclose(unet(x, 5, cond), unet(x, 5, cond + 1))
        with pytest.raises(ValueError, match="global condition"):
            unet(x, 5, None)


def test_unet_rejects_length_not_divisible():
    with pytest.raises(ValueError, match="divisible"):
        ConditionalUnet1D(2, 0, size="xs")(torch.randn(1, 2, 6), 0)


def test_diffusion_sampling_shapes_and_per_sample_generators():
    model = ConditionalDiffusion((2, 8), cond_dim=3, size="xs")
    cond = torch.randn(4, 3)
    out = model.sample(cond, 4, num_inference_steps=3, scheduler="ddpm")
    assert out.shape == (4, 2, 8)
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(4)]  # noqa: E731
    a = model.sample(cond, 4, num_inference_steps=3, scheduler="ddpm", generator=gens())
    b = model.sample(cond, 4, num_inference_steps=3, scheduler="ddpm", generator=gens())
    torch.testing.assert_close(a, b)
    assert model.loss(torch.randn(4, 2, 8), cond).ndim == 0


def test_vae_loss_is_bc_plus_scaled_kl():
    """The loss recomputed by hand from the encoder, one reparameterised sample, the decoded
    policy and the Gaussian KL; padded steps (mask false) do not count."""
    torch.manual_seed(0)
    vae = PolicyVAE(5, 3, 2, latent_dim=16, policy_hidden=(8,), hypernet_size="xs")
    states, actions = torch.randn(4, 5, 3), torch.randn(4, 5, 2)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        mu, logvar = vae.encoder(states, actions)
        z = mu + torch.randn(mu.shape, generator=torch.Generator().manual_seed(1)) * (0.5 * logvar).exp()
        error = ((vae.policy(vae.decoder(z), states) - actions) ** 2).mean(-1)  # [B, H]
        bc = error[mask].mean()
        kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)).mean()
        assert kl > 0 and not torch.isclose(bc, error.mean())  # the mask matters here
        for kl_coef in (0.0, 1e-2):
            loss, stats = vae.loss(states, actions, kl_coef, torch.Generator().manual_seed(1), mask)
            torch.testing.assert_close(loss, bc + kl_coef * kl)
            assert stats["bc"] == pytest.approx(bc.item(), rel=1e-5) and stats["kl"] == pytest.approx(kl.item(), rel=1e-5)


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpmsolver++"])
@pytest.mark.parametrize("steps", [2, 5, 20])
def test_every_sampler_clips_to_the_data_range(scheduler, steps):
    """Samples are scaled to [-1, 1] in training; every sampler clamps its x0 estimate there, so
    even an untrained denoiser cannot make a sample diverge (DPM-Solver++ via thresholding)."""
    torch.manual_seed(0)
    model = ConditionalDiffusion((2, 8), cond_dim=3, size="xs")
    out = model.sample(torch.randn(16, 3), 16, num_inference_steps=steps, scheduler=scheduler, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0 + 1e-5, (scheduler, steps, out.abs().max())
