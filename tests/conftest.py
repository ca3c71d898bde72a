"""Suite-wide settings: offline, no analytics, and one torch thread.

The tests use tiny tensors, for which a second intra-op thread gains little and, when other
processes share the two cores, costs up to 10x in thread hand-offs.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)
