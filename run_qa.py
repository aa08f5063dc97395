"""Fine-tune, evaluate, predict and export ERNIE 3.0 for extractive reading comprehension (CMRC2018).

    python run_qa.py --task_name cmrc2018 --model_name_or_path ernie-3.0-medium-zh --do_train --do_eval
    python run_qa.py --task_name cmrc2018 --train_file cmrc2018_train.json --dev_file cmrc2018_dev.json \
        --doc_stride 128 --max_query_length 64 --do_train --do_eval --do_export
"""
from ernie3.errors import run_cli
from ernie3.summary import train_main

if __name__ == "__main__":
    run_cli(lambda: train_main("qa"))
