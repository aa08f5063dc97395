"""HTTP serving of exported models (the library; the command lines are in ernie3/cli/serve.py and client.py).

    config.py    the serving config: server settings, per-model limits and Predictor options, checked
    protocol.py  the HTTP API's request rules: errors, body reading, predict-request validation
    models.py    one served model: loading, warm-up, batch statistics, what GET /models tells
    worker.py    per-model worker threads that batch requests, and the registry of served models
    app.py       the FastAPI app: routes, error shapes, the API key check
    server.py    the listening socket, uvicorn with slow-client deadlines, start-up and shutdown
    ray.py       the same API as a Ray Serve application (replicas, autoscaling)
"""
from ernie3.serving.app import create_app
from ernie3.serving.config import ModelSpec, ServerSettings, ServingConfig, ServingLimits, load_config, parse_config
from ernie3.serving.server import run_server
from ernie3.serving.worker import ModelRegistry

__all__ = ["ModelSpec", "ServerSettings", "ServingConfig", "ServingLimits", "load_config", "parse_config",
           "ModelRegistry", "create_app", "run_server"]
