"""`ernie3 tiny-model`: write a tiny randomly initialised ERNIE (optionally with a real vocab) to a directory, for
offline runs of the whole toolkit (pretrained weights need the model hub)."""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

import os

from ernie3.errors import UserError
from ernie3.files import check_output_location
from ernie3.modeling import build_tiny_model, check_vocab_file


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
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name} must be a positive integer, got {value}")
    if args.hidden_size % args.num_attention_heads:
        raise UserError(f"--hidden_size {args.hidden_size} must be a multiple of --num_attention_heads "
                        f"{args.num_attention_heads}")  # fmt: skip
    if args.vocab_file:
        check_vocab_file(args.vocab_file)
    check_output_location(args.output_dir, "--output_dir")
    if os.path.isdir(args.output_dir) and os.listdir(args.output_dir):
        raise UserError(f"--output_dir: {args.output_dir} is not empty; choose a new or empty directory")
    path = build_tiny_model(**vars(args))
    print(f"tiny ERNIE model written to {path}")
