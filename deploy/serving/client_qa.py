"""Ask a served qa model for predictions; the logic is in ernie3/cli/client.py.

    python deploy/serving/client_qa.py --question "张三在哪里工作？" --context "张三在北京大学工作。" [--url http://127.0.0.1:8000] [--model NAME]
"""
from ernie3.cli.client import main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: main("qa"))
