"""What the model was trained and measured on: the dataset's photos and licences per package, the teacher's own
photos when they differ, and a note when the recipe has moved on to another photo set."""
from __future__ import annotations

from pathlib import Path

import yaml

from train_default_model import PHOTO_SET
from trainers.data.photo_sources import PHOTOS

from .sources import ROOT, manifest_of


def data_section(proto: dict, data: Path) -> str:
    """What the model was trained on, from the dataset's own manifest: photos and licences per package."""
    manifest = manifest_of(data)
    rows = "\n".join(
        f"| {name} ({src.get('kind', 'pypi')}; {src['licence']}) | {', '.join(src['train_photos']) or '-'} | "
        f"{', '.join(src['held_out_photos']) or '-'} | {src['train_crops']} | "
        f"{'; '.join(f'{p}: {lic}' for p, lic in src['photo_licences'].items())} |"
        for name, src in manifest["sources"].items())
    held_out = [p for src in manifest["sources"].values() for p in src["held_out_photos"]]
    evaluation_only = [p for p in held_out if PHOTOS[p].evaluation_only]
    augmented = manifest.get("augmented", {})
    widened = (f"{augmented.get('flipped', 0):,} of them mirrored, {augmented.get('jittered', 0):,} mildly "
               "colour-jittered") if augmented else "no augmentation"
    only = (f" ({len(evaluation_only)} of them under share-alike licences - CC BY-SA, GPL, LGPL, GFDL - which this "
            "project uses for evaluation only: weights trained on them might have to carry those terms)"
            if evaluation_only else "")
    teacher = teacher_data_text(data)
    kinds = "PyPI wheels" + ("; Debian packages, fetched with `apt-get download` and unpacked, never installed"
                             if any(src.get("kind") == "debian" for src in manifest["sources"].values()) else "")
    return (f"The project's default dataset, photo set `{manifest.get('photo_set', 'packages-v2')}` (`python -m "
            f"trainers.data.default_dataset --photos {manifest.get('photo_set', 'packages-v2')}`): "
            f"{manifest['train_count']:,} random multi-scale {manifest['image_size']} px crops of "
            f"{len(manifest['train_sources'])} training photos ({widened}) that installable packages ship "
            f"({kinds}), as webdataset shards. "
            f"Held out whole, {len(held_out)} photos{only}: {', '.join(f'`{p}`' for p in held_out)} - every number "
            f"below is measured on crops of those held-out photos ({proto['held_out_images']} crops), never on "
            f"training photos.{teacher}\n\n| package (kind; licence) | training photos | held out | training crops | "
            f"photo licences |\n|---|---|---|---|---|\n{rows}")


def teacher_data_text(data: Path) -> str:
    """Which photos the teacher trained on, when that is not the set at ``data``."""
    cfg = yaml.safe_load((ROOT / "configs" / "default" / "teacher.yaml").read_text())
    folder = ROOT / Path(cfg["data"]["train_shards"]).parent
    if folder == data or not (folder / "dataset.json").is_file():
        return ""
    taught, recipe = manifest_of(folder)["train_sources"], manifest_of(data)
    inside = "all of them training photos here too" if set(taught) <= set(recipe["train_sources"]) else "others"
    unseen = ", none of the held-out ones" if not set(taught) & set(recipe["val_sources"]) else ""
    return (f" The teacher was trained on the earlier photo set `{folder.name}` ({len(taught)} training photos, "
            f"{inside}{unseen}): it stays the reference whose codes every stage predicts.")


def recipe_note(data: Path) -> str:
    """Said when configs/default has moved on from the photo set these files were trained on."""
    trained = manifest_of(data).get("photo_set", "packages-v2")
    if trained == PHOTO_SET:
        return ""
    return (f"\nThese files are the `{trained}` build. The recipe in `configs/default/` has since moved to photo set "
            f"`{PHOTO_SET}` (`scripts/train_default_model.py`: `PHOTO_SET`); `make default-model` now trains that, and "
            "the card is re-written with its files when they are exported.\n")
