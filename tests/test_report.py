"""The HTML report end to end: a study run with a stand-in trainer whose answer is known, the page's
content and self-containment, runs.csv, the CLI's errors; a real tiny study."""

from __future__ import annotations

import csv
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lateralnorm.cli import main
from lateralnorm.runconfig import EpochMetrics, RunConfig, RunResult
from lateralnorm.study import Store, run_study, validate_spec

ROOT = Path(__file__).resolve().parent.parent

# test accuracy per norm (plus a per-seed wobble): "relu" is clearly better than the baseline "ln",
# "rms" clearly worse, "lng:groups=4" the same up to noise; "softmax" diverges on seed 1
TRUE_ACC = {"ln": 0.60, "relu": 0.70, "rms": 0.50, "lng:groups=4": 0.60, "softmax": 0.65}
WOBBLE = {0: 0.000, 1: 0.010, 2: -0.006, 3: 0.004}
NOISE = {0: 0.02, 1: -0.025, 2: 0.01, 3: -0.004}  # only "lng:groups=4": a difference with CI around 0


def fake_run(config: RunConfig) -> RunResult:
    """Deterministic stand-in for lateralnorm.train.run, with probe results attached (the executor keeps
    a run's own probes when the spec asks for none)."""
    acc = (
        TRUE_ACC[config.norm]
        + WOBBLE[config.seed]
        + (NOISE[config.seed] if config.norm == "lng:groups=4" else 0)
    )
    diverged = config.norm == "softmax" and config.seed == 1
    history = [EpochMetrics(epoch=e, train_loss=1 / e, train_acc=acc + 0.05 - 0.05 / e, test_loss=1.2 / e,
                            test_acc=acc - 0.1 / e, lr=config.lr, wall_s=0.01, samples_per_s=1000.0 + e)
               for e in range(1, config.epochs + 1)]  # fmt: skip
    d = 0.0 if config.norm == "relu" else 0.3
    layer = {"t_rel": [0.0, 1.0, 4.0], "D": {"median": [0.0, d / 2, d]}, "D_at_1": d / 2, "D_at_T": d}
    probes = {
        "crosstalk": {"layers": {"blocks.0.norm": layer, "blocks.1.norm": layer}},
        "sparsity": {"layers": {"blocks.0.norm": {"hoyer": 0.2 + 0.1 * (config.norm == "relu")}}},
    }
    return RunResult(
        run_id=config.run_id(), config=config.model_dump(mode="json"), status="diverged" if diverged else "done",
        test_acc=None if diverged else acc, train_acc=acc + 0.05, test_loss=1 - acc, diverged_step=7 if diverged else None,
        history=history, samples_per_s=1000.0, num_params=1234, wall_s=0.5, out_dir=config.out_dir, probes=probes,
    )  # fmt: skip


SPEC = {
    "name": "fake_report",
    "description": "A stand-in study whose verdicts are known",
    "seeds": [0, 1, 2, 3],
    "baseline": {"norm": "ln"},
    "base": {"epochs": 3, "width": 8, "depth": 1},
    "grid": {"norm": list(TRUE_ACC)},
}


