"""deploy/paddle2onnx and `ernie3 export-onnx`: export a static model to ONNX (+ dynamic INT8), then check its
agreement with Paddle Inference."""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from ernie3.errors import UserError
from ernie3.logs import set_verbose
from ernie3.onnx import compare_with_paddle, export_onnx, quantize_onnx_dynamic


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """deploy/paddle2onnx: export to ONNX (+ dynamic INT8), then check agreement with Paddle Inference."""
    from ernie3.data import load_examples
    from ernie3.export import task_of_model_dir

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model_path", required=True, help="a float static model dir (export dir or pruned candidate)")
    parser.add_argument("--output_dir", help="where model.onnx goes (default: --model_path)")
    parser.add_argument("--opset_version", type=int, default=13)
    parser.add_argument("--quantize", action="store_true", help="also write model.int8.onnx (ONNX Runtime dynamic INT8)")
    parser.add_argument("--dev_file", help="check agreement with Paddle Inference on these examples")
    parser.add_argument("--max_examples", type=int, default=200)
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="show paddle2onnx's and Paddle's own logs")
    args = parser.parse_args(argv)
    set_verbose(args.verbose)
    for name in ("max_examples", "num_threads"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")

    task = task_of_model_dir(args.model_path)
    onnx_file = export_onnx(args.model_path, args.output_dir, args.opset_version)
    files = [onnx_file] + ([quantize_onnx_dynamic(onnx_file)] if args.quantize else [])
    report: dict = {"files": files}
    for path in files:
        print(f"wrote {path} ({os.path.getsize(path) / 2**20:.1f} MB)")
    if args.dev_file:
        examples = load_examples(task, "dev", args.dev_file)[: args.max_examples]
        for path in files:
            check = compare_with_paddle(args.model_path, path, examples, args.num_threads)
            report[path] = check
            print(f"{os.path.basename(path)} vs Paddle Inference on {check['examples']} dev examples: "
                  f"decision agreement {check['agreement']:.2%}, max |output difference| {check['max_abs_difference']:.2e}")  # fmt: skip
    return report
