"""Ray: batch prediction on Ray Data (an actor pool of Predictors) equal to the local engine byte for byte, and the
Ray Serve application answering like the FastAPI service (same results, same 4xx). One local Ray for the module."""
import json
import socket

import pytest
import requests
from test_batch_predict import export_tnews, write_api_lines

from ernie3.errors import UserError

CHUNK, BATCH = 64, 16


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    return export_tnews(tiny_model_dir, str(tmp_path_factory.mktemp("tnews-export") / "export"))


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from ernie3.ray_batch import start_ray

    # 2 predictor actors + the read task; Serve's one replica fits in the same CPUs once the Data job is done
    start_ray(None, num_cpus=3)
    yield
    ray.shutdown()


def settings(input_file, output, skip_invalid=False):
    from ernie3.batch_predict import BatchSettings

    return BatchSettings(str(input_file), str(output), chunk_size=CHUNK, skip_invalid=skip_invalid, progress=False)


def test_ray_data_predictions_identical_to_local_engine(model, ray_session, tmp_path):
    from ernie3.batch_predict import predict_file
    from ernie3.predict import Predictor
    from ernie3.ray_batch import MANIFEST, RayOptions, predict_on_ray, read_shards

    input_file = tmp_path / "in.jsonl"
    write_api_lines(input_file, 700, blank_every=50, bad={100: "{not json"})
    local = tmp_path / "local.jsonl"
    predict_file(Predictor(model, num_threads=1, batch_size=BATCH), settings(input_file, local, skip_invalid=True), log=lambda _: None)

    options = RayOptions(num_workers=2, threads_per_worker=1, shard_records=300)
    summary = predict_on_ray(settings(input_file, tmp_path / "ray", skip_invalid=True),
                             {"model_path": model, "batch_size": BATCH}, options, log=lambda _: None)  # fmt: skip
    assert summary["predicted"] == 700 and summary["skipped"] == 1 and summary["shards"] == 3
    assert "".join(read_shards(str(tmp_path / "ray"))) == local.read_text(encoding="utf-8")
    assert (tmp_path / "ray" / "skipped.jsonl").read_text() == (tmp_path / "local.jsonl.skipped.jsonl").read_text()
    manifest = json.loads((tmp_path / "ray" / MANIFEST).read_text())
    assert [s["records"] for s in manifest["shards"]] == [300, 300, 100]

    # without --skip_invalid_records: one error naming file:line, and no output directory (the model shipped
    # through the object store this time, as to nodes without shared storage)
    with pytest.raises(UserError, match=rf"^{input_file}:100: malformed JSON"):
        predict_on_ray(settings(input_file, tmp_path / "failed"), {"model_path": model, "batch_size": BATCH},
                       RayOptions(num_workers=2, ship_model=True))
    assert not (tmp_path / "failed").exists()


def test_ray_section_of_the_serving_config():
    from ernie3.serving.ray import parse_ray_section

    section = parse_ray_section({"num_cpus": 1, "models": {"tnews": {"min_replicas": 1, "max_replicas": 3}}}, ["tnews", "ner"])
    assert section.replicas_of("ner").autoscaling is None and section.replicas_of("ner").num_replicas == 1
    assert section.replicas_of("tnews").autoscaling == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2.0}
    with pytest.raises(UserError, match="ray.models: 'qa' is not a served model"):
        parse_ray_section({"models": {"qa": {}}}, ["tnews"])
    with pytest.raises(UserError, match="ray: unknown setting 'replicas'"):
        parse_ray_section({"replicas": 2}, ["tnews"])
    with pytest.raises(UserError, match="min_replicas 3 is above max_replicas 2"):
        parse_ray_section({"min_replicas": 3, "max_replicas": 2}, ["tnews"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


GOOD_REQUESTS = [
    {"texts": ["中国女排夺得世界杯冠军"]},
    {"texts": ["一文读懂市场与财报", "这款手机的芯片很快", "新游戏上线"]},
]
BAD_REQUESTS = [  # (body, expected status)
    (b"", 400),
    (b"{not json", 400),
    (b'["a"]', 422),
    (b'{"texts": []}', 422),
    (b'{"texts": "one"}', 422),
    (b'{"texts": ["a"], "extra": 1}', 422),
    (json.dumps({"texts": [["a", "pair"]]}).encode(), 422),
    (json.dumps({"texts": ["x"] * 9}).encode(), 422),
    (json.dumps({"texts": ["长" * 201]}).encode(), 422),
    (b"x" * 9000, 413),
]


def test_ray_serve_answers_like_the_fastapi_service(model, ray_session, tmp_path):
    from fastapi.testclient import TestClient
    from ray import serve

    from ernie3.serving import ModelRegistry, create_app, parse_config
    from ernie3.serving.ray import RaySection, start

    raw = {"defaults": {"max_texts_per_request": 8, "max_text_chars": 200, "max_body_bytes": 8192},
           "models": [{"name": "tnews", "path": model, "num_threads": 1, "batch_size": BATCH}]}  # fmt: skip
    config = parse_config(raw, str(tmp_path))
    port = free_port()
    start(config, RaySection(), "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    try:
        with TestClient(create_app(ModelRegistry.load(config.models, progress=lambda _: None))) as fastapi:
            for path in ("/health", "/ready"):
                assert requests.get(base + path, timeout=30).json() == fastapi.get(path).json()
            for payload in GOOD_REQUESTS:
                ray_answer = requests.post(base + "/models/tnews/predict", json=payload, timeout=60)
                assert ray_answer.status_code == 200
                assert ray_answer.json() == fastapi.post("/models/tnews/predict", json=payload).json()
            for body, status in BAD_REQUESTS:
                ray_answer = requests.post(base + "/models/tnews/predict", data=body, timeout=30)
                expected = fastapi.post("/models/tnews/predict", content=body)
                assert (ray_answer.status_code, ray_answer.json()) == (expected.status_code, expected.json()) and status == expected.status_code, body[:40]
            for path in ("/models/nope/predict", "/nope"):
                ray_answer = requests.post(base + path, json=GOOD_REQUESTS[0], timeout=30)
                expected = fastapi.post(path, json=GOOD_REQUESTS[0])
                assert (ray_answer.status_code, ray_answer.json()) == (expected.status_code, expected.json())
            described = requests.get(base + "/models", timeout=30).json()["models"][0]
            assert described["stats"]["texts"] == sum(len(p["texts"]) for p in GOOD_REQUESTS)
            assert {k: v for k, v in described.items() if k not in ("stats", "queued_requests")} == {
                k: v for k, v in fastapi.get("/models/tnews").json().items() if k not in ("stats", "queued_requests")}
    finally:
        serve.shutdown()
