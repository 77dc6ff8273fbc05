"""Neural building blocks shared by the agents."""
from lwd_gym.nn.diffusion import DENOISERS, ConditionalDiffusion
from lwd_gym.nn.generated_policy import GeneratedMLP
from lwd_gym.nn.hypernet import HYPERNET_PRESETS, HypernetDecoder
from lwd_gym.nn.transformer import TRANSFORMER_PRESETS, TransformerForDiffusion
from lwd_gym.nn.unet1d import UNET_PRESETS, ConditionalUnet1D
from lwd_gym.nn.vae import ChunkVAE, PolicyVAE, SnippetEncoder
from lwd_gym.nn.world_model import WorldModel, WorldModelPolicyVAE

__all__ = [
    "ConditionalDiffusion",
    "ConditionalUnet1D",
    "DENOISERS",
    "GeneratedMLP",
    "HYPERNET_PRESETS",
    "HypernetDecoder",
    "ChunkVAE",
    "PolicyVAE",
    "SnippetEncoder",
    "TRANSFORMER_PRESETS",
    "TransformerForDiffusion",
    "UNET_PRESETS",
    "WorldModel",
    "WorldModelPolicyVAE",
]
