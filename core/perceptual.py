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


def find_local_weights(filename: str, path: str | os.PathLike | None, needed_by: str, what: str) -> Path:
    """``path`` if given and present, else ``filename`` in the torch hub cache; otherwise a
    MissingWeightsError saying which file ``needed_by`` wants, what it is, and where to put it."""
    candidates = [Path(path)] if path else []
    candidates.append(hub_checkpoint_dir() / filename)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = " or ".join(str(c) for c in candidates)
    raise MissingWeightsError(
        f"{needed_by} needs the weights file {filename!r}, not found at {where}. Copy it to "
        f"{hub_checkpoint_dir() / filename} or pass its path ({what}); nothing is downloaded.")


def find_backbone_weights(net: str, path: str | os.PathLike | None = None) -> Path:
    """The local backbone file for ``net`` ('vgg' or 'alex'), or a MissingWeightsError naming it."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"lpips net: {net!r} is not one of {sorted(BACKBONE_FILES)}")
    model = "vgg16" if net == "vgg" else "alexnet"
    return find_local_weights(BACKBONE_FILES[net], path, f"LPIPS ({net})",
                              f"it is torchvision's {model} IMAGENET1K_V1 ImageNet backbone")


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
