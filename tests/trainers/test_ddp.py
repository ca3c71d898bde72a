"""Data-parallel training as it is launched: ``launch_training.py`` under ``torchrun`` (gloo, CPU).

Known answers: 2 processes at batch b train exactly like 1 process at batch 2b over the same samples
(stage 2, stage 3 with its discriminator, a resume on 2 ranks, two "nodes" on this machine); a 2-rank
run writes its run directory once. The quantiser runs in ``nearest`` mode here: Sinkhorn balances
codes within one process's batch (as the official per-GPU training does), so it is batch-coupled by
design and b + b is not 2b for it.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch

from core import MaskGITVQGAN, SFTok, save_pretrained
from trainers.config import load_config
from trainers.data.loaders import make_train_loader, shard_split_note

from .ddp_fixtures import (ROOT, checkpoint_tensors, env, free_port, max_difference, run, single_process,
                           split_shards, torchrun_command)
from .shard_fixtures import write_shards
from .test_training import SMALL

BATCH = 2  # per process
TOLERANCE = 1e-5
COMMON = ["--no-progress", "--threads", "1"]
SETTINGS = [*SMALL, "model.quantizer_mode=nearest", "data.shuffle=false", "data.random_crop=false", "data.flip=false",
            "data.eval_batch_size=2", "log_every=1", "eval_every=1000", "save_every=3", "optim.warmup_steps=1",
            "optim.schedule_steps=10", "optim.lr=1e-3", "optim.end_lr=1e-4", "eval_num_steps=[2]"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Shards split for 2 ranks and for 1 process, a random teacher and a random stage-2 tokenizer."""
    root = tmp_path_factory.mktemp("ddp")
    shards = split_shards(root / "shards", ranks=2, batch=BATCH, steps=4)
    model_cfg = load_config("2", None, [*SETTINGS, "teacher_path=x", f"data.train_shards={shards['single']}"]).model_config()
    torch.manual_seed(0)
    save_pretrained(MaskGITVQGAN(model_cfg.teacher), root / "teacher")
    save_pretrained(SFTok(model_cfg), root / "stage2")
    return {**shards, "teacher": str(root / "teacher"), "stage2": str(root / "stage2"), "root": str(root)}


def _stage_args(world: dict[str, str], stage: str, run_dir: Path, shards: str, batch: int, *extra: str) -> list[str]:
    args = ["--stage", stage, "--run-dir", str(run_dir), *COMMON, *SETTINGS, f"data.train_shards={shards}",
            f"data.eval_shards={world['single']}", f"data.batch_size={batch}", f"teacher_path={world['teacher']}"]
    if stage == "3":
        args += [f"init_weights={world['stage2']}", "stage3.disc_start=0", "stage3.lpips_weight=0",
                 "stage3.gan_weight=0.1"]  # see the stage-3 test
    return [*args, *extra]


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])


def _records(run_dir: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines() if line.strip()]


def _assert_same_weights(ours: Path, reference: Path, step: int) -> None:
    worst, key = max_difference(checkpoint_tensors(ours, step), checkpoint_tensors(reference, step))
    print(f"max difference at step {step}: {worst:.3g} ({key})")
    assert worst < TOLERANCE, f"step {step}: {key} differs by {worst:.3g}"


@pytest.fixture(scope="module")
def reference_stage2(world: dict[str, str]) -> Path:
    """One process, batch 2b, 4 steps, checkpoints at 3 and 4."""
    run_dir = Path(world["root"]) / "ref2"
    _check(single_process(_stage_args(world, "2", run_dir, world["single"], 2 * BATCH, "max_steps=4")))
    moved, _ = max_difference(checkpoint_tensors(run_dir, 3), checkpoint_tensors(run_dir, 4))
    assert moved > 50 * TOLERANCE  # one step moves weights far beyond the tolerance: the comparisons mean something
    return run_dir


