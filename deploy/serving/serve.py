"""Serve exported models over HTTP; the service is in ernie3/serving/, its command line in ernie3/cli/serve.py.

    python deploy/serving/serve.py --config deploy/serving/config.yml [--host 127.0.0.1] [--port 8000] [--verbose]
"""
from ernie3.cli.serve import main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
