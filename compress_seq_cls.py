"""Compress a fine-tuned classification model: DynaBERT width pruning, then a PTQ sweep, then a report.

    python compress_seq_cls.py --task_name tnews --model_name_or_path output/tnews/best \\
        --train_file train.json --dev_file dev.json --output_dir output/tnews/compress
"""
from ernie3.summary import compress_main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: compress_main("seq_cls"))  # the report and a summary: stdout
