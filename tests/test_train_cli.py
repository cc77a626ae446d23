"""`lateralnorm train`: a real run from flags, and every kind of bad input → exit 2, one line, no files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lateralnorm.cli import main

SMALL = ["--dataset", "xor", "--samples", "120", "--width", "8", "--depth", "1"]
SMALL += ["--epochs", "2", "--threads", "1"]


def test_train_writes_a_run_and_prints_metrics(tmp_cwd, capsys):
    assert main(["train", *SMALL, "--norm", "gelu>ln", "--placement", "pre", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out  # plain lines: stdout is not a terminal
    assert out.strip().splitlines()[-1].startswith("done: test_acc")
    (run_dir,) = Path("runs").iterdir()
    header = json.loads((run_dir / "config.json").read_text())["config"]
    assert header["norm"] == "gelu>ln" and header["placement"] == "pre" and header["seed"] == 3
    assert header["width"] == 8 and header["dataset"] == "xor"
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_flags_fill_from_recipe_and_out(tmp_cwd, capsys):
    assert main(["train", "--dataset", "digits", "--model", "linear", "--epochs", "1", "--out", "here"]) == 0
    cfg = json.loads(Path("here/config.json").read_text())["config"]
    assert cfg["model"] == "linear" and cfg["epochs"] == 1 and cfg["lr"] == 1e-3  # recipe for (linear, *)


def test_quiet_and_random_labels(tmp_cwd, capsys):
    assert main(["train", *SMALL, "--random-labels", "--no-checkpoint", "--quiet", "--out", "q"]) == 0
    out = capsys.readouterr().out
    assert "epoch" not in out and not Path("q/checkpoint.pt").exists()
    assert json.loads(Path("q/config.json").read_text())["config"]["random_labels"] is True


def test_diverged_run_reports_the_step(tmp_cwd, capsys):
    args = [*SMALL, "--norm", "none", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "5", "--quiet"]
    assert main(["train", *args]) == 0
    assert "diverged at step" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, words",
    [
        (["--dataset", "fashion-mnistt"], "did you mean 'fashion-mnist'"),
        (["--model", "lstmm"], "did you mean 'lstm'"),
        (["--optimizer", "adan"], "unknown optimizer 'adan'"),
        (["--width", "0"], "width"),
        (["--epochs", "-2"], "epochs"),
        (["--model", "cnn"], "model 'cnn' needs images"),
        (["--norm", "lnn"], "unknown norm 'lnn'"),
        (["--placement", "middle"], "placement"),
        (["--schedule", "cosin"], "did you mean 'cosine'"),
        (["--dataset", "mnist", "--data-dir", "."], "mnist not found"),
    ],
)
def test_bad_input_exit_2_one_line_nothing_written(tmp_cwd, capsys, args, words):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and err.startswith("error: ")
    assert list(tmp_cwd.iterdir()) == []
