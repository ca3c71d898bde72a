"""Trainer behaviour on the tiny preset, CPU: every stage runs, SFVR and freezing hold, resume is exact."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

from core import MaskGITVQGAN, SFTok, load_pretrained
from core.config import ConfigError
from trainers.config import load_config
from trainers.draws import Draws
from trainers.loop import train
from trainers.masking import random_masks
from trainers.objectives import ProxyCodeObjective, first_pass_predictions
from trainers.sink import MemorySink

from .shard_fixtures import write_shards

# Small widths keep each step in the tens of milliseconds on 2 cores.
SMALL = [
    "model.encoder={width: 32, depth: 1, heads: 2}", "model.decoder={width: 32, depth: 1, heads: 2}",
    "model.codebook_size=64", "model.token_size=8", "model.num_latent_tokens=16",
    "model.teacher={hidden_channels: 16, channel_mult: [1, 2, 2], num_res_blocks: 1, z_channels: 16, codebook_size: 32, num_groups: 8}",
    "data.batch_size=4", "data.eval_batch_size=4", "log_every=5", "eval_every=10", "save_every=10",
    "eval_num_steps=[1, 4]", "optim.warmup_steps=2", "optim.lr=1e-3", "optim.end_lr=1e-4",
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("shards")
    (root / "labels.json").write_text('{"zero": 0, "one": 1, "three": 3}')  # id 2 unnamed on purpose
    return {"train": write_shards(root, "train", 64, seed=0), "eval": write_shards(root, "val", 8, seed=1)}


def overrides(shards: dict[str, str], *extra: str) -> list[str]:
    return [*SMALL, f"data.train_shards={shards['train']}", f"data.eval_shards={shards['eval']}", *extra]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, shards: dict[str, str]) -> dict[str, Path]:
    """Teacher -> stage 1 -> stage 2 -> stage 3 -> generator, 20 steps each, as a researcher would chain them."""
    root = tmp_path_factory.mktemp("runs")
    dirs: dict[str, Path] = {}
    results = {}
    plan = [
        ("teacher", []),
        ("1", [f"teacher_path={root / 'teacher' / 'model'}"]),
        ("2", [f"teacher_path={root / 'teacher' / 'model'}", f"init_weights={root / '1' / 'model'}"]),
        ("3", [f"teacher_path={root / 'teacher' / 'model'}", f"init_weights={root / '2' / 'model'}", "stage3.disc_start=10"]),
        ("generator", [f"tokenizer_path={root / '3' / 'model'}", "generator={hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, num_classes: 4}"]),
    ]
    for stage, extra in plan:
        cfg = load_config(stage, None, overrides(shards, "max_steps=20", *extra))
        sink = MemorySink()
        results[stage] = (train(cfg, root / stage, sink=sink, progress=False), sink)
        dirs[stage] = root / stage
    dirs["results"] = results  # type: ignore[assignment]
    return dirs


@pytest.mark.parametrize("stage", ["teacher", "1", "2", "3", "generator"])
def test_every_stage_runs_20_steps_and_exports_a_model(chain: dict, stage: str) -> None:
    result, sink = chain["results"][stage]
    assert result.final_step == 20 and not result.interrupted
    assert all(torch.isfinite(torch.tensor(v)) for _, v in result.losses)
    logged = {k for _, m in sink.metrics for k in m}
    assert {"train/loss", "lr", "grad_norm", "throughput/images_per_s"} <= logged
    assert any(k.startswith("eval/") for k in logged)
    model = load_pretrained(result.model_dir)
    expected = {"teacher": MaskGITVQGAN, "1": SFTok, "2": SFTok, "3": SFTok}.get(stage)
    if expected:
        assert isinstance(model, expected)
    if stage == "3":
        assert model.has_pixel_head
    classes = result.model_dir / "classes.json"
    assert classes.is_file() == (stage == "generator")  # the dataset's labels.json travels with the generator
    if stage == "generator":
        assert json.loads(classes.read_text()) == ["zero", "one", "class 2", "three"]


def test_eval_reports_per_step_psnr(chain: dict) -> None:
    _, sink = chain["results"]["2"]
    evals = [m for _, m in sink.metrics if "eval/psnr@1" in m]
    assert evals and {"eval/psnr@1", "eval/psnr@4"} <= set(evals[-1])
    assert 0 < evals[-1]["eval/psnr@4"] < 60


def test_stage3_freezes_encoder_latents_and_quantizer(chain: dict) -> None:
    before = load_pretrained(chain["2"] / "model")
    after = load_pretrained(chain["3"] / "model")
    for name, tensor in before.state_dict().items():
        if name.startswith(("encoder.", "quantize.", "latent_tokens")):
            assert torch.equal(tensor, after.state_dict()[name]), name
    changed = [n for n, t in before.state_dict().items() if n.startswith("decoder.") and not torch.equal(t, after.state_dict()[n])]
    assert changed, "stage 3 must train the ViT decoder"


def test_stage3_frozen_parts_get_no_gradient(shards: dict[str, str], chain: dict, tmp_path: Path) -> None:
    from trainers.stages import build_stage

    cfg = load_config("3", None, overrides(shards, f"teacher_path={chain['teacher'] / 'model'}", f"init_weights={chain['2'] / 'model'}"))
    stage = build_stage(cfg, torch.device("cpu"))
    images = torch.rand(2, 3, 64, 64)
    out = stage.objective(**stage.prepare({"image": images}, Draws.make(0, 0, 0, len(images))))
    out["loss"].backward()
    tok = stage.saved_model
    for name, p in tok.named_parameters():
        if name.startswith(("encoder.", "quantize.", "latent_tokens")):
            assert p.grad is None, name
    assert tok.decoder.ffn[2].weight.grad is not None and tok.pixel_decoder.conv_out.weight.grad is not None


def test_stage3_code_ce_adds_the_masked_slots_cross_entropy(shards: dict[str, str], chain: dict) -> None:
    """stage3.code_ce_weight: loss = L2 + w * CE(logits, teacher codes) over masked slots, with a gradient
    into the logits; 0 (the official stage 3) leaves the loss the L2 alone."""
    from trainers.stages import build_stage

    paths = [f"teacher_path={chain['teacher'] / 'model'}", f"init_weights={chain['2'] / 'model'}"]
    images = torch.rand(2, 3, 64, 64)
    outs = {}
    for weight in (0.0, 0.5):
        cfg = load_config("3", None, overrides(shards, *paths, "stage3.lpips_weight=0", "stage3.gan_weight=0",
                                               f"stage3.code_ce_weight={weight}"))
        stage = build_stage(cfg, torch.device("cpu"))
        inputs = stage.prepare({"image": images}, Draws.make(0, 0, 0, len(images)))
        assert ("teacher_codes" in inputs) == (weight > 0)
        outs[weight] = stage.objective(**inputs)
    assert torch.allclose(outs[0.0]["loss"], outs[0.0]["l2"]) and "code_ce" not in outs[0.0]
    with_ce = outs[0.5]
    assert float(with_ce["code_ce"]) > 0.5  # nats over the masked slots of a 32-code teacher
    assert torch.allclose(with_ce["loss"], with_ce["l2"] + 0.5 * with_ce["code_ce"], atol=1e-6)


def test_stage3_code_ce_without_a_teacher_is_rejected_before_any_work(shards: dict[str, str], chain: dict) -> None:
    with pytest.raises(ConfigError, match="stage3.code_ce_weight"):
        load_config("3", None, overrides(shards, f"init_weights={chain['3'] / 'model'}", "stage3.code_ce_weight=1"))


def test_stage3_replace_prob_puts_the_teachers_codes_in_context(shards: dict[str, str], chain: dict) -> None:
    """sfvr.replace_prob < 1 in stage 3: context slots not drawn for the model's own guess hold the teacher's code;
    1 (the official stage 3) draws nothing and passes no teacher codes; no teacher is rejected before any work."""
    from trainers.stages import build_stage

    paths = [f"teacher_path={chain['teacher'] / 'model'}", f"init_weights={chain['2'] / 'model'}"]
    images = torch.rand(4, 3, 64, 64)
    official = build_stage(load_config("3", None, overrides(shards, *paths, "stage3.code_ce_weight=0")), torch.device("cpu"))
    assert "use_own" not in official.prepare({"image": images}, Draws.make(0, 0, 0, len(images)))
    cfg = load_config("3", None, overrides(shards, *paths, "stage3.code_ce_weight=0", "sfvr.replace_prob=0.5"))
    stage = build_stage(cfg, torch.device("cpu"))
    inputs = stage.prepare({"image": images}, Draws.make(0, 0, 0, len(images)))
    use_own = inputs["use_own"]
    assert use_own.shape == inputs["teacher_codes"].shape and 0.3 < float(use_own.float().mean()) < 0.7
    tok = stage.saved_model
    seen = []
    hook = tok.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    stage.objective(**inputs)
    hook.remove()
    own, graded = seen  # the no-grad first pass, then the graded pass
    guess = tok.decoder(own, tok.quantize(tok.encode_continuous(images))[0]).argmax(-1)
    context = ~inputs["masks"]
    teacher_slots, own_slots = context & ~use_own, context & use_own
    assert teacher_slots.any() and own_slots.any()
    assert torch.equal(graded[teacher_slots], inputs["teacher_codes"][teacher_slots])
    assert torch.equal(graded[own_slots], guess[own_slots])
    assert (graded[inputs["masks"]] == tok.config.mask_id).all()
    with pytest.raises(ConfigError, match="sfvr.replace_prob"):
        load_config("3", None, overrides(shards, f"init_weights={chain['2'] / 'model'}", "sfvr.replace_prob=0.5"))


def _objective_pair(chain: dict) -> tuple[SFTok, MaskGITVQGAN]:
    return load_pretrained(chain["1"] / "model"), load_pretrained(chain["teacher"] / "model")


def test_sfvr_context_is_first_pass_argmax_and_teacher_codes_when_off(chain: dict) -> None:
    from trainers.config import LossConfig, SFVRConfig

    tok, teacher = _objective_pair(chain)
    images = torch.rand(3, 3, 64, 64)
    codes = teacher.encode(images)
    gen = torch.Generator().manual_seed(0)
    masks = random_masks(3, tok.config.num_proxy_codes, gen)
    objective = ProxyCodeObjective(tok, LossConfig(), SFVRConfig(replace_prob=1.0))
    use_own = torch.ones_like(masks)
    out = objective(images, codes, masks, use_own)
    with torch.no_grad():
        z_q = tok.quantize(tok.encode_continuous(images))[0]
        expected = first_pass_predictions(tok, z_q)
    context = ~masks
    assert torch.equal(out["inputs"][context], expected[context])
    assert (out["inputs"][masks] == tok.config.mask_id).all()
    assert not objective.last_own_predictions.requires_grad  # the first pass builds no graph
    vanilla = ProxyCodeObjective(tok, LossConfig(), None)(images, codes, masks, None)
    assert torch.equal(vanilla["inputs"][context], codes[context])
    # The two contexts really differ on an under-trained model, so the test can fail.
    assert not torch.equal(out["inputs"], vanilla["inputs"])


def test_reusing_the_graded_encoding_gives_identical_losses(chain: dict) -> None:
    from trainers.config import LossConfig, SFVRConfig

    tok, teacher = _objective_pair(chain)
    images = torch.rand(4, 3, 64, 64)
    codes = teacher.encode(images)
    masks = random_masks(4, tok.config.num_proxy_codes, torch.Generator().manual_seed(1))
    use_own = torch.rand(masks.shape, generator=torch.Generator().manual_seed(2)) < 0.8
    fast = ProxyCodeObjective(tok, LossConfig(), SFVRConfig(), reuse_encoding=True)(images, codes, masks, use_own)
    official = ProxyCodeObjective(tok, LossConfig(), SFVRConfig(), reuse_encoding=False)(images, codes, masks, use_own)
    assert torch.equal(fast["inputs"], official["inputs"])
    assert float(fast["loss"].detach()) == float(official["loss"].detach())


def test_stage1_overfits_a_fixed_batch(shards: dict[str, str], chain: dict, tmp_path: Path) -> None:
    from trainers.stages import build_stage

    cfg = load_config("1", None, overrides(shards, f"teacher_path={chain['teacher'] / 'model'}"))
    stage = build_stage(cfg, torch.device("cpu"))
    images = torch.rand(4, 3, 64, 64)
    kwargs = stage.prepare({"image": images}, Draws.make(0, 0, 0, len(images)))
    opt = torch.optim.AdamW(stage.saved_model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = stage.objective(**kwargs)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def assert_resume_replays(cfg, tmp_path: Path, stop_after: int) -> None:
    """A run stopped after ``stop_after`` steps and resumed logs exactly the losses of one uninterrupted run."""
    full = train(cfg, tmp_path / "full", sink=MemorySink(), progress=False)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > stop_after

    part = train(cfg, tmp_path / "split", sink=MemorySink(), progress=False, should_stop=stop)
    assert part.interrupted and part.final_step == stop_after
    rest = train(cfg, tmp_path / "split", sink=MemorySink(), progress=False, resume=True)
    assert rest.final_step == cfg.max_steps
    assert [v for _, v in part.losses + rest.losses] == [v for _, v in full.losses]


def test_resume_replays_the_uninterrupted_run(shards: dict[str, str], chain: dict, tmp_path: Path) -> None:
    extra = [f"teacher_path={chain['teacher'] / 'model'}", "max_steps=12", "save_every=100"]
    assert_resume_replays(load_config("2", None, overrides(shards, *extra)), tmp_path, stop_after=6)


def test_stopping_early_on_a_longer_schedule_replays_its_first_steps(shards: dict[str, str], chain: dict,
                                                                      tmp_path: Path) -> None:
    base = [f"teacher_path={chain['teacher'] / 'model'}", "save_every=100", "log_every=1", "eval_every=100"]
    full_sink, early_sink, short_sink = MemorySink(), MemorySink(), MemorySink()
    full = train(load_config("1", None, overrides(shards, *base, "max_steps=8")), tmp_path / "full", sink=full_sink,
                 progress=False)
    early = train(load_config("1", None, overrides(shards, *base, "max_steps=4", "optim.schedule_steps=8")),
                  tmp_path / "early", sink=early_sink, progress=False)
    train(load_config("1", None, overrides(shards, *base, "max_steps=4")), tmp_path / "short", sink=short_sink,
          progress=False)

    def lrs(sink: MemorySink) -> list[float]:
        return [m["lr"] for _, m in sink.metrics if "lr" in m]

    assert early.final_step == 4 and early.losses == full.losses[:4]
    assert lrs(early_sink) == lrs(full_sink)[:4]
    assert lrs(short_sink)[-1] < lrs(early_sink)[-1]  # a 4-step schedule has decayed further by step 4
    with pytest.raises(ConfigError, match=r"optim\.schedule_steps"):
        load_config("1", None, overrides(shards, *base, "optim.schedule_steps=-1"))


def test_failed_checkpoint_write_keeps_the_previous_one(shards: dict[str, str], chain: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import trainers.training_state as ckpt

    cfg = load_config("1", None, overrides(shards, f"teacher_path={chain['teacher'] / 'model'}", "max_steps=10", "save_every=5"))
    real_save = ckpt.torch.save

    def disk_full(obj, path, *a, **k):  # the second checkpoint hits a full disk
        if "checkpoint-10" in str(path) or ".tmp-checkpoint-10" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    with pytest.raises(OSError):
        train(cfg, tmp_path / "run", sink=MemorySink(), progress=False)
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run")] == [5]
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))
    loaded = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "run"))
    assert loaded["metadata"]["global_step"] == 5


@pytest.mark.parametrize("bad, field", [
    ("sfvr.replace_prob=1.5", "sfvr.replace_prob"),
    ("sfvr.context_source=middle", "sfvr.context_source"),
    ("model_preset=XL", "model_preset"),
    ("optim.lr=-1", "optim.lr"),
    ("data.batch_size=0", "data.batch_size"),
    ("model.codebook_size=1", "codebook_size"),
    ("nonsense_field=3", "nonsense_field"),
    ("optim.betas=[0.9]", "optim.betas"),
    ("max_steps=abc", "max_steps"),
])
def test_invalid_configs_are_rejected_naming_the_field(shards: dict[str, str], bad: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("2", None, overrides(shards, "teacher_path=x", bad))


def test_decoder_init_redraws_the_code_table_and_adds_grid_positions(shards: dict[str, str], chain: dict) -> None:
    from core.decoder import sincos_grid
    from trainers.stages import build_stage

    start = load_pretrained(chain["1"] / "model").decoder
    extra = [f"teacher_path={chain['teacher'] / 'model'}", f"init_weights={chain['1'] / 'model'}", "seed=7",
             "decoder_init.reset_code_embeddings=true", "decoder_init.sincos_slot_positions=true"]
    decoder = build_stage(load_config("2", None, overrides(shards, *extra)), torch.device("cpu")).saved_model.decoder
    table, vocab = decoder.learnable_embedding.weight.detach(), decoder.vocab_size
    expected = 0.02 * torch.randn(vocab, table.shape[1], generator=torch.Generator().manual_seed(7))
    assert torch.equal(table[:vocab], expected)
    assert torch.equal(table[vocab], start.learnable_embedding.weight[vocab])  # the mask row is stage 1's
    before = start.learnable_embedding_positional_embedding.detach()
    after = decoder.learnable_embedding_positional_embedding.detach()
    assert torch.equal(after[0], before[0])  # the class row is left alone
    grid = sincos_grid(decoder.grid_size, after.shape[1])
    scale = before[1:].norm(dim=1).mean() / grid.norm(dim=1).mean()
    assert torch.allclose(after[1:] - before[1:], scale * grid, atol=1e-6)
    # neighbouring slots' grid rows are more alike than distant ones': the notion of "next to" attention can use
    assert float(grid[0] @ grid[1]) > float(grid[0] @ grid[-1])


def test_decoder_init_can_shrink_stage_one_mask_row(shards: dict[str, str], chain: dict) -> None:
    """Stage 1 from scratch: only the mask row is redrawn (seeded by the run's seed), the code rows stay as built."""
    from trainers.stages import build_stage

    base = [f"teacher_path={chain['teacher'] / 'model'}", "seed=11", "model.weight_init=pytorch"]
    shrunk = build_stage(load_config("1", None, overrides(shards, *base, "decoder_init.reset_mask_embedding=true")),
                         torch.device("cpu")).saved_model.decoder
    table, vocab = shrunk.learnable_embedding.weight.detach(), shrunk.vocab_size
    expected = 0.02 * torch.randn(1, table.shape[1], generator=torch.Generator().manual_seed(12))
    assert torch.equal(table[vocab:], expected)
    # the code rows keep PyTorch's N(0, 1), ~sqrt(width) times a slot position's length; the mask row is far shorter
    positions = shrunk.learnable_embedding_positional_embedding[1:].norm(dim=1).mean()
    assert table[:vocab].norm(dim=1).mean() > 5 * positions > 5 * table[vocab].norm()


def test_decoder_init_is_not_applied_again_on_resume(shards: dict[str, str], chain: dict, tmp_path: Path) -> None:
    extra = [f"teacher_path={chain['teacher'] / 'model'}", f"init_weights={chain['1'] / 'model'}", "max_steps=8",
             "save_every=100", "decoder_init.reset_code_embeddings=true", "decoder_init.sincos_slot_positions=true"]
    assert_resume_replays(load_config("2", None, overrides(shards, *extra)), tmp_path, stop_after=4)


def test_decoder_init_outside_stages_1_and_2_is_rejected(shards: dict[str, str], chain: dict) -> None:
    with pytest.raises(ConfigError, match="decoder_init"):
        load_config("3", None, overrides(shards, f"init_weights={chain['2'] / 'model'}",
                                         "decoder_init.sincos_slot_positions=true"))
    with pytest.raises(ConfigError, match="decoder_init"):
        load_config("3", None, overrides(shards, f"init_weights={chain['2'] / 'model'}",
                                         "decoder_init.reset_mask_embedding=true"))
