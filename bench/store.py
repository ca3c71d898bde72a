"""Metrics store speed: ingestion rows/s and UI query latency over 1M rows.

Goals: ingest >= 200k metric rows/s (batched, from the runs' JSONL files) and a downsampled
1-curve query over 1M rows in <= 50 ms. Baselines in the same process: row-at-a-time INSERTs for
ingestion, and fetch-everything-then-downsample-in-numpy for the curve.

    python bench/store.py [--rows 1000000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.runs.curves import minmax_downsample  # noqa: E402
from workbench.runs.records import RunRecord  # noqa: E402
from workbench.runs.store import Store  # noqa: E402


def write_run(store: Store, run_id: str, num_lines: int, keys: list[str], rng: np.random.Generator) -> int:
    """A run directory whose metrics.jsonl holds ``num_lines`` lines of ``len(keys)`` metrics."""
    run = store.create_run(RunRecord(id=run_id, run_dir=str(store.run_dir_for(run_id)), name=run_id))
    Path(run.run_dir).mkdir(parents=True)
    values = rng.normal(size=(num_lines, len(keys)))
    with open(Path(run.run_dir) / "metrics.jsonl", "w") as handle:
        for step in range(num_lines):
            metrics = dict(zip(keys, values[step].tolist()))
            handle.write(json.dumps({"step": step, "wall": 1.7e9 + step * 0.01, "metrics": metrics},
                                    separators=(",", ":")) + "\n")
    return num_lines * len(keys)


class Clock:
    """Wall and CPU seconds (this process, all threads) of a block: on a shared machine the CPU time
    says what the code costs, the wall time what a user waits."""

    def __enter__(self) -> "Clock":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu


def timed(fn: Callable[[], object], repeats: int = 7) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn`` (after one warm-up call)."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        with Clock() as clock:
            fn()
        walls.append(clock.wall)
        cpus.append(clock.cpu)
    return statistics.median(walls), statistics.median(cpus)


def ms(times: tuple[float, float]) -> str:
    return f"{times[0] * 1e3:.1f} ms (cpu {times[1] * 1e3:.1f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the single-curve run")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, Store(tmp) as store:
        keys10 = ["train/loss", "train/step", "lr", "grad_norm", "loss/ce", "loss/commit", "loss/lpips",
                  "codebook/perplexity", "codebook/dead", "eval/psnr"]
        rows10 = sum(write_run(store, f"wide{i}", 25_000, keys10, rng) for i in range(4))
        with Clock() as clock:
            report = store.ingest()
        assert report.metrics == rows10
        table.append(("ingest, 10 metrics/line (4 runs)", f"{rows10:,} rows in {clock.wall:.2f} s",
                      f"{rows10 / clock.wall:,.0f} rows/s (per cpu-s {rows10 / clock.cpu:,.0f})"))

        rows1 = write_run(store, "long", args.rows, ["train/loss"], rng)
        with Clock() as clock:
            assert store.ingest(["long"]).metrics == rows1
        ingest_rate = rows1 / clock.wall
        table.append(("ingest, 1 metric/line (worst case)", f"{rows1:,} rows in {clock.wall:.2f} s",
                      f"{ingest_rate:,.0f} rows/s (per cpu-s {rows1 / clock.cpu:,.0f})"))

        con = store._cur()  # baseline: one INSERT per row, the naive way
        sample = store.metrics_frame("wide0").head(2_000)
        records = [["baseline", int(s), k, float(v), float(w)] for s, k, v, w in sample.itertuples(index=False)]
        start = time.perf_counter()
        con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", records)
        naive_rate = len(records) / (time.perf_counter() - start)
        table.append(("baseline: row-at-a-time INSERT", f"{len(records):,} rows", f"{naive_rate:,.0f} rows/s "
                      f"(batched is {ingest_rate / naive_rate:,.0f}x)"))

        total = store.metric_count()
        curve_s = timed(lambda: store.curve("long", "train/loss", max_points=1000))
        table.append((f"curve, {rows1:,}-point series -> 1000 points", f"table of {total:,} rows", ms(curve_s)))

        def fetch_then_numpy() -> None:
            full = con.execute("SELECT step, value FROM metrics WHERE run_id = 'long' AND key = 'train/loss' "
                               "ORDER BY step").fetchnumpy()
            minmax_downsample(full["step"], full["value"], 1000)

        naive_s = timed(fetch_then_numpy, repeats=3)
        table.append(("baseline: fetch all + numpy downsample", "same series",
                      f"{ms(naive_s)}, {naive_s[0] / curve_s[0]:.1f}x slower"))
        smooth_s = timed(lambda: store.curve("long", "train/loss", max_points=1000, smoothing=0.9), repeats=3)
        table.append(("smoothed curve (EMA 0.9) -> 1000 points", "same series", ms(smooth_s)))
        short_s = timed(lambda: store.curve("wide2", "eval/psnr", max_points=1000))
        table.append(("curve, 25,000-point series -> 1000 points", f"table of {total:,} rows", ms(short_s)))
        latest_s = timed(lambda: store.latest(), repeats=3)
        table.append(("latest value per key per run", f"table of {total:,} rows", ms(latest_s)))
        compare_s = timed(lambda: store.compare([f"wide{i}" for i in range(4)], ["train/loss", "eval/psnr"],
                                                max_points=500), repeats=3)
        table.append(("compare 4 runs x 2 keys -> 500 points each", f"table of {total:,} rows",
                      ms(compare_s)))

    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} (wall times suffer when it "
          f"exceeds the cpu count; cpu times do not)")
    width = [max(len(row[i]) for row in table) for i in range(3)]
    print(f"{'what':<{width[0]}}  {'size':<{width[1]}}  result")
    for what, size, result in table:
        print(f"{what:<{width[0]}}  {size:<{width[1]}}  {result}")
    print(f"\ngoals: ingest >= 200,000 rows/s -> {'met' if ingest_rate >= 200_000 else 'MISSED'}; "
          f"1M-row curve <= 50 ms -> {'met' if curve_s[0] <= 0.05 else 'MISSED'} (wall)")


if __name__ == "__main__":
    main()
