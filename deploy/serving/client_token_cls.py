"""Ask a served token_cls model for predictions; the logic is in ernie3/serve_client.py.

    python deploy/serving/client_token_cls.py "张三在北京大学工作" [--url http://127.0.0.1:8000] [--model NAME]
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))  # the repository root

from ernie3.errors import run_cli  # noqa: E402
from ernie3.serve_client import client_main  # noqa: E402

if __name__ == "__main__":
    run_cli(lambda: client_main("token_cls"))
