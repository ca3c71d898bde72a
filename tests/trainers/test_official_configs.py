"""Switching from the official code: its five YAMLs, its override syntax and its teacher weights file.

The YAMLs are rebuilt from ``tests/fixtures/official-configs.json`` (every key and value of the
official ``configs/*.yaml``); the teacher file is written with the official key names
(``tests/fixtures/official-state-dicts.json``) from a randomly initialised teacher.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from core import CheckpointError, MaskGITVQGAN, SFTok, TeacherConfig
from core.config import ConfigError
from core.pretrained import load_pretrained
from trainers.config import load_config
from trainers.official_schema import OFFICIAL_KEYS, Derived, Ignored, ignored_keys

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
OFFICIAL = json.loads((FIXTURES / "official-configs.json").read_text())["configs"]
STAGE_OF = {"sftok_b64_stage1.yaml": "1", "sftok_b64_stage2.yaml": "2", "sftok_b64_stage3.yaml": "3",
            "sftok_maskgit.yaml": "generator", "infer_sftok.yaml": "generator"}
TEACHER_FILE = "maskgit-vqgan-imagenet-f16-256.bin"


def _load_launcher():
    spec = importlib.util.spec_from_file_location("launch_training", ROOT / "launch_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAUNCHER = _load_launcher()


def leaves(node: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in node.items():
        out.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("official-configs")
    for name, doc in OFFICIAL.items():
        (folder / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    (folder / "dino_deitsmall16_pretrain.pth").write_bytes(b"")  # stage 3 names a local DINO file; not opened here
    return folder


def stage_extras(name: str, folder: Path) -> list[str]:
    """What an official run needs beyond its YAML: stage 3 starts from stage-2 weights and a local DINO file."""
    if name != "sftok_b64_stage3.yaml":
        return []
    return ["experiment.init_weight=stage2/ema_model/pytorch_model.bin",
            f"stage3.dino_weights={folder / 'dino_deitsmall16_pretrain.pth'}"]


def run_launcher(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "launch_training.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def lookup(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = cfg[part] if isinstance(cfg, dict) else getattr(cfg, part)
    return cfg


# -- the schema covers the official files ---------------------------------------------------------
def test_every_official_key_is_known_and_every_known_key_is_official():
    used = {path for doc in OFFICIAL.values() for path in leaves(doc)}
    assert used <= set(OFFICIAL_KEYS), sorted(used - set(OFFICIAL_KEYS))
    assert set(OFFICIAL_KEYS) - used == {"model.vq_model.vit_dec_model_size"}  # TiTok's place for the decoder size


def test_docs_list_every_ignored_key():
    readme = (ROOT / "docs" / "official-code.md").read_text()
    ignored = {k for stage in ("1", "2", "3", "generator") for k in ignored_keys(stage)}
    assert [k for k in sorted(ignored) if f"`{k}`" not in readme] == []


# -- each official YAML validates --------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_each_official_yaml_passes_the_real_launcher(official_dir: Path, name: str):
    proc = run_launcher("--stage", STAGE_OF[name], "--config", str(official_dir / name), "--dry-run",
                        "--skip-path-check", *stage_extras(name, official_dir))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("ignored")]
    assert len(notes) == 1 and "training.enable_wandb" in notes[0]  # said once, naming the keys
    cfg = yaml.safe_load(proc.stdout)
    doc = leaves(OFFICIAL[name])
    assert cfg["max_steps"] == doc["training.max_train_steps"] and cfg["seed"] == 42
    assert cfg["mixed_precision"] == doc["training.mixed_precision"] and cfg["ema"] is True
    assert cfg["optim"]["lr"] == float(doc["optimizer.params.learning_rate"])
    assert cfg["optim"]["betas"] == [doc["optimizer.params.beta1"], doc["optimizer.params.beta2"]]
    assert cfg["data"]["train_shards"] == "/path/to/data/train" and cfg["data"]["num_workers"] == 12


RESOLVED = {  # official YAML -> our fields it must resolve to (through load_config)
    "sftok_b64_stage1.yaml": {"teacher_path": TEACHER_FILE, "data.batch_size": 64, "optim.warmup_steps": 10_000,
                              "optim.end_lr": 1e-5, "optim.weight_decay": 1e-4, "loss.label_smoothing": 0.0,
                              "loss.unmasked_weight": 0.1, "model_preset": "B", "data.random_crop": True},
    "sftok_b64_stage2.yaml": {"teacher_path": TEACHER_FILE, "max_steps": 800_000, "sfvr.enabled": True,
                              "sfvr.replace_prob": 0.8, "sfvr.mask_schedule": "arccos", "optim.betas": (0.9, 0.99)},
    "sftok_b64_stage3.yaml": {"teacher_path": TEACHER_FILE, "data.batch_size": 128,  # 64 x 2 accumulation steps
                              "optim.betas": (0.9, 0.999), "optim.warmup_steps": 5000, "stage3.discriminator": "dino",
                              "stage3.gan_weight": 0.5, "stage3.disc_start": 20_000, "stage3.disc_lr": 1e-4,
                              "stage3.l2_weight": 1.0, "stage3.lpips_weight": 1.0,
                              "init_weights": "stage2/ema_model/pytorch_model.bin"},
    "sftok_maskgit.yaml": {"tokenizer_path": "sftok-b.bin", "generator_train.label_smoothing": 0.1,
                           "generator_train.class_dropout": 0.1, "generator_train.unmasked_weight": 0.1,
                           "optim.weight_decay": 0.03, "data.batch_size": 128, "data.random_crop": False},
    "infer_sftok.yaml": {"tokenizer_path": "/path/to/tokenizer-checkpoint/ema_model/pytorch_model.bin",
                         "data.batch_size": 256, "mixed_precision": "bf16"},
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_each_official_yaml_resolves_to_its_values(official_dir: Path, name: str):
    notes: list[str] = []
    cfg = load_config(STAGE_OF[name], official_dir / name, stage_extras(name, official_dir), notes=notes)
    for field, expected in RESOLVED[name].items():
        got = lookup(cfg, field)
        assert got == expected or (isinstance(got, float) and math.isclose(got, expected)), (field, got, expected)
    model = cfg.model_config()
    assert (model.image_size, model.encoder.width, model.decoder.width, model.codebook_size, model.num_latent_tokens,
            model.token_size, model.teacher.codebook_size) == (256, 768, 768, 8192, 64, 32, 1024)
    present = set(leaves(OFFICIAL[name]))
    expected_ignored = sorted(present & set(ignored_keys(STAGE_OF[name])))
    assert notes[0] == "ignored (official keys with no meaning here; see docs/official-code.md): " + ", ".join(expected_ignored)


def test_generator_yaml_builds_the_official_generator(official_dir: Path):
    cfg = load_config("generator", official_dir / "sftok_maskgit.yaml")
    gen = cfg.generator_config(8192, 64)
    assert (gen.hidden_size, gen.num_layers, gen.num_heads, gen.intermediate_size, gen.num_classes, gen.dropout) == \
        (768, 24, 16, 3072, 1000, 0.1)


# -- official-layout overrides -------------------------------------------------------------------
GOOD = [  # (yaml, override, our field, resolved value)
    ("sftok_b64_stage2.yaml", "training.per_gpu_batch_size=32", "data.batch_size", 32),
    ("sftok_b64_stage2.yaml", "model.decoder.replace_prob=0.5", "sfvr.replace_prob", 0.5),
    ("sftok_b64_stage2.yaml", "optimizer.params.learning_rate=2e-4", "optim.lr", 2e-4),  # lr_scheduler's copy follows
    ("sftok_b64_stage2.yaml", "optimizer.params.beta2=0.95", "optim.betas", (0.9, 0.95)),
    ("sftok_b64_stage2.yaml", "lr_scheduler.params.warmup_steps=500", "optim.warmup_steps", 500),
    ("sftok_b64_stage2.yaml", "training.guided_mask=false", "sfvr.enabled", False),
    ("sftok_b64_stage2.yaml", "training.mask_schedule=cosine", "sfvr.mask_schedule", "cosine"),
    ("sftok_b64_stage2.yaml", "model.decoder.vit_dec_model_size=large", "model_preset", "L"),
    ("sftok_b64_stage2.yaml", "experiment.init_weight=runs/stage-1/model", "init_weights", "runs/stage-1/model"),
    ("sftok_b64_stage2.yaml", "model.vq_model.pretrained_tokenizer_weight=w/teacher.safetensors", "teacher_path",
     "w/teacher.safetensors"),
    ("sftok_b64_stage2.yaml", "sfvr.replace_prob=1.0", "sfvr.replace_prob", 1.0),  # our layout on top, as run_stage2.sh
    ("sftok_b64_stage1.yaml", "training.max_train_steps=1e5", "max_steps", 100_000),  # OmegaConf-style number
    ("sftok_b64_stage1.yaml", "training.mixed_precision=bf16", "mixed_precision", "bf16"),
    ("sftok_b64_stage1.yaml", "training.use_ema=false", "ema", False),
    ("sftok_b64_stage1.yaml", "losses.label_smoothing=0.1", "loss.label_smoothing", 0.1),
    ("sftok_b64_stage3.yaml", "training.per_gpu_batch_size=8", "data.batch_size", 16),  # run_stage3.sh: 8 x 2
    ("sftok_b64_stage3.yaml", "training.gradient_accumulation_steps=1", "data.batch_size", 64),
    ("sftok_b64_stage3.yaml", "losses.discriminator_weight=0.1", "stage3.gan_weight", 0.1),
    ("sftok_b64_stage3.yaml", "optimizer.params.discriminator_learning_rate=5e-5", "stage3.disc_lr", 5e-5),
]


@pytest.mark.parametrize("name, override, field, expected", GOOD)
def test_official_overrides_resolve(official_dir: Path, name: str, override: str, field: str, expected: Any):
    cfg = load_config(STAGE_OF[name], official_dir / name, [*stage_extras(name, official_dir), override])
    got = lookup(cfg, field)
    assert got == expected or (isinstance(got, float) and math.isclose(got, expected)), (got, expected)


BAD = [  # (yaml or None = our defaults, override, what the message must say)
    ("sftok_b64_stage2.yaml", "model.decoder.replace_prob=1.5", "model.decoder.replace_prob (sfvr.replace_prob here): must be in [0, 1]"),
    ("sftok_b64_stage2.yaml", "training.per_gpu_batch_size=0", "training.per_gpu_batch_size (data.batch_size here): must be > 0"),
    ("sftok_b64_stage2.yaml", "training.mask_schedule=zigzag", "training.mask_schedule (sfvr.mask_schedule here): 'zigzag'"),
    ("sftok_b64_stage2.yaml", "training.max_train_steps=abc", "training.max_train_steps: expected an integer, got 'abc'"),
    ("sftok_b64_stage2.yaml", "optimizer.params.learning_rate=-1e-4", "optimizer.params.learning_rate (optim.lr here)"),
    ("sftok_b64_stage2.yaml", "model.vq_model.vit_enc_model_size=gigantic",
     "model.vq_model.vit_enc_model_size (model.encoder here): unknown size 'gigantic'"),
    ("sftok_b64_stage2.yaml", "optimizer.params.beta1=1.5", "optimizer.params.beta1 (optim.betas[0] here)"),
    ("sftok_b64_stage2.yaml", "training.per_gpu_batchsize=32", "did you mean 'training.per_gpu_batch_size'?"),
    ("sftok_b64_stage2.yaml", "model.decoder.replace_prb=0.5", "did you mean 'model.decoder.replace_prob'?"),
    ("sftok_b64_stage2.yaml", "optimizer.params.learning_rat=1e-4", "did you mean 'optimizer.params.learning_rate'?"),
    ("sftok_b64_stage2.yaml", "sfvr.replace_prb=0.5", "sfvr.replace_prb: unknown field; did you mean 'sfvr.replace_prob'?"),
    ("sftok_b64_stage2.yaml", "lr_scheduler.params.learning_rate=3e-4",
     "lr_scheduler.params.learning_rate: must equal optimizer.params.learning_rate"),
    ("sftok_b64_stage2.yaml", "training.gradient_accumulation_steps=0", "training.gradient_accumulation_steps: must be >= 1"),
    ("sftok_b64_stage2.yaml", "training.mask_power=2", "training.mask_power: only 1.0 is supported"),
    ("sftok_b64_stage2.yaml", "training=5", "training: expected a section"),
    ("sftok_b64_stage1.yaml", "model.vq_model.finetune_decoder=true", "model.vq_model.finetune_decoder: only false"),
    ("sftok_b64_stage3.yaml", "losses.discriminator_type=patchgan", "losses.discriminator_type: 'patchgan' is not one of"),
    ("sftok_b64_stage2.yaml", "experiment.save_every=0", "experiment.save_every (save_every here): must be > 0"),
    (None, "model.decoder.replace_prob=1.5",  # was a TypeError
     "model.decoder.replace_prob: unknown field; did you mean 'sfvr.replace_prob'?"),
    (None, "training.per_gpu_batch_size=32", "training.per_gpu_batch_size: unknown field; did you mean 'data.batch_size'?"),
    (None, "model.decoder.widht=64", "model.decoder.widht: unknown field; did you mean 'model.decoder.width'?"),
]


@pytest.mark.parametrize("name, override, message", BAD)
def test_bad_overrides_exit_2_naming_the_field(official_dir: Path, capsys: pytest.CaptureFixture, name: str | None,
                                               override: str, message: str):
    config = ["--config", str(official_dir / name)] if name else ["data.train_shards=x.tar", "teacher_path=t"]
    stage = STAGE_OF[name] if name else "2"
    code = LAUNCHER.main(["--stage", stage, *config, "--dry-run", "--skip-path-check",
                          *(stage_extras(name, official_dir) if name else []), override])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_the_issue_examples_through_the_real_launcher(official_dir: Path):
    for override, message in [("model.decoder.replace_prob=1.5", "model.decoder.replace_prob"),
                              ("training.per_gpu_batch_size=0", "training.per_gpu_batch_size")]:
        proc = run_launcher("--stage", "2", "--config", str(official_dir / "sftok_b64_stage2.yaml"), "--dry-run",
                            "--skip-path-check", override)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_official_layout_has_no_teacher_stage(official_dir: Path):
    with pytest.raises(ConfigError, match="^stage: the official layout has no teacher stage"):
        load_config("teacher", official_dir / "sftok_b64_stage1.yaml")


def test_every_derived_key_is_translated():
    """Derived keys have no rule of their own: each must be named in official_config's derived step."""
    source = (ROOT / "trainers" / "official_config.py").read_text()
    derived = [k for k, spec in OFFICIAL_KEYS.items() if isinstance(spec.rule, Derived)]
    assert derived and all(f'"{k}"' in source for k in derived)
    assert not any(isinstance(spec.rule, Ignored) and not spec.rule.why for spec in OFFICIAL_KEYS.values())


