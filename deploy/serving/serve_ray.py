"""Serve exported models as a Ray Serve application (replicas, autoscaling); the logic is in ernie3/serving/ray.py,
its command line in ernie3/cli/serve_ray.py.

    python deploy/serving/serve_ray.py --config deploy/serving/config.yml [--address auto] [--port 8000]

Same HTTP API and config as deploy/serving/serve.py, plus the config's optional `ray:` section.
"""
from ernie3.cli.serve_ray import main
from ernie3.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
