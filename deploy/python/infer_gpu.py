"""Predict on an NVIDIA GPU with Paddle Inference, optionally through TensorRT (needs paddlepaddle-gpu).

    python deploy/python/infer_gpu.py --model_path output/tnews/export --text 这款手机的芯片很快
    python deploy/python/infer_gpu.py --model_path output/tnews/export --use_trt --precision fp16 --input_file texts.txt
    python deploy/python/infer_gpu.py --model_path output/tnews/compress/best --use_trt --precision int8 --text ...
"""
from ernie3.cli.predict import main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: main("gpu"))
