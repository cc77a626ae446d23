"""Geometry animations: the files appear, are deterministic, and the pictured maps are the right ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lateralnorm.cli import main
from lateralnorm.errors import UsageError
from lateralnorm.viz import geometry_anim as ga


def test_primitive_scene_writes_png_and_gif_deterministically(tmp_path):
    a = ga.render_scenes(["stretch"], tmp_path / "a", frames=2, dpi=30)
    b = ga.render_scenes(["stretch"], tmp_path / "b", frames=2, dpi=30)
    assert [p.name for p in a] == ["stretch_keyframes.png", "stretch.gif"]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()  # same call, same bytes
    with Image.open(a[1]) as gif:
        assert gif.format == "GIF" and gif.n_frames >= 2
    with Image.open(a[0]) as png:
        assert png.width > png.height  # key frames side by side
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["stretch.gif", "stretch_keyframes.png"]


def test_every_primitive_draws_its_key_frames(tmp_path):
    names = ["shift", "fold", "project2", "project3", "affine"]
    files = ga.render_scenes(names, tmp_path, frames=2, gif=False, dpi=25)
    assert [p.name for p in files] == [f"{n}_keyframes.png" for n in names]
    for png in files:
        with Image.open(png) as im:
            assert im.size[0] > 100 and im.size[1] > 100
            assert len(np.unique(np.asarray(im.convert("L")))) > 20  # something was drawn


def test_the_pictured_maps_are_layernorm():
    # stretch/shift: LN([s·x + c, 0])₀ = (s·x + c) / sqrt((s·x + c)² + 4ε)
    x = np.linspace(-2, 2, 9)
    v = 2.0 * x - 0.5
    got = ga._ln(np.stack([v, np.zeros_like(v)], -1), eps=1.0)[:, 0]
    np.testing.assert_allclose(got, v / np.sqrt(v * v + 4.0), rtol=1e-12)
    # fold: the offset direction e is ⊥ 1 and ⊥ w; the unit along it is a bump, largest at x = 0
    assert abs(ga.FOLD_E.sum()) < 1e-12 and abs(ga.FOLD_E @ ga.FOLD_W) < 1e-12
    z = ga._ln(ga.X1[:, None] * ga.FOLD_W + 1.5 * ga.FOLD_E, eps=0.01)[:, 2]
    assert np.argmax(z) == len(ga.X1) // 2 and z[0] < 0.5 * z.max() and z[-1] < 0.5 * z.max()
    # project (N = 3): outputs lie on the circle of radius √3 in the plane x + y + z = 0
    out = ga._ln(ga._cloud3(), eps=0.0)
    np.testing.assert_allclose(out.sum(1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), math.sqrt(3.0), rtol=1e-12)
    ref = torch.nn.functional.layer_norm(torch.as_tensor(ga._cloud3()), (3,), eps=1e-5).numpy()
    np.testing.assert_allclose(ga._ln(ga._cloud3(), eps=1e-5), ref, rtol=1e-10, atol=1e-12)


def test_trained_stack_learns_the_moons_and_views_are_aligned():
    x, y = ga.two_moons(200)
    assert x.shape == (200, 2) and set(np.unique(y)) == {0, 1}
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-12)
    model, acc = ga.train_stack("relu>ln", x, y, steps=150, width=6, depth=2)
    assert acc > 0.9
    with torch.no_grad():
        hidden = model(torch.as_tensor(x))[1]
    views, explained = ga._pca_views([x] + [h.numpy() for h in hidden], len(x))
    assert views[0] is x and len(views) == 3 and all(v.shape == (200, 2) for v in views)
    assert all(0.0 < e <= 1.0 for e in explained)
    radius = np.sqrt((x**2).sum(1).mean())
    for v in views[1:]:
        np.testing.assert_allclose(np.sqrt((v**2).sum(1).mean()), radius, rtol=1e-9)
    # the boundary points sit where the two logits agree
    lines, prob = ga._boundary(model, -2.4, 2.4, res=60)
    assert lines and prob.shape == (60, 60)
    with torch.no_grad():
        logits = model(torch.as_tensor(np.concatenate(lines)))[0]
    gap = (logits[:, 1] - logits[:, 0]).abs().numpy()
    assert np.median(gap) < 1e-6  # (points in flat ReLU regions can't be moved by Newton steps)


def test_cli_geometry_and_its_errors(tmp_cwd, capsys):
    assert main(["viz", "geometry", "shift", "-o", "g", "--frames", "2", "--no-gif"]) == 0
    assert capsys.readouterr().out.split() == ["g/shift_keyframes.png"]
    assert main(["viz", "geometry", "strech", "-o", "g"]) == 2
    err = capsys.readouterr().err
    assert "unknown scene 'strech'" in err and "did you mean 'stretch'" in err
    assert main(["viz", "geometry", "--frames", "1"]) == 2
    assert "--frames 1" in capsys.readouterr().err
    with pytest.raises(UsageError, match="unknown norm|lnn"):
        ga.render_scenes(["stack"], tmp_cwd / "s", norms=["lnn"], steps=1, gif=False)


@pytest.mark.slow
def test_stack_scene_end_to_end(tmp_path):
    """The trained-stack scene: both files, the key frames stacked one per layer (input + 3 layers, a column),
    an animation whose frames move (not one picture repeated), and the same bytes on a second call."""
    files = ga.render_scenes(["stack"], tmp_path / "a", frames=4, steps=100, dpi=40)
    assert [p.name for p in files] == ["stack_keyframes.png", "stack.gif"]
    with Image.open(files[0]) as png:
        assert png.height > png.width  # 4 key frames (input + 3 layers) in a column of wide rows
    with Image.open(files[1]) as gif:
        assert gif.n_frames >= 4
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("L"), dtype=np.int16))
    assert np.abs(frames[0] - frames[2]).mean() > 1.0  # the points moved between frames
    again = ga.render_scenes(["stack"], tmp_path / "b", frames=4, steps=100, dpi=40)
    assert [p.read_bytes() for p in files] == [p.read_bytes() for p in again]
