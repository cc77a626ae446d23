"""Models by name: `build_model(config, input_shape, num_classes) -> nn.Module`.

| name | input | norm slots (module names contain "norm") |
|---|---|---|
| linear | any (flattened) | none: the logistic-regression baseline ignores `norm` |
| mlp | any (flattened) | blocks[i].norm, placement post / pre / only |
| cnn | images (C, H, W) | blocks[i].norm, channels-first |
| cnn1d | signals (L,) or (C, L) | blocks[i].norm, channels-first |
| rnn, gru, lstm | signals, sequences, images (rows) | cells[k].norm inside the recurrence |
| transformer | signals, sequences, images (patches) | blocks[k].norm1/norm2, norm_final |
| gpt | token windows of a text data set (causal LM) | blocks[k].norm1/norm2, norm_final (pre-LN) |

`placement` shapes the mlp/cnn/cnn1d blocks and the gpt (pre: pre-LN as GPT-2, post: post-LN); the recurrent
cells and the pre-norm transformer have a fixed place for the norm and ignore it. `activation` is the block nonlinearity (rnn: the cell's, e.g. tanh).
"""

from __future__ import annotations

from typing import Protocol

from torch import nn

from lateralnorm.errors import UsageError, did_you_mean
from lateralnorm.models.cnn import CNN, CNN1d
from lateralnorm.models.common import PLACEMENTS, Act, NormBlock, Placement, check_activation
from lateralnorm.models.gpt import CausalLM
from lateralnorm.models.mlp import MLP, LinearClassifier
from lateralnorm.models.rnn import RecurrentClassifier
from lateralnorm.models.transformer import Transformer, token_shape
from lateralnorm.norms import create_norm
from lateralnorm.norms.slots import norm_slots

MODELS: tuple[str, ...] = ("linear", "mlp", "cnn", "cnn1d", "rnn", "gru", "lstm", "transformer", "gpt")
LM_MODELS: tuple[str, ...] = ("gpt",)  # take token windows and predict the next token at every position

__all__ = [
    "MODELS", "PLACEMENTS", "Act", "ModelConfig", "NormBlock", "Placement", "build_model", "check_model",
    "norm_modules",
]  # fmt: skip


class ModelConfig(Protocol):
    """The fields `build_model` reads. `lateralnorm.runconfig.RunConfig` has them; models never import it
    (models depend on norms only)."""

    model: str
    norm: str
    width: int
    depth: int
    activation: str
    placement: Placement


def layout_of(model: str) -> str:
    """The layout a model's norms see: channels_first in the CNNs (conv outputs), else last."""
    return "channels_first" if model in ("cnn", "cnn1d") else "last"


def check_model(
    config: ModelConfig, input_shape: tuple[int, ...] | None = None, dataset: str = "this dataset"
) -> None:
    """UsageError when the model name, depth, activation or norm spec is bad, or (given `input_shape`)
    the model cannot take the data's samples."""
    name = config.model
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}{did_you_mean(name, MODELS)} (known: {', '.join(MODELS)})")
    check_activation(config.activation)
    create_norm(
        config.norm, config.width, layout=layout_of(name)
    )  # spec and width fit (UsageError otherwise)
    if name in ("rnn", "gru", "lstm", "transformer", "cnn", "cnn1d", "gpt") and config.depth < 1:
        raise UsageError(f"model {name!r} needs depth >= 1 (layers or conv blocks), got {config.depth}")
    if input_shape is None:
        return
    shape = tuple(input_shape)
    if name == "cnn" and len(shape) != 3:
        hint = "; use cnn1d for signals" if len(shape) in (1, 2) else ""
        raise UsageError(
            f"model 'cnn' needs images (C, H, W) but {dataset} gives samples of shape {shape}{hint}"
        )
    if name == "cnn1d" and len(shape) not in (1, 2):
        raise UsageError(f"model 'cnn1d' needs signals (L,) or (C, L) but {dataset} gives {shape}; use cnn")
    if name == "transformer" and len(shape) == 3:
        _, _, p = token_shape(shape)
        if shape[1] % p or shape[2] % p:
            raise UsageError(f"transformer patches of {p}×{p} do not tile images of shape {shape}")


def build_model(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model `config.model` for samples of `input_shape` and `num_classes` outputs (see module doc)."""
    check_model(config, input_shape)
    shape = tuple(int(s) for s in input_shape)
    kw = dict(width=config.width, depth=config.depth, norm=config.norm, activation=config.activation)
    name = config.model
    if name == "linear":
        return LinearClassifier(shape, num_classes)
    if name == "mlp":
        return MLP(shape, num_classes, placement=config.placement, **kw)
    if name == "cnn":
        return CNN(shape, num_classes, placement=config.placement, **kw)  # type: ignore[arg-type]
    if name == "cnn1d":
        return CNN1d(shape, num_classes, placement=config.placement, **kw)
    if name in ("rnn", "gru", "lstm"):
        return RecurrentClassifier(name, shape, num_classes, **kw)
    if name == "gpt":
        return CausalLM(num_classes, shape[0], width=config.width, depth=config.depth, norm=config.norm,
                        placement=config.placement)  # fmt: skip
    return Transformer(shape, num_classes, **kw)


def norm_modules(model: nn.Module) -> dict[str, nn.Module]:
    """name → module of every norm slot (top-level slots only, not the parts of a chain): the one rule of
    `lateralnorm.norms.slots`."""
    return norm_slots(model)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
