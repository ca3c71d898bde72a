"""The workspace's metrics store: one DuckDB file, one owner process, fed from the runs' JSONL files.

DuckDB lets one process open a file read-write and then no other process may open it at all. So
training runs never touch the database: they append JSON lines to their run directory
(``trainers.sink``), and the one owner (the app, or ``python -m workbench.runs.store WORKSPACE ingest``)
tails those files into the database. Per run and file the store keeps the byte offset up to which
lines are committed, in the same transaction as the rows (see ``workbench.runs.ingest``): every line
arrives exactly once, whatever process dies when.

All SQL of the workbench lives in this module. Within the owner, each thread reads through its own
cursor (DuckDB's MVCC gives readers a consistent snapshot while ingestion commits) and writes are
serialised by one lock.

Layout: ``WORKSPACE/metrics.duckdb`` and ``WORKSPACE/runs/<run id>/`` (see ``workbench.runs.rundir``).

CLI: ``python -m workbench.runs.store WORKSPACE {ingest [--follow],runs,export RUN --format csv|parquet --out FILE}``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd

from trainers.sink import EVENTS_FILE, METRICS_FILE
from workbench.runs.curves import ema_debiased, minmax_downsample
from workbench.runs.eta import estimate_progress
from workbench.runs.ingest import (DEFAULT_CHUNK_BYTES, Chunk, parse_artifact_lines, parse_event_lines,
                              plan_rewinds, read_chunk)
from workbench.runs.procs import is_same_process_alive
from workbench.runs.records import (ArtifactRecord, ConfigDiff, EventRecord, IngestReport, Progress, RunRecord,
                               RunStatus, SweepRecord, diff_configs, find_config_value, status_for_exit)
from workbench.runs.rundir import (MANIFEST_FILE, RUN_FILES, read_config_file, read_exit_info, read_manifest,
                              read_process_info)

DB_FILE = "metrics.duckdb"
RUNS_DIR = "runs"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    id VARCHAR PRIMARY KEY, run_dir VARCHAR NOT NULL, name VARCHAR, stage VARCHAR, status VARCHAR NOT NULL,
    config VARCHAR, overrides VARCHAR, command VARCHAR, git_commit VARCHAR, seed BIGINT, device VARCHAR,
    sweep_id VARCHAR, created_at DOUBLE, started_at DOUBLE, ended_at DOUBLE, exit_code INTEGER,
    pid INTEGER, pid_start DOUBLE, error VARCHAR, executor VARCHAR, job_id VARCHAR, executor_options VARCHAR);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS executor VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS job_id VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS executor_options VARCHAR;
CREATE TABLE IF NOT EXISTS sweeps (
    id VARCHAR PRIMARY KEY, name VARCHAR, stage VARCHAR, config_path VARCHAR, grid VARCHAR, created_at DOUBLE);
CREATE TABLE IF NOT EXISTS metrics (
    run_id VARCHAR NOT NULL, step BIGINT NOT NULL, key VARCHAR NOT NULL, value DOUBLE NOT NULL, wall DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS events (run_id VARCHAR NOT NULL, wall DOUBLE, level VARCHAR, message VARCHAR);
CREATE TABLE IF NOT EXISTS artifacts (run_id VARCHAR NOT NULL, step BIGINT, wall DOUBLE, kind VARCHAR, path VARCHAR);
CREATE TABLE IF NOT EXISTS ingest_offsets (
    run_id VARCHAR NOT NULL, file VARCHAR NOT NULL, byte_offset BIGINT NOT NULL, PRIMARY KEY (run_id, file));
"""

_METRIC_LINE_SCHEMA = '{"step": "BIGINT", "wall": "DOUBLE", "metrics": "MAP(VARCHAR, DOUBLE)", "rewind": "BOOLEAN"}'
_RUN_COLUMNS = tuple(f.name for f in fields(RunRecord))
_JSON_RUN_COLUMNS = {"config", "overrides", "command", "executor_options"}
_DICT_RUN_COLUMNS = {"config", "executor_options"}
_RUN_TABLE_COLUMNS = ("id", "name", "stage", "status", "device", "sweep_id", "seed", "git_commit",
                      "created_at", "started_at", "ended_at", "exit_code", "run_dir")

