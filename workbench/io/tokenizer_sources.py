"""Every tokenizer a workspace holds, found by its files alone (no weights are read to list them).

``core.tokenizer.load_tokenizer`` reads four families from several layouts: our saved folders
(``config.json`` naming ``model_type``), the official folders whose ``config.json`` is a training config
(SFTok, and the TiTok hub folders: told apart by the key names in the ``model.safetensors`` header), bare
release files (``tokenizer_titok_{b64,l32}.bin``, the MaskGIT-VQGAN teacher's ``.bin``) and ReVQ release
folders (``ckpt.pth`` and no ``config.json``). A picker lists what this finds; loading checks it strictly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.checkpoint import official_to_ours
from core.revq_files import is_revq_source
from core.titok import RELEASE_FILES, is_titok_weights

from workbench.io.workspace import MODEL_CONFIG, Workspace, model_type_of

FAMILY_NAMES = {"sftok": "SFTok", "maskgit_vqgan": "MaskGIT-VQGAN teacher", "titok": "TiTok", "revq": "ReVQ"}
TEACHER_RELEASE_FILE = "maskgit-vqgan-imagenet-f16-256.bin"
# Bare release files that load without a config, by name -> family.
RELEASE_FILE_FAMILIES = {**{name: "titok" for name in RELEASE_FILES if name.endswith(".bin")},
                         TEACHER_RELEASE_FILE: "maskgit_vqgan"}


@dataclass(frozen=True)
class TokenizerSource:
    """A folder or file that holds one tokenizer, and which family it is."""

    path: Path
    family: str  # a key of FAMILY_NAMES

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES[self.family]


def _declares_model_type(folder: Path) -> bool:
    try:
        meta = json.loads((folder / MODEL_CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "model_type" in meta


def _header_keys(path: Path) -> list[str]:
    """Tensor names of a safetensors file from its header (no tensor is read); [] when unreadable."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception:  # a broken file is listed as what its config says; loading names the fault
        return []


def folder_family(folder: Path) -> str | None:
    """The tokenizer family a folder holds, or None (not a model folder, or a generator)."""
    if is_revq_source(folder):
        return "revq"
    declared = model_type_of(folder)
    if declared is None:
        return None
    if not _declares_model_type(folder):  # an official training config: SFTok's, or a TiTok hub folder's
        keys = _header_keys(folder / "model.safetensors") if (folder / "model.safetensors").is_file() else []
        return "titok" if keys and is_titok_weights(official_to_ours(dict.fromkeys(keys))) else "sftok"
    return declared if declared in FAMILY_NAMES else None


def find_tokenizers(workspace: Workspace, limit: int = 200) -> list[TokenizerSource]:
    """Tokenizer folders and release files under the workspace, breadth first, at most ``limit``."""
    found: list[TokenizerSource] = []
    for folder in workspace.walk():
        family = folder_family(folder)
        if family is not None:
            found.append(TokenizerSource(folder, family))
        elif folder.is_dir():
            found += [TokenizerSource(folder / name, fam) for name, fam in sorted(RELEASE_FILE_FAMILIES.items())
                      if (folder / name).is_file()]
        if len(found) >= limit:
            break
    return found[:limit]


__all__ = ["FAMILY_NAMES", "RELEASE_FILE_FAMILIES", "TokenizerSource", "find_tokenizers", "folder_family"]
