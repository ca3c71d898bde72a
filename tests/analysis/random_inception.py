"""A randomly initialised Inception saved in torch-fidelity's weights-file format.

The real 2015-12-05 weights cannot ship; a random network of the same architecture, saved as a plain
state dict under the real file name, runs every line of the rFID / IS code path (loading included).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis.fid import INCEPTION_WEIGHTS_FILE


def save_random_inception(path: Path, seed: int = 0) -> Path:
    """Write a random-init ``FeatureExtractorInceptionV3`` state dict to ``path``."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({}, path)  # the constructor insists on reading a file; its (empty) state is ignored below
    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, state, strict=True: None  # keep the random init
    try:
        torch.manual_seed(seed)
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
    calibrate_batch_norms(net, seed)
    torch.save(net.state_dict(), path)
    return path


@torch.no_grad()
def calibrate_batch_norms(net: torch.nn.Module, seed: int) -> None:
    """Set every BatchNorm's running statistics from one batch of noise images, so activations neither
    vanish nor explode through 90-odd random layers (features of order 1, as with the real weights)."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    net.train()
    noise = torch.randint(0, 256, (4, 3, 64, 64), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    net(noise)
    net.eval()


@pytest.fixture(scope="session")
def random_inception(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a random Inception weights file named like the real one."""
    return save_random_inception(tmp_path_factory.mktemp("inception") / INCEPTION_WEIGHTS_FILE)
