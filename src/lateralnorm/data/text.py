"""English text for a causal language-model task: the Debian `fortunes` packages, read as bytes.

Why this corpus: it is plain English text (quotations, jokes, definitions, poems), installs offline from the
Debian registry with `apt-get install fortunes` (the Makefile does it as root), is about 2 MB, and comes already
cut into documents (one fortune each, separated by a line holding `%`), so the split can be made by document.

    docs = load_documents()                       # list[bytes], one fortune each, in a fixed order
    splits = split_documents(docs)                # {"train", "val", "test"}: lists of documents
    x, y = windows(b"".join(...), context=64)     # (N, 64) inputs and (N, 64) next-byte targets, uint8 → int64

Vocabulary: bytes (256 symbols; the corpus is ASCII, so a byte is a character and nats per byte are nats per
character). Documents are joined with a 0x1E (record separator) byte. The split is deterministic: each
document goes to train / validation / test by the SHA-1 of its text (80/10/10), whatever the file order.
`ngram_baselines` gives the unigram and bigram cross-entropy (add-one smoothing, fitted on the training split)
on the same evaluation split: a model has learned something only below them.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

from lateralnorm.data.idx import DataFileError

TEXT_DIRS = ["/usr/share/games/fortunes"]
SEPARATOR = b"\x1e"
VOCAB = 256
HOW_TO_GET = "install the Debian package `fortunes` (apt-get install fortunes), or put plain-text fortune files " \
    "(documents separated by lines holding %) in --data-dir or $LATERALNORM_DATA/fortunes"  # fmt: skip


def corpus_dir(data_dir: str | None = None) -> Path:
    """The first folder holding fortune files: data_dir, $LATERALNORM_DATA/fortunes, the Debian package's."""
    candidates = [Path(data_dir)] if data_dir else []
    env = os.environ.get("LATERALNORM_DATA")
    if env:
        candidates.append(Path(env) / "fortunes")
    candidates += [Path(p) for p in TEXT_DIRS]
    for folder in candidates:
        if folder.is_dir() and _files(folder):
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise DataFileError(f"no fortune files found (looked in {where}); {HOW_TO_GET}")


def _files(folder: Path) -> list[Path]:
    """Plain fortune files: not the .dat indexes, not the .u8 copies, no hidden files."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix not in (".dat", ".u8"))  # fmt: skip


def load_documents(data_dir: str | None = None) -> list[bytes]:
    """Every fortune of every file, stripped, empty ones dropped, in file-name then file order."""
    folder = corpus_dir(data_dir)
    docs: list[bytes] = []
    for path in _files(folder):
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DataFileError(f"cannot read {path}: {e.strerror or e}") from e
        for part in raw.replace(b"\r\n", b"\n").split(b"\n%\n"):
            text = part.strip(b"%\n ").replace(SEPARATOR, b" ")
            if text:
                docs.append(text)
    if len(docs) < 30:
        raise DataFileError(f"{folder} holds only {len(docs)} documents; {HOW_TO_GET}")
    return docs


def split_documents(docs: list[bytes]) -> dict[str, list[bytes]]:
    """80/10/10 by the SHA-1 of each document's text: deterministic, by document, independent of order."""
    out: dict[str, list[bytes]] = {"train": [], "val": [], "test": []}
    for d in docs:
        bucket = int.from_bytes(hashlib.sha1(d).digest()[:4], "big") % 10
        out["train" if bucket < 8 else "val" if bucket == 8 else "test"].append(d)
    return out


def join(docs: list[bytes]) -> np.ndarray:
    """The documents as one uint8 stream, each followed by the separator byte."""
    return np.frombuffer(b"".join(d + SEPARATOR for d in docs), dtype=np.uint8)


def windows(stream: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows: inputs (N, context) and the next byte of each position (N, context)."""
    n = (len(stream) - 1) // context
    if n < 1:
        raise DataFileError(f"the text is shorter than one window of {context} bytes")
    x = stream[: n * context].reshape(n, context)
    y = stream[1 : n * context + 1].reshape(n, context)
    return x.astype(np.int64), y.astype(np.int64)


def ngram_baselines(train: np.ndarray, evaluate: np.ndarray) -> dict[str, float]:
    """Cross-entropy in nats per byte of a unigram and a bigram model (add-one smoothing) fitted on `train`,
    measured on `evaluate` (its first byte is scored by the unigram model in both)."""
    uni = np.bincount(train, minlength=VOCAB).astype(np.float64) + 1.0
    p_uni = uni / uni.sum()
    big = np.ones((VOCAB, VOCAB))
    np.add.at(big, (train[:-1], train[1:]), 1.0)
    p_big = big / big.sum(axis=1, keepdims=True)
    ev = evaluate.astype(np.int64)
    h_uni = -np.log(p_uni[ev]).mean()
    h_big = -(np.log(p_uni[ev[0]]) + np.log(p_big[ev[:-1], ev[1:]]).sum()) / len(ev)
    return {"unigram_nats": float(h_uni), "bigram_nats": float(h_big),
            "unigram_bits": float(h_uni / math.log(2)), "bigram_bits": float(h_big / math.log(2))}  # fmt: skip
