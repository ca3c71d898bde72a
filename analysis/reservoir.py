"""Per-code bounded reservoirs of token references, so a UI can show "images that use code k".

Each code keeps a uniform random sample of at most R (sample key, position) references among all
its occurrences (Algorithm R), so memory is K x R however large the data set. Updates are
vectorised over a batch and exactly equivalent to running Algorithm R occurrence by occurrence in
(sample, position) order, with one random draw per occurrence past the R-th.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class CodeReservoir:
    def __init__(self, codebook_size: int, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        self.codebook_size = int(codebook_size)
        self.capacity = int(capacity)
        self._rng = np.random.default_rng(seed)
        self._seen = np.zeros(codebook_size, dtype=np.int64)
        self._keys = np.full((codebook_size, capacity), None, dtype=object)
        self._positions = np.full((codebook_size, capacity), -1, dtype=np.int64)

    def update(self, ids: np.ndarray, keys: Sequence[str]) -> None:
        """ids (B, P) integer codes; keys: one identifier per sample (row)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(keys) != ids.shape[0]:
            raise ValueError(f"keys: need one key per sample ({ids.shape[0]}), got {len(keys)}")
        b, p = ids.shape
        codes = ids.ravel()
        sample = np.repeat(np.arange(b), p)
        position = np.tile(np.arange(p), b)
        # 1-based running count of each occurrence within its code, in occurrence order.
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        starts = np.searchsorted(sorted_codes, sorted_codes, side="left")
        rank = np.empty_like(codes)
        rank[order] = np.arange(codes.size) - starts
        n = self._seen[codes] + rank + 1
        slot = n - 1
        late = n > self.capacity
        slot[late] = np.floor(self._rng.random(int(late.sum())) * n[late]).astype(np.int64)
        take = slot < self.capacity
        codes, slot, sample, position = codes[take], slot[take], sample[take], position[take]
        # Several occurrences may hit the same (code, slot) in one batch: the last one wins.
        flat = (codes * self.capacity + slot)[::-1]
        _, first_in_reversed = np.unique(flat, return_index=True)
        last = codes.size - 1 - first_in_reversed
        key_arr = np.asarray(list(keys), dtype=object)
        self._keys[codes[last], slot[last]] = key_arr[sample[last]]
        self._positions[codes[last], slot[last]] = position[last]
        self._seen += np.bincount(ids.ravel(), minlength=self.codebook_size)

    def examples(self, code: int) -> list[tuple[str, int]]:
        """The (sample key, position) references kept for ``code`` (at most ``capacity``)."""
        if not 0 <= code < self.codebook_size:
            raise ValueError(f"code: must be in [0, {self.codebook_size}), got {code}")
        filled = min(int(self._seen[code]), self.capacity)
        return [(str(self._keys[code, i]), int(self._positions[code, i])) for i in range(filled)]

    def snapshot(self) -> dict[int, tuple[tuple[str, int], ...]]:
        """Every used code's references."""
        return {int(c): tuple(self.examples(int(c))) for c in np.flatnonzero(self._seen)}