# -- the official teacher weights file -------------------------------------------------------------
@pytest.fixture(scope="module")
def official_teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """The released teacher's file layout: a bare state dict with the official key names, in their order."""
    manifest = json.loads((FIXTURES / "official-state-dicts.json").read_text())["maskgit_vqgan"]
    torch.manual_seed(0)
    state = MaskGITVQGAN(TeacherConfig()).state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == {k: shape for k, (shape, _) in manifest.items()}
    official = {k: state[k].contiguous() for k in manifest}
    folder = tmp_path_factory.mktemp("teacher-file")
    torch.save(official, folder / TEACHER_FILE)
    from safetensors.torch import save_file

    save_file(official, str(folder / "maskgit-vqgan-imagenet-f16-256.safetensors"))
    return folder / TEACHER_FILE, folder / "maskgit-vqgan-imagenet-f16-256.safetensors", official


def test_official_teacher_file_loads_as_the_teacher(official_teacher):
    bin_path, safetensors_path, state = official_teacher
    for path in (bin_path, safetensors_path):
        teacher = load_pretrained(path)
        assert isinstance(teacher, MaskGITVQGAN) and teacher.config == TeacherConfig()
        loaded = teacher.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_official_teacher_file_loads_strictly(official_teacher, tmp_path: Path):
    _, _, state = official_teacher
    partial = dict(state)
    partial.pop("decoder.conv_out.bias")
    torch.save(partial, tmp_path / "cut.bin")
    with pytest.raises(CheckpointError, match="1 missing key.*decoder.conv_out.bias"):
        load_pretrained(tmp_path / "cut.bin")


