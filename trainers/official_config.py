"""Translate an official SFTok YAML (plus official-layout overrides) into assignments to our fields.

Order, as the official scripts do it: overrides are applied to the official document first (the
way ``OmegaConf.from_cli`` merges them), then ``${...}`` interpolations are resolved, then every key
is checked against :data:`trainers.official_schema.OFFICIAL_KEYS` (unknown keys and wrong types
are refused naming the official key) and translated. Range checks are left to our own validation;
``Translation.origins`` lets the caller report those under the official key the user wrote.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from core.config import ConfigError

from .official_schema import OFFICIAL_KEYS, OFFICIAL_SECTIONS, Derived, Fixed, Ignored, Maps, NoneType, Same
from .suggest import unknown_key

SECTIONS = frozenset(".".join(k.split(".")[:i]) for k in OFFICIAL_KEYS for i in range(1, k.count(".") + 1))
INTERPOLATION = re.compile(r"\$\{([^}]+)\}")
TEACHER_FACTOR = 16  # the official MaskGIT-VQGAN downsamples 16x: a 256 px crop gives a 16x16 code grid


@dataclass
class Translation:
    assignments: list[tuple[str, Any]] = field(default_factory=list)  # (our dotted field, value), in order
    origins: dict[str, str] = field(default_factory=dict)  # our field -> the official key it came from
    ignored: list[str] = field(default_factory=list)  # official keys present that mean nothing here
    notes: list[str] = field(default_factory=list)  # what the launcher prints at start

    def assign(self, target: str, value: Any, origin: str | None) -> None:
        self.assignments.append((target, value))
        if origin is not None:
            self.origins[target] = origin


def is_official_layout(doc: Mapping[str, Any]) -> bool:
    """An official document has an official-only section, or ``model.vq_model`` / ``model.img_generator``."""
    model = doc.get("model")
    return any(str(k) in OFFICIAL_SECTIONS for k in doc) or (
        isinstance(model, Mapping) and any(k in model for k in ("vq_model", "img_generator", "model_type")))


def translate_official(doc: Mapping[str, Any], stage: str,
                       overrides: Sequence[tuple[list[str], Any]] = ()) -> Translation:
    """Assignments to our fields for ``stage`` from an official document and official-layout overrides."""
    if stage == "teacher":
        raise ConfigError("stage: the official layout has no teacher stage (the official code downloads a trained "
                          "MaskGIT-VQGAN); write a run file in our layout for --stage teacher")
    values = _resolved(_flatten(_with_overrides(doc, overrides)))
    out = Translation()
    for path, value in values.items():
        _apply_rule(path, value, stage, values, out)
    _translate_derived(values, out)
    if out.ignored:
        out.notes.insert(0, "ignored (official keys with no meaning here; see docs/official-code.md): " + ", ".join(sorted(out.ignored)))
    return out


# -- reading the document --------------------------------------------------------------------------
def _with_overrides(doc: Mapping[str, Any], overrides: Sequence[tuple[list[str], Any]]) -> dict[str, Any]:
    out = copy.deepcopy(dict(doc))
    for path, value in overrides:
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path[:i + 1])}: holds {child!r}, not a section, so "
                                  f"{'.'.join(path)} cannot be set")
            node = child
        node[path[-1]] = value
    return out


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Official key -> value; unknown keys are refused with the nearest official key suggested."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if path in OFFICIAL_KEYS:
            out[path] = value
        elif path in SECTIONS:
            if value is None:  # an empty section (``training:`` with nothing under it)
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a section (mapping), got {value!r}")
            out.update(_flatten(value, f"{path}."))
        else:
            siblings = [k for k in (*OFFICIAL_KEYS, *SECTIONS) if k.startswith(prefix) and k.count(".") == path.count(".")]
            raise ConfigError(unknown_key(path, [*OFFICIAL_KEYS, *SECTIONS], "unknown key in the official layout",
                                          allowed=siblings))
    return out


def _resolved(values: dict[str, Any]) -> dict[str, Any]:
    """Resolve whole-value ``${key}`` interpolations (the official files use them for copies), then type-check."""
    def resolve(path: str, depth: int = 0) -> Any:
        value = values[path]
        match = INTERPOLATION.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            return value
        target = match.group(1).strip()
        if target not in values or depth > 8:
            raise ConfigError(f"{path}: {value} points at no value in this config")
        return resolve(target, depth + 1)

    return {path: _typed(path, resolve(path), OFFICIAL_KEYS[path].kinds) for path in values}


def _typed(path: str, value: Any, kinds: tuple[type, ...]) -> Any:
    """The value as one of ``kinds`` (numbers may come as YAML 1.1 strings such as "1e-4"), else an error naming ``path``."""
    if bool in kinds and isinstance(value, bool):
        return value
    if NoneType in kinds and value is None:
        return None
    number = _number(value)
    if int in kinds and number is not None and float(number).is_integer():
        return int(number)
    if float in kinds and number is not None:
        return float(number)
    if str in kinds and isinstance(value, str):
        return value
    expected = {bool: "true/false", int: "an integer", float: "a number", str: "a string", NoneType: "null"}
    raise ConfigError(f"{path}: expected {' or '.join(expected[k] for k in kinds)}, got {value!r}")


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


# -- translating -------------------------------------------------------------------------------
def _show(value: Any) -> str:
    """A value as YAML writes it (true, null, 'text'), for messages."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value)


