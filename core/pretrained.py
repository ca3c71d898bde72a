"""Build models from saved folders, weight files or (online) Hugging Face hub ids."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from .checkpoint import (CheckpointError, compare_state_dict, load_weights, official_to_ours, read_model_dir,
                         read_state_dict, save_model)
from .config import ConfigError, TeacherConfig, resolve_config
from .generator import GeneratorConfig, MaskGITGenerator
from .hub import is_hub_id, resolve_hub
from .maskgit_vqgan import MaskGITVQGAN
from .sftok import SFTok
from .revq import ReVQ
from .revq_files import is_revq_source, load_revq
from .titok import TiTok, TiTokConfig, TITOK_PRESETS, is_titok_weights, resolve_titok_config, titok_preset_for


TEACHER_PREFIXES = ("encoder.", "decoder.", "quantize.")


def is_teacher_weights(state: dict[str, torch.Tensor]) -> bool:
    """The released MaskGIT-VQGAN file (``maskgit-vqgan-imagenet-f16-256.bin``, HF ``fun-research/TiTok``):
    a bare state dict of encoder, decoder and one quantiser codebook, the official teacher's key names."""
    keys = official_to_ours(state).keys()
    return {"encoder.conv_in.weight", "quantize.embedding.weight"} <= keys and all(k.startswith(TEACHER_PREFIXES) for k in keys)


def _teacher_config(data: dict[str, Any]) -> TeacherConfig:
    return TeacherConfig(**data)


BUILDERS = {
    "sftok": (lambda cfg: SFTok(resolve_config(cfg))),
    "maskgit_vqgan": (lambda cfg: MaskGITVQGAN(_teacher_config(cfg))),
    "generator": (lambda cfg: MaskGITGenerator(GeneratorConfig.from_dict(cfg))),
    "titok": (lambda cfg: TiTok(resolve_titok_config(cfg))),
}


def model_config_dict(model: nn.Module) -> tuple[str, dict[str, Any]]:
    if isinstance(model, SFTok):
        return "sftok", model.config.to_dict()
    if isinstance(model, MaskGITVQGAN):
        return "maskgit_vqgan", dataclasses.asdict(model.config)
    if isinstance(model, MaskGITGenerator):
        return "generator", model.config.to_dict()
    if isinstance(model, TiTok):
        return "titok", model.config.to_dict()
    raise TypeError(f"cannot save a {type(model).__name__}")


def save_pretrained(model: nn.Module, directory: str | os.PathLike, **extra: Any) -> Path:
    """``config.json`` (model type + config) and ``model.safetensors``."""
    model_type, cfg = model_config_dict(model)
    return save_model(model, directory, model_type, cfg, extra)


