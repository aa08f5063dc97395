"""Ray: batch prediction on Ray Data (an actor pool of Predictors) equal to the local engine byte for byte, and the
Ray Serve application answering like the FastAPI service (same results, same 4xx). One local Ray for the module."""
import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import requests
from conftest import REPO_ROOT
from test_batch_predict import export_tnews, snapshot, write_api_lines

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


def settings(input_file, output, skip_invalid=False, overwrite=False):
    from ernie3.batch_predict import BatchSettings

    return BatchSettings(str(input_file), str(output), chunk_size=CHUNK, skip_invalid=skip_invalid, progress=False,
                         overwrite=overwrite)  # fmt: skip


def test_ray_data_predictions_identical_to_local_engine(model, ray_session, tmp_path):
    from ernie3.batch_predict import predict_file
    from ernie3.predict import Predictor
    from ernie3.ray_batch import MANIFEST, RayOptions, predict_on_ray, read_shards

    input_file = tmp_path / "in.jsonl"
    write_api_lines(input_file, 700, blank_every=50, bad={100: "{not json"})
    with open(input_file, "ab") as handle:  # a line that is not UTF-8: the same skipped entry from both engines
        handle.write(b'"caf\xe9"\n')
    local = tmp_path / "local.jsonl"
    predict_file(Predictor(model, num_threads=1, batch_size=BATCH), settings(input_file, local, skip_invalid=True), log=lambda _: None)

    options = RayOptions(num_workers=2, threads_per_worker=1, shard_records=300)
    summary = predict_on_ray(settings(input_file, tmp_path / "ray", skip_invalid=True),
                             {"model_path": model, "batch_size": BATCH}, options, log=lambda _: None)  # fmt: skip
    assert summary["predicted"] == 700 and summary["skipped"] == 2 and summary["shards"] == 3
    assert "".join(read_shards(str(tmp_path / "ray"))) == local.read_text(encoding="utf-8")
    assert (tmp_path / "ray" / "skipped.jsonl").read_text() == (tmp_path / "local.jsonl.skipped.jsonl").read_text()
    assert "not UTF-8 text" in (tmp_path / "ray" / "skipped.jsonl").read_text().splitlines()[-1]
    manifest = json.loads((tmp_path / "ray" / MANIFEST).read_text())
    assert [s["records"] for s in manifest["shards"]] == [300, 300, 100]

    # without --skip_invalid_records: one error naming file:line, and no output directory (the model shipped
    # through the object store this time, as to nodes without shared storage)
    with pytest.raises(UserError, match=rf"^{input_file}:100: malformed JSON"):
        predict_on_ray(settings(input_file, tmp_path / "failed"), {"model_path": model, "batch_size": BATCH},
                       RayOptions(num_workers=2, ship_model=True))
    assert not (tmp_path / "failed").exists()

    # a finished output is not replaced without --overwrite (refused before Ray does any work)
    before = sorted(os.listdir(tmp_path / "ray"))
    with pytest.raises(UserError, match=r"holds the output of an earlier --engine ray run; pass --overwrite"):
        predict_on_ray(settings(input_file, tmp_path / "ray", skip_invalid=True), {"model_path": model, "batch_size": BATCH}, options)
    assert sorted(os.listdir(tmp_path / "ray")) == before


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


# -- what --engine ray refuses before any work (issue 18) ---------------------------------------------------------


def test_ray_output_directory_is_replaced_only_when_it_is_a_finished_ray_output(model, tmp_path):
    from ernie3.ray_batch import MANIFEST, check_ray_output

    input_file = tmp_path / "in.jsonl"
    write_api_lines(input_file, 5)
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "part-00000.jsonl").write_text('{"line": 1}\n')
    (finished / MANIFEST).write_text(json.dumps({"kind": "batch_predict", "engine": "ray", "skipped_file": None,
                                                 "shards": [{"file": "part-00000.jsonl", "records": 1}]}))  # fmt: skip
    assert check_ray_output(settings(input_file, finished, overwrite=True), model) == str(finished)
    (tmp_path / "empty").mkdir()
    assert check_ray_output(settings(input_file, tmp_path / "empty"), model) == str(tmp_path / "empty")

    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("years of work")
    os.symlink(input_file, tmp_path / "in-link.jsonl")
    cases = [
        (finished, False, "holds the output of an earlier --engine ray run; pass --overwrite"),
        (tmp_path / "home", True, r"is a directory that holds no --engine ray output .*; it is left alone"),
        (tmp_path, True, r"the --input_file .*in\.jsonl lies inside it"),
        (input_file, True, r"is a file; --engine ray writes a directory"),
        (model, True, r"lies in the model directory"),
        (os.path.dirname(model), True, r"holds the model"),
        (tmp_path / "missing" / ".." / "out", False, r"cannot use the directory .*missing/\.\.: No such file"),
    ]
    for output, overwrite, message in cases:
        before = snapshot(tmp_path, model)
        with pytest.raises(UserError, match=message):
            check_ray_output(settings(input_file, output, overwrite=overwrite), model)
        assert snapshot(tmp_path, model) == before
    (finished / "notes.txt").write_text("mine")  # a file no Ray job wrote, inside a finished output
    with pytest.raises(UserError, match=r"holds files no --engine ray run wrote \(notes\.txt\)"):
        check_ray_output(settings(input_file, finished, overwrite=True), model)


def test_ray_addresses_that_cannot_be_joined_are_refused_in_one_line():
    from ernie3.ray_batch import check_cluster_reachable

    for address in ("::::", "head", "head:0", "ray://", "10.0.0.1:6379/x"):
        with pytest.raises(UserError, match=r"expected auto, HOST:PORT"):
            check_cluster_reachable(address)
    with pytest.raises(UserError, match=r"^--ray_address 127\.0\.0\.1:1: no Ray cluster reachable at 127\.0\.0\.1:1 \(Connection refused\)"):
        check_cluster_reachable("127.0.0.1:1")

    # a port that accepts connections but is no Ray cluster (here an HTTP/1 server): ray.init would retry forever
    server = socket.create_server(("", 0))  # every address: Ray itself maps 127.0.0.1 to this node's IP
    port = server.getsockname()[1]

    def answer_like_http1() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            with connection:
                connection.recv(1024)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer_like_http1, daemon=True).start()
    try:
        with pytest.raises(UserError, match=r"answers, but not as a Ray cluster"):
            check_cluster_reachable(f"127.0.0.1:{port}")
    finally:
        server.close()


def test_a_real_cluster_address_passes_the_check(ray_session):
    import ray

    from ernie3.ray_batch import check_cluster_reachable

    check_cluster_reachable(ray.get_runtime_context().gcs_address)


def test_unreachable_ray_address_fails_within_bounded_time(model, tmp_path):
    """The whole command, as a user runs it: exit 2 and one line, long before ray.init would give up (never)."""
    input_file = tmp_path / "in.jsonl"
    write_api_lines(input_file, 5)
    for address in ("127.0.0.1:1", "::::"):
        result = subprocess.run(
            [sys.executable, os.path.join(REPO_ROOT, "infer.py"), "--model_path", model, "--input_file", str(input_file),
             "--output_file", str(tmp_path / "out"), "--engine", "ray", "--ray_address", address, "--no_progress"],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,  # a hang fails the test instead of the suite
        )  # fmt: skip
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"--ray_address {address}" in errors[0].replace("'", ""), result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]
