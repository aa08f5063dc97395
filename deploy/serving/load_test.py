"""Load-test a served model from this machine (loopback only); the logic is in ernie3/cli/load_test.py.

    python deploy/serving/load_test.py --model tnews --concurrency 16 --requests 500 --duration 30
"""
from ernie3.cli.load_test import main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
