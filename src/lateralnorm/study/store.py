"""The study store: one SQLite database per study folder (`<study>/study.db`), WAL mode, one writer.

Only the driver process writes (workers return results to it); readers (`study status`, notebooks, the
report) open the file read-only and never block it. Tables:

    schema_version(version)                           one row; a newer schema refuses to open
    meta(key, value)                                  spec (JSON), spec path, variant, workers, ...
    runs(run_id, seq, cell, cell_label, seed, config, status, attempts, worker,
         submitted_at, finished_at, wall_s, error, traceback)
    final_metrics(run_id, test_acc, test_loss, train_acc, train_loss, diverged_step,
                  samples_per_s, num_params, wall_s, out_dir, versions)
    epoch_metrics(run_id, epoch, train_loss, train_acc, test_loss, test_acc, lr, wall_s,
                  samples_per_s, extra)
    probe_results(run_id, probe, json)

status is one of pending / running / done / failed / diverged. A run reaches done (or diverged) in one
transaction together with all its results, so a reader or a killed driver never sees half a run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lateralnorm.errors import UsageError
from lateralnorm.runconfig import RunResult

SCHEMA_VERSION = 1
DB_NAME = "study.db"
STATUSES = ("pending", "running", "done", "failed", "diverged")
FINISHED = ("done", "diverged")
FINAL_FIELDS = (
    "test_acc", "test_loss", "train_acc", "train_loss", "diverged_step", "samples_per_s", "num_params", "wall_s",
)  # fmt: skip
EPOCH_FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "wall_s", "samples_per_s")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    cell TEXT NOT NULL,
    cell_label TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN {STATUSES!r}),
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    submitted_at REAL,
    finished_at REAL,
    wall_s REAL,
    error TEXT,
    traceback TEXT
);
CREATE TABLE IF NOT EXISTS final_metrics (
    run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
    test_acc REAL, test_loss REAL, train_acc REAL, train_loss REAL, diverged_step INTEGER,
    samples_per_s REAL, num_params INTEGER, wall_s REAL, out_dir TEXT, versions TEXT
);
CREATE TABLE IF NOT EXISTS epoch_metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, test_loss REAL, test_acc REAL, lr REAL, wall_s REAL, samples_per_s REAL,
    extra TEXT,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS probe_results (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    probe TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (run_id, probe)
);
"""


def db_path(study_dir: str | Path) -> Path:
    return Path(study_dir) / DB_NAME


def _db_problem(path: Path, e: Exception, readonly: bool) -> str:
    """One line for an unusable database file."""
    text = str(e)
    if "full" in text:
        return f"{path}: the disk is full ({text}); free space and run again (finished runs are kept)"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        where = "read" if readonly else "write"
        return f"cannot {where} {path} ({text}): check permissions, or pass --out to use a writable folder"
    return (f"{path} is not a readable study database ({text}): it is corrupt or truncated; restore it from a "
            "copy (nothing was changed), or `lateralnorm study check` it")  # fmt: skip


def _num(x: Any) -> Any:
    """NaN and inf do not survive SQLite REAL round trips portably: store them as NULL."""
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    return x


