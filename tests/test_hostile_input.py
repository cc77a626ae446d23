"""Hostile input and failing disks: gzip bombs, lying headers, size overflows, refused checkpoints, full or
(issue: hostile input). Each test fails if its protection is removed."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lateralnorm.data import DataFileError, read_idx, write_idx


def _header(dims: tuple[int, ...], code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def _gzip_stream(header: bytes, zeros: int) -> bytes:
    """header + `zeros` zero bytes, gzip-compressed without ever holding the zeros in memory."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    out = [comp.compress(header)]
    block = bytes(1 << 20)
    for _ in range(zeros // len(block)):
        out.append(comp.compress(block))
    out.append(comp.flush())
    return b"".join(out)


def test_gzip_bomb_stops_at_the_declared_size(tmp_path):
    path = tmp_path / "bomb-idx1-ubyte.gz"
    path.write_bytes(_gzip_stream(_header((16,)), 512 << 20))  # 16 bytes declared, 512 MiB inside
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DataFileError, match="longer than its header says"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # the whole stream would be 512 MiB


def test_a_huge_declared_size_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(_header((60000, 28, 28, 1000)) + bytes(100)))
    with pytest.raises(DataFileError, match=r"declares 47,040,000,000 data bytes, more than"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_a_header_that_lies_costs_what_the_file_holds_not_what_it_declares(tmp_path, gz):
    """A few hundred bytes whose header declares 4 GB (under the 8 GiB cap): a one-line 'truncated' error,
    without allocating the declared size first (which is a MemoryError on a small machine)."""
    path = tmp_path / "liar"
    blob = _header((1000, 1000, 4000)) + bytes(300)
    path.write_bytes(gzip.compress(blob) if gz else blob)
    tracemalloc.start()
    try:
        with pytest.raises(
            DataFileError, match=r"is truncated: header \(1000, 1000, 4000\) needs 4000000000"
        ):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_dimensions_that_overflow_64_bits_are_not_wrapped(tmp_path):
    path = tmp_path / "wrap"
    dims = (2**32 - 1, 2**32 - 1, 2**32 - 1)  # the product wraps in int64
    path.write_bytes(_header(dims, 0x0E) + bytes(64))
    with pytest.raises(DataFileError) as e:
        read_idx(path)
    assert "-" not in str(e.value).split("declares")[1].split("data bytes")[0]  # a positive size
    assert "\n" not in str(e.value)


def test_true_length_is_still_checked_and_good_files_still_load(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "ok.gz", a, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.gz"), a)
    blob = (tmp_path / "ok.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(gzip.compress(gzip.decompress(blob)[:-3]))
    with pytest.raises(DataFileError, match="truncated: header \\(2, 3, 4\\) needs 24 data bytes, found 21"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "broken.gz").write_bytes(blob[:-12])
    with pytest.raises(DataFileError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "broken.gz")


def test_a_refused_checkpoint_is_one_line_that_never_suggests_unsafe_loading(tmp_path, capsys):
    import os

    import torch

    from lateralnorm.cli import main
    from lateralnorm.errors import UsageError
    from lateralnorm.runconfig import RunConfig
    from lateralnorm.train import load_run, run

    out = tmp_path / "run"
    run(RunConfig(dataset="digits", model="mlp", width=8, epochs=1, out_dir=str(out)), progress=False)
    assert load_run(out).model is not None

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, out / "checkpoint.pt")
    for content in (None, b"garbage"):
        if content is not None:
            (out / "checkpoint.pt").write_bytes(content)
        with pytest.raises(UsageError) as e:
            load_run(out)
        text = str(e.value)
        assert "tampered" in text and "weights_only" not in text and "\n" not in text
    assert main(["probe", str(out), "--probe", "sparsity"]) == 2
    assert "pwned" not in capsys.readouterr().out


def test_report_never_reads_a_file_the_database_names(tmp_path):
    from lateralnorm.report import build_report
    from lateralnorm.runconfig import EpochMetrics, RunConfig, RunResult
    from lateralnorm.study import InlineExecutor, Store, run_study, validate_spec

    def fake_noisy_ln(config: RunConfig) -> RunResult:
        m = EpochMetrics(epoch=1, train_loss=1, train_acc=0.5, test_loss=1, test_acc=0.5, lr=config.lr, wall_s=0.0,
                         samples_per_s=1.0)  # fmt: skip
        return RunResult(run_id=config.run_id(), config=config.model_dump(mode="json"), status="done",
                         test_acc=0.5, history=[m], out_dir=config.out_dir)  # fmt: skip

    secret = tmp_path / "secret.txt"
    secret.write_text("# TOPSECRET-LINE\n")
    spec = validate_spec({"name": "s", "seeds": [0], "base": {"epochs": 1}, "grid": {"norm": ["ln"]}})
    run_study(spec, tmp_path / "s", executor=InlineExecutor(fake_noisy_ln), echo=lambda s: None)
    with Store(tmp_path / "s") as store:
        store.set_meta(spec_path=str(secret), spec_header=None)
    html, _ = build_report([tmp_path / "s"], tmp_path / "r.html")
    assert "TOPSECRET" not in html.read_text()


@pytest.mark.parametrize(
    "exc, words",
    [
        ("enospc", "the disk is full"),
        ("erofs", "read-only"),
        ("sqlite_full", "the disk is full"),
        ("sqlite_ro", "cannot be written"),
    ],
)
def test_full_or_read_only_disks_end_in_one_line_with_exit_2(exc, words, monkeypatch, capsys, tmp_path):
    import errno
    import sqlite3

    import lateralnorm.study
    from lateralnorm.cli import main

    errors = {
        "enospc": OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x")),
        "erofs": OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x")),
        "sqlite_full": sqlite3.OperationalError("database or disk is full"),
        "sqlite_ro": sqlite3.OperationalError("attempt to write a readonly database"),
    }

    def fail(*a, **k):
        raise errors[exc]

    monkeypatch.setattr(lateralnorm.study, "run_study", fail)
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[grid]\nnorm = ["ln"]\n')
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "run the same command again" in err and "\n" not in err and "Traceback" not in err


def test_zero_byte_and_garbage_stores_are_refused_and_left_alone(tmp_path, capsys):
    from lateralnorm.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\nseeds = [0]\n[base]\nepochs = 1\n[grid]\nnorm = ["ln"]\n')
    for content, words in ((b"", "is empty (0 bytes)"), (b"garbage" * 300, "corrupt or truncated")):
        folder = tmp_path / f"s{len(content)}"
        folder.mkdir()
        (folder / "study.db").write_bytes(content)
        for argv in (["study", "status", str(folder)], ["study", "summary", str(folder)],
                     ["report", str(folder), "-o", str(tmp_path / "r.html")],
                     ["study", "run", str(spec), "--out", str(folder), "--executor", "inline"]):  # fmt: skip
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert words in err and "\n" not in err, argv
        assert (folder / "study.db").read_bytes() == content  # never overwritten
        assert not (folder / "artifacts").exists()


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--epochs", "99999999999999999999", "less than or equal to 100000"),
        ("--depth", "1000000", "less than or equal to 256"),
        ("--samples", "99999999999", "less than or equal to 10000000"),
        ("--width", "1000000000", "less than or equal to 65536"),
        ("--seed", "100000000000000000000", "less than or equal to 9223372036854775807"),
        ("--threads", "100000", "less than or equal to 1024"),
        ("--lr", "inf", "finite"),
        ("--weight-decay", "inf", "finite"),
        ("--width", "60000", "GiB for the mlp's weights"),
    ],
)
def test_unbounded_sizes_are_refused_before_anything_is_written(flag, value, words, tmp_path, capsys):
    from lateralnorm.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", "mnist1d", flag, value, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not out.exists()