CommitCallback = Callable[[str, str, IngestReport], None]


class StoreLockedError(RuntimeError):
    """Another process owns the workspace's DuckDB file."""


class Store:
    """Owner of ``WORKSPACE/metrics.duckdb``: ingestion, run records and the queries the UI needs.

    Opening scans ``WORKSPACE/runs`` and registers run directories it has not seen (runs started by
    hand while no owner was open); their rows arrive with the next ``ingest()``.
    """

    def __init__(self, workspace: str | os.PathLike, *, read_only: bool = False, scan: bool = True) -> None:
        self.workspace = Path(workspace).resolve()
        self.runs_dir = self.workspace / RUNS_DIR
        self.path = self.workspace / DB_FILE
        self.read_only = read_only
        if not read_only:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLockedError(
                    f"{self.path} is held by another process (one owner per workspace: close the app or "
                    f"the other `workbench.runs.store` command first). DuckDB said: {exc}") from exc
            raise
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._max_steps: dict[str, int | None] = {}
        if not read_only:
            with self._transaction() as cur:
                cur.execute(_SCHEMA)
                cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
            if scan:
                self.scan()

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        with self._cursors_lock:
            for cur in self._cursors:
                with contextlib.suppress(Exception):
                    cur.close()
            self._cursors.clear()
        self._local = threading.local()
        if self._con is not None:
            self._con.close()
            self._con = None  # free the native handle now, even if this object lives on in a cycle

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cur(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
            with self._cursors_lock:
                self._cursors.append(cur)
        return cur

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._write_lock:
            cur = self._cur()
            cur.begin()
            try:
                yield cur
            except BaseException:
                cur.rollback()
                raise
            cur.commit()

    def _frame(self, sql: str, params: Sequence[Any] | dict | None = None) -> pd.DataFrame:
        return self._cur().execute(sql, params).df()

    def _rows(self, sql: str, params: Sequence[Any] | dict | None = None) -> list[tuple]:
        return self._cur().execute(sql, params).fetchall()

    # ------------------------------------------------------------------ runs
    def run_dir_for(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def create_run(self, run: RunRecord) -> RunRecord:
        """Insert a run and start its ingestion offsets at 0."""
        if run.created_at is None:
            run.created_at = time.time()
        values = [_encode_run_value(name, getattr(run, name)) for name in _RUN_COLUMNS]
        with self._transaction() as cur:
            if cur.execute("SELECT 1 FROM runs WHERE id = ?", [run.id]).fetchone():
                raise ValueError(f"run {run.id!r} already exists")
            cur.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
                        values)
            cur.executemany("INSERT INTO ingest_offsets VALUES (?, ?, 0)", [[run.id, f] for f in RUN_FILES])
        return run

    def update_run(self, run_id: str, **changes: Any) -> RunRecord:
        """Set columns of a run (names as in ``RunRecord``) and return the updated record."""
        unknown = set(changes) - set(_RUN_COLUMNS) | ({"id"} & set(changes))
        if unknown:
            raise ValueError(f"cannot update run column(s) {sorted(unknown)}")
        if changes:
            assignments = ", ".join(f"{name} = ?" for name in changes)
            values = [_encode_run_value(name, value) for name, value in changes.items()]
            with self._transaction() as cur:
                cur.execute(f"UPDATE runs SET {assignments} WHERE id = ?", [*values, run_id])
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._rows(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE id = ?", [run_id])
        if not rows:
            raise KeyError(f"no run with id {run_id!r} in {self.path}")
        return _decode_run(rows[0])

    def list_runs(self, status: str | Sequence[str] | None = None, sweep_id: str | None = None) -> list[RunRecord]:
        """Runs in creation order, optionally only those with the given status(es) or sweep."""
        statuses = [status] if isinstance(status, str) else (list(status) if status is not None else None)
        rows = self._rows(
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs "
            "WHERE ($statuses IS NULL OR list_contains($statuses, status)) "
            "AND ($sweep IS NULL OR sweep_id = $sweep) ORDER BY created_at, id",
            {"statuses": statuses, "sweep": sweep_id})
        return [_decode_run(row) for row in rows]

    def runs_frame(self) -> pd.DataFrame:
        """One row per run with the columns a runs table shows (no config); times in epoch seconds."""
        return self._frame(f"SELECT {', '.join(_RUN_TABLE_COLUMNS)} FROM runs ORDER BY created_at, id")

    def delete_run(self, run_id: str) -> None:
        """Forget a run and its rows (its directory on disk stays)."""
        with self._transaction() as cur:
            for table, column in (("metrics", "run_id"), ("events", "run_id"), ("artifacts", "run_id"),
                                  ("ingest_offsets", "run_id"), ("runs", "id")):
                cur.execute(f"DELETE FROM {table} WHERE {column} = ?", [run_id])
        self._max_steps.pop(run_id, None)

    # ------------------------------------------------------------------ sweeps
    def create_sweep(self, sweep: SweepRecord) -> SweepRecord:
        with self._transaction() as cur:
            cur.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?, ?, ?)",
                        [sweep.id, sweep.name, sweep.stage, sweep.config_path, json.dumps(sweep.grid),
                         sweep.created_at])
        return sweep

    def get_sweep(self, sweep_id: str) -> SweepRecord:
        rows = self._rows("SELECT id, name, stage, config_path, grid, created_at FROM sweeps WHERE id = ?",
                          [sweep_id])
        if not rows:
            raise KeyError(f"no sweep with id {sweep_id!r} in {self.path}")
        return self._decode_sweep(rows[0])

    def list_sweeps(self) -> list[SweepRecord]:
        rows = self._rows("SELECT id, name, stage, config_path, grid, created_at FROM sweeps ORDER BY created_at")
        return [self._decode_sweep(row) for row in rows]

    def _decode_sweep(self, row: tuple) -> SweepRecord:
        run_ids = [r[0] for r in self._rows("SELECT id FROM runs WHERE sweep_id = ? ORDER BY created_at, id",
                                            [row[0]])]
        return SweepRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], run_ids)

    # ------------------------------------------------------------------ ingestion
    def scan(self) -> list[str]:
        """Register run directories under ``WORKSPACE/runs`` that the database does not know yet."""
        if not self.runs_dir.is_dir():
            return []
        new = []
        with self._write_lock:  # atomic with create_run: the job manager inserts its row before the folder
            known = {row[0] for row in self._rows("SELECT id FROM runs")}
            for run_dir in sorted(p for p in self.runs_dir.iterdir() if p.is_dir() and p.name not in known):
                if any((run_dir / name).exists() for name in (*RUN_FILES, MANIFEST_FILE)):
                    self.create_run(_discovered_run(run_dir))
                    new.append(run_dir.name)
        return new

    def ingest(self, run_ids: Sequence[str] | None = None, *, max_bytes: int = DEFAULT_CHUNK_BYTES,
               max_lines: int | None = None, on_commit: CommitCallback | None = None) -> IngestReport:
        """Commit every complete line the runs' files hold beyond the stored offsets.

        ``run_ids=None`` first scans for new run directories and then ingests all runs. One
        transaction per chunk (``max_bytes``/``max_lines``); ``on_commit(run_id, file, report)`` is
        called after each commit: what it reports is durable.
        """
        with self._write_lock:  # one ingest at a time: two readers of one offset would both commit
            report = IngestReport(new_runs=tuple(self.scan())) if run_ids is None else IngestReport()
            offsets = {(r, f): o for r, f, o in self._rows("SELECT run_id, file, byte_offset FROM ingest_offsets")}
            dirs = dict(self._rows("SELECT id, run_dir FROM runs"))
            for run_id in (sorted(dirs) if run_ids is None else run_ids):
                if run_id not in dirs:
                    raise KeyError(f"no run with id {run_id!r} in {self.path}")
                for name in RUN_FILES:
                    path, offset = Path(dirs[run_id]) / name, offsets.get((run_id, name), 0)
                    size = _file_size(path)  # stop there: a fast writer must not keep one call busy forever
                    while offset < size:
                        chunk = read_chunk(path, offset, min(max_bytes, size - offset), max_lines)
                        if chunk is None:
                            break
                        step_report = self._commit_chunk(run_id, name, chunk)
                        offset = chunk.end
                        report = report + step_report
                        if on_commit is not None:
                            on_commit(run_id, name, step_report)
        return report

    def _commit_chunk(self, run_id: str, name: str, chunk: Chunk) -> IngestReport:
        if name == METRICS_FILE:
            return self._commit_metrics(run_id, chunk)
        parse, table, columns = ((parse_event_lines, "events", ["wall", "level", "message"]) if name == EVENTS_FILE
                                 else (parse_artifact_lines, "artifacts", ["step", "wall", "kind", "path"]))
        records, skipped = parse(chunk)
        with self._transaction() as cur:
            if records:
                _insert_frame(cur, table, pd.DataFrame.from_records(records, columns=columns), run_id)
            _insert_skip_notes(cur, run_id, skipped)
            _set_offset(cur, run_id, name, chunk.end)
        count = len(records)
        return (IngestReport(events=count, skipped_lines=len(skipped)) if table == "events"
                else IngestReport(artifacts=count, skipped_lines=len(skipped)))

    def _commit_metrics(self, run_id: str, chunk: Chunk) -> IngestReport:
        """Parse the lines with DuckDB's JSON reader, apply resume rewinds, insert, move the offset."""
        lines = pd.DataFrame({"line_no": np.arange(len(chunk.lines), dtype=np.int64),
                              "line": pd.Series(chunk.text_lines(), dtype=object)})
        with self._transaction() as cur:
            cur.register("_metric_lines", lines)
            try:
                cur.execute(f"""CREATE OR REPLACE TEMP TABLE _metric_rows AS
                    SELECT line_no, j.step AS step, j.wall AS wall, j.metrics AS metrics,
                           coalesce(j.rewind, false) AS rewind FROM (
                        SELECT line_no, json_transform(CASE WHEN json_valid(line) THEN line END,
                                                       '{_METRIC_LINE_SCHEMA}') AS j FROM _metric_lines)
                    WHERE j.step IS NOT NULL AND j.wall IS NOT NULL AND j.metrics IS NOT NULL""")
            finally:
                cur.unregister("_metric_lines")
            parsed = cur.execute("SELECT line_no, step, rewind FROM _metric_rows ORDER BY line_no").fetchnumpy()
            plan = plan_rewinds(parsed["step"], self._max_step(run_id), parsed["rewind"])
            if plan.purge_from is not None:
                cur.execute("DELETE FROM metrics WHERE run_id = ? AND step >= ?", [run_id, plan.purge_from])
            dropped = None if plan.keep is None else parsed["line_no"][~plan.keep].tolist()
            inserted = cur.execute("""INSERT INTO metrics SELECT $run, step, key, value, wall FROM (
                    SELECT step, wall, unnest(map_keys(metrics)) AS key, unnest(map_values(metrics)) AS value
                    FROM _metric_rows WHERE $dropped IS NULL OR NOT list_contains($dropped, line_no))
                WHERE isfinite(value)""", {"run": run_id, "dropped": dropped}).fetchone()[0]
            cur.execute("DROP TABLE _metric_rows")
            skipped = sorted(set(range(len(chunk.lines))) - set(parsed["line_no"].tolist()))
            offsets = chunk.line_offsets() if skipped else []
            notes = [f"metrics line at byte {offsets[i]} is malformed: {chunk.lines[i][:120]!r}" for i in skipped]
            _insert_skip_notes(cur, run_id, notes)
            _set_offset(cur, run_id, METRICS_FILE, chunk.end)
        self._max_steps[run_id] = plan.max_step
        return IngestReport(metrics=int(inserted), skipped_lines=len(notes))

    def _max_step(self, run_id: str) -> int | None:
        if run_id not in self._max_steps:
            self._max_steps[run_id] = self._rows("SELECT max(step) FROM metrics WHERE run_id = ?", [run_id])[0][0]
        return self._max_steps[run_id]

    # ------------------------------------------------------------------ metric queries
    def metric_count(self, run_id: str | None = None) -> int:
        return self._rows("SELECT count(*) FROM metrics WHERE $run IS NULL OR run_id = $run", {"run": run_id})[0][0]

    def keys(self, run_ids: Sequence[str] | None = None) -> list[str]:
        """Metric keys logged by the given runs (all runs when None), sorted."""
        rows = self._rows("SELECT DISTINCT key FROM metrics WHERE $ids IS NULL OR list_contains($ids, run_id) "
                          "ORDER BY key", {"ids": _id_list(run_ids)})
        return [row[0] for row in rows]

    def latest(self, run_ids: Sequence[str] | None = None, keys: Sequence[str] | None = None) -> pd.DataFrame:
        """The last logged value per key per run: columns ``run_id, key, step, value, wall``."""
        return self._frame(
            "SELECT run_id, key, max(step) AS step, arg_max(value, step) AS value, arg_max(wall, step) AS wall "
            "FROM metrics WHERE ($ids IS NULL OR list_contains($ids, run_id)) "
            "AND ($keys IS NULL OR list_contains($keys, key)) GROUP BY run_id, key ORDER BY run_id, key",
            {"ids": _id_list(run_ids), "keys": _id_list(keys)})

    def metrics_frame(self, run_id: str, keys: Sequence[str] | None = None,
                      last_steps: int | None = None) -> pd.DataFrame:
        """Every row of a run at full resolution: ``step, key, value, wall`` ordered by step; with
        ``last_steps``, only the rows of its last that many logged steps (the database does the cut)."""
        return self._frame(
            "SELECT step, key, value, wall FROM metrics WHERE run_id = $run "
            "AND ($keys IS NULL OR list_contains($keys, key)) AND ($last IS NULL OR step >= (SELECT min(step) FROM "
            "(SELECT DISTINCT step FROM metrics WHERE run_id = $run ORDER BY step DESC LIMIT $last))) "
            "ORDER BY step, key, wall",
            {"run": run_id, "keys": _id_list(keys), "last": last_steps})

    def curve(self, run_id: str, key: str, max_points: int = 1000, smoothing: float = 0.0) -> pd.DataFrame:
        """One metric of one run as ``step, value``, at most ``max_points`` rows.

        Downsampling keeps, per step bucket, the points with the bucket's min and max value, so spikes
        (and the global min and max) survive. ``smoothing`` in [0, 1) applies TensorBoard's debiased EMA
        at full resolution before downsampling.
        """
        if max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {max_points}")
        params = {"run": run_id, "key": key}
        if smoothing:
            full = self._cur().execute(
                "SELECT step, value FROM metrics WHERE run_id = $run AND key = $key ORDER BY step, wall",
                params).fetchnumpy()
            steps, values = minmax_downsample(full["step"], ema_debiased(full["value"], smoothing), max_points)
            return pd.DataFrame({"step": steps, "value": values})
        count, lo, hi = self._rows("SELECT count(*), min(step), max(step) FROM metrics "
                                   "WHERE run_id = $run AND key = $key", params)[0]
        if count <= max_points:
            return self._frame("SELECT step, value FROM metrics WHERE run_id = $run AND key = $key "
                               "ORDER BY step, wall", params)
        return self._frame("""
            WITH agg AS (SELECT arg_min(step, value) AS s_lo, min(value) AS v_lo,
                                arg_max(step, value) AS s_hi, max(value) AS v_hi
                         FROM metrics WHERE run_id = $run AND key = $key
                         GROUP BY (step - $lo) * $buckets // $span)
            SELECT step, value FROM (SELECT s_lo AS step, v_lo AS value FROM agg
                                     UNION SELECT s_hi, v_hi FROM agg) ORDER BY step""",
                           {**params, "lo": lo, "span": hi - lo + 1, "buckets": max(1, max_points // 2)})

    def compare(self, run_ids: Sequence[str], keys: Sequence[str], max_points: int = 1000,
                smoothing: float = 0.0) -> pd.DataFrame:
        """Curves of several runs and keys in long format: ``run_id, run_name, key, step, value``."""
        names = dict(self._rows("SELECT id, name FROM runs WHERE list_contains(?, id)", [list(run_ids)]))
        frames = []
        for run_id in run_ids:
            for key in keys:
                frame = self.curve(run_id, key, max_points, smoothing)
                frames.append(frame.assign(run_id=run_id, run_name=names.get(run_id, run_id), key=key))
        columns = ["run_id", "run_name", "key", "step", "value"]
        if not frames:
            return pd.DataFrame(columns=columns)
        return pd.concat(frames, ignore_index=True)[columns]

    def progress(self, run_id: str, window: int = 64) -> Progress:
        """Step, fraction done, step rate and ETA (see ``workbench.runs.eta`` for what a run must log)."""
        run = self.get_run(run_id)
        points = self._rows("SELECT step, wall FROM (SELECT step, max(wall) AS wall FROM metrics WHERE run_id = ? "
                            "GROUP BY step ORDER BY step DESC LIMIT ?) ORDER BY step", [run_id, window])
        progress_points = self._rows("SELECT value, wall FROM (SELECT value, wall FROM metrics WHERE run_id = ? "
                                     "AND key = 'progress' ORDER BY wall DESC LIMIT ?) ORDER BY wall",
                                     [run_id, window])
        max_steps = find_config_value(run.config, "max_steps")
        max_steps = int(max_steps) if isinstance(max_steps, (int, float)) and max_steps > 0 else None
        return estimate_progress(points, max_steps, progress_points)

    def events(self, run_id: str, limit: int = 500) -> list[EventRecord]:
        """The run's last ``limit`` events, oldest first."""
        rows = self._rows("SELECT wall, level, message FROM (SELECT * FROM events WHERE run_id = ? "
                          "ORDER BY wall DESC LIMIT ?) ORDER BY wall", [run_id, limit])
        return [EventRecord(run_id, *row) for row in rows]

    def artifacts(self, run_id: str, kind: str | None = None) -> list[ArtifactRecord]:
        rows = self._rows("SELECT step, wall, kind, path FROM artifacts WHERE run_id = $run "
                          "AND ($kind IS NULL OR kind = $kind) ORDER BY step, wall", {"run": run_id, "kind": kind})
        return [ArtifactRecord(run_id, *row) for row in rows]

    def config_diff(self, run_a: str, run_b: str) -> ConfigDiff:
        """Dotted-key difference between the resolved configs of two runs."""
        return diff_configs(self.get_run(run_a).config, self.get_run(run_b).config)

    def export_run(self, run_id: str, out: str | os.PathLike, format: str = "csv") -> Path:
        """Write a run's metrics (``run_id, step, key, value, wall``) to CSV or Parquet with DuckDB COPY."""
        if format not in ("csv", "parquet"):
            raise ValueError(f"export format must be 'csv' or 'parquet', got {format!r}")
        self.get_run(run_id)
        out = Path(out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        options = "FORMAT csv, HEADER true" if format == "csv" else "FORMAT parquet"
        literal = str(out).replace("'", "''")
        self._cur().execute(f"COPY (SELECT run_id, step, key, value, wall FROM metrics WHERE run_id = ? "
                            f"ORDER BY step, key, wall) TO '{literal}' ({options})", [run_id])
        return out


# ---------------------------------------------------------------------- helpers
def _insert_frame(cur: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, run_id: str) -> None:
    cur.register("_ingest_batch", frame)
    try:
        cur.execute(f"INSERT INTO {table} SELECT ?, {', '.join(frame.columns)} FROM _ingest_batch", [run_id])
    finally:
        cur.unregister("_ingest_batch")


def _insert_skip_notes(cur: duckdb.DuckDBPyConnection, run_id: str, notes: list[str]) -> None:
    if notes:
        now = time.time()
        cur.executemany("INSERT INTO events VALUES (?, ?, 'warning', ?)",
                        [[run_id, now, "ingest skipped a " + note] for note in notes])


def _set_offset(cur: duckdb.DuckDBPyConnection, run_id: str, name: str, offset: int) -> None:
    cur.execute("UPDATE ingest_offsets SET byte_offset = ? WHERE run_id = ? AND file = ?", [offset, run_id, name])


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _id_list(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else list(values)


def _encode_run_value(name: str, value: Any) -> Any:
    return json.dumps(value, default=str) if name in _JSON_RUN_COLUMNS and value is not None else value


def _decode_run(row: tuple) -> RunRecord:
    values = dict(zip(_RUN_COLUMNS, row))
    for name in _JSON_RUN_COLUMNS:
        values[name] = json.loads(values[name]) if values[name] else ({} if name in _DICT_RUN_COLUMNS else [])
    values["executor"] = values["executor"] or "local"  # rows written before executors existed
    return RunRecord(**values)


def _discovered_run(run_dir: Path) -> RunRecord:
    """A record for a run directory the store finds on disk, from whatever the directory tells."""
    manifest = read_manifest(run_dir) or {}
    config = manifest.get("config") or read_config_file(run_dir)
    run = RunRecord(
        id=run_dir.name, run_dir=str(run_dir), name=manifest.get("name") or run_dir.name,
        stage=manifest.get("stage"), config=config, overrides=manifest.get("overrides") or [],
        command=manifest.get("command") or [], git_commit=manifest.get("git_commit"),
        seed=manifest.get("seed", find_config_value(config, "seed")), device=manifest.get("device") or "cpu",
        sweep_id=manifest.get("sweep_id"), created_at=manifest.get("created_at") or run_dir.stat().st_mtime,
        status=RunStatus.UNKNOWN)
    exit_info, process = read_exit_info(run_dir), read_process_info(run_dir)
    if exit_info is not None:
        run.status, run.exit_code, run.ended_at = status_for_exit(exit_info.exit_code), exit_info.exit_code, exit_info.ended
    elif process is not None and is_same_process_alive(process.pid, process.start_time):
        run.status, run.pid, run.pid_start = RunStatus.RUNNING, process.pid, process.start_time
    elif process is not None:
        run.status, run.error = RunStatus.LOST, f"process {process.pid} ended without an exit record"
    return run


# ---------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.runs.store", description=__doc__.split("\n")[0])
    parser.add_argument("workspace")
    sub = parser.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="ingest new lines of all runs (scanning for new run dirs)")
    ingest.add_argument("--follow", action="store_true", help="keep ingesting until interrupted")
    ingest.add_argument("--interval", type=float, default=1.0, help="seconds between passes with --follow")
    ingest.add_argument("--batch-lines", type=int, default=None, help="lines per transaction (default: 8 MiB)")
    ingest.add_argument("--verbose", action="store_true", help="print the running total after every commit")
    sub.add_parser("runs", help="list runs")
    export = sub.add_parser("export", help="export a run's metrics")
    export.add_argument("run")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv")
    export.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        store = Store(args.workspace, scan=args.command == "ingest")
    except StoreLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with store:
        if args.command == "ingest":
            return _cli_ingest(store, args)
        if args.command == "runs":
            frame = store.runs_frame().drop(columns=["run_dir"])
            for column in ("created_at", "started_at", "ended_at"):
                frame[column] = pd.to_datetime(frame[column], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
            print(frame.to_string(index=False) if len(frame) else "no runs")
            return 0
        try:
            out = store.export_run(args.run, args.out, args.format)
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 1
        print(f"wrote {store.metric_count(args.run)} rows to {out}")
        return 0


def _cli_ingest(store: Store, args: argparse.Namespace) -> int:
    total = store.metric_count()

    def acknowledge(run_id: str, name: str, report: IngestReport) -> None:
        nonlocal total
        total += report.metrics
        if args.verbose:
            print(f"committed metrics={total}", flush=True)

    try:
        while True:
            report = store.ingest(max_lines=args.batch_lines, on_commit=acknowledge)
            if not args.follow:
                print(f"ingested {report.metrics} metric rows, {report.events} events, {report.artifacts} "
                      f"artifacts; {len(report.new_runs)} new runs; {report.skipped_lines} malformed lines skipped")
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
