"""Reading IDX files (the MNIST / Fashion-MNIST format) with NumPy, gzip or raw.

Layout of an IDX file:  bytes 0-1 zero, byte 2 the element type, byte 3 the number of dimensions d,
then d big-endian uint32 sizes, then prod(sizes) elements, big-endian, row-major.
Every check names the file, so a corrupt or truncated download never becomes garbage tensors.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from lateralnorm import atomic
from lateralnorm.errors import UsageError

# IDX type byte -> big-endian NumPy dtype
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
GZIP_MAGIC = b"\x1f\x8b"


class DataFileError(UsageError):
    """A data file is missing, corrupt or truncated; the message names the file and what to do."""


MAX_DATA_BYTES = 8 * 2**30  # a declared size above this is refused before anything is allocated
CHUNK = 1 << 20


def _open(path: Path) -> tuple[object, bool]:
    """A binary stream of the file's content (gzip-decompressing when it starts with the gzip magic)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the caller
        gz = f.read(2) == GZIP_MAGIC
        f.seek(0)
    except OSError as e:
        raise DataFileError(f"cannot read {path}: {e.strerror or e}") from e
    return (gzip.GzipFile(fileobj=f, mode="rb") if gz else f), gz


def _read(stream: object, n: int, path: Path, gz: bool) -> bytes:
    """Up to n bytes; a broken gzip stream is a one-line DataFileError."""
    try:
        return stream.read(n)  # type: ignore[attr-defined]
    except (OSError, EOFError, zlib.error) as e:
        if gz:
            raise DataFileError(f"{path} is a corrupt or truncated gzip file ({e}); download it again") from e
        raise DataFileError(f"cannot read {path}: {e}") from e


def read_idx(path: str | os.PathLike[str], max_bytes: int = MAX_DATA_BYTES) -> np.ndarray:
    """Read one IDX file into an array of its declared shape and dtype (native byte order).

    The header is read first; the data are then read (and decompressed) as a stream into a buffer that grows
    with what the file holds, and reading stops as soon as it holds more than the declared size: a gzip bomb
    costs at most the declared size (itself capped at `max_bytes`), and a header that declares more than the
    file holds costs only what it holds. Raises DataFileError naming the
    file when the magic, the dimensions, the declared size or the length is wrong.
    """
    path = Path(path)
    stream, gz = _open(path)
    try:
        head = _read(stream, 4, path, gz)
        if len(head) < 4 or head[0] != 0 or head[1] != 0:
            raise DataFileError(f"{path} is not an IDX file (bad magic number); download it again")
        type_code, ndim = head[2], head[3]
        if type_code not in IDX_DTYPES:
            raise DataFileError(f"{path}: unknown IDX element type 0x{type_code:02x}; download it again")
        if ndim == 0:
            raise DataFileError(f"{path}: IDX header declares zero dimensions; download it again")
        raw_dims = _read(stream, 4 * ndim, path, gz)
        if len(raw_dims) < 4 * ndim:
            raise DataFileError(f"{path} is truncated inside its header; download it again")
        dims = tuple(int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
        dtype = np.dtype(IDX_DTYPES[type_code])
        expected = dtype.itemsize
        for d in dims:  # Python integers: no overflow whatever the header says
            expected *= d
        if expected > max_bytes:
            raise DataFileError(
                f"{path}: header {dims} declares {expected:,} data bytes, more than the {max_bytes:,} allowed; "
                "the file is corrupt or not a data set"
            )
        # the buffer grows with what the file holds, never to the declared size first: a header that lies (a
        # few hundred bytes declaring gigabytes) costs what the file holds, not a MemoryError or gigabytes
        buf = bytearray()
        while len(buf) < expected:
            chunk = _read(stream, min(CHUNK, expected - len(buf)), path, gz)
            if not chunk:
                break
            buf += chunk
        got = len(buf)
        extra = _read(stream, 1, path, gz) if got == expected else b""
    finally:
        stream.close()  # type: ignore[attr-defined]
    if got != expected or extra:
        what = "truncated" if got < expected else "longer than its header says"
        found = f"{got}" if got < expected else f"more than {expected}"
        raise DataFileError(
            f"{path} is {what}: header {dims} needs {expected} data bytes, found {found}; download it again"
        )
    arr = np.frombuffer(buf, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool = False) -> None:
    """Write `array` as an IDX file (used by tests and to cache converted data). Atomic."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, f4, f8"
        )
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    blob = header + np.ascontiguousarray(array).astype(dtype.newbyteorder(">")).tobytes()
    if compress:
        blob = gzip.compress(blob, mtime=0)
    atomic.write_bytes(path, blob)
