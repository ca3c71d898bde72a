"""LPIPS built without downloads: the package's linear heads plus a backbone from a local file.

The ``lpips`` package ships its linear-layer weights but fetches the VGG16/AlexNet backbone from
torchvision at construction. We build the backbone with random weights (no fetch) and then load the
ImageNet weights from a local file: an explicit path, or the standard torch hub cache. When neither
exists, :class:`MissingWeightsError` says exactly which file to put where.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


class MissingWeightsError(FileNotFoundError):
    """Weights a metric or loss needs are not on disk (and are never downloaded)."""


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_backbone_weights(net: str, path: str | os.PathLike | None = None) -> Path:
    """The local backbone file for ``net`` ('vgg' or 'alex'), or a MissingWeightsError naming it."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"lpips net: {net!r} is not one of {sorted(BACKBONE_FILES)}")
    candidates = [Path(path)] if path else []
    candidates.append(hub_checkpoint_dir() / BACKBONE_FILES[net])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = " or ".join(str(c) for c in candidates)
    raise MissingWeightsError(
        f"LPIPS ({net}) needs the torchvision ImageNet backbone file {BACKBONE_FILES[net]!r}, not found at {where}. "
        f"Copy it there (it is torchvision's {'vgg16' if net == 'vgg' else 'alexnet'} IMAGENET1K_V1 weights) "
        "or pass its path; nothing is downloaded.")


def build_lpips(net: str = "vgg", weights_path: str | os.PathLike | None = None) -> nn.Module:
    """A frozen ``lpips.LPIPS`` taking images in [-1, 1]; backbone weights from a local file only."""
    import lpips
    import torchvision

    backbone_file = find_backbone_weights(net, weights_path)
    state = torch.load(str(backbone_file), map_location="cpu", weights_only=True)
    reference = torchvision.models.vgg16() if net == "vgg" else torchvision.models.alexnet()
    reference.load_state_dict(state)
    # Random-init backbone (no download); the real ImageNet weights are copied in just below.
    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    for slice_name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        block = getattr(model.net, slice_name, None)
        if block is None:
            continue
        for index, module in block.named_children():
            module.load_state_dict(reference.features[int(index)].state_dict())
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
