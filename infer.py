"""Run an exported or compressed model on a task's dev set: metric, and with --perf throughput and latency.

    python infer.py --task_name tnews --model_path output/tnews/compress --dev_file dev.json --perf
    python infer.py --model_path output/tnews/export/model.onnx --dev_file dev.json
    python infer.py --model_path output/tnews/compress/width_mult_0.75/hist16_1 --device gpu --use_trt --precision int8
"""
from ernie3.errors import run_cli
from ernie3.cli.infer import main

if __name__ == "__main__":
    run_cli(main)
