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


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it starts with the gzip magic (whatever its name)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataFileError(f"cannot read {path}: {e.strerror or e}") from e
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataFileError(f"{path} is a corrupt or truncated gzip file ({e}); download it again") from e


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file into an array of its declared shape and dtype (native byte order).

    Raises DataFileError naming the file when the magic, the dimensions or the length is wrong.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataFileError(f"{path} is not an IDX file (bad magic number); download it again")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise DataFileError(f"{path}: unknown IDX element type 0x{type_code:02x}; download it again")
    if ndim == 0:
        raise DataFileError(f"{path}: IDX header declares zero dimensions; download it again")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataFileError(f"{path} is truncated inside its header; download it again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise DataFileError(
            f"{path} is {what}: header {dims} needs {expected} data bytes, found {actual}; download it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
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
