"""The frozen-DINO stage-3 discriminator: weights from a local file in the official layout, frozen
backbone outside the state dict, trainable heads, DiffAugment and LeCam with known answers."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from core import MaskGITVQGAN, SFTok, save_pretrained
from core.checkpoint import CheckpointError
from core.config import ConfigError
from core.perceptual import MissingWeightsError
from trainers.config import load_config
from trainers.dino_discriminator import (
    DINO_WEIGHTS_FILE, BatchNormLocal, DinoDiscriminator, LeCamEMA, colour_jitter, cutout, diff_augment,
    hinge_lecam_d_loss, translate,
)

from .shard_fixtures import write_shards
from .test_training import SMALL

DIM, HEADS, DEPTH, MLP, TOKENS = 384, 6, 12, 1536, 197


def official_dino_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the key names and shapes of ``dino_deitsmall16_pretrain.pth``, written out by hand."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.02, offset: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale + offset

    state = {"cls_token": rand(1, 1, DIM, scale=0.5), "pos_embed": rand(1, TOKENS, DIM, scale=0.5),
             "patch_embed.proj.weight": rand(DIM, 3, 16, 16, scale=0.05), "patch_embed.proj.bias": rand(DIM),
             "norm.weight": rand(DIM, offset=1.0), "norm.bias": rand(DIM)}
    for i in range(DEPTH):
        p = f"blocks.{i}."
        state.update({
            p + "norm1.weight": rand(DIM, scale=0.1, offset=1.0), p + "norm1.bias": rand(DIM, scale=0.1),
            p + "attn.qkv.weight": rand(3 * DIM, DIM, scale=0.08), p + "attn.qkv.bias": rand(3 * DIM, scale=0.5),
            p + "attn.proj.weight": rand(DIM, DIM, scale=0.05), p + "attn.proj.bias": rand(DIM),
            p + "norm2.weight": rand(DIM, scale=0.1, offset=1.0), p + "norm2.bias": rand(DIM, scale=0.1),
            p + "mlp.fc1.weight": rand(MLP, DIM, scale=0.05), p + "mlp.fc1.bias": rand(MLP),
            p + "mlp.fc2.weight": rand(DIM, MLP, scale=0.05), p + "mlp.fc2.bias": rand(DIM),
        })
    return state


@pytest.fixture(scope="module")
def dino_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dino") / DINO_WEIGHTS_FILE
    torch.save(official_dino_state(), path)
    return path


@pytest.fixture(scope="module")
def disc(dino_file: Path) -> DinoDiscriminator:
    torch.manual_seed(0)
    return DinoDiscriminator(dino_file)


def test_backbone_loads_the_file_with_key_biases_zeroed(disc: DinoDiscriminator) -> None:
    state = official_dino_state()
    backbone = disc.backbone
    assert torch.equal(backbone.blocks[3].mlp.fc1.weight, state["blocks.3.mlp.fc1.weight"])
    bias = backbone.blocks[7].attn.qkv.bias
    expected = state["blocks.7.attn.qkv.bias"]
    assert torch.equal(bias[:DIM], expected[:DIM]) and torch.equal(bias[2 * DIM:], expected[2 * DIM:])
    assert (bias[DIM: 2 * DIM] == 0).all() and (expected[DIM: 2 * DIM] != 0).all()


def test_backbone_matches_torchvision_vit_with_the_original_biases(disc: DinoDiscriminator) -> None:
    """Known answer: torchvision's ViT with the same weights (k-bias kept: it cancels in the softmax)."""
    import torchvision

    state = official_dino_state()
    tv = torchvision.models.VisionTransformer(224, 16, 3, HEADS, DIM, MLP).eval()
    mapped = {"class_token": state["cls_token"], "conv_proj.weight": state["patch_embed.proj.weight"],
              "conv_proj.bias": state["patch_embed.proj.bias"], "encoder.pos_embedding": state["pos_embed"],
              "encoder.ln.weight": state["norm.weight"], "encoder.ln.bias": state["norm.bias"]}
    pairs = {"ln_1": "norm1", "self_attention.out_proj": "attn.proj", "ln_2": "norm2", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"}
    for i in range(3):
        src, dst = f"blocks.{i}.", f"encoder.layers.encoder_layer_{i}."
        for theirs, ours in pairs.items():
            for suffix in ("weight", "bias"):
                mapped[f"{dst}{theirs}.{suffix}"] = state[f"{src}{ours}.{suffix}"]
        mapped[dst + "self_attention.in_proj_weight"] = state[src + "attn.qkv.weight"]
        mapped[dst + "self_attention.in_proj_bias"] = state[src + "attn.qkv.bias"]
    tv.load_state_dict(mapped, strict=False)
    missing = set(tv.state_dict()) - set(mapped) - {"heads.head.weight", "heads.head.bias"}
    assert not missing, missing
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tokens = torch.cat([tv.class_token.expand(2, -1, -1), tv._process_input(x)], dim=1) + tv.encoder.pos_embedding
        expected = [tokens]
        for layer in tv.encoder.layers:
            tokens = layer(tokens)
            expected.append(tokens)
        ours = disc.backbone.features(x, blocks=(0, 2))
    for got, want in zip(ours, [expected[0], expected[1], expected[3]]):
        readout = (want[:, 1:] + want[:, :1]).transpose(1, 2)
        assert got.shape == (2, DIM, 196)
        torch.testing.assert_close(got, readout, rtol=1e-4, atol=1e-4)


def test_backbone_is_frozen_and_outside_the_state_dict(disc: DinoDiscriminator) -> None:
    keys = list(disc.state_dict())
    assert keys and all(k.startswith(("heads.", "lecam.")) for k in keys)
    trainable = sum(p.numel() for p in disc.parameters())
    backbone = sum(p.numel() for p in disc.backbone.parameters())
    assert trainable == sum(p.numel() for p in disc.heads.parameters())
    assert 21_000_000 < backbone < 22_500_000  # ViT-S/16
    disc.requires_grad_(False)
    disc.requires_grad_(True)  # what the loop does around the generator-side term
    assert not any(p.requires_grad for p in disc.backbone.parameters())


def test_output_shape_and_gradients(disc: DinoDiscriminator) -> None:
    disc.zero_grad(set_to_none=True)
    fake = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    logits = disc(fake)
    assert logits.shape == (2, 5 * 196)
    (-logits.mean()).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # the generator's signal passes the frozen ViT
    assert all(p.grad is None for p in disc.backbone.parameters())
    assert all(p.grad is not None for p in disc.heads.parameters())
    assert disc(torch.rand(3, 3, 256, 256)).shape == (3, 5 * 196)


def test_eval_mode_is_deterministic_and_training_mode_augments(disc: DinoDiscriminator) -> None:
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    disc.eval()
    try:
        with torch.no_grad():
            assert torch.equal(disc(x), disc(x))
    finally:
        disc.train()
    a, b = disc.backbone_input(x), disc.backbone_input(x)
    assert a.shape == (2, 3, 224, 224) and not torch.equal(a, b)


def test_dtype_and_device_moves_reach_the_hidden_backbone(dino_file: Path) -> None:
    disc = DinoDiscriminator(dino_file).double()
    assert disc.backbone.blocks[0].attn.qkv.weight.dtype == torch.float64  # _apply reaches the hidden backbone


def test_missing_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        DinoDiscriminator(tmp_path / "nowhere.pth")
    assert DINO_WEIGHTS_FILE in str(err.value) and "stage3.dino_weights" in str(err.value)
    assert "nowhere.pth" in str(err.value)


def test_wrong_layout_is_refused_by_key(tmp_path: Path) -> None:
    state = official_dino_state()
    del state["blocks.11.mlp.fc2.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="blocks.11.mlp.fc2.weight"):
        DinoDiscriminator(path)


def test_translate_cutout_and_colour_known_answers() -> None:
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6)
    out = translate(x, torch.tensor([1, -2]), torch.tensor([0, 3]))
    assert torch.equal(out[0, :, :4], x[0, :, 1:]) and (out[0, :, 4] == 0).all()
    assert torch.equal(out[1, :, 2:, :3], x[1, :, :3, 3:]) and (out[1, :, :2] == 0).all() and (out[1, :, :, 3:] == 0).all()
    holed = cutout(torch.ones(2, 3, 10, 10), torch.tensor([2, -1]), torch.tensor([3, 9]), (2, 2))
    assert (holed[0] == 0).sum() == 3 * 4 and (holed[0, :, 2:4, 3:5] == 0).all()
    assert (holed[1] == 0).sum() == 3 * 1 and (holed[1, :, 0, 9] == 0).all()  # clipped at the corner
    img = torch.tensor([[0.2, -0.4, 0.8]]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    same = colour_jitter(img, torch.zeros(1), torch.ones(1), torch.ones(1))
    torch.testing.assert_close(same, img)
    grey = colour_jitter(img, torch.tensor([0.1]), torch.zeros(1), torch.ones(1))
    torch.testing.assert_close(grey, torch.full_like(img, 0.2 + 0.1))  # channel mean 0.2, plus brightness
    flat = colour_jitter(img, torch.zeros(1), torch.ones(1), torch.zeros(1))
    torch.testing.assert_close(flat, torch.full_like(img, 0.2))


def test_diff_augment_is_reproducible_and_keeps_gradients() -> None:
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    a = diff_augment(x * 2 - 1, generator=torch.Generator().manual_seed(5))
    b = diff_augment(x * 2 - 1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, x * 2 - 1)
    a.sum().backward()
    assert x.grad is not None and (x.grad != 0).any()
    # one 6x6 hole (round(32 * 0.2)) per image, possibly clipped, so at least one zero pixel each
    assert all(((a[i] == 0).all(0)).any() for i in range(4))


def test_local_batch_norm_normalises_each_virtual_batch() -> None:
    x = torch.randn(16, 4, 10, generator=torch.Generator().manual_seed(0)) * 3 + 5
    x[8:] += 100  # a different second group must not leak into the first
    y = BatchNormLocal(4, virtual_batch=8)(x)
    for group in (y[:8], y[8:]):
        torch.testing.assert_close(group.mean(dim=(0, 2)), torch.zeros(4), atol=1e-5, rtol=0)
        torch.testing.assert_close(group.var(dim=(0, 2), unbiased=False), torch.ones(4), atol=1e-4, rtol=0)


def test_lecam_known_answer_and_ema_update() -> None:
    lecam = LeCamEMA(decay=0.999)
    real, fake = torch.full((2, 5), 2.0), torch.full((2, 5), -1.0)
    assert float(lecam(real, fake)) == pytest.approx(4.0 + 1.0)
    assert float(lecam.ema_real) == pytest.approx(0.002) and float(lecam.ema_fake) == pytest.approx(-0.001)
    second = float(lecam(real, fake))
    assert second == pytest.approx((2.0 + 0.001) ** 2 + (0.002 + 1.0) ** 2)
    hinge = 0.5 * (0.0 + 0.0)  # real 2 > 1 and fake -1 <= -1: both hinge terms are zero
    total = hinge_lecam_d_loss(real, fake, LeCamEMA(), 0.001)
    assert float(total) == pytest.approx(hinge + 0.001 * 5.0)


def test_config_rejects_dino_without_weights(tmp_path: Path, dino_file: Path) -> None:
    base = [*SMALL, "data.train_shards=x.tar", "teacher_path=t", "init_weights=i"]
    with pytest.raises(ConfigError, match=r"^stage3\.dino_weights"):
        load_config("3", None, [*base, "stage3.discriminator=dino"])
    with pytest.raises(ConfigError, match=r"stage3\.dino_weights.*nowhere"):
        load_config("3", None, [*base, "stage3.discriminator=dino", f"stage3.dino_weights={tmp_path / 'nowhere.pth'}"],
                    check_paths=True)
    cfg = load_config("3", None, [*base, "stage3.discriminator=dino", f"stage3.dino_weights={dino_file}"])
    assert cfg.stage3.discriminator == "dino" and cfg.stage3.dino_weights == str(dino_file)


def test_stage3_trains_with_the_dino_discriminator(tmp_path: Path, dino_file: Path) -> None:
    from trainers.training_state import latest_checkpoint, load_checkpoint
    from trainers.loop import train
    from trainers.sink import MemorySink

    shards = write_shards(tmp_path / "shards", "train", 8, seed=0)
    base = [*SMALL, f"data.train_shards={shards}", "data.batch_size=2", "data.eval_batch_size=2", "eval_num_steps=[1]"]
    model_cfg = load_config("1", None, [*base, "teacher_path=unused"]).model_config()
    save_pretrained(MaskGITVQGAN(model_cfg.teacher), tmp_path / "teacher")
    save_pretrained(SFTok(model_cfg), tmp_path / "stage2")
    cfg = load_config("3", None, [*base, f"teacher_path={tmp_path / 'teacher'}", f"init_weights={tmp_path / 'stage2'}",
                                  "stage3.discriminator=dino", f"stage3.dino_weights={dino_file}", "stage3.disc_start=0",
                                  "max_steps=2", "ema=false"])
    sink = MemorySink()
    result = train(cfg, tmp_path / "run", sink=sink, progress=False)
    assert result.final_step == 2 and result.model_dir is not None
    logged = {k: v for _, m in sink.metrics for k, v in m.items()}
    assert math.isfinite(logged["train/discriminator_loss"]) and math.isfinite(logged["train/gan_loss"])
    saved = load_checkpoint(latest_checkpoint(tmp_path / "run"))["training"]["discriminator"]
    assert saved and all(k.startswith(("heads.", "lecam.")) for k in saved)
