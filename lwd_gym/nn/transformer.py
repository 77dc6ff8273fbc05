"""Diffusion-Policy-style ``TransformerForDiffusion``: the transformer alternative to the 1-D UNet.

Tokens are the ``L`` positions of the noised sample ``[B, C, L]`` (each a ``C``-vector, linearly
embedded, plus a learned positional embedding); the diffusion timestep (sinusoidal) and the
global condition (linear) are two *memory* tokens, passed through an MLP as in Diffusion Policy
with ``n_cond_layers=0``, that every pre-LN ``torch.nn.TransformerDecoder`` layer cross-attends
to (after Chi et al., 2023, "transformer" variant).  Same ``forward`` as
:class:`~lwd_gym.nn.unet1d.ConditionalUnet1D`, so :class:`~lwd_gym.nn.ConditionalDiffusion`
can use either.

Self-attention is bidirectional by default.  Diffusion Policy masks it causally because its
action tokens are time-aligned with per-step observation tokens; here the condition is one
global vector (DP's flattened observation history, LWD's state), so that alignment does not
exist, and LWD's "sequence" is an arbitrary ``[C, L]`` layout of the latent ``z`` with no
temporal order: a causal mask would only hide most of ``z`` from its first positions.  The
UNet's convolutions also see both sides, which keeps the ablation about the architecture.
``causal=True`` restores DP's mask for action sequences.
"""
from __future__ import annotations

import torch
from torch import nn

from lwd_gym.nn.unet1d import SinusoidalPosEmb

#: ``(n_layer, n_head, n_emb)`` per size; "m" is Diffusion Policy's low-dim PushT transformer.
TRANSFORMER_PRESETS: dict[str, tuple[int, int, int]] = {
    "xs": (2, 4, 64),
    "s": (4, 4, 128),
    "m": (8, 4, 256),
}


class TransformerForDiffusion(nn.Module):
    """Predicts the noise in ``sample [B, C, L]`` at ``timestep`` given ``global_cond [B, G]``.

    :param input_dim: channels ``C`` of the sample (the features of one token).
    :param global_cond_dim: size of the global condition (0: unconditional).
    :param size: a key of :data:`TRANSFORMER_PRESETS`; ``n_layer`` / ``n_head`` / ``n_emb`` override it.
    :param horizon: most tokens ``L`` (length of the learned positional embedding).
    :param causal: causal self-attention over the sample tokens (Diffusion Policy's choice for actions).
    :param dropout: dropout of embeddings and attention / feed-forward blocks.  0 by default: the
        agents train for few steps, and dropout would draw from torch's global RNG, outside the
        seeded generators that make training reproducible.
    """

    def __init__(
        self,
        input_dim: int,
        global_cond_dim: int = 0,
        size: str = "s",
        horizon: int = 16,
        n_layer: int | None = None,
        n_head: int | None = None,
        n_emb: int | None = None,
        causal: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if size not in TRANSFORMER_PRESETS:
            raise ValueError(f"unknown diffusion size {size!r}; choose one of {sorted(TRANSFORMER_PRESETS)}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        preset_layers, preset_heads, preset_emb = TRANSFORMER_PRESETS[size]
        n_layer, n_head, n_emb = n_layer or preset_layers, n_head or preset_heads, n_emb or preset_emb
        self.global_cond_dim, self.horizon, self.causal = int(global_cond_dim), int(horizon), bool(causal)
        self.input_emb = nn.Linear(input_dim, n_emb)
        self.pos_emb = nn.Parameter(torch.zeros(1, horizon, n_emb))
        self.time_emb = SinusoidalPosEmb(n_emb)
        self.cond_emb = nn.Linear(global_cond_dim, n_emb) if global_cond_dim else None
        self.cond_pos_emb = nn.Parameter(torch.zeros(1, 1 + bool(global_cond_dim), n_emb))
        self.cond_encoder = nn.Sequential(nn.Linear(n_emb, 4 * n_emb), nn.Mish(), nn.Linear(4 * n_emb, n_emb))
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerDecoderLayer(n_emb, n_head, 4 * n_emb, dropout, activation="gelu", batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, n_layer)
        self.ln_f = nn.LayerNorm(n_emb)
        self.head = nn.Linear(n_emb, input_dim)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # Diffusion Policy's (GPT-style) initialisation: N(0, 0.02) weights and embeddings, zero biases.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.MultiheadAttention):
                nn.init.normal_(module.in_proj_weight, std=0.02)
                nn.init.zeros_(module.in_proj_bias)
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.cond_pos_emb, std=0.02)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, global_cond: torch.Tensor | None = None) -> torch.Tensor:
        length = sample.shape[-1]
        if length > self.horizon:
            raise ValueError(f"sequence length {length} exceeds the transformer's horizon {self.horizon}")
        t = torch.as_tensor(timestep, device=sample.device).expand(sample.shape[0])
        memory = [self.time_emb(t)[:, None]]
        if self.global_cond_dim:
            if global_cond is None or global_cond.shape[-1] != self.global_cond_dim:
                raise ValueError(f"expected a global condition of size {self.global_cond_dim}")
            memory.append(self.cond_emb(global_cond)[:, None])
        memory = self.cond_encoder(self.drop(torch.cat(memory, dim=1) + self.cond_pos_emb))
        x = self.drop(self.input_emb(sample.transpose(1, 2)) + self.pos_emb[:, :length])
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device, dtype=x.dtype) if self.causal else None
        x = self.decoder(x, memory, tgt_mask=mask, tgt_is_causal=self.causal)
        return self.head(self.ln_f(x)).transpose(1, 2)