def load_pretrained(path: str | os.PathLike, config: Any = None, strict: bool = True) -> nn.Module:
    """A model from a saved folder, a bare weights file plus ``config``, or a hub id (online only).

    Folders written by the official code (config.json holding the training config) are accepted:
    their config is read in the official layout. The official MaskGIT-VQGAN teacher file needs no
    config: it is recognised by its keys and loaded (strictly) as the official-size teacher. TiTok is
    recognised by its keys too: ``tokenizer_titok_{b64,l32}.bin`` as the preset ``latent_tokens``'s shape
    names, a hub folder (``yucornetto/tokenizer_titok_*_imagenet``) by its official config.json. A ReVQ
    release (a folder with ``ckpt.pth``, or that file) goes to :func:`core.revq_files.load_revq`.
    """
    path_str = str(path)
    p = Path(path_str)
    if not p.exists():
        if is_hub_id(path_str):
            p = resolve_hub(path_str)
        else:
            raise CheckpointError(f"{path_str}: no such file or folder")
    if is_revq_source(p):  # ckpt.pth + YAML + preprocessor.pth: several files, its own loader
        return load_revq(p, config=config)
    if p.is_dir():
        meta, state = read_model_dir(p)
        # The TiTok hub folders' config.json is the official training config, without our model_type.
        model_type = meta.get("model_type", "titok" if is_titok_weights(official_to_ours(state)) else "sftok")
        cfg = meta.get("config", meta)
    elif config is None:
        state = read_state_dict(p)
        if is_titok_weights(official_to_ours(state)):  # tokenizer_titok_{b64,l32}.bin: the preset its shapes name
            model_type, cfg = "titok", _titok_preset(state, p)
        elif is_teacher_weights(state):
            model_type, cfg = "maskgit_vqgan", dataclasses.asdict(TeacherConfig())  # the released teacher's shape
        else:
            raise CheckpointError(f"{p}: a bare weights file needs a config (preset name, dict or SFTokConfig); "
                                  "only the MaskGIT-VQGAN teacher file (maskgit-vqgan-imagenet-f16-256.bin) and the "
                                  "TiTok release files (tokenizer_titok_b64.bin, tokenizer_titok_l32.bin) load without one")
    else:
        titok = isinstance(config, TiTokConfig) or (isinstance(config, str) and config in TITOK_PRESETS)
        state, model_type, cfg = read_state_dict(p), "titok" if titok else "sftok", config
    if not isinstance(model_type, str) or model_type not in BUILDERS:
        raise CheckpointError(f"{p}: unknown model_type {model_type!r}; allowed: {sorted(BUILDERS)}")
    if isinstance(cfg, str) and model_type == "sftok":
        from .presets import create_config

        cfg = create_config(cfg)
    config_source = f"{p / 'config.json'}" if p.is_dir() else "config"
    # Shapes first, on the meta device: a config that lies (say a 10^9-entry codebook) must fail on
    # the key/shape report, not by trying to allocate the model it describes.
    with torch.device("meta"):
        skeleton = _build(model_type, cfg, config_source)
    report = compare_state_dict(skeleton, official_to_ours(state))
    if report.wrong_shape or (strict and not report.ok):
        raise CheckpointError(f"{p} does not fit {type(skeleton).__name__} (as its {config_source} describes it): "
                              f"{report.describe()}")
    model = _build(model_type, cfg, config_source)
    load_weights(model, state, strict=strict, source=str(p))
    return model.eval()


def _titok_preset(state: dict[str, torch.Tensor], path: Path) -> str:
    try:
        return titok_preset_for(official_to_ours(state))
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from err


def _build(model_type: str, cfg: Any, source: str) -> nn.Module:
    """The model a config describes; a config that describes no valid model is a checkpoint error."""
    try:
        return BUILDERS[model_type](cfg)
    except (ConfigError, TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{source}: not a valid {model_type} config ({type(err).__name__}: {err})") from err


ModelT = TypeVar("ModelT", bound=nn.Module)

_KIND_NAMES = {SFTok: "an SFTok tokenizer", MaskGITVQGAN: "a MaskGIT-VQGAN teacher", MaskGITGenerator: "a MaskGIT generator",
               TiTok: "a TiTok tokenizer", ReVQ: "a ReVQ tokenizer"}


def load_pretrained_as(path: str | os.PathLike, expected: type[ModelT], field: str = "", **kwargs: Any) -> ModelT:
    """:func:`load_pretrained`, refusing a file or folder that holds another kind of model.

    ``field`` names where the path came from (``teacher_path``, ``--model``) so the error says which
    setting to fix: ``teacher_path runs/x: holds a SFTok, not a MaskGIT-VQGAN teacher``.
    """
    model = load_pretrained(path, **kwargs)
    if not isinstance(model, expected):
        wanted = _KIND_NAMES.get(expected, f"a {expected.__name__}")
        raise CheckpointError(f"{f'{field} ' if field else ''}{path}: holds a {type(model).__name__}, not {wanted}")
    return model


def from_pretrained(path: str | os.PathLike, **kwargs: Any) -> SFTok:
    return load_pretrained_as(path, SFTok, **kwargs)
