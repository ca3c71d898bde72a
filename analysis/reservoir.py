"""Per-code bounded reservoirs of token references, so a UI can show "images that use code k".

Each code keeps a uniform random sample of at most R (sample key, position) references among all
its occurrences (Algorithm R). Updates are vectorised over a batch and exactly equivalent to running
Algorithm R occurrence by occurrence in (sample, position) order, with one random draw per occurrence
past the R-th. A code's R slots are allocated at its first occurrence, so memory grows with the codes
used, not with the codebook: ReVQ's 512 x 16384 (position, id) codes would take 134 M slots up front,
while a few hundred images use some 10^5 of them.
"""
from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np

References = tuple[tuple[str, int], ...]


class ReservoirSnapshot(Mapping[int, References]):
    """A copy of the kept references of every used code, built into tuples only when a code is looked up
    (a dict of millions of tuples would cost more than the reservoir itself)."""

    def __init__(self, row_of: np.ndarray, seen: np.ndarray, keys: np.ndarray, positions: np.ndarray) -> None:
        self._codes = np.flatnonzero(row_of >= 0)
        self._rows = row_of[self._codes]
        self._seen, self._keys, self._positions = seen, keys, positions

    def __getitem__(self, code: int) -> References:
        i = int(np.searchsorted(self._codes, code))
        if i == self._codes.size or self._codes[i] != code:
            raise KeyError(code)
        row = int(self._rows[i])
        filled = min(int(self._seen[row]), self._keys.shape[1])
        return tuple((str(self._keys[row, j]), int(self._positions[row, j])) for j in range(filled))

    def __iter__(self) -> Iterator[int]:
        return (int(c) for c in self._codes)

    def __len__(self) -> int:
        return int(self._codes.size)


class CodeReservoir:
    def __init__(self, codebook_size: int, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        if codebook_size < 1:
            raise ValueError(f"codebook_size: must be >= 1, got {codebook_size}")
        self.codebook_size = int(codebook_size)
        self.capacity = int(capacity)
        self._rng = np.random.default_rng(seed)
        # a code's row, -1 until its first occurrence (int32: half the bytes on a 67 M-code ReVQ book)
        self._row_of = np.full(codebook_size, -1, dtype=np.int32 if codebook_size < 2**31 else np.int64)
        self._rows = 0
        self._seen = np.zeros(0, dtype=np.int64)  # occurrences per row
        self._keys = np.full((0, capacity), None, dtype=object)
        self._positions = np.full((0, capacity), -1, dtype=np.int64)

    def _allocate(self, codes: np.ndarray) -> None:
        """Rows for codes never seen before; the arrays grow by doubling."""
        new = np.unique(codes[self._row_of[codes] < 0])
        if not new.size:
            return
        needed = self._rows + new.size
        if needed > self._seen.size:
            grown = max(needed, 2 * self._seen.size, 64)
            extra = grown - self._seen.size
            self._seen = np.concatenate([self._seen, np.zeros(extra, dtype=np.int64)])
            self._keys = np.concatenate([self._keys, np.full((extra, self.capacity), None, dtype=object)])
            self._positions = np.concatenate([self._positions, np.full((extra, self.capacity), -1, dtype=np.int64)])
        self._row_of[new] = np.arange(self._rows, needed)
        self._rows = needed

    def update(self, ids: np.ndarray, keys: Sequence[str]) -> None:
        """ids (B, P) integer codes; keys: one identifier per sample (row)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(keys) != ids.shape[0]:
            raise ValueError(f"keys: need one key per sample ({ids.shape[0]}), got {len(keys)}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.codebook_size):
            raise ValueError(f"ids: values must lie in [0, {self.codebook_size}), got [{ids.min()}, {ids.max()}]")
        b, p = ids.shape
        self._allocate(ids.ravel())
        rows = self._row_of[ids.ravel()].astype(np.int64)
        sample = np.repeat(np.arange(b), p)
        position = np.tile(np.arange(p), b)
        # 1-based running count of each occurrence within its code, in occurrence order.
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        starts = np.searchsorted(sorted_rows, sorted_rows, side="left")
        rank = np.empty_like(rows)
        rank[order] = np.arange(rows.size) - starts
        n = self._seen[rows] + rank + 1
        slot = n - 1
        late = n > self.capacity
        slot[late] = np.floor(self._rng.random(int(late.sum())) * n[late]).astype(np.int64)
        take = slot < self.capacity
        self._seen += np.bincount(rows, minlength=self._seen.size)
        rows, slot, sample, position = rows[take], slot[take], sample[take], position[take]
        # Several occurrences may hit the same (code, slot) in one batch: the last one wins.
        flat = (rows * self.capacity + slot)[::-1]
        _, first_in_reversed = np.unique(flat, return_index=True)
        last = rows.size - 1 - first_in_reversed
        key_arr = np.asarray(list(keys), dtype=object)
        self._keys[rows[last], slot[last]] = key_arr[sample[last]]
        self._positions[rows[last], slot[last]] = position[last]

    def examples(self, code: int) -> list[tuple[str, int]]:
        """The (sample key, position) references kept for ``code`` (at most ``capacity``)."""
        if not 0 <= code < self.codebook_size:
            raise ValueError(f"code: must be in [0, {self.codebook_size}), got {code}")
        row = int(self._row_of[code])
        if row < 0:
            return []
        filled = min(int(self._seen[row]), self.capacity)
        return [(str(self._keys[row, i]), int(self._positions[row, i])) for i in range(filled)]

    def snapshot(self) -> ReservoirSnapshot:
        """Every used code's references, as they are now (later updates do not change it)."""
        rows = self._rows
        return ReservoirSnapshot(self._row_of.copy(), self._seen[:rows].copy(), self._keys[:rows].copy(),
                                 self._positions[:rows].copy())