def test_official_teacher_file_is_accepted_as_teacher_path(official_dir: Path, official_teacher, tmp_path: Path):
    """With path checks on (what the job manager's dry run does): the weights file satisfies teacher_path."""
    bin_path = official_teacher[0]
    (tmp_path / "train-0.tar").write_bytes(b"")
    data = [f"dataset.params.train_shards_path_or_url={tmp_path / 'train-0.tar'}",
            "dataset.params.eval_shards_path_or_url="]
    cfg = load_config("2", official_dir / "sftok_b64_stage2.yaml",
                      [*data, f"model.vq_model.pretrained_tokenizer_weight={bin_path}"], check_paths=True)
    assert cfg.teacher_path == str(bin_path)
    with pytest.raises(ConfigError, match=r"model\.vq_model\.pretrained_tokenizer_weight \(teacher_path here\): "
                                          r"'maskgit-vqgan-imagenet-f16-256.bin' does not exist"):
        load_config("2", official_dir / "sftok_b64_stage2.yaml", data, check_paths=True)


def test_our_layout_model_sections_merge_field_by_field():
    """``model.decoder.depth=2`` changes one field of the preset's decoder (it used to need all of them)."""
    from core import VitConfig

    cfg = load_config("1", None, ["data.train_shards=x.tar", "teacher_path=t", "model.decoder.depth=2"])
    assert cfg.model_config().decoder == VitConfig(width=128, depth=2, heads=4)


