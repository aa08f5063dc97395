"""`ernie3 tiny-model`: write a tiny randomly initialised ERNIE (optionally with a real vocab) to a directory, for
offline runs of the whole toolkit (pretrained weights need the model hub)."""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from ernie3.modeling import build_tiny_model


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Write a tiny random model (optionally with a real vocab) to a directory."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--vocab_file", help="one token per line (default: a vocabulary generated from Unicode ranges)")
    parser.add_argument("--vocab_size", type=int, help="embedding rows, if larger than the vocab (ERNIE 3.0: 40000)")
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_hidden_layers", type=int, default=2)
    parser.add_argument("--num_attention_heads", type=int, default=4)
    parser.add_argument("--intermediate_size", type=int, default=256)
    args = parser.parse_args(argv)
    path = build_tiny_model(**vars(args))
    print(f"tiny ERNIE model written to {path}")
