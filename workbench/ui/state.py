"""Per-browser-session UI state as small dataclasses (Gradio deep-copies them per session).

They hold references (paths, cache keys, token ids), never tensors or decoded images: the heavy
results live in the server-side decode cache.
"""
from __future__ import annotations

from dataclasses import dataclass

from workbench.services.model_registry import DEFAULT_CHOICE


@dataclass(frozen=True)
class TokenEdit:
    position: int
    old: int
    new: int


@dataclass
class ReconstructState:
    """The Reconstruct screen: which picture, which model, which tokens are being decoded."""

    source_path: str = ""  # the upload or sample file; re-read so a model change can re-crop it
    source_name: str = ""
    model_choice: str = DEFAULT_CHOICE
    encoded: tuple[int, ...] = ()  # token ids the encoder produced
    tokens: tuple[int, ...] = ()  # token ids being decoded (encoded, possibly edited)
    trace_key: str = ""

    def edits(self) -> list[TokenEdit]:
        return [TokenEdit(i, a, b) for i, (a, b) in enumerate(zip(self.encoded, self.tokens)) if a != b]


@dataclass
class TrainWatch:
    """What the Train screen's status line follows: the last launch (until it settles) or the runs acted on."""

    launch_id: str = ""
    run_ids: tuple[str, ...] = ()
    selected: bool = False  # the launch's runs were put into the run / overlay pickers
    note: str = ""  # what the last action said (cancel, resume, build)
