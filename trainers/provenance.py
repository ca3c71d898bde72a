"""Which code a run came from: one spelling for checkpoints, exported models and run records.

``<full sha>`` of HEAD, with ``+dirty`` when tracked files differ from it, so a checkpoint and the
run record that launched it can be compared as strings. ``None`` outside a git checkout.
"""
from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def code_version(cwd: str | Path = REPO_ROOT) -> str | None:
    """``<sha>`` or ``<sha>+dirty`` of the git checkout at ``cwd``; None when git or the checkout is missing."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return None