def test_two_ranks_train_like_one_process_at_twice_the_batch_and_resume(world: dict[str, str], reference_stage2: Path,
                                                                         tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp2"
    first = run(torchrun_command(_stage_args(world, "2", run_dir, world["ranks"], BATCH, "max_steps=3"), 2, free_port()))
    _check(first)
    assert first.stdout.count("global batch 4 (x2 ranks") == 1  # printed by the main process only
    assert first.stdout.count("done: step 3") == 1
    _assert_same_weights(run_dir, reference_stage2, 3)
    metrics = _records(run_dir, "metrics.jsonl")
    assert [r["step"] for r in metrics if "train/loss" in r["metrics"]] == [1, 2, 3]  # each step once
    events = [r["message"] for r in _records(run_dir, "events.jsonl")]
    assert sum(m.startswith("finished at step 3") for m in events) == 1
    assert sum(m.startswith("started stage 2 on 2 process(es)") for m in events) == 1
    assert json.loads((run_dir / "config.json").read_text())["distributed"]["global_batch_size"] == 2 * BATCH

    resumed = run(torchrun_command(_stage_args(world, "2", run_dir, world["ranks"], BATCH, "max_steps=4", "--resume"),
                                   2, free_port()))
    _check(resumed)
    _assert_same_weights(run_dir, reference_stage2, 4)  # optimiser, EMA and each rank's data position restored
    steps = [r["step"] for r in _records(run_dir, "metrics.jsonl") if "train/loss" in r["metrics"]]
    assert steps == [1, 2, 3, 4]
    events = [r["message"] for r in _records(run_dir, "events.jsonl")]
    assert events.count("resumed from checkpoint-3 at step 3") == 1
    assert sum(m.startswith("finished at step") for m in events) == 2  # one per launch


def test_stage3_with_discriminator_on_two_ranks_matches_one_process(world: dict[str, str], tmp_path: Path) -> None:
    """The discriminator trains from step 0. Its convolutions feed GroupNorms, which make some gradient
    directions exactly zero; Adam turns the rounding noise there into steps of up to ~1% of the learning
    rate, and the GAN term carries that into the tokenizer (1.5e-5 at gan_weight 0.5, 2e-6 at 0.1 on
    these weights; a single process at 1 vs 2 threads differs the same way). A discriminator left out
    of ``accelerator.prepare`` (gradients not averaged) differs by 2e-3."""
    reference, ddp = tmp_path / "ref3", tmp_path / "ddp3"
    _check(single_process(_stage_args(world, "3", reference, world["single"], 2 * BATCH, "max_steps=3")))
    _check(run(torchrun_command(_stage_args(world, "3", ddp, world["ranks"], BATCH, "max_steps=3"), 2, free_port())))
    weights = checkpoint_tensors(ddp, 3)
    assert any(k.startswith("disc.") for k in weights)  # the discriminator trained and is compared too
    _assert_same_weights(ddp, reference, 3)
    assert [r["step"] for r in _records(ddp, "metrics.jsonl") if "train/discriminator_loss" in r["metrics"]] == [1, 2, 3]


def test_teacher_dead_code_restarts_use_every_ranks_codes(world: dict[str, str], tmp_path: Path) -> None:
    """Restarts at steps 2 and 4 re-seed dead codes from all ranks' usage and encoder outputs, as one process would."""
    reference, ddp = tmp_path / "ref", tmp_path / "ddp"
    extra = ("max_steps=4", "save_every=4", "teacher_train.restart_dead_codes_every=2")
    _check(single_process(_stage_args(world, "teacher", reference, world["single"], 2 * BATCH, *extra)))
    _check(run(torchrun_command(_stage_args(world, "teacher", ddp, world["ranks"], BATCH, *extra), 2, free_port())))
    restarted = [r["metrics"]["train/dead_codes_restarted"] for r in _records(ddp, "metrics.jsonl")
                 if "train/dead_codes_restarted" in r["metrics"]]
    assert len(restarted) == 2 and restarted[0] > 0
    _assert_same_weights(ddp, reference, 4)


def test_two_nodes_on_one_machine_agree_with_one_process(world: dict[str, str], reference_stage2: Path,
                                                        tmp_path: Path) -> None:
    run_dir, port = tmp_path / "nodes", free_port()
    args = _stage_args(world, "2", run_dir, world["ranks"], BATCH, "max_steps=3")
    nodes = [subprocess.Popen(torchrun_command(args, 1, port, nnodes=2, node_rank=k, run_id="two-nodes"),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
             for k in (0, 1)]
    try:
        outputs = [node.communicate(timeout=240) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node, (out, err) in zip(nodes, outputs):
        assert node.returncode == 0, (out[-2000:], err[-4000:])
    assert "on 2 process(es)" in outputs[0][0] + outputs[1][0]
    _assert_same_weights(run_dir, reference_stage2, 3)


def test_a_stalled_rank_fails_the_others_with_a_clear_message() -> None:
    started = time.monotonic()
    proc = run(torchrun_command(["3"], 2, free_port(), script=Path(__file__).with_name("ddp_stall.py")), timeout=100)
    assert proc.returncode != 0
    assert "rank 0 of 2: a collective with the other ranks failed" in proc.stderr
    assert "dist_timeout_s=3s" in proc.stderr
    assert time.monotonic() - started < 60  # not the stalled rank's 120 s: torchrun stops it once rank 0 fails


def test_ranks_read_disjoint_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shards = write_shards(tmp_path, "train", 16, size=32, per_shard=4, seed=0)  # 4 real shards
    seen = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        batches = iter(make_train_loader(shards, 32, 4, seed=1, shuffle_buffer=8))
        seen[rank] = {key for _ in range(6) for key in next(batches)["key"]}
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == {f"{i:08d}" for i in range(16)}


def test_uneven_shard_splits_are_named_up_front(tmp_path: Path) -> None:
    shards = write_shards(tmp_path, "train", 12, size=32, per_shard=4, seed=0)  # 3 shards
    assert shard_split_note(shards, 3) is None and shard_split_note(shards, 1) is None
    assert "1 reader(s) get one shard more" in shard_split_note(shards, 2)
    assert "every reader reads every shard" in shard_split_note(shards, 4)
