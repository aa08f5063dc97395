"""Export a static model to ONNX with paddle2onnx (and optionally ONNX Runtime dynamic INT8), then check it
against Paddle Inference.

    python deploy/paddle2onnx/export_onnx.py --model_path output/tnews/export --quantize --dev_file dev.json
    python infer.py --model_path output/tnews/export/model.int8.onnx --dev_file dev.json --perf
"""
from ernie3.cli.export_onnx import main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
