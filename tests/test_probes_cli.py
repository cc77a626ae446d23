"""`lateralnorm probe` / `lateralnorm capacity` and `run_probes` on a real (tiny) trained run."""

import json

import pytest

from lateralnorm.cli import main
from lateralnorm.probes import PROBES, run_probes
from lateralnorm.runconfig import RunConfig


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from lateralnorm import train

    out = tmp_path_factory.mktemp("runs") / "moons-relu-ln"
    cfg = RunConfig(
        dataset="moons", samples=200, norm="ln", placement="post", activation="relu", width=8, depth=2,
        epochs=1, batch_size=50, threads=1, out_dir=str(out),
    )  # fmt: skip
    train.run(cfg, progress=False)
    return out


def test_run_probes_on_a_trained_run(run_dir):
    res = run_probes(list(PROBES), str(run_dir))
    assert set(res) == set(PROBES)
    json.dumps(res, allow_nan=False)  # strict JSON for the store
    layers = res["crosstalk"]["layers"]
    assert set(layers) == {"blocks.0.norm", "blocks.1.norm"}
    assert all(0 <= r["C_at_T"] <= 1 and r["D_at_T"] > 0 for r in layers.values() if r["n_samples"])
    assert set(res["sparsity"]["layers"]) == set(layers)
    assert res["invariance"]["layers"]["blocks.0.norm"]["shift_change_max"] < 1e-4  # LN removes the mean
    assert 0 <= res["invariance"]["model"]["acc"] <= 1
    assert res["folds"]["linear_regions"]["regions"] >= 1  # 2-D input: the ReLU regions are counted


def test_cli_run_dir_writes_json_per_probe(run_dir, capsys):
    assert main(["probe", str(run_dir), "--probe", "crosstalk,sparsity"]) == 0
    out = capsys.readouterr().out
    assert "blocks.0.norm" in out and "C_at_T" in out
    data = json.loads((run_dir / "probe-crosstalk.json").read_text())
    assert "blocks.1.norm" in data["layers"]
    assert (run_dir / "probe-sparsity.json").is_file()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_cli_bare_layer(tmp_cwd, capsys):
    assert (
        main(["probe", "--norm", "gelu>ln", "--width", "16", "--probe", "crosstalk", "--json", "ct.json"])
        == 0
    )
    assert "D(t)" in capsys.readouterr().out
    res = json.loads((tmp_cwd / "ct.json").read_text())
    assert res["norm"] == "gelu>ln" and res["width"] == 16 and max(res["D"]) < 0.1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["probe", "--norm", "ln", "--probe", "crosstlk"], "did you mean 'crosstalk'"),
        (["probe", "--norm", "ln", "--probe", "capacity"], "lateralnorm capacity"),
        (["probe", "--norm", "lnn"], "unknown norm 'lnn'"),
        (["probe"], "either RUN_DIR"),
        (["probe", "no/such/run"], "does not exist"),
        (["probe", "--norm", "ln", "--width", "1"], "--width"),
        (["capacity", "--widths", "8,x"], "--widths"),
        (["capacity", "--depths", "0", "--steps", "1"], "depth"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_cwd, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_cwd.iterdir()) == []


def test_cli_capacity(tmp_cwd, capsys):
    argv = ["capacity", "--norm", "relu", "--norm", "ln", "--widths", "4", "--depths", "1", "--steps", "3"]
    assert main([*argv, "--samples", "16", "--json", "cap.json"]) == 0
    assert "train_acc" in capsys.readouterr().out
    recs = json.loads((tmp_cwd / "cap.json").read_text())
    assert [r["norm"] for r in recs] == ["relu", "ln"]
