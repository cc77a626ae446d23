"""Take a Hugging Face GPT-2 (built from a tiny config: no download), swap its LayerNorms for other norms, and
run the cross-talk probe on every norm layer with real inputs. Prints one table row per (norm, layer).

    python examples/hf_crosstalk.py [--layers 2] [--width 64] [--norms ln,relu>ln,dn]

Needs `pip install 'lateralnorm[hf]'` (transformers). A real checkpoint works the same way: load it with
GPT2LMHeadModel.from_pretrained(...) where the hub can be reached.
"""

from __future__ import annotations

import argparse
import copy

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument(
        "--norms", default="ln,relu>ln,dn", help="comma-separated specs; ln keeps GPT-2's own"
    )
    args = parser.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    from lateralnorm import swap_norms
    from lateralnorm.probes.crosstalk import crosstalk_layer
    from lateralnorm.probes.layers import capture_norm_layers

    logging.set_verbosity_error()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=args.layers, n_embd=args.width, n_head=4, vocab_size=256, n_positions=64,
                        bos_token_id=0, eos_token_id=0)  # fmt: skip
    base = GPT2LMHeadModel(config).eval()
    tokens = torch.randint(0, 256, (8, 32))  # (B, T) byte-like tokens

    print(f"{'norm':<10} {'layer':<22} {'D(1 RMS)':>9} {'D(64 RMS)':>10} {'C(64 RMS)':>10}")
    for spec in args.norms.split(","):
        model = copy.deepcopy(base)
        if spec != "ln":
            swap_norms(model, spec)
        for layer in capture_norm_layers(model, tokens):
            r = crosstalk_layer(layer, max_samples=32)
            if not r["n_samples"]:
                print(f"{spec:<10} {layer.name:<22} {'(no pool with a non-positive unit)':>31}")
                continue
            print(
                f"{spec:<10} {layer.name:<22} {r['D_at_1']:>9.3f} {r['D_at_T']:>10.3f} {r['C_at_T']:>10.3f}"
            )


if __name__ == "__main__":
    main()
