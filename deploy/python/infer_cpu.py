"""Predict on CPU (Paddle Inference with oneDNN FP32/INT8, or ONNX Runtime for .onnx files).

    python deploy/python/infer_cpu.py --model_path output/tnews/compress --text 这款手机的芯片很快
    python deploy/python/infer_cpu.py --model_path output/afqmc/export --text 花呗怎么还 --text_pair 花呗如何还款
    python deploy/python/infer_cpu.py --model_path output/msra_ner/export --input_file sentences.txt
"""
from ernie3.cli.predict import main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: main("cpu"))
