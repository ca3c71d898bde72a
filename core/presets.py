"""Named model presets. A preset is a config value, not a subclass."""
from __future__ import annotations

from typing import Any

from .config import VIT_SIZES, ConfigError, SFTokConfig, TeacherConfig, VitConfig

# Small enough to train on 2 CPU cores in about an hour per stage: 64 px images, a 4x-downsampling
# teacher so the proxy grid is still 16x16 (256 slots, the official decode schedule), 64 latent tokens.
TINY_TEACHER = TeacherConfig(hidden_channels=16, channel_mult=(1, 2, 4), num_res_blocks=1,
                             z_channels=32, codebook_size=256, num_groups=8)

PRESETS: dict[str, SFTokConfig] = {
    "tiny": SFTokConfig(
        image_size=64, patch_size=8,
        encoder=VitConfig(width=96, depth=3, heads=4),
        decoder=VitConfig(width=128, depth=3, heads=4),
        num_latent_tokens=64, token_size=16, codebook_size=1024,
        teacher=TINY_TEACHER,
    ),
    "B": SFTokConfig(encoder=VIT_SIZES["base"], decoder=VIT_SIZES["base"]),
    "L": SFTokConfig(encoder=VIT_SIZES["base"], decoder=VIT_SIZES["large"]),
}


def create_config(name: str, **overrides: Any) -> SFTokConfig:
    """The preset ``name`` with field overrides, validated."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; allowed: {sorted(PRESETS)}")
    if not overrides:
        return PRESETS[name]
    return SFTokConfig.from_dict({**PRESETS[name].to_dict(), **overrides})