def _apply_rule(path: str, value: Any, stage: str, values: Mapping[str, Any], out: Translation) -> None:
    rule = OFFICIAL_KEYS[path].rule_for(stage)
    if isinstance(rule, Maps):
        if rule.values is not None:
            if value not in rule.values:
                raise ConfigError(f"{path}: {_show(value)} is not one of {list(rule.values)}")
            value = rule.values[value]
        out.assign(rule.target, value, path)
    elif isinstance(rule, Fixed):
        if value != rule.value or type(value) is not type(rule.value):
            raise ConfigError(f"{path}: only {_show(rule.value)} is supported here ({rule.why}), got {_show(value)}")
    elif isinstance(rule, Same):
        if rule.other in values and values[rule.other] != value:
            raise ConfigError(f"{path}: must equal {rule.other} ({_show(values[rule.other])}), got {_show(value)}")
    elif isinstance(rule, Ignored):
        out.ignored.append(path)
    else:
        assert isinstance(rule, Derived)


def _translate_derived(values: Mapping[str, Any], out: Translation) -> None:
    """Keys translated together: decoder size -> preset, grid size, gradient accumulation -> batch."""
    out.assign("model_preset", "B", None)  # the official sizes; the mapped fields refine them
    out.assign("generator_preset", "B", None)
    for path in ("model.vq_model.vit_dec_model_size", "model.decoder.vit_dec_model_size"):  # the decoder's own wins
        if path in values:
            out.assign("model.decoder", values[path], path)
            out.assign("model_preset", "L" if values[path] == "large" else "B", path)
    if "model.decoder.num_proxy_codes" in values:
        crop = values.get("dataset.preprocessing.crop_size", 256)
        grid = (crop // TEACHER_FACTOR) ** 2
        if values["model.decoder.num_proxy_codes"] != grid:
            raise ConfigError(f"model.decoder.num_proxy_codes: must be (crop_size / {TEACHER_FACTOR}) ** 2 = {grid}, "
                              f"the teacher's code grid, got {values['model.decoder.num_proxy_codes']}")
    _fold_accumulation(values, out)


def _fold_accumulation(values: Mapping[str, Any], out: Translation) -> None:
    """N accumulation steps of B images = one step of N*B images: same optimiser steps and effective batch."""
    steps = values.get("training.gradient_accumulation_steps", 1)
    if steps < 1:
        raise ConfigError(f"training.gradient_accumulation_steps: must be >= 1, got {steps}")
    if steps == 1:
        return
    if "training.per_gpu_batch_size" not in values:
        raise ConfigError("training.gradient_accumulation_steps: folds into training.per_gpu_batch_size, which is not set")
    batch = values["training.per_gpu_batch_size"]
    out.assign("data.batch_size", batch * steps, "training.per_gpu_batch_size")
    out.notes.append(f"training.gradient_accumulation_steps={steps}: folded into data.batch_size = {batch} x {steps} = "
                     f"{batch * steps} images per optimiser step (same effective batch in one pass; more memory)")

