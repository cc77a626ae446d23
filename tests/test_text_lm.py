"""The text task: the fortunes corpus split by document, byte windows, n-gram baselines with known answers, the
causal decoder (causality, norm slots, placements) and the trainer on a language model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lateralnorm.data import DataFileError, load_dataset
from lateralnorm.data import text as text_mod
from lateralnorm.errors import UsageError
from lateralnorm.models import build_model, norm_modules
from lateralnorm.runconfig import RunConfig


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A small fortune folder: 60 documents in two files (plus index files that must be ignored)."""
    folder = tmp_path / "fortunes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    for name in ("alpha", "beta"):
        docs = [" ".join(rng.choice(words, size=int(rng.integers(5, 30)))) for _ in range(30)]
        (folder / name).write_text("\n%\n".join(docs) + "\n%\n")
        (folder / f"{name}.dat").write_bytes(b"\x00\x01binary index")
    monkeypatch.setenv("LATERALNORM_DATA", str(tmp_path))
    monkeypatch.setattr(text_mod, "TEXT_DIRS", [])
    return folder


def test_documents_split_by_content_and_never_share_a_document(corpus):
    docs = text_mod.load_documents()
    assert len(docs) == 60 and all(b"%" not in d and d == d.strip() for d in docs)
    splits = text_mod.split_documents(docs)
    again = text_mod.split_documents(list(reversed(docs)))
    assert {k: sorted(v) for k, v in splits.items()} == {k: sorted(v) for k, v in again.items()}  # order-free
    train, test = set(splits["train"]), set(splits["test"])
    assert not (train & test) and sum(map(len, splits.values())) == 60


def test_windows_predict_the_next_byte():
    stream = np.frombuffer(b"abcdefghij", dtype=np.uint8)
    x, y = text_mod.windows(stream, 3)
    assert x.tolist() == [list(b"abc"), list(b"def"), list(b"ghi")]
    assert y.tolist() == [list(b"bcd"), list(b"efg"), list(b"hij")]
    with pytest.raises(DataFileError, match="shorter than one window"):
        text_mod.windows(stream[:2], 3)


def test_ngram_baselines_known_answers():
    # a stream that alternates a, b: unigram = 1 bit; bigram (add-one over 256) ≈ log2(258/257)... → near 0
    stream = np.frombuffer(b"ab" * 5000, dtype=np.uint8)
    r = text_mod.ngram_baselines(stream, stream)
    assert r["unigram_bits"] == pytest.approx(1.0, abs=0.06)
    assert r["bigram_bits"] < 0.1 and r["unigram_nats"] == pytest.approx(r["unigram_bits"] * math.log(2))


def test_load_dataset_gives_byte_windows_with_references(corpus):
    d = load_dataset("fortunes")
    assert d.meta.task == "lm" and d.meta.num_classes == 256 and d.x_train.shape[1:] == (64,)
    assert d.x_train.dtype == torch.int64 and d.y_train.shape == d.x_train.shape
    assert torch.equal(d.x_train[0, 1:], d.y_train[0, :-1])
    assert d.meta.reference["bigram_bits"] < d.meta.reference["unigram_bits"]
    val = load_dataset("fortunes", holdout=0.1)
    assert val.meta.evaluation == "validation" and not torch.equal(val.x_test[:1], d.x_test[:1])
    with pytest.raises(UsageError, match="language-model data set"):
        load_dataset("fortunes", random_labels=True)


def test_missing_corpus_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LATERALNORM_DATA", str(tmp_path / "nothing"))
    monkeypatch.setattr(text_mod, "TEXT_DIRS", [])
    with pytest.raises(DataFileError, match="apt-get install fortunes"):
        load_dataset("fortunes")


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_gpt_is_causal_and_has_swappable_slots(placement):
    torch.manual_seed(0)
    cfg = RunConfig(model="gpt", width=32, depth=2, norm="relu>ln", placement=placement)
    model = build_model(cfg, (16,), 256).eval()
    slots = list(norm_modules(model))
    assert slots[:2] == ["blocks.0.norm1", "blocks.0.norm2"] and ("norm_final" in slots) == (
        placement == "pre"
    )
    x = torch.randint(0, 256, (2, 16))
    y = x.clone()
    y[:, 10:] = torch.randint(0, 256, (2, 6))  # change the future only
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 16, 256)
    torch.testing.assert_close(a[:, :10], b[:, :10])  # positions before 10 cannot see it
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    assert model.head.weight is model.tok.weight


def test_language_model_trains_below_the_bigram_baseline_and_models_must_match_the_task(corpus, tmp_path):
    from lateralnorm.train import run

    cfg = RunConfig(dataset="fortunes", model="gpt", width=32, depth=1, epochs=8, lr=1e-2, batch_size=16,
                    schedule="cosine", out_dir=str(tmp_path / "r"), checkpoint=False)  # fmt: skip
    r = run(cfg, progress=False)
    ref = load_dataset("fortunes").meta.reference
    assert r.status == "done" and r.history[0].test_loss > r.test_loss
    assert r.test_loss < ref["unigram_nats"]  # it learned more than byte frequencies
    assert 0 < r.test_acc < 1
    with pytest.raises(UsageError, match="use --model gpt"):
        run(cfg.model_copy(update={"model": "mlp"}), progress=False)
    with pytest.raises(UsageError, match="use --dataset fortunes"):
        run(RunConfig(dataset="digits", model="gpt", width=16, epochs=1), progress=False)
