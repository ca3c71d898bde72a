"""Property tests over every training-config field: invalid values are refused by ``load_config``
(what the launcher's ``--dry-run`` and so the job manager run before queueing) with the dotted field
named; valid ones resolve to exactly the values given."""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import ConfigError
from trainers.config import CHOICES, TrainConfig, load_config

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Which paths each stage needs to validate (they are not opened by validation).
STAGE_BASE = {
    "teacher": {},
    "1": {"teacher_path": "teacher"},
    "2": {"teacher_path": "teacher"},
    "3": {"init_weights": "stage2"},
    "generator": {"tokenizer_path": "tokenizer"},
}
POSITIVE = {"max_steps", "log_every", "eval_every", "save_every", "keep_last", "data.batch_size",
            "data.eval_batch_size", "sfvr.context_steps", "dist_timeout_s"}
UNIT = {"sfvr.replace_prob", "loss.label_smoothing", "generator_train.label_smoothing", "generator_train.class_dropout"}
FREE_TEXT = {"data.train_shards", "data.eval_shards", "teacher_path", "init_weights", "tokenizer_path", "lpips_weights",
             "stage3.dino_weights"}
SKIPPED = {"stage", "model", "generator"}  # stage is the CLI's; model/generator overrides are tested below


def leaf_fields(cls: type = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Dotted name -> type hint of every scalar/tuple field of the config tree."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(leaf_fields(hint, f"{prefix}{f.name}."))
        elif f"{prefix}{f.name}" not in SKIPPED:
            out[f"{prefix}{f.name}"] = hint
    return out


FIELDS = leaf_fields()
FINITE = st.floats(min_value=0, max_value=1e3, allow_nan=False, allow_infinity=False)


def valid_values(name: str, hint: Any) -> st.SearchStrategy:
    if name in CHOICES:
        allowed = [c for c in CHOICES[name] if not (name == "stage3.discriminator" and c == "dino")]
        return st.sampled_from(allowed)
    if name == "optim.betas":
        return st.tuples(*[st.floats(0, 0.999, allow_nan=False)] * 2)
    if name == "eval_num_steps":
        return st.lists(st.integers(1, 32), min_size=1, max_size=4).map(tuple)
    if name == "seed":
        return st.integers(0, 2**32 - 1)
    if name in FREE_TEXT:
        return st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(1 if name in POSITIVE else 0, 10**6)
    if name in UNIT:
        return st.floats(0, 1, allow_nan=False)
    return FINITE


def invalid_values(name: str, hint: Any) -> st.SearchStrategy:
    wrong_type = st.sampled_from([[1, 2], {"a": 1}]) if hint is str else st.sampled_from(["abc", [1, 2], {"a": 1}])
    if name in CHOICES:
        return st.one_of(st.text(min_size=1, max_size=8).filter(lambda v: v not in CHOICES[name]), wrong_type,
                         st.booleans())
    if name == "optim.betas":
        return st.one_of(st.tuples(st.floats(1.0, 10.0), st.floats(0, 0.9)), st.tuples(st.floats(0, 0.9), st.floats(-5, -0.01)),
                         st.lists(st.floats(0, 0.9), min_size=3, max_size=4), st.just([float("nan"), 0.9]), wrong_type)
    if name == "eval_num_steps":
        return st.one_of(st.just([]), st.lists(st.integers(33, 1000), min_size=1, max_size=2),
                         st.lists(st.integers(-100, 0), min_size=1, max_size=2), st.just([1.5]), wrong_type)
    if name == "seed":
        return st.one_of(st.integers(-10**6, -1), st.integers(2**32, 2**40), st.just(1.5), wrong_type)
    if name in FREE_TEXT:
        if name in ("data.train_shards",):
            return st.one_of(st.just(""), wrong_type)
        return wrong_type
    if hint is bool:
        return st.one_of(st.integers(2, 9), st.just("maybe"), st.just([True]))
    if hint is int:
        below = st.integers(-10**6, 0 if name in POSITIVE else -1)
        return st.one_of(below, st.floats(0.1, 0.9), st.just(float("inf")), wrong_type)
    if name in UNIT:
        return st.one_of(st.floats(1.0001, 100), st.floats(-100, -0.0001), st.just(float("nan")), wrong_type)
    return st.one_of(st.floats(-1e6, -1e-9), st.sampled_from([float("nan"), float("inf")]), wrong_type)


def override(name: str, value: Any) -> str:
    """``key=value`` as typed in the UI's override box (JSON is YAML, so lists and floats survive)."""
    return f"{name}={json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)}"


def base_overrides(stage: str) -> list[str]:
    return [override(k, v) for k, v in {"data.train_shards": "train-{000..003}.tar", **STAGE_BASE[stage]}.items()]


def _lookup(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@st.composite
def valid_config(draw) -> tuple[str, dict[str, Any]]:
    stage = draw(st.sampled_from(list(STAGE_BASE)))
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=8, unique=True))
    values = {n: draw(valid_values(n, FIELDS[n])) for n in names}
    if "optim.end_lr" in values or "optim.lr" in values:  # cross-field rule: end_lr <= lr
        lr = values.setdefault("optim.lr", draw(st.floats(1e-8, 1.0)))
        values["optim.end_lr"] = lr * draw(st.floats(0, 1))
    if values.get("data.use_proxy_cache"):
        values["data.random_crop"] = False
    if stage == "3" and values.get("stage3.code_ce_weight"):  # cross-field rule: the code CE needs the teacher
        values["stage3.code_ce_weight"] = 0.0
    if stage == "3" and values.get("sfvr.replace_prob", 1.0) < 1:  # ... and so do the teacher's codes in context
        values["sfvr.replace_prob"] = 1.0
    if stage not in ("1", "2"):  # cross-field rule: decoder_init changes a stage-1/2 decoder only
        values.update({n: False for n in values if n.startswith("decoder_init.")})
    if values.get("model_family") == "titok" and (stage != "1" or any(values[n] for n in values
                                                                     if n.startswith("decoder_init."))):
        values["model_family"] = "sftok"  # cross-field rule: a TiTok trains stage 1 only, from scratch
    return stage, values