def test_specs_get_the_same_limits(tmp_path):
    from lateralnorm.errors import UsageError
    from lateralnorm.study import validate_spec

    with pytest.raises(UsageError, match="less than or equal to 100000"):
        validate_spec({"name": "x", "base": {"epochs": 10**9}, "grid": {"norm": ["ln"]}})
    with pytest.raises(UsageError, match="GiB"):
        validate_spec({"name": "x", "grid": {"width": [8, 60000]}})


def test_train_and_test_images_of_different_shapes_are_refused_before_a_run_folder(tmp_path, capsys):
    from lateralnorm.cli import main

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    write_idx(data / "train-images-idx3-ubyte", rng.integers(0, 255, (20, 5, 7), dtype=np.uint8))
    write_idx(data / "train-labels-idx1-ubyte", rng.integers(0, 10, 20).astype(np.uint8))
    write_idx(data / "t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 28, 28), dtype=np.uint8))
    write_idx(data / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 10).astype(np.uint8))
    out = tmp_path / "run"
    argv = [
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        str(data),
        "--model",
        "mlp",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "5×7 images but" in err and "28×28" in err and "\n" not in err
    assert not out.exists()
    write_idx(data / "t10k-labels-idx1-ubyte", np.full(10, 12, dtype=np.uint8))  # labels out of range
    write_idx(data / "t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 5, 7), dtype=np.uint8))
    assert main(argv) == 2
    assert "labels outside 0..9" in capsys.readouterr().err and not out.exists()


def _small_study(path):
    from lateralnorm.runconfig import EpochMetrics, RunConfig, RunResult
    from lateralnorm.study import InlineExecutor, run_study, validate_spec

    def fake(config: RunConfig) -> RunResult:
        m = EpochMetrics(epoch=1, train_loss=1, train_acc=0.5, test_loss=1, test_acc=0.5 + 0.01 * config.seed,
                         lr=config.lr, wall_s=0.0, samples_per_s=1.0)  # fmt: skip
        return RunResult(run_id=config.run_id(), config=config.model_dump(mode="json"), status="done",
                         test_acc=m.test_acc, history=[m], out_dir=config.out_dir)  # fmt: skip

    spec = validate_spec(
        {"name": "s", "seeds": [0, 1, 2], "base": {"epochs": 1}, "grid": {"norm": ["ln", "rms"]}}
    )
    run_study(spec, path, executor=InlineExecutor(fake), echo=lambda s: None)


def test_study_check_finds_inconsistent_records(tmp_path, capsys):
    import sqlite3

    from lateralnorm.cli import main

    _small_study(tmp_path / "s")
    assert main(["study", "check", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "s"))
    with sqlite3.connect(tmp_path / "s" / "study.db") as c:
        c.execute("INSERT INTO probe_results VALUES ('ghost', 'x', '{}')")
        c.execute("UPDATE runs SET status='pending' WHERE rowid=1")
    assert main(["study", "check", str(tmp_path / "s")]) == 1
    out = capsys.readouterr().out
    assert "belong to no run" in out and "not finished" in out


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=300), head=st.sampled_from([b"", b"\x00\x00\x08\x01", b"\x00\x00\x0d\x03"]),
       gz=st.booleans())  # fmt: skip
