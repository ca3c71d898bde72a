"""TiTok trained by this project's loop (stage 1, ``model_family=titok``): it learns, resumes exactly, exports a
folder every tokenizer consumer loads as TiTok, and a wrong combination is refused before any work."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core import MaskGITVQGAN, load_pretrained, save_pretrained
from core.config import ConfigError
from core.tokenizer import TiTokTokenizer, load_tokenizer
from trainers.config import load_config
from trainers.draws import Draws
from trainers.loop import train
from trainers.sink import MemorySink
from trainers.stages import build_stage

from .test_training import assert_resume_replays, overrides, shards  # noqa: F401  (shards: the shared fixture)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory, shards) -> Path:  # noqa: F811
    """A frozen random teacher of the small test shapes (stage 1 only reads its codes)."""
    cfg = load_config("1", None, overrides(shards, "teacher_path=unused")).model_config()
    torch.manual_seed(0)
    return save_pretrained(MaskGITVQGAN(cfg.teacher).eval(), tmp_path_factory.mktemp("teacher") / "model")


def titok_config(shards, teacher_dir: Path, *extra: str):  # noqa: F811
    return load_config("1", None, overrides(shards, "model_family=titok", f"teacher_path={teacher_dir}", *extra))


def test_trains_and_exports_a_titok_the_tokenizer_interface_loads(shards, teacher_dir, tmp_path):  # noqa: F811
    sink = MemorySink()
    result = train(titok_config(shards, teacher_dir, "max_steps=10"), tmp_path / "run", sink=sink, progress=False)
    teacher = load_pretrained(teacher_dir).eval()
    tok = load_tokenizer(result.model_dir, teacher=teacher)
    assert isinstance(tok, TiTokTokenizer)
    assert (tok.info.family, tok.info.num_tokens, tok.info.codebook_size, tok.info.max_steps) == ("titok", 16, 64, 1)
    assert tok.module.config.patch_size == 4 and not tok.module.has_pixel_head  # the proxy grid is its patch grid
    evals = [m for _, m in sink.metrics if "eval/psnr@1" in m]
    assert len(evals) == 1 and 0 <= evals[0]["eval/code_acc@1"] <= 1 and "eval/psnr@8" not in evals[0]
    # the exported model decodes as the in-training evaluation did: argmax codes through the teacher
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        codes = tok.module.proxy_logits(tok.module.encode(x)[0]).argmax(-1)
        assert torch.equal(tok.decode(tok.encode(x)), teacher.decode_codes(codes))


def test_overfits_a_fixed_batch(shards, teacher_dir):  # noqa: F811
    stage = build_stage(titok_config(shards, teacher_dir), torch.device("cpu"))
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    kwargs = stage.prepare({"image": images}, Draws.make(0, 0, 0, len(images)))
    opt = torch.optim.AdamW(stage.saved_model.parameters(), lr=3e-3)
    losses, quantizer = [], []
    for _ in range(60):
        out = stage.objective(**kwargs)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
        quantizer.append(float(out["quantizer"]))
    # 60 steps on 4 noise images learn the codes' per-slot prior (tokens that tell images apart take longer)
    assert losses[-1] < 0.7 * losses[0]
    assert quantizer[-1] < quantizer[0]  # codebook and commitment terms pull codes and vectors together
    assert all(p.grad is not None for n, p in stage.saved_model.quantize.named_parameters())


def test_loss_terms_are_the_official_ones(shards, teacher_dir):  # noqa: F811
    """CE over every slot (nothing is context in a one-step decode) + codebook + 0.25 x commitment on unit vectors."""
    import torch.nn.functional as F

    stage = build_stage(titok_config(shards, teacher_dir), torch.device("cpu"))
    model = stage.saved_model
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    codes = torch.randint(0, 32, (2, 256), generator=torch.Generator().manual_seed(4))
    out = stage.objective(images, codes)
    z = model.encoder(images, model.latent_tokens)
    unit = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), dim=-1)
    nearest = (unit @ model.quantize.codes().t()).argmax(-1)
    gap = F.mse_loss(model.quantize.codes()[nearest], unit)
    assert torch.allclose(out["quantizer"], gap * 1.25, rtol=1e-5)  # the two terms have one value, weights 1 and 0.25
    logits = model.proxy_logits(model.encode(images)[0])
    assert torch.allclose(out["ce"], F.cross_entropy(logits.transpose(1, 2), codes), rtol=1e-5)
    assert torch.allclose(out["loss"], out["ce"] + out["quantizer"], rtol=1e-6)


def test_resume_replays_the_uninterrupted_run(shards, teacher_dir, tmp_path):  # noqa: F811
    assert_resume_replays(titok_config(shards, teacher_dir, "max_steps=8", "save_every=100"), tmp_path, stop_after=4)


@pytest.mark.parametrize("stage, extra, message", [
    ("2", [], "model_family: 'titok' trains its proxy-code stage only"),
    ("1", ["init_weights=somewhere"], "model_family: 'titok' starts from scratch"),
    ("1", ["decoder_init.sincos_slot_positions=true"], "model_family: 'titok' starts from scratch"),
    ("1", ["model_family=vit"], "model_family"),
])
def test_wrong_combinations_are_refused_before_any_work(shards, teacher_dir, stage, extra, message):  # noqa: F811
    family = [] if any(e.startswith("model_family=") for e in extra) else ["model_family=titok"]
    with pytest.raises(ConfigError, match=message):
        load_config(stage, None, overrides(shards, *family, f"teacher_path={teacher_dir}", *extra))


def test_the_titok_takes_the_recipes_weight_init():
    """A TiTok trained beside an SFTok recipe starts as that recipe's SFTok would: the default recipe keeps PyTorch's
    layer init (configs/default/stage1.yaml), the presets the official N(0, 0.02)."""
    from core import TiTok

    default = load_config("1", "configs/default/stage1.yaml", ["model_family=titok"]).titok_config()
    official = load_config("1", "configs/default/stage1.yaml", ["model_family=titok", "model.weight_init=official"])
    assert default.weight_init == "pytorch" and official.titok_config().weight_init == "official"
    torch.manual_seed(0)
    stds = {cfg.weight_init: float(TiTok(cfg).decoder.transformer[0].mlp.c_fc.weight.detach().std())
            for cfg in (default, official.titok_config())}
    assert stds["official"] == pytest.approx(0.02, abs=0.002)
    assert stds["pytorch"] == pytest.approx((3 * default.decoder.width) ** -0.5, rel=0.05)  # kaiming-uniform(a=sqrt 5)
