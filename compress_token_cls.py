"""Compress a fine-tuned named-entity recognition (MSRA_NER) model: DynaBERT width pruning, then a PTQ sweep, then a report.

    python compress_token_cls.py --task_name msra_ner --model_name_or_path output/msra_ner/best \\
        --train_file TRAIN --dev_file DEV --output_dir output/msra_ner/compress
"""
from ernie3.summary import compress_main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: compress_main("token_cls"))  # the report and a summary: stdout