def test_fuzzed_idx_files_load_or_fail_in_one_line(tmp_path, data, head, gz):
    path = tmp_path / "f"
    blob = head + data
    path.write_bytes(gzip.compress(blob) if gz else blob)
    try:
        arr = read_idx(path)
    except DataFileError as e:
        assert "\n" not in str(e) and str(path) in str(e)
    else:
        assert arr.size * arr.itemsize == len(blob) - 4 - 4 * blob[3]


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30),
    byte=st.integers(0, 255),
)
def test_fuzzed_study_databases_read_or_fail_in_one_line(tmp_path_factory, offsets, byte):
    import shutil

    from lateralnorm.errors import UsageError
    from lateralnorm.study import Study

    base = tmp_path_factory.getbasetemp() / "fuzz-base"
    if not (base / "study.db").exists():
        _small_study(base)
    work = tmp_path_factory.mktemp("fz")
    shutil.copy(base / "study.db", work / "study.db")
    blob = bytearray((work / "study.db").read_bytes())
    for o in offsets:
        blob[o % len(blob)] = byte
    (work / "study.db").write_bytes(bytes(blob))
    try:
        with Study(work) as s:
            s.runs()
            s.epochs()
            s.summary()
    except UsageError as e:
        assert "\n" not in str(e)


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=400))
def test_fuzzed_checkpoints_are_refused_in_one_line(tmp_path_factory, data):
    import shutil

    from lateralnorm.errors import UsageError
    from lateralnorm.runconfig import RunConfig
    from lateralnorm.train import load_run, run

    base = tmp_path_factory.getbasetemp() / "ck-base"
    if not (base / "config.json").exists():
        run(RunConfig(dataset="digits", model="mlp", width=4, epochs=1, out_dir=str(base)), progress=False)
    work = tmp_path_factory.mktemp("ck")
    for f in ("config.json", "result.json"):
        shutil.copy(base / f, work / f)
    (work / "checkpoint.pt").write_bytes(data)
    with pytest.raises(UsageError) as e:
        load_run(work)
    assert "\n" not in str(e.value)
