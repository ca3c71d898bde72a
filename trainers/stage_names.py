"""The training stages, by the names the CLI, configs, run records and the Train screen all use.

A module of its own, importing nothing, so light entry points (the job manager's run records) can
know the stages without importing torch.
"""
from __future__ import annotations

#: ``teacher`` (MaskGIT-VQGAN), ``1`` warm-up, ``2`` SFVR, ``3`` decoder fine-tune, ``generator`` (MaskGIT over tokens).
STAGES: tuple[str, ...] = ("teacher", "1", "2", "3", "generator")
