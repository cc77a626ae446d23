"""Bad input gets a ValueError that says what was wrong and what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lateralnorm import create_norm, list_norms, register_norm
from lateralnorm.errors import UsageError
from lateralnorm.norms import Norm, parse_spec


def test_unknown_name_suggests_nearest():
    with pytest.raises(ValueError, match=r"unknown norm 'lnn'; did you mean 'ln'"):
        create_norm("lnn", 8)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("dn:alpha=-1", ["alpha", "-1", "> 0"]),
        ("dn:alpha=abc", ["alpha", "abc", "a number"]),
        ("dn:kappa=ring", ["kappa", "ring", "one of self, uniform, band"]),
        ("dn:kapa=band", ["kapa", "did you mean 'kappa'"]),
        ("ln:eps=-1e-5", ["eps", ">= 0"]),
        ("dn:center=maybe", ["center", "true or false"]),
        ("lng:groups=3", ["groups=3", "divide", "8"]),
        ("dn:kappa=lowrank", ["lowrank", "size"]),
        ("dn:kappa=band:x", ["band:x", "positive integer"]),
        ("softmax:temperature=0", ["temperature", "> 0"]),
        ("ln:eps", ["key=value"]),
        ("gelu>>ln", ["empty part"]),
        ("ln:eps=1,eps=2", ["given twice"]),
    ],
)
def test_bad_option_names_key_value_and_range(spec, words):
    with pytest.raises(ValueError) as info:
        create_norm(spec, 8)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_override_no_part_takes():
    with pytest.raises(UsageError, match="takes option"):
        create_norm("relu", 8, groups=2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_features(bad):
    with pytest.raises(ValueError, match="num_features"):
        create_norm("ln", bad)


def test_bad_layout():
    with pytest.raises(ValueError, match="layout must be 'last' or 'channels_first'"):
        create_norm("ln", 8, layout="nhwc")


@pytest.mark.parametrize("spec", ["ln", "dn", "bn", "gdn", "lrn", "softmax"])
def test_wrong_feature_size_states_expected_and_got(spec):
    m = create_norm(spec, 8)
    with pytest.raises(ValueError) as info:
        m(torch.randn(4, 9))
    assert "expected 8 features" in str(info.value) and "(4, 9)" in str(info.value)
    m = create_norm(spec, 8, layout="channels_first")
    with pytest.raises(ValueError, match=r"\(B, 8, \.\.\.\).*got \(2, 3, 8\)"):
        m(torch.randn(2, 3, 8))


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"2 to 5 dims; got \(8,\)"):
        create_norm("ln", 8)(torch.randn(8))


def test_parse_spec_grammar():
    assert parse_spec("gelu > dn:alpha=2, kappa=band:3") == [
        ("gelu", {}),
        ("dn", {"alpha": "2", "kappa": "band:3"}),
    ]


def test_register_new_norm_gets_listed_and_built():
    @register_norm("double_test")
    class Double(Norm):
        """z = 2y (a test norm)."""

        name = "double_test"

        def _forward(self, x):
            return 2 * x

    assert "double_test" in list_norms()
    assert torch.equal(create_norm("double_test", 3)(torch.ones(2, 3)), torch.full((2, 3), 2.0))


def test_cli_bad_spec_exits_2_with_one_line():
    p = subprocess.run([sys.executable, "-m", "lateralnorm.cli", "norms", "--check", "lnn"],
                       capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "did you mean 'ln'" in p.stderr