@st.composite
def one_invalid_field(draw) -> tuple[str, str, Any, dict[str, Any]]:
    stage, values = draw(valid_config())
    name = draw(st.sampled_from(sorted(FIELDS)))
    values.pop(name, None)
    if name in ("optim.lr", "optim.end_lr"):  # keep the other one from tripping the cross-field rule
        values.pop("optim.lr", None), values.pop("optim.end_lr", None)
    if name == "data.random_crop":
        values.pop("data.use_proxy_cache", None)
    return stage, name, draw(invalid_values(name, FIELDS[name])), values


def test_every_field_is_covered():
    assert len(FIELDS) >= 45
    assert {"optim.betas", "seed", "eval_num_steps", "stage3.discriminator", "data.batch_size"} <= set(FIELDS)


@SETTINGS
@given(valid_config())
def test_valid_configs_resolve_to_the_values_given(example):
    from tests.robustness.tally import TALLY

    stage, values = example
    cfg = load_config(stage, None, [*base_overrides(stage), *(override(k, v) for k, v in values.items())])
    TALLY.input("configs (valid)")
    assert cfg.stage == stage
    for name, value in values.items():
        got = _lookup(cfg, name)
        if isinstance(value, float):
            assert got == value or math.isclose(got, value, rel_tol=1e-12), (name, got, value)
        else:
            assert got == (tuple(value) if isinstance(got, tuple) else value), (name, got, value)


@SETTINGS
@given(one_invalid_field())
def test_every_invalid_value_is_refused_naming_its_field(example):
    from tests.robustness.tally import TALLY

    stage, name, bad, values = example
    overrides = [*base_overrides(stage), *(override(k, v) for k, v in values.items()), override(name, bad)]
    TALLY.input("configs (invalid)")
    with pytest.raises(ConfigError) as err:
        load_config(stage, None, overrides)
    assert name in str(err.value), f"{name}={bad!r} refused without naming the field: {err.value}"


@SETTINGS
@given(st.sampled_from(sorted(STAGE_BASE)),
       st.text(st.characters(categories=["Ll"]), min_size=3, max_size=10),
       st.sampled_from(["", "optim.", "data.", "sfvr.", "stage3."]))
def test_unknown_fields_are_refused_by_name(stage, name, section):
    from tests.robustness.tally import TALLY

    dotted = section + name
    if dotted in FIELDS or dotted in {f.name for f in dataclasses.fields(TrainConfig)}:
        return
    TALLY.input("configs (invalid)")
    with pytest.raises(ConfigError, match=f"{dotted}: unknown field"):
        load_config(stage, None, [*base_overrides(stage), f"{dotted}=1"])


@pytest.mark.parametrize("text, field", [
    ("model.codebook_size=-3", "model.codebook_size"), ("model.bogus=1", "model."),
    ("model=5", "model"), ("data=5", "data"), ("optim.lr.x=1", "optim.lr"), ("sfvr=[1]", "sfvr"),
    ("max_steps=.nan", "max_steps"), ("optim.lr=1e400", "optim.lr"), ("eval_num_steps=[1, abc]", "eval_num_steps[1]"),
])
def test_structural_mistakes_are_named(text, field, tally):
    tally.input("configs (invalid)")
    with pytest.raises(ConfigError) as err:
        load_config("1", None, [*base_overrides("1"), text])
    assert field in str(err.value)


def test_invalid_configs_are_refused_before_anything_is_queued(tmp_path, tally):
    """Through the job manager and the real launcher's --dry-run: no run row, no run folder."""
    from workbench.runs.manager import InvalidConfigError, JobManager

    manager = JobManager(tmp_path / "ws", start=False)
    data = tmp_path / "data"  # the launcher checks that paths exist, so the good point gets real ones
    (data / "teacher").mkdir(parents=True)
    for i in range(2):
        (data / f"train-{i}.tar").write_bytes(b"")
    paths = [f"data.train_shards={data}/train-{{0..1}}.tar", f"teacher_path={data}/teacher"]
    try:
        grid = {"seed": [5, -1]}  # one good point, one bad: the sweep is all or nothing
        with pytest.raises(InvalidConfigError) as err:
            manager.submit_sweep("2", None, grid, paths)
        tally.input("configs (job manager)")
        message = str(err.value)
        assert "[1] (" in message and "seed=-1" in message and "seed: must be in [0, 2**32 - 1], got -1" in message
        assert "[0] (" not in message
        assert manager.store.list_runs() == [] and manager.store.list_sweeps() == []
        assert list((tmp_path / "ws" / "runs").iterdir()) == []
    finally:
        manager.close()
