"""``launch_training.py`` as a real subprocess: exit codes, dry run, official YAML, a short run, SIGINT + resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .shard_fixtures import write_shards
from .test_training import SMALL

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "launch_training.py"

OFFICIAL_STAGE2_YAML = """\
experiment:
  project: sftok_stage2
  output_dir: sftok_l_stage2
  save_every: 25000
  eval_every: 50000
  log_every: 50
model:
  vq_model:
    vit_enc_model_size: base
    vit_dec_model_size: large
    num_latent_tokens: 64
    codebook_size: 8192
    token_size: 32
    finetune_decoder: false
  decoder:
    replace_prob: 0.8
optimizer:
  name: adamw
  params:
    learning_rate: 1e-4
    beta1: 0.9
    beta2: 0.99
    weight_decay: 1e-4
lr_scheduler:
  scheduler: cosine
  params:
    learning_rate: ${optimizer.params.learning_rate}
    warmup_steps: 10000
    end_lr: 1e-5
dataset:
  params:
    train_shards_path_or_url: imagenet-train-{000000..000320}.tar
    eval_shards_path_or_url: imagenet-val-{000000..000049}.tar
    num_workers_per_gpu: 12
  preprocessing:
    random_crop: true
    random_flip: true
training:
  per_gpu_batch_size: 32
  max_train_steps: 800000
  guided_mask: true
  max_grad_norm: 1.0
  seed: 42
