"""Fine-tune, evaluate, predict and export ERNIE 3.0 for named entity recognition (MSRA_NER).

    python run_token_cls.py --task_name msra_ner --model_name_or_path ernie-3.0-medium-zh --do_train --do_eval
    python run_token_cls.py --task_name msra_ner --train_file train.tsv --dev_file dev.tsv --test_file test.tsv \
        --do_train --do_eval --do_predict --do_export
"""
from ernie3.errors import run_cli
from ernie3.summary import train_main

if __name__ == "__main__":
    run_cli(lambda: train_main("token_cls"))