class Store:
    """The SQLite store of one study folder. `Store(dir)` opens for writing (creating the schema);
    `Store(dir, readonly=True)` opens an existing store for reading only."""

    def __init__(self, study_dir: str | Path, readonly: bool = False) -> None:
        self.study_dir = Path(study_dir)
        self.path = db_path(study_dir)
        self.readonly = readonly
        if self.path.exists() and self.path.is_file() and self.path.stat().st_size == 0:
            raise UsageError(
                f"{self.path} is empty (0 bytes), not a study database: restore it from a copy, or move it away "
                "to start the study over (nothing was changed)"
            )
        try:
            if readonly:
                if not self.path.exists():
                    raise UsageError(
                        f"{self.study_dir} is not a study folder (no {DB_NAME}): "
                        "give the folder `lateralnorm study run` wrote, e.g. runs/q1"
                    )
                self.conn = self._open_readonly()
            else:
                self.study_dir.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process in WAL mode
                (quick,) = self.conn.execute("PRAGMA quick_check").fetchone()
                if quick != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {quick}")
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._check_schema()
        except (
            sqlite3.DatabaseError,
            UnicodeDecodeError,
        ) as e:  # a damaged file can garble SQLite's own text
            raise UsageError(_db_problem(self.path, e, readonly)) from None

    def _open_readonly(self) -> sqlite3.Connection:
        """Read-only; a database left in WAL mode on read-only storage (no -shm can be made) opens as
        immutable, which is safe there because nothing can write it."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if os.access(self.path.parent, os.W_OK):
                raise
        return sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, isolation_level=None)

    # ------------------------------------------------------------------------------------ schema
    def _check_schema(self) -> None:
        has = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        version = self.conn.execute("SELECT version FROM schema_version").fetchone() if has else None
        if version is None:
            if self.readonly:
                raise UsageError(
                    f"{self.path} has no study schema: was it written by `lateralnorm study run`?"
                )
            with self.transaction() as c:
                for statement in _SCHEMA.split(";"):  # executescript would commit mid-transaction
                    if statement.strip():
                        c.execute(statement)
                c.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif version[0] > SCHEMA_VERSION:
            raise UsageError(
                f"{self.path} has schema version {version[0]}, newer than this lateralnorm "
                f"({SCHEMA_VERSION}): upgrade lateralnorm to read it"
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        """A writer folds the WAL into the database file and leaves it in rollback-journal mode, so a closed
        study is one self-contained file: safe to commit or copy, and readable on read-only storage."""
        if not self.readonly:
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self.conn.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error:  # a reader still has it open: it stays in WAL mode, still consistent
                pass
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def check(self) -> tuple[list[str], list[str]]:
        """(problems, notes): SQLite's integrity check, then the records' consistency: every finished run
        has its final metrics, no metrics belong to an unknown or unfinished run, statuses are known. Notes
        name finished runs whose artifacts folder is missing (normal for committed results)."""
        problems = [] if (r := self.integrity_check()) == "ok" else [f"SQLite integrity check: {r}"]
        if problems:
            return problems, []
        q = self.conn.execute
        for (rid,) in q("SELECT run_id FROM runs WHERE status IN ('done','diverged') AND run_id NOT IN "
                        "(SELECT run_id FROM final_metrics)"):  # fmt: skip
            problems.append(f"run {rid} is finished but has no final metrics")
        for table in ("final_metrics", "epoch_metrics", "probe_results"):
            (n,) = q(f"SELECT COUNT(*) FROM {table} WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchone()
            if n:
                problems.append(f"{n} row(s) of {table} belong to no run")
        (n,) = q("SELECT COUNT(*) FROM final_metrics f JOIN runs r USING (run_id) "
                 "WHERE r.status NOT IN ('done','diverged')").fetchone()  # fmt: skip
        if n:
            problems.append(f"{n} run(s) have final metrics but are not finished")
        notes = []
        missing = [r["run_id"] for r in q("SELECT run_id FROM runs WHERE status='done'")
                   if not (self.study_dir / "artifacts" / r["run_id"]).is_dir()]  # fmt: skip
        if missing:
            notes.append(f"{len(missing)} finished run(s) have no artifacts folder (checkpoints are not kept "
                         "with committed results; probes on them need a rerun)")  # fmt: skip
        return problems, notes

    # -------------------------------------------------------------------------------------- meta
    def set_meta(self, **items: Any) -> None:
        with self.transaction() as c:
            for key, value in items.items():
                c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self) -> dict[str, Any]:
        try:
            return {
                r["key"]: json.loads(r["value"]) for r in self.conn.execute("SELECT key, value FROM meta")
            }
        except (sqlite3.DatabaseError, ValueError) as e:  # UnicodeDecodeError is a ValueError
            raise UsageError(_db_problem(self.path, e, self.readonly)) from None

    # -------------------------------------------------------------------------------------- runs
    def add_runs(self, planned: Iterable[Any]) -> int:
        """Insert planned runs not yet known (idempotent). Returns how many were new."""
        with self.transaction() as c:
            (start,) = c.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM runs").fetchone()
            new = 0
            for p in planned:
                cur = c.execute(
                    "INSERT OR IGNORE INTO runs (run_id, seq, cell, cell_label, seed, config) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        p.run_id,
                        start + new,
                        json.dumps(p.cell),
                        p.cell_label,
                        p.seed,
                        p.config.model_dump_json(),
                    ),
                )
                new += cur.rowcount
        return new

    def requeue_running(self, run_ids: Iterable[str] | None = None) -> int:
        """Runs left 'running' (by a killed driver, or in flight at Ctrl-C) go back to pending."""
        with self.transaction() as c:
            if run_ids is None:
                cur = c.execute("UPDATE runs SET status='pending', worker=NULL WHERE status='running'")
                return cur.rowcount
            n = 0
            for rid in run_ids:
                n += c.execute(
                    "UPDATE runs SET status='pending', worker=NULL WHERE run_id=? AND status='running'",
                    (rid,),
                ).rowcount
            return n

    def status_of(self, run_ids: Iterable[str]) -> dict[str, str]:
        ids = list(run_ids)
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = f"SELECT run_id, status FROM runs WHERE run_id IN ({','.join('?' * len(chunk))})"
            out.update({r["run_id"]: r["status"] for r in self.conn.execute(q, chunk)})
        return out

    def mark_running(self, run_id: str, worker: str) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status='running', attempts=attempts+1, worker=?, submitted_at=?, "
                "error=NULL, traceback=NULL WHERE run_id=?",
                (worker, time.time(), run_id),
            )

    def record_result(self, result: RunResult, wall_s: float | None = None) -> None:
        """The run's status (done / diverged), final and per-epoch metrics and probes: one transaction."""
        rid = result.run_id
        with self.transaction() as c:
            for table in ("final_metrics", "epoch_metrics", "probe_results"):
                c.execute(f"DELETE FROM {table} WHERE run_id=?", (rid,))
            c.execute(
                f"INSERT INTO final_metrics (run_id, {', '.join(FINAL_FIELDS)}, out_dir, versions) "
                f"VALUES (?, {', '.join('?' * len(FINAL_FIELDS))}, ?, ?)",
                (
                    rid,
                    *(_num(getattr(result, f)) for f in FINAL_FIELDS),
                    result.out_dir,
                    json.dumps(result.versions),
                ),
            )
            for m in result.history:
                extra = {k: v for k, v in m.model_dump().items() if k not in EPOCH_FIELDS and k != "epoch"}
                c.execute(
                    f"INSERT OR REPLACE INTO epoch_metrics (run_id, epoch, {', '.join(EPOCH_FIELDS)}, extra) "
                    f"VALUES (?, ?, {', '.join('?' * len(EPOCH_FIELDS))}, ?)",
                    (
                        rid,
                        m.epoch,
                        *(_num(getattr(m, f)) for f in EPOCH_FIELDS),
                        json.dumps(extra, default=str),
                    ),
                )
            for probe, value in result.probes.items():
                c.execute(
                    "INSERT INTO probe_results VALUES (?, ?, ?)", (rid, probe, json.dumps(value, default=str))
                )
            cur = c.execute(
                "UPDATE runs SET status=?, finished_at=?, wall_s=?, error=NULL, traceback=NULL WHERE run_id=?",
                (result.status, time.time(), wall_s if wall_s is not None else result.wall_s, rid),
            )
            if cur.rowcount != 1:
                raise KeyError(f"run {rid} is not in the store")

    def runs_with_probes(self, probes: Iterable[str]) -> list[sqlite3.Row]:
        """Finished ('done') runs that hold a row of one of these probes, in plan order: run_id, cell_label,
        config (JSON), the final metrics and versions (JSON)."""
        names = tuple(probes)
        return self.rows(
            f"SELECT DISTINCT r.run_id, r.seq, r.cell_label, r.config, {', '.join('f.' + k for k in FINAL_FIELDS)}, "
            "f.versions "
            "FROM runs r JOIN final_metrics f USING (run_id) JOIN probe_results p USING (run_id) "
            f"WHERE r.status = 'done' AND p.probe IN ({', '.join('?' * len(names))}) ORDER BY r.seq",
            names,
        )

    def replace_probes(self, run_id: str, probes: dict[str, Any]) -> None:
        """Replace these probes' rows of one finished run (recomputed: `lateralnorm study reprobe`), one
        transaction; the run's other records are untouched."""
        with self.transaction() as c:
            (status,) = c.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone() or (None,)
            if status not in ("done", "diverged"):
                raise KeyError(f"run {run_id} is not a finished run of this store")
            for probe, value in probes.items():
                c.execute("DELETE FROM probe_results WHERE run_id=? AND probe=?", (run_id, probe))
                c.execute(
                    "INSERT INTO probe_results VALUES (?, ?, ?)",
                    (run_id, probe, json.dumps(value, default=str)),
                )

    def record_failure(
        self, run_id: str, error: str, traceback: str | None = None, wall_s: float | None = None
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status='failed', finished_at=?, wall_s=?, error=?, traceback=? WHERE run_id=?",
                (time.time(), wall_s, error, traceback, run_id),
            )

    # ----------------------------------------------------------------------------------- reading
    def counts(self) -> dict[str, int]:
        rows = self.rows("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
        out = dict.fromkeys(STATUSES, 0)
        out.update({r["status"]: r["n"] for r in rows})
        return out

    def run_rows(self) -> list[sqlite3.Row]:
        """Every run in plan order with its final metrics: run_id, cell_label, seed, status, attempts, error,
        task_wall_s, config (JSON), then FINAL_FIELDS and versions (JSON) (NULL until the run finished)."""
        return self.rows(
            "SELECT r.run_id, r.cell_label, r.seed, r.status, r.attempts, r.error, r.wall_s AS task_wall_s, "
            "r.config, " + ", ".join(f"f.{c}" for c in FINAL_FIELDS) + ", f.versions "
            "FROM runs r LEFT JOIN final_metrics f USING (run_id) ORDER BY r.seq"
        )

    def epoch_rows(self) -> list[sqlite3.Row]:
        """One row per (run, epoch) in plan order: run_id, cell, seed, epoch, EPOCH_FIELDS, extra (JSON)."""
        return self.rows(
            "SELECT e.run_id, r.cell_label AS cell, r.seed, e.epoch, "
            + ", ".join(f"e.{c}" for c in EPOCH_FIELDS)
            + ", e.extra FROM epoch_metrics e JOIN runs r USING (run_id) ORDER BY r.seq, e.epoch"
        )

    def probe_rows(self) -> list[sqlite3.Row]:
        """One row per (run, probe) in plan order: run_id, cell, seed, probe, json."""
        return self.rows(
            "SELECT p.run_id, r.cell_label AS cell, r.seed, p.probe, p.json FROM probe_results p "
            "JOIN runs r USING (run_id) ORDER BY r.seq, p.probe"
        )

    def mean_run_wall_s(self) -> float | None:
        """Mean wall time of the runs that ended (done, diverged or failed); None before any did."""
        return self.rows("SELECT AVG(wall_s) FROM runs WHERE status IN ('done','diverged','failed')")[0][0]

    def last_finished_at(self) -> float | None:
        """When the last run ended (seconds since the epoch), None before any did."""
        return self.rows("SELECT MAX(finished_at) FROM runs")[0][0]

    def failure_tracebacks(self) -> dict[str, str]:
        """run_id → traceback of every failed run."""
        return dict(self.rows("SELECT run_id, traceback FROM runs WHERE status='failed'"))

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """A query's rows; a damaged database is a one-line UsageError."""
        try:
            return self.conn.execute(sql, params).fetchall()
        except UnicodeDecodeError as e:
            raise UsageError(_db_problem(self.path, e, self.readonly)) from None
        except sqlite3.DatabaseError as e:
            if any(w in str(e) for w in ("locked", "full", "readonly", "disk I/O", "unable to open")):
                raise  # storage, not content: the caller's (and the CLI's) to handle
            raise UsageError(_db_problem(self.path, e, self.readonly)) from None