"""


def launch(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LAUNCHER), *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_shards(tmp_path_factory.mktemp("launcher-shards"), "train", 16, seed=0)


def test_dry_run_prints_the_resolved_config_and_starts_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = launch("--stage", "2", "--dry-run", "--skip-path-check", "--run-dir", str(run_dir),
                  "data.train_shards=x-{000..003}.tar", "teacher_path=teacher", "sfvr.replace_prob=0.5", "max_steps=123")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["stage"] == "2" and cfg["max_steps"] == 123
    assert cfg["sfvr"] == {"enabled": True, "replace_prob": 0.5, "context_source": "first", "context_steps": 8,
                           "mask_schedule": "arccos"}
    assert cfg["data"]["train_shards"] == "x-{000..003}.tar" and cfg["optim"]["lr"] == 1e-4
    assert not run_dir.exists()


def test_missing_paths_are_rejected_before_anything_starts(tmp_path: Path, shards: str) -> None:
    run_dir = tmp_path / "run"
    for extra in ((), ("--dry-run",)):
        proc = launch("--stage", "2", *extra, "--run-dir", str(run_dir), f"data.train_shards={shards}",
                      f"data.eval_shards={tmp_path}/val-{{0..1}}.tar", f"teacher_path={tmp_path}/no-teacher")
        assert proc.returncode == 2, proc.stderr
        assert "data.eval_shards: 2 of 2 shard files do not exist" in proc.stderr
        assert f"teacher_path: '{tmp_path}/no-teacher' does not exist" in proc.stderr
        assert "data.train_shards" not in proc.stderr  # the existing shards pass
        assert not run_dir.exists()


def test_invalid_override_exits_2_naming_the_field(tmp_path: Path) -> None:
    proc = launch("--stage", "2", "--run-dir", str(tmp_path / "run"), "data.train_shards=x.tar", "teacher_path=t",
                  "sfvr.replace_prob=1.5")
    assert proc.returncode == 2
    assert "sfvr.replace_prob" in proc.stderr and "[0, 1]" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_official_stage_yaml_is_mapped(tmp_path: Path) -> None:
    config = tmp_path / "stage2.yaml"
    config.write_text(OFFICIAL_STAGE2_YAML)
    proc = launch("--stage", "2", "--config", str(config), "--dry-run", "--skip-path-check", "teacher_path=teacher")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model_preset"] == "L"  # vit_dec_model_size: large
    assert cfg["optim"]["lr"] == 1e-4 and cfg["optim"]["betas"] == [0.9, 0.99] and cfg["optim"]["weight_decay"] == 1e-4
    assert cfg["optim"]["warmup_steps"] == 10000 and cfg["optim"]["end_lr"] == 1e-5 and cfg["optim"]["max_grad_norm"] == 1.0
    assert cfg["max_steps"] == 800000 and cfg["save_every"] == 25000 and cfg["eval_every"] == 50000 and cfg["log_every"] == 50
    assert cfg["sfvr"]["enabled"] is True and cfg["sfvr"]["replace_prob"] == 0.8
    assert cfg["data"]["batch_size"] == 32 and cfg["data"]["num_workers"] == 12
    assert cfg["data"]["train_shards"] == "imagenet-train-{000000..000320}.tar"
    # run_stage2.sh overrides the yaml on the command line; so do we
    proc = launch("--stage", "2", "--config", str(config), "--dry-run", "--skip-path-check", "teacher_path=teacher",
                  "sfvr.replace_prob=1.0")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["sfvr"]["replace_prob"] == 1.0


def test_short_teacher_run_writes_metrics_and_model(tmp_path: Path, shards: str) -> None:
    run_dir = tmp_path / "run"
    proc = launch("--stage", "teacher", "--run-dir", str(run_dir), "--no-progress", "--threads", "1",
                  *SMALL, f"data.train_shards={shards}", "max_steps=6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done: step 6" in proc.stdout
    steps = [r["step"] for r in _metrics(run_dir) if "train/loss" in r["metrics"]]
    assert steps == [5, 6]
    assert any("eval/psnr" in r["metrics"] for r in _metrics(run_dir))
    assert (run_dir / "model" / "config.json").is_file() and (run_dir / "model" / "model.safetensors").is_file()
    assert json.loads((run_dir / "config.json").read_text())["max_steps"] == 6


def test_sigint_saves_a_checkpoint_and_resume_finishes(tmp_path: Path, shards: str) -> None:
    run_dir = tmp_path / "run"
    options = ["--stage", "teacher", "--run-dir", str(run_dir), "--no-progress", "--threads", "1"]
    overrides = [*SMALL, f"data.train_shards={shards}", "log_every=1", "eval_every=100000", "save_every=100000"]
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), *options, *overrides, "max_steps=100000"], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not any(r["step"] >= 3 for r in _metrics(run_dir)):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no training step logged in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "saving a checkpoint" in stderr
    saved = sorted((run_dir / "checkpoints").glob("checkpoint-*"))
    assert len(saved) == 1 and not (run_dir / "model").exists()
    stopped_at = int(saved[0].name.split("-")[1])
    assert stopped_at >= 3

    again = launch(*options, *overrides, f"max_steps={stopped_at + 3}")
    assert again.returncode == 2 and "already holds checkpoints" in again.stderr  # never silently overwrites a run

    resumed = launch(*options, "--resume", *overrides, f"max_steps={stopped_at + 3}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"done: step {stopped_at + 3}" in resumed.stdout
    steps = [r["step"] for r in _metrics(run_dir) if "train/loss" in r["metrics"]]
    assert steps[-3:] == [stopped_at + 1, stopped_at + 2, stopped_at + 3]
    events = [json.loads(line)["message"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert f"resumed from checkpoint-{stopped_at} at step {stopped_at}" in events
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_skip_path_check_skips_every_path_check(tmp_path: Path) -> None:
    """The docs' command for an official stage-3 file on a machine without its data, teacher, weights or DINO file."""
    official = json.loads((ROOT / "tests" / "fixtures" / "official-configs.json").read_text())["configs"]
    config = tmp_path / "sftok_b64_stage3.yaml"
    config.write_text(yaml.safe_dump(official["sftok_b64_stage3.yaml"], sort_keys=False))
    paths = ["experiment.init_weight=stage2/ema_model/pytorch_model.bin", "stage3.dino_weights=dino_deitsmall16_pretrain.pth"]
    assert not (ROOT / "dino_deitsmall16_pretrain.pth").exists() and not (ROOT / "stage2").exists()

    proc = launch("--stage", "3", "--config", str(config), "--dry-run", "--skip-path-check", *paths)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["stage3"]["discriminator"] == "dino" and cfg["stage3"]["dino_weights"] == "dino_deitsmall16_pretrain.pth"
    assert cfg["init_weights"] == "stage2/ema_model/pytorch_model.bin"

    proc = launch("--stage", "3", "--config", str(config), "--dry-run", *paths)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "stage3.dino_weights: discriminator 'dino' needs the local DINO ViT-S/16 file" in proc.stderr
    assert "got 'dino_deitsmall16_pretrain.pth', which is not a file" in proc.stderr
    assert "'stage2/ema_model/pytorch_model.bin' does not exist" in proc.stderr  # every missing path named at once
