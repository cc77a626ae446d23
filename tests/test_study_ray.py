"""The Ray executor end to end on a local Ray with 2 CPUs and the real trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from lateralnorm.study import Study, load_spec, run_study

EXAMPLE = Path(__file__).resolve().parent.parent / "studies" / "example_quick.toml"


@pytest.mark.ray
def test_ray_executor_end_to_end(tmp_path):
    pytest.importorskip("ray")
    from lateralnorm.study import RayExecutor

    spec = load_spec(EXAMPLE, "quick")
    lines: list[str] = []
    report = run_study(spec, tmp_path, executor=RayExecutor(num_cpus=2), echo=lines.append)
    assert report.done == 4 and not report.failed, lines
    assert "(ray, 2 workers)" in lines[0]
    with Study.load(tmp_path) as study:
        runs = study.runs()
        assert (runs["status"] == "done").all() and runs["test_acc"].between(0, 1).all()
        assert runs["task_wall_s"].gt(0).all()