class Page(HTMLParser):
    """Collects every URL-bearing attribute, the tags seen and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data", "action", "poster")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    spec_path = root / "fake_report.toml"
    spec_path.write_text("# Q. Is relu better than ln here?\n# Evidence: made up.\nname = 'fake_report'\n")
    report = run_study(validate_spec(SPEC), root / "fake", executor="inline", run_fn=fake_run,
                       spec_path=str(spec_path), echo=lambda _: None)  # fmt: skip
    assert report.done == 19 and report.diverged == 1
    return root / "fake"


@pytest.fixture(scope="module")
def built(study: Path):
    out = study.parent / "out" / "report.html"
    assert main(["report", str(study), "-o", str(out)]) == 0
    page = Page()
    page.feed(out.read_text(encoding="utf-8"))
    return out, page, " ".join(" ".join(page.text).split())


def test_report_is_self_contained_html(built):
    out, page, _ = built
    assert page.tags[0] == "html" and "table" in page.tags and "img" in page.tags
    assert "script" not in page.tags and "link" not in page.tags  # no scripts, no stylesheets to fetch
    for url in page.urls:
        assert not url.lower().startswith(("http:", "https:", "//", "ftp:")), url
        assert url.startswith(("#", "data:image/png;base64,")) or url == "runs.csv", url
    assert sum(u.startswith("data:image/png") for u in page.urls) == 4  # curves, forest, cross-talk, sparsity
    assert oct(out.stat().st_mode & 0o777) != "0o600"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_report_states_question_design_and_known_verdicts(built):
    _, _, text = built
    assert "A stand-in study whose verdicts are known" in text
    assert "Q. Is relu better than ln here?" in text and "Evidence: made up." in text  # spec header comment
    assert "5 cells × 4 seeds (seeds 0, 1, 2, 3) = 20 runs" in text
    assert "better than baseline: +10.00 pts [10.00, 10.00]" in text  # relu: +0.10 on every seed
    assert "worse than baseline: -10.00 pts [-10.00, -10.00]" in text  # rms
    assert "no detectable difference at n = 4" in text  # lng:groups=4
    assert "1 of 4 runs diverged" in text  # softmax, seed 1
    assert "better than baseline: +5.00 pts" in text and "n = 3" in text  # softmax over its 3 surviving seeds
    assert "against the baseline norm=ln: 2 better, 1 worse, 1 with no detectable difference" in text
    for label in ("Learning curves", "Forest plot", "Cross-talk D(t)", "Sparsity of the norm outputs"):
        assert label in text
    assert "How to read a verdict" in text and "Holm" in text
    assert "lateralnorm 0.1.0" in text and "git revision" in text and "lateralnorm report" in text


def test_runs_csv_holds_every_run_and_matches_the_page(built, study):
    out, _, text = built
    rows = list(csv.DictReader((out.parent / "runs.csv").open()))
    assert len(rows) == 20 and {r["study"] for r in rows} == {"fake_report"}
    relu = [float(r["test_acc"]) for r in rows if r["norm"] == "relu"]
    assert f"{sum(relu) / len(relu) * 100:.2f} ±" in text  # the page's mean is the CSV's mean
    assert {r["status"] for r in rows} == {"done", "diverged"}


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, study, capsys):
    out = tmp_path / "r.html"
    empty = tmp_path / "empty"
    Store(empty).close()  # a study folder with no runs
    plain = tmp_path / "plain"
    plain.mkdir()
    for args, words in (
        ([str(tmp_path / "missing")], "is not a folder"),
        ([str(plain)], "is not a study folder"),
        ([str(empty)], "has no runs"),
        ([str(study), str(study)], "given twice"),
        ([str(study), "--metric", "nope"], "unknown metric 'nope'"),
    ):
        assert main(["report", *args, "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
        assert not out.exists() and not (tmp_path / "runs.csv").exists()


def test_unfinished_study_is_refused_or_marked_provisional(tmp_path, capsys):
    spec = validate_spec({**SPEC, "name": "half", "seeds": [0, 1]})
    run_study(spec, tmp_path / "half", executor="inline", run_fn=fake_run, echo=lambda _: None)
    with Store(tmp_path / "half") as store:  # put two runs back to pending, as if the study were interrupted
        store.conn.execute("UPDATE runs SET status='pending' WHERE run_id IN "
                           "(SELECT run_id FROM runs ORDER BY seq DESC LIMIT 2)")  # fmt: skip
    assert main(["report", str(tmp_path / "half"), "-o", str(tmp_path / "r.html")]) == 0
    assert "not finished yet: every number here is provisional" in (tmp_path / "r.html").read_text()
    with Store(tmp_path / "half") as store:
        store.conn.execute("UPDATE runs SET status='pending'")
    assert main(["report", str(tmp_path / "half"), "-o", str(tmp_path / "r2.html")]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_real_tiny_study_report(tmp_cwd):
    """The example study with the real trainer (8 tiny runs, seconds in all), then the report."""
    assert main(["study", "run", str(ROOT / "studies" / "example_quick.toml"), "--executor", "inline"]) == 0
    assert main(["report", "runs/example_quick", "-o", "runs/report.html"]) == 0
    raw = Path("runs/report.html").read_text(encoding="utf-8")
    assert "norm=relu&gt;ln, placement=pre" in raw and "norm=relu>ln" not in raw  # text is HTML-escaped
    page = Page()
    page.feed(raw)
    text = " ".join(page.text)
    assert "norm=relu>ln, placement=pre" in text
    for label in ("Learning curves", "Forest plot", "Sparsity of the norm outputs"):
        assert label in text
    assert len(list(csv.DictReader(Path("runs/runs.csv").read_text().splitlines()))) == 8


def test_runs_of_an_earlier_spec_version_are_left_out(tmp_path):
    """Editing a spec and running it into the same folder adds runs; the report keeps only the current plan."""
    old = validate_spec({**SPEC, "name": "edited", "seeds": [0, 1, 2]})
    run_study(old, tmp_path / "s", executor="inline", run_fn=fake_run, echo=lambda _: None)
    new = validate_spec({**SPEC, "name": "edited", "seeds": [0, 1, 2], "base": {**SPEC["base"], "epochs": 2}})
    run_study(new, tmp_path / "s", executor="inline", run_fn=fake_run, echo=lambda _: None)
    assert main(["report", str(tmp_path / "s"), "-o", str(tmp_path / "report.html")]) == 0
    text = (tmp_path / "report.html").read_text()
    assert "15 run(s) in this folder belong to an earlier version of the spec" in text
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert len(rows) == 15 and {r["epochs"] for r in rows} == {"2"}


def test_navigation_names_a_study_by_its_folder_only_when_that_extends_its_name(built, study, tmp_path):
    """The answer set's folders (q1_…-mnist1d) tell the datasets apart; a folder named freely ("fake") does not
    replace the study's name."""
    import re
    import shutil

    out, _, _ = built
    nav = re.search(r'<nav class="toc">(.*?)</nav>', out.read_text(encoding="utf-8")).group(1)
    assert re.findall(r">([^<]+)</a>", nav)[0] == "fake_report"
    folder = tmp_path / "fake_report-mnist1d"
    shutil.copytree(study, folder)
    page = tmp_path / "r.html"
    assert main(["report", str(folder), "-o", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    nav = re.search(r'<nav class="toc">(.*?)</nav>', html).group(1)
    assert re.findall(r">([^<]+)</a>", nav)[0] == "fake_report-mnist1d"
    assert "<h2>fake_report <small>(fake_report-mnist1d)</small></h2>" in html
