"""Ask a served seq_cls model for predictions; the logic is in ernie3/cli/client.py.

    python deploy/serving/client_seq_cls.py "球队赢得冠军" "新款手机发布" [--url http://127.0.0.1:8000] [--model NAME]
"""
from ernie3.cli.client import main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: main("seq_cls"))
