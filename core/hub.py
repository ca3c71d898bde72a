"""Hugging Face hub ids, for online users: a name that is not a path here is fetched (never in tests or offline)."""
from __future__ import annotations

from pathlib import Path

from .checkpoint import CheckpointError


def is_hub_id(text: str) -> bool:
    """``owner/name``, not a path: what is looked up on the Hugging Face hub when no such file exists here."""
    return "/" in text and not text.startswith((".", "/")) and text.count("/") == 1


def resolve_hub(name: str) -> Path:
    """The local snapshot of hub repo ``name`` (downloaded once into the HF cache); refused when unreachable."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as err:
        raise CheckpointError(
            f"{name!r} is neither a local path nor a reachable Hugging Face hub repo ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}). Offline, download the repo elsewhere and pass its folder.") from err
