"""Serve exported models as a Ray Serve application (replicas, autoscaling); the logic is in ernie3/ray_serve.py.

    python deploy/serving/serve_ray.py --config deploy/serving/config.yml [--address auto] [--port 8000]

Same HTTP API and config as deploy/serving/serve.py, plus the config's optional `ray:` section.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))  # the repository root

from ernie3.errors import run_cli  # noqa: E402
from ernie3.ray_serve import main  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
