"""The shipped default model: loads strictly offline and reaches the numbers its model card states."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from core import MaskGITVQGAN, SFTok, load_pretrained

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
TOLERANCE_DB = 0.05  # CPU float differences between machines, far below any claim in the card


def load_script(name: str):
    """A module from scripts/ (not a package): the tests reuse the evaluation scripts' own protocol."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def card_module(name: str):
    """A module of scripts/model_card, the model card's writer, imported the way the export script imports it."""
    for folder in (ROOT, ROOT / "scripts"):  # the package and the scripts and packages it imports
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return importlib.import_module(f"model_card.{name}")


@pytest.fixture(scope="module")
def evaluation() -> dict:
    return json.loads((ASSETS / "default" / "evaluation.json").read_text())


@pytest.fixture(scope="module")
def model() -> SFTok:
    tok = load_pretrained(ASSETS / "default" / "sftok", strict=True)
    assert isinstance(tok, SFTok)
    return tok


def test_shipped_files_load_strictly_and_fit_the_budget(model: SFTok) -> None:
    teacher = load_pretrained(ASSETS / "default" / "teacher", strict=True)
    assert isinstance(teacher, MaskGITVQGAN)
    assert model.has_pixel_head and model.config.num_latent_tokens == 64
    size = sum(p.stat().st_size for p in (ASSETS / "default").rglob("*") if p.is_file())
    assert size <= 30 * 1024 * 1024
    assert (ASSETS / "default" / "MODEL_CARD.md").is_file()


def test_the_comparison_model_ships_as_the_card_says(model: SFTok, evaluation: dict) -> None:
    """The app's "embedded comparison" is the card's other-recipe stage 3: named there exactly when it is shipped."""
    from workbench.services.model_registry import DEFAULT_COMPARISON_DIR

    card = (ASSETS / "default" / "MODEL_CARD.md").read_text()
    shipped = DEFAULT_COMPARISON_DIR.is_dir()
    assert (f"`{DEFAULT_COMPARISON_DIR.name}/`" in card) == shipped
    if shipped:
        twin = load_pretrained(DEFAULT_COMPARISON_DIR, strict=True)
        assert isinstance(twin, SFTok) and twin.has_pixel_head and twin.config == model.config
        assert "stage3_vanilla" in evaluation["models"]  # measured beside the shipped one
        ids = torch.arange(64).view(1, 1, 64) % model.config.codebook_size
        ours, theirs = (m.decode_tokens(ids, generator=torch.Generator().manual_seed(0)) for m in (model, twin))
        assert not torch.allclose(ours, theirs)


def test_shipped_samples_reach_the_card_psnr(model: SFTok, evaluation: dict) -> None:
    module = load_script("evaluate_default_model")
    names, images = module.load_sample_batch(ASSETS / "samples", model.config.image_size)
    stated = evaluation["shipped_samples"]
    assert names == stated["names"]
    from analysis.image_metrics import psnr

    measured = {k: psnr(module.reconstruct(model, images, k), images) for k in (1, 8)}
    for k in (1, 8):
        assert torch.allclose(measured[k], torch.tensor(stated[f"psnr@{k}"]), atol=TOLERANCE_DB), (k, measured[k])


def test_code_information_on_the_shipped_samples_is_what_the_card_states(model: SFTok, evaluation: dict) -> None:
    """Cross-entropy given the tokens, its marginal and the gain per decode step, re-measured on the samples."""
    from analysis.code_information import ScreenDefaults, code_information

    module = load_script("evaluate_default_model")
    teacher = load_pretrained(ASSETS / "default" / "teacher", strict=True)
    _, images = module.load_sample_batch(ASSETS / "samples", model.config.image_size)
    stated = evaluation["shipped_samples"]["information"]
    with torch.no_grad():
        measured = code_information(model.eval(), teacher.eval(), images, ScreenDefaults(images=images.shape[0]))
    assert measured.ce_given_tokens_bits == pytest.approx(stated["ce_given_tokens_bits"], abs=0.01)
    assert measured.tokens_bits_per_slot == pytest.approx(stated["tokens_bits_per_slot"], abs=0.01)
    assert measured.gain_bits_per_image == pytest.approx(stated["gain_bits_per_image"], abs=0.5)
    assert measured.ce_hidden_by_reveal_bits == pytest.approx(stated["ce_hidden_by_reveal_bits"], abs=0.01)
    assert measured.loo_slots_above_zero == stated["loo_slots_above_zero"]
    assert 0 < measured.tokens_bits_per_slot < measured.marginal_entropy_bits  # the tokens tell something, not all


def test_the_training_photo_measurement_follows_the_held_out_protocol(model: SFTok, evaluation: dict) -> None:
    """The card's training-photo columns come from the same decode and code measurement as its held-out ones:
    run on the shipped samples, they give the samples' stated numbers."""
    module = load_script("evaluate_default_model")
    teacher = load_pretrained(ASSETS / "default" / "teacher", strict=True).eval()
    names, images = module.load_sample_batch(ASSETS / "samples", model.config.image_size)
    with torch.inference_mode():
        measured = module.training_photos({"shipped": model.eval()}, teacher, images, batch_size=len(names))
    stated = evaluation["shipped_samples"]
    assert measured["crops"] == len(names)
    for k in (1, 8):
        mean = sum(stated[f"psnr@{k}"]) / len(names)
        assert measured["shipped"][f"psnr@{k}"]["mean"] == pytest.approx(mean, abs=TOLERANCE_DB)
    assert measured["shipped"]["tokens_bits_per_slot"] == pytest.approx(
        stated["information"]["tokens_bits_per_slot"], abs=0.01)
    assert 20 < measured["teacher"]["psnr"]["mean"] < 40


def test_shipped_generator_samples_match_their_classes_as_the_card_states(model: SFTok) -> None:
    """Regenerate the card's samples and re-score them against the stored class centroids."""
    from analysis.class_match import class_match, colour_histograms
    from core import MaskGITGenerator
    from workbench.services.model_registry import class_names

    folder = ASSETS / "default" / "generator"
    generator = load_pretrained(folder, strict=True)
    assert isinstance(generator, MaskGITGenerator)
    report = json.loads((ASSETS / "default" / "generator_evaluation.json").read_text())
    names = class_names(folder)
    assert names == report["class_names"] and len(names) <= generator.config.num_classes
    assert (generator.config.codebook_size, generator.config.num_tokens) == (model.config.codebook_size, 64)
    module = load_script("evaluate_default_generator")
    settings = report["settings"]
    classes = torch.arange(len(names)).repeat_interleave(settings["samples_per_class"])
    samples = module.sample_images(generator.eval(), model, classes, settings)
    result = class_match(colour_histograms(samples), classes,
                         torch.tensor(report["centroids"], dtype=torch.float64))
    stated = report["generated"]["accuracy"]
    assert abs(result.accuracy - stated) <= 2 / len(classes), (result.accuracy, stated)  # CPU float noise: 2 samples
    assert stated > 3 * report["chance"]  # the generator follows its class label, well above chance
