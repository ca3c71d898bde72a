"""Config conversion (official YAML/OmegaConf layout, HF config.json, our flat layout) and validation."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from core import ConfigError, SFTokConfig, TeacherConfig, VitConfig, create_config, resolve_config

# The shape of the official infer_sftok.yaml (reference sections 2.3-2.5, 3.1).
OFFICIAL_LAYOUT = {
    "experiment": {"project": "sftok"},
    "model": {
        "vq_model": {"quantize_mode": "optvq", "codebook_size": 8192, "token_size": 32, "use_l2_norm": True,
                     "commitment_cost": 0.25, "vit_enc_model_size": "base", "vit_dec_model_size": "base",
                     "vit_enc_patch_size": 16, "vit_dec_patch_size": 16, "num_latent_tokens": 64,
                     "finetune_decoder": True},
        "decoder": {"vit_dec_model_size": "large", "vit_dec_patch_size": 16, "num_latent_tokens": 64,
                    "token_size": 32, "codebook_size": 1024, "num_proxy_codes": 256, "embedding_width": 1024},
    },
    "dataset": {"preprocessing": {"crop_size": 256}},
}


def test_official_layout_dict_and_omegaconf_convert_to_sftok_l():
    for source in (OFFICIAL_LAYOUT, OmegaConf.create(OFFICIAL_LAYOUT)):
        cfg = resolve_config(source)
        assert cfg.encoder == VitConfig(768, 12, 12)
        assert cfg.decoder == VitConfig(1024, 24, 16)  # model.decoder wins over model.vq_model
        assert (cfg.image_size, cfg.patch_size, cfg.num_latent_tokens, cfg.token_size) == (256, 16, 64, 32)
        assert (cfg.codebook_size, cfg.num_proxy_codes, cfg.mask_id, cfg.has_pixel_head) == (8192, 256, 1024, True)
        assert (cfg.num_steps, cfg.randomize_temperature) == (8, 1.0)  # no model.generator: documented defaults
        assert cfg == create_config("L")


def test_official_generator_section_is_read():
    layout = {**OFFICIAL_LAYOUT, "model": {**OFFICIAL_LAYOUT["model"],
                                           "generator": {"num_steps": 4, "randomize_temperature": 2.0}}}
    cfg = resolve_config(layout)
    assert (cfg.num_steps, cfg.randomize_temperature) == (4, 2.0)


def test_stage12_layout_has_no_pixel_head():
    layout = {**OFFICIAL_LAYOUT, "model": {**OFFICIAL_LAYOUT["model"],
                                           "vq_model": {**OFFICIAL_LAYOUT["model"]["vq_model"], "finetune_decoder": False}}}
    assert resolve_config(layout).has_pixel_head is False


def test_flat_layout_round_trip():
    cfg = create_config("tiny")
    assert SFTokConfig.from_dict(cfg.to_dict()) == cfg
    assert resolve_config(cfg.to_dict()) == cfg
    assert SFTokConfig.from_dict({**cfg.to_dict(), "encoder": "small"}).encoder == VitConfig(512, 8, 8)


@pytest.mark.parametrize("build, field", [
    (lambda: create_config("XL"), "preset"),
    (lambda: create_config("tiny", token_size=-4), "token_size"),
    (lambda: create_config("tiny", image_size=0), "image_size"),
    (lambda: create_config("tiny", encoder={"width": -8, "depth": 2, "heads": 2}), "width"),
    (lambda: create_config("tiny", decoder={"width": 130, "depth": 2, "heads": 4}), "heads"),
    (lambda: create_config("tiny", patch_size=7), "patch_size"),
    (lambda: create_config("tiny", codebook_size=1), "codebook_size"),
    (lambda: create_config("tiny", teacher={"codebook_size": 1}), "teacher.codebook_size"),
    (lambda: create_config("tiny", num_steps=0), "num_steps"),
    (lambda: create_config("tiny", randomize_temperature=-1.0), "randomize_temperature"),
    (lambda: create_config("tiny", quantizer_mode="argmin"), "quantizer_mode"),
    (lambda: create_config("tiny", colour="blue"), "config"),
    (lambda: resolve_config({**OFFICIAL_LAYOUT, "model": {**OFFICIAL_LAYOUT["model"], "decoder": {"vit_dec_model_size": "huge"}}}),
     "model.decoder.vit_dec_model_size"),
    (lambda: resolve_config([1, 2, 3]), "config"),
])
def test_nonsense_is_rejected_naming_the_field(build, field):
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value).startswith(f"{field}:"), str(err.value)


def test_teacher_groups_must_divide_channels():
    with pytest.raises(ConfigError, match="teacher.num_groups"):
        TeacherConfig(hidden_channels=30, num_groups=8)
