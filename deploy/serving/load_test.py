"""Load-test a served model from this machine (loopback only); the logic is in ernie3/serve_client.py.

    python deploy/serving/load_test.py --model tnews --concurrency 16 --requests 500 --duration 30
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))  # the repository root

from ernie3.errors import run_cli  # noqa: E402
from ernie3.serve_client import load_test_main  # noqa: E402

if __name__ == "__main__":
    run_cli(load_test_main)
