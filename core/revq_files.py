"""ReVQ's released files, loaded strictly: ``ckpt.pth`` (``quantizer`` + ``decoder`` state dicts), a YAML
config (``512T_NC=16384.yaml``, ``256T_NC=65536.yaml``, ``256T_NC=262144.yaml``), ``preprocessor.pth``
(GitHub ``ckpt/preprocessor.pth``) and the DC-AE folder (``mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers``).

Every part is compared key by key against the model its config describes (built on the meta device, so
a 2 GiB codebook is allocated once, when its tensors are assigned); a mismatch names the file, the part
and the keys. Pickles are read with ``weights_only=True``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .checkpoint import CheckpointError, _all_finite, compare_state_dict, read_state_dict
from .config import ConfigError
from .hub import is_hub_id, resolve_hub
from .revq import REVQ_PRESETS, ReVQ, ReVQConfig, revq_from_yaml

CKPT_NAMES = ("ckpt.pth",)
PREPROCESSOR_NAME = "preprocessor.pth"
DCAE_REPO = "mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers"
DCAE_FOLDERS = ("dc_ae", "dc-ae-f32c32-sana-1.1-diffusers")  # the official ${workspace}/ckpt/dc_ae, or the repo's name
DCAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
DCAE_INDEX = "diffusion_pytorch_model.safetensors.index.json"  # the shards of a model over diffusers' shard size
# diffusers' AutoencoderDC arguments of the f32c32 SANA DC-AE (diffusers' scripts/convert_dcae_to_diffusers.py, written
# for dc-ae-f32c32-sana-1.0, whose decoder sana-1.1 retrains; the 1.1 config.json itself was not read here):
# 256 px -> (32, 8, 8) in six stages, EfficientViT blocks with 5x5 multiscale attention in the last three.
DCAE_SANA_LAYOUT = dict(
    in_channels=3, latent_channels=32, attention_head_dim=32,
    encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
    decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
    encoder_block_out_channels=(128, 256, 512, 512, 1024, 1024), decoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
    encoder_layers_per_block=(2, 2, 2, 3, 3, 3), decoder_layers_per_block=(3, 3, 3, 3, 3, 3),
    encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)), decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
    downsample_block_type="conv", upsample_block_type="interpolate", decoder_norm_types="rms_norm",
    decoder_act_fns="silu", scaling_factor=0.41407)


def is_revq_source(path: Path) -> bool:
    """A ReVQ release: a folder holding ``ckpt.pth`` (and no config.json of ours), or a ``*ckpt.pth`` file."""
    if path.is_dir():
        return any((path / name).is_file() for name in CKPT_NAMES) and not (path / "config.json").is_file()
    return path.name.endswith("ckpt.pth")


def read_revq_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(quantizer, decoder) state dicts of a ``ckpt.pth``; optimiser/scheduler/epoch entries are ignored."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: could not be read as a weights-only torch checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:300]})") from err
    parts = []
    for part in ("quantizer", "decoder"):
        state = data.get(part) if isinstance(data, Mapping) else None
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            found = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise CheckpointError(f"{path}: a ReVQ ckpt.pth holds 'quantizer' and 'decoder' state dicts; found {found}")
        parts.append(dict(state))
    return parts[0], parts[1]


def read_revq_yaml(path: Path) -> ReVQConfig:
    import yaml  # plain YAML: the ${...} interpolations sit in paths ReVQ does not need

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f"{path}: not a readable YAML file ({err})") from err
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: expected a YAML mapping with a 'model' section")
    try:
        return revq_from_yaml(data)
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a ReVQ config ({err})") from err


def preset_for(quantizer: Mapping[str, torch.Tensor], decoder: Mapping[str, torch.Tensor]) -> ReVQConfig:
    """The released config whose codebook and rectifier shapes a checkpoint has (when no YAML comes with it)."""
    codebook = tuple(quantizer["embeddings"].shape) if "embeddings" in quantizer else None
    width = decoder["conv_in.weight"].shape[0] if "conv_in.weight" in decoder else None
    for cfg in REVQ_PRESETS.values():
        if codebook == (cfg.tokens, cfg.num_code, cfg.code_dim) and width == cfg.rectifier_width:
            return cfg
    names = ", ".join(REVQ_PRESETS)
    raise CheckpointError(f"codebook {codebook} with rectifier width {width} is none of the released ReVQ configs "
                          f"({names}); put its YAML config beside ckpt.pth")


def _find_yaml(folder: Path) -> Path | None:
    found = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))
    if len(found) > 1:
        raise CheckpointError(f"{folder}: several YAML configs ({', '.join(p.name for p in found)}); pass config=")
    return found[0] if found else None


def _load_part(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str = "") -> None:
    """Strict: every key and shape of ``module`` (built on the meta device), finite values; then assigned."""
    report = compare_state_dict(module, state)
    if not report.ok:
        what = what or f"ReVQ's {type(module).__name__}"
        raise CheckpointError(f"{source} does not fit {what}: {report.describe()}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not _all_finite(v)]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} tensor(s) contain NaN or Inf, e.g. {bad[:5]}")
    module.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True, assign=True)


def load_dcae(folder: str | os.PathLike) -> nn.Module:
    """The DC-AE from a local diffusers folder (``config.json`` + weights), or online from a hub id
    (``mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers``) when no such folder exists here.

    Loaded strictly, as ReVQ's own files are: diffusers' ``from_pretrained`` would fill weights missing from the
    file with a fresh random init and only warn, so the module is built from the config on the meta device and
    every key of the weight file(s) is compared with it; a mismatch names the keys."""
    folder = Path(folder)
    if not folder.exists() and is_hub_id(str(folder)):
        folder = resolve_hub(str(folder))
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: no DC-AE here; download {DCAE_REPO} (config.json + weights) into this folder")
    try:
        from diffusers import AutoencoderDC
    except ImportError as err:
        raise CheckpointError(f"ReVQ's DC-AE ({folder}) loads through diffusers' AutoencoderDC, and the diffusers "
                              "package is not installed: pip install diffusers, or pass your own DC-AE module") from err
    try:
        config = AutoencoderDC.load_config(str(folder), local_files_only=True)
        with torch.device("meta"):
            model = AutoencoderDC.from_config(config)
    except Exception as err:
        raise CheckpointError(f"{folder / 'config.json'}: not a diffusers AutoencoderDC config "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from err
    state, source = _read_dcae_weights(folder)
    _load_part(model, state, source, "diffusers' AutoencoderDC")
    return model.eval().requires_grad_(False)


def _read_dcae_weights(folder: Path) -> tuple[dict[str, torch.Tensor], str]:
    """One weight file, or the shards a ``.index.json`` lists (how diffusers saves models over its shard size)."""
    index = folder / DCAE_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{index}: not a diffusers shard index ({type(err).__name__}: {err})") from err
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(read_state_dict(folder / Path(shard).name))
        return state, str(index)
    weights = next((folder / n for n in DCAE_WEIGHTS if (folder / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder}: a DC-AE config.json but no weights ({' or '.join(DCAE_WEIGHTS)}); "
                              f"download them from {DCAE_REPO}")
    return read_state_dict(weights), str(weights)


def load_revq(path: str | os.PathLike, config: ReVQConfig | str | os.PathLike | None = None,
              preprocessor: str | os.PathLike | None = None,
              autoencoder: nn.Module | str | os.PathLike | None = None) -> ReVQ:
    """ReVQ from its release: ``path`` is a folder holding ``ckpt.pth`` (+ the YAML, ``preprocessor.pth`` and
    optionally the DC-AE folder ``dc_ae/``) or the ``ckpt.pth`` itself, files found beside it.

    ``config``: a preset name, a ReVQConfig or a YAML path (default: the YAML beside the checkpoint, else the
    released config its shapes match). ``autoencoder``: a module or a DC-AE folder; without one the model
    loads but only its latent-level calls work.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    ckpt = next((folder / n for n in CKPT_NAMES if (folder / n).is_file()), path) if path.is_dir() else path
    quantizer_state, decoder_state = read_revq_checkpoint(ckpt)
    cfg = _resolve_config(config, folder, quantizer_state, decoder_state)
    pre_path = Path(preprocessor) if preprocessor is not None else folder / PREPROCESSOR_NAME
    if not pre_path.is_file():
        raise CheckpointError(f"{pre_path}: ReVQ needs its latent statistics file preprocessor.pth "
                              "(ckpt/preprocessor.pth in the Neur-IO/ReVQ GitHub repository)")
    pre_state = read_state_dict(pre_path)
    with torch.device("meta"):
        model = ReVQ(cfg)
    _load_part(model.quantizer, quantizer_state, f"{ckpt} ['quantizer']")
    _load_part(model.decoder, decoder_state, f"{ckpt} ['decoder']")
    _load_part(model.preprocessor, pre_state, str(pre_path))
    if isinstance(autoencoder, (str, os.PathLike)):
        autoencoder = load_dcae(autoencoder)
    elif autoencoder is None:
        local = next((folder / n for n in DCAE_FOLDERS if (folder / n / "config.json").is_file()), None)
        autoencoder = load_dcae(local) if local is not None else None
    model.attach_autoencoder(autoencoder)
    return model.eval()


def _resolve_config(config: Any, folder: Path, quantizer_state: Mapping[str, torch.Tensor],
                    decoder_state: Mapping[str, torch.Tensor]) -> ReVQConfig:
    if isinstance(config, ReVQConfig):
        return config
    if isinstance(config, str) and config in REVQ_PRESETS:
        return REVQ_PRESETS[config]
    if config is not None:
        return read_revq_yaml(Path(config))
    found = _find_yaml(folder)
    return read_revq_yaml(found) if found is not None else preset_for(quantizer_state, decoder_state)