def test_bare_official_weights_file_initialises_the_next_stage(tmp_path: Path):
    """``experiment.init_weight: pytorch_model.bin`` (no config beside it) starts stage 2 from stage 1's weights,
    and stage 3 from stage 2's with the pixel head taken from the teacher, as from a saved folder."""
    from trainers.stages import _tokenizer_for_stage

    common = ["data.train_shards=x.tar", "model_preset=tiny"]
    torch.manual_seed(0)
    teacher = MaskGITVQGAN(load_config("1", None, [*common, "teacher_path=t"]).model_config().teacher)
    stage1 = SFTok(load_config("1", None, [*common, "teacher_path=t"]).model_config())
    torch.save(stage1.state_dict(), tmp_path / "pytorch_model.bin")
    for stage in ("2", "3"):
        cfg = load_config(stage, None, [*common, "teacher_path=t", f"init_weights={tmp_path / 'pytorch_model.bin'}"])
        tok = _tokenizer_for_stage(cfg, torch.device("cpu"), teacher)
        state = tok.state_dict()
        assert all(torch.equal(state[k], v) for k, v in stage1.state_dict().items())
        if stage == "3":
            assert tok.has_pixel_head
            assert torch.equal(state["pixel_decoder.conv_out.weight"], teacher.state_dict()["decoder.conv_out.weight"])
