"""Fine-tune, evaluate, predict and export ERNIE 3.0 on the CLUE classification tasks.

    python run_seq_cls.py --task_name tnews --model_name_or_path ernie-3.0-medium-zh --do_train --do_eval
    python run_seq_cls.py --task_name afqmc --train_file train.json --dev_file dev.json --do_train --do_export
"""
from ernie3.errors import run_cli
from ernie3.summary import train_main

if __name__ == "__main__":
    run_cli(lambda: train_main("seq_cls"))
