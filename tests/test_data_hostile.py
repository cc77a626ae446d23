"""Hostile data files: gzip bombs, lying headers and size overflows end as one-line errors in bounded memory
(issue: hostile input). Each test fails if its protection is removed."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import numpy as np
import pytest

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
