"""Compress a fine-tuned extractive QA (CMRC2018) model: DynaBERT width pruning, then a PTQ sweep, then a report.

    python compress_qa.py --task_name cmrc2018 --model_name_or_path output/cmrc2018/best \\
        --train_file TRAIN --dev_file DEV --output_dir output/cmrc2018/compress
"""
from ernie3.summary import compress_main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: compress_main("qa"))  # the report and a summary: stdout
