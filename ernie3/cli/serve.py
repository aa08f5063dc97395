"""HTTP serving of exported models: a FastAPI app on uvicorn, with per-model request batching.

    python deploy/serving/serve.py --config deploy/serving/config.yml [--host 127.0.0.1] [--port 8000] [--verbose]

Every model of the YAML config is loaded once, at start-up, into its own worker thread; that thread owns the
model's Predictor (Paddle predictors are not thread-safe) and runs batches of texts gathered from requests that
arrive together; a request bigger than a batch runs in parts that take turns with other requests. The event loop
only parses and validates requests, so it keeps answering while models compute. Everything a client gets wrong is
answered 4xx with {"error": ...}; anything else 500 with a request id that points into the log, never internals.
The service is the library's (ernie3/serving); this is its command line.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ernie3.errors import run_cli
from ernie3.logs import set_verbose
from ernie3.serving.config import load_config, with_overrides
from ernie3.serving.server import run_server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML serving config (see deploy/serving/README.md)")
    parser.add_argument("--host", help="address to listen on (overrides server.host)")
    parser.add_argument("--port", type=int, help="port to listen on, 0 for any free one (overrides server.port)")
    parser.add_argument("--reuse_port", action="store_true", help="share the port with other replicas (Linux)")
    parser.add_argument("--verbose", action="store_true", help="also show Paddle's native logs (graph passes)")
    return parser


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    set_verbose(args.verbose)  # native pass logs and library INFO lines only with --verbose
    config = load_config(args.config)
    server = with_overrides(config.server, host=args.host, port=args.port, reuse_port=args.reuse_port or None)
    run_server(config, server, progress)


if __name__ == "__main__":
    run_cli(main)
