"""The embedded TiTok baseline: loads strictly offline, reaches the numbers its card states, and the card's verdicts
follow the seed spread."""
from __future__ import annotations

import json

import pytest
import torch

from core import MaskGITVQGAN, SFTok, TiTok, load_pretrained
from core.tokenizer import load_tokenizer
from tests.test_default_model import ASSETS, TOLERANCE_DB, card_module, load_script

FOLDER = ASSETS / "default" / "titok"


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads((ASSETS / "default" / "titok_evaluation.json").read_text())


@pytest.fixture(scope="module")
def titok_card():
    return card_module("titok")


def test_the_baseline_loads_strictly_with_the_default_sftok_token_budget(report: dict) -> None:
    model = load_pretrained(FOLDER, strict=True)
    sftok = load_pretrained(ASSETS / "default" / "sftok", strict=True)
    assert isinstance(model, TiTok) and isinstance(sftok, SFTok)
    assert not model.has_pixel_head  # rendered by the shipped teacher
    assert (model.config.num_latent_tokens, model.config.codebook_size) == (sftok.config.num_latent_tokens,
                                                                            sftok.config.codebook_size)
    assert model.config.teacher == sftok.config.teacher
    shipped = report["runs"][report["shipped"]]
    assert shipped["seed"] == 42 and json.loads((FOLDER / "config.json").read_text())["steps"] == shipped["steps"]
    assert len(report["seeds"]["runs"]) >= 2  # the card's spread is over seeds


def test_shipped_samples_reach_the_titok_card_psnr(report: dict) -> None:
    from analysis.image_metrics import psnr

    teacher = load_pretrained(ASSETS / "default" / "teacher", strict=True)
    assert isinstance(teacher, MaskGITVQGAN)
    tokenizer = load_tokenizer(FOLDER, teacher=teacher.eval())
    tokenizer.module.eval()
    names, images = load_script("evaluate_default_model").load_sample_batch(ASSETS / "samples", 64)
    stated = report["shipped_samples"]
    assert names == stated["names"]
    with torch.inference_mode():
        measured = psnr(tokenizer.decode(tokenizer.encode_each(images)), images)
    assert torch.allclose(measured, torch.tensor(stated["psnr@1"]), atol=TOLERANCE_DB), measured


def test_the_cards_are_written_from_the_measured_numbers(report: dict, titok_card) -> None:
    evaluation = json.loads((ASSETS / "default" / "evaluation.json").read_text())
    assert (ASSETS / "default" / titok_card.CARD_NAME).read_text() == titok_card.titok_card(report, evaluation)
    assert f"`{titok_card.TITOK_FOLDER}/`" in (ASSETS / "default" / "MODEL_CARD.md").read_text()
    check = report["protocol"]["same_crops"]  # TiTok was measured on the crops the SFTok numbers come from
    assert check["psnr@1_measured"] == pytest.approx(check["psnr@1_stated"], abs=0.01)


def test_a_difference_is_claimed_only_beyond_the_seed_spread(titok_card) -> None:
    verdict = card_module("formatting").seed_verdict  # the rule the SFVR/vanilla verdicts follow too
    assert verdict(0.5, 0.6, "SFTok", "TiTok") == "no difference can be claimed"
    assert verdict(0.7, 0.6, "SFTok", "TiTok") == "SFTok is higher"
    assert verdict(-0.7, 0.6, "SFTok", "TiTok") == "TiTok is higher"
    report = {"seeds": {"psnr@1": {"std": 0.2}}}
    evaluation = {"seeds": {"stage2_sfvr": {"psnr@1": {"std": 0.5}}}}
    assert titok_card.spread_of(report, evaluation, "psnr@1") == 0.5  # the larger of the two tokenizers' spreads
    assert titok_card.spread_of(report, {"seeds": {}}, "psnr@1") == 0.2
