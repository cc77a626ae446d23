"""kill -9 of a study driver at a random moment, then resume (the pool runs test_study_run.fake_run)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from lateralnorm.study import InlineExecutor, Store, load_spec, run_study
from test_study_run import fake_run, logged


def test_sigkill_mid_study_then_resume(tmp_path, monkeypatch):
    """kill -9 the driver at a random moment: the store stays consistent and the next run finishes the rest."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        'name = "kill"\nseeds = [0, 1, 2]\n[base]\nepochs = 3\n[grid]\nlr = [0.01, 0.02, 0.03, 0.04]\n'
    )
    log, out = tmp_path / "calls.log", tmp_path / "study"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent),
        "FAKE_RUN_LOG": str(log),
        "FAKE_RUN_DELAY": "0.15",
    }
    cmd = [sys.executable, "-m", "lateralnorm.cli", "study", "run", str(spec_path), "--out", str(out),
           "--workers", "2", "--run-fn", "test_study_run:fake_run"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    kill_after = rng.randint(1, 8)
    reported, deadline = [], time.time() + 120
    while len(reported) < kill_after and time.time() < deadline:
        line = proc.stdout.readline()
        assert line, f"driver ended early (seed {seed})"
        if "] done" in line:
            reported.append(line.split()[3] if line.startswith("[ ") else line.split()[2])
    time.sleep(rng.uniform(0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    rest = proc.stdout.read()  # until the workers and the resource tracker, which share the pipe, are gone
    proc.stdout.close()
    assert "leaked semaphore" not in rest, rest  # the tracker's cleanup after a kill is expected: no warning

    # the pool workers notice their driver is gone and exit
    pids = {int(line.split()[1]) for line in log.read_text().splitlines()}
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{p}").exists() for p in pids), f"orphan workers left (seed {seed})"

    with Store(out, readonly=True) as store:
        assert store.integrity_check() == "ok"
        counts = store.counts()
        assert sum(counts.values()) == 12 and counts["failed"] == 0, (counts, seed)
        done = {r["run_id"] for r in store.rows("SELECT run_id FROM runs WHERE status='done'")}
        assert set(reported) <= done, seed  # everything reported finished is in the store, once
        assert store.rows("SELECT COUNT(*) FROM final_metrics")[0][0] == len(done)
        assert store.rows("SELECT COUNT(*) FROM epoch_metrics")[0][0] == 3 * len(done)
    before = len(logged(log))
    monkeypatch.setenv("FAKE_RUN_LOG", str(log))

    r = run_study(load_spec(spec_path), out, executor=InlineExecutor(fake_run), echo=lambda s: None)
    assert r.skipped == len(done) and r.done == 12 - len(done) and not r.failed, seed
    rerun = logged(log)[before:]
    assert not set(rerun) & done and len(rerun) == 12 - len(done), seed  # finished runs are not redone
    with Store(out, readonly=True) as store:
        assert store.counts()["done"] == 12 and store.integrity_check() == "ok"
        assert store.rows("SELECT COUNT(*) FROM epoch_metrics")[0][0] == 36
