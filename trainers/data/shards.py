"""Webdataset shards on disk: naming a shard set, reading raw samples, writing reproducible tars.

The layout is the official one (``data/convert_imagenet_to_wds.py``): a sample is the tar members
``<key>.<ext>`` sharing one key, e.g. ``00000012.jpg`` + ``00000012.cls`` (the label as ASCII
text). We read tars with :mod:`tarfile` directly rather than webdataset's pipeline so that a broken
shard is one counted event (``corrupt_tar``) instead of an exception per remaining member.
"""
from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path
from typing import Iterator, Sequence, Union

import braceexpand
import numpy as np
import webdataset as wds

from .stats import DataStats

RawSample = dict  # {"__key__": str, "__url__": str, "<ext>": bytes, ...}
ShardSpec = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]  # what loaders accept

_REMOTE = re.compile(r"^(pipe:|[a-z][a-z0-9+.-]*://)")


def _is_local(url: str) -> bool:
    return not _REMOTE.match(url)


def expand_shards(shards: ShardSpec) -> list[str]:
    """A brace pattern (``train-{000000..000003}.tar``), a path, or a list of either -> shard list.

    Local paths are checked up front so a typo fails now with the missing names, not as an empty
    epoch or a worker crash later. URLs (``http://``, ``pipe:``) are passed through unchecked.
    """
    specs = [shards] if isinstance(shards, (str, os.PathLike)) else list(shards)
    urls = [url for spec in specs for url in braceexpand.braceexpand(os.fspath(spec))]
    if not urls:
        raise ValueError("shards: no shard given (empty list)")
    missing = [url for url in urls if _is_local(url) and not Path(url).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"shards: {len(missing)} of {len(urls)} shard files do not exist: {shown}")
    return urls


def _split_name(name: str) -> tuple[str, str] | tuple[None, None]:
    """``'dir/00000012.proxy_flip.npy'`` -> ``('dir/00000012', 'proxy_flip.npy')`` (webdataset's rule)."""
    match = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name)
    return (match.group(1), match.group(2).lower()) if match else (None, None)


def _open(url: str):
    return open(url, "rb") if _is_local(url) else wds.gopen(url, "rb")


class _StrictTarInfo(tarfile.TarInfo):
    """Python's tarfile ends a stream quietly at a truncated or garbled header (anywhere but the
    first), so a shard cut mid-way would lose its rest without a word; here that is an error, which
    the reader counts as ``corrupt_tar``. A zero block (the end marker) or no bytes at all still end
    the archive cleanly."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except (tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as error:
            raise tarfile.SubsequentHeaderError(f"{error} at byte {tar.offset}") from None


def read_shard(url: str) -> Iterator[RawSample]:
    """Raw samples of one shard in tar order; raises tarfile/OS errors if the stream breaks.

    A sample is handed on as soon as the next key starts, before that member's data is read. When
    the stream breaks between members, the sample read so far is handed on too if it has every
    member the previous sample had (the break fell between samples); otherwise it is the sample the
    break cut, and only it is lost.
    """
    with _open(url) as stream:
        current: RawSample | None = None
        previous_members: set[str] | None = None
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=_StrictTarInfo) as tar:
            members = iter(tar)
            while True:
                try:
                    info = next(members)
                except StopIteration:
                    break
                except (tarfile.TarError, OSError, EOFError):
                    if current is not None and previous_members is not None and previous_members <= set(current):
                        yield current
                    raise
                if not info.isreg():
                    continue
                key, ext = _split_name(info.name)
                if key is None or os.path.basename(key).startswith("__"):
                    continue
                if current is not None and current["__key__"] != key:
                    previous_members = set(current) - {"__key__", "__url__"}
                    yield current
                    current = None
                data = tar.extractfile(info).read()
                if current is None:
                    current = {"__key__": key, "__url__": url}
                if ext in current:
                    raise tarfile.ReadError(f"duplicate member {info.name!r}")
                current[ext] = data
                tar.members = []  # streaming: do not keep every TarInfo of a large shard
        if current is not None:
            yield current


def iter_raw_samples(urls: Iterator[str] | Sequence[str], stats: DataStats) -> Iterator[RawSample]:
    """Raw samples of many shards; a broken shard is counted once and the next one is read."""
    for url in urls:
        stats.shards_opened += 1
        try:
            yield from read_shard(url)
        except (tarfile.TarError, OSError, EOFError) as error:
            stats.skip("corrupt_tar", url, f"{type(error).__name__}: {error}")


# ---- writing ------------------------------------------------------------------------------------

def encode_label(label: int) -> bytes:
    """The official ``cls`` member: the integer as ASCII text."""
    return str(int(label)).encode("ascii")


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def shard_writer(out_dir: str | os.PathLike, prefix: str, max_per_shard: int) -> wds.ShardWriter:
    """``out_dir/<prefix>-%06d.tar`` with fixed member metadata, so equal samples give equal bytes.

    Samples passed to ``write`` must already be bytes (no implicit encoding): the caller decides
    image formats and label encoding.
    """
    if max_per_shard < 1:
        raise ValueError(f"max_per_shard: must be >= 1, got {max_per_shard}")
    pattern = os.path.join(os.fspath(out_dir).replace("%", "%%"), f"{prefix}-%06d.tar")
    return wds.ShardWriter(pattern, maxcount=max_per_shard, verbose=0, encoder=False, mtime=0.0,
                           user="sftok", group="sftok", mode=0o644)


def tar_writer(path: str | os.PathLike) -> wds.TarWriter:
    """One shard with the same fixed metadata as :func:`shard_writer`."""
    return wds.TarWriter(os.fspath(path), encoder=False, mtime=0.0, user="sftok", group="sftok", mode=0o644)


def existing_shards(out_dir: str | os.PathLike, prefix: str) -> list[Path]:
    return sorted(Path(out_dir).glob(f"{prefix}-*.tar"))
