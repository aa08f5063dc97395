"""Serve exported models as a Ray Serve application: the HTTP API of the FastAPI service, each model a Ray Serve
deployment with its own replicas (ernie3/serving/ray.py).

    python deploy/serving/serve_ray.py --config deploy/serving/config.yml [--address auto] [--port 8000]

The same config file as deploy/serving/serve.py, plus an optional `ray:` section (replicas, autoscaling bounds, CPUs
per replica; see deploy/serving/README.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Optional, Sequence

from ernie3.errors import UserError, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML serving config, with an optional ray: section")
    parser.add_argument("--host", help="address to listen on (overrides server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides server.port)")
    parser.add_argument("--address", help="join this Ray cluster (overrides ray.address; default: a local Ray)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    from ray import serve  # after parsing: --help needs no Ray

    from ernie3.serving.ray import load_ray_config, start

    config, ray_section = load_ray_config(args.config)
    if args.address:
        ray_section = dataclasses.replace(ray_section, address=args.address)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    if not 1 <= port <= 65535:
        raise UserError(f"--port: Ray Serve needs a fixed port (1-65535), got {port}")
    start(config, ray_section, host, port)
    print(f"serving {len(config.models)} model(s) ({', '.join(s.name for s in config.models)}) on http://{host}:{port} "
          "(Ray Serve)", file=sys.stderr, flush=True)  # fmt: skip
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()


if __name__ == "__main__":
    run_cli(main)
