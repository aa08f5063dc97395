"""The HTTP server (ernie3/serving) for real: started with deploy/serving/serve.py on a free loopback port, asked
over HTTP, compared with the Predictor on the same models; bad requests, concurrency and batching, start-up errors,
and the client and load-test scripts."""
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import requests
import yaml
from conftest import REPO_ROOT, TINY_EXPORT_TASKS

from ernie3.errors import UserError
from ernie3.cli.load_test import check_loopback
from ernie3.serving.config import ServingLimits, parse_config
from ernie3.tasks import get_task

TASKS = TINY_EXPORT_TASKS  # every task type with samples (the registry's); the server is compared with the Predictor
# the load test's default traffic: each task's own sample inputs
DEFAULT_INPUTS = {task_type: get_task(name).sample_inputs() for task_type, name, _ in TASKS}

SERVING_DIR = os.path.join(REPO_ROOT, "deploy", "serving")
SERVE_SCRIPT = os.path.join(SERVING_DIR, "serve.py")
#: a second model on the QA export with decoding options of its own (serving's per-model task_options; on the
#: second server, so that the first serves one model per task type)
QA_SHORT = {"name": "cmrc2018_short", "task_options": {"max_answer_length": 2, "n_best_size": 5}}
# small limits, so that going over them needs small requests
LIMITS = {"max_batch_size": 16, "max_wait_ms": 20, "max_texts_per_request": 8, "max_text_chars": 200,
          "max_request_chars": 1000, "max_body_bytes": 8192}  # fmt: skip
READ_TIMEOUT_S = 3  # server.read_timeout_s of the test servers: short, so that the slow-client tests are quick
QA_MAX_TEXT_CHARS = 1000  # a per-model override of the default limit
SERVER_THREADS = 1


@pytest.fixture(scope="module")
def exported(tiny_exports):
    return tiny_exports


@pytest.fixture(scope="module")
def predictors(exported):
    """The reference: the Predictor on the same models, with the server's thread count."""
    from ernie3.predict import Predictor

    return {task_type: Predictor(path, num_threads=SERVER_THREADS) for task_type, path in exported.items()}


class ServerProcess:
    """deploy/serving/serve.py in a subprocess; its stderr is collected in the background."""

    def __init__(self, config_path, env=None):
        self.process = subprocess.Popen(
            [sys.executable, SERVE_SCRIPT, "--config", str(config_path), "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        self.lines = []
        self.url_found = threading.Event()
        self.url = None
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            match = re.search(r" on (http://\S+)$", line.strip())
            if match and self.url is None:
                self.url = match.group(1)
                self.url_found.set()
        self.url_found.set()

    def wait_ready(self, timeout=180, headers=None):
        deadline = time.monotonic() + timeout
        self.url_found.wait(timeout)
        assert self.url, "server did not start:\n" + "\n".join(self.lines[-20:])
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/ready", timeout=5, headers=headers).status_code == 200:
                    return self.url
            except requests.ConnectionError:
                pass
            assert self.process.poll() is None, "server exited:\n" + "\n".join(self.lines[-20:])
            time.sleep(0.2)
        raise AssertionError("server not ready in time:\n" + "\n".join(self.lines[-20:]))

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def write_config(path, models, defaults=None, server=None):
    server = {"host": "127.0.0.1", "port": 8000, **(server or {})}
    config = {"server": server, "defaults": defaults or {}, "models": models}
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    models = [
        {"name": name, "path": exported[task_type], "num_threads": SERVER_THREADS,
         **({"max_text_chars": QA_MAX_TEXT_CHARS} if task_type == "qa" else {})}
        for task_type, name, _ in TASKS
    ]  # fmt: skip
    config = write_config(tmp_path_factory.mktemp("serving") / "config.yml", models, LIMITS,
                          {"read_timeout_s": READ_TIMEOUT_S})  # fmt: skip
    process = ServerProcess(config)
    try:
        yield process.wait_ready()
    finally:
        process.stop()


MODEL_OF = {task_type: name for task_type, name, _ in TASKS}
SERVED = list(MODEL_OF.values())
INPUTS = {
    **DEFAULT_INPUTS,
    "seq_cls": DEFAULT_INPUTS["seq_cls"][:6],  # tnews takes single texts (a pair is refused: see BAD_REQUESTS)
    # the second context is longer than one window (64 tokens): its answer is chosen over several windows
    "qa": DEFAULT_INPUTS["qa"] + [{"question": "谁创办了这所学校？", "context": "这所学校由张伯苓于1904年创办。" * 6}],
}


def post(url, model, body, **kwargs):
    return requests.post(f"{url}/models/{model}/predict", timeout=60, **body, **kwargs)


def assert_same_results(served, expected):
    """Equal, but for the last bits of scores (batching pads texts to other lengths)."""
    assert type(served) is type(expected)
    if isinstance(expected, float):
        assert served == pytest.approx(expected, rel=1e-4, abs=1e-6)
    elif isinstance(expected, dict):
        assert served.keys() == expected.keys()
        for key in expected:
            assert_same_results(served[key], expected[key])
    elif isinstance(expected, list):
        assert len(served) == len(expected)
        for a, b in zip(served, expected):
            assert_same_results(a, b)
    else:
        assert served == expected


# -- endpoints and outputs --------------------------------------------------------------------------------------


def test_health_readiness_and_model_list(server):
    assert requests.get(server + "/health", timeout=10).json() == {"status": "ok"}
    ready = requests.get(server + "/ready", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"ready": True, "models": {n: True for n in SERVED}}
    listed = requests.get(server + "/models", timeout=10).json()["models"]
    assert [(m["name"], m["task_type"], m["task_name"]) for m in listed] == [(n, t, n) for t, n, _ in TASKS]
    models = {m["name"]: m for m in listed}
    assert models["tnews"]["labels"][:2] == ["100", "101"] and models["cmrc2018"]["options"]["doc_stride"] == 24
    assert (models["tnews"]["backend"], models["tnews"]["device"], models["tnews"]["precision"]) == ("paddle", "cpu", "fp32")
    assert models["cmrc2018"]["limits"]["max_text_chars"] == QA_MAX_TEXT_CHARS
    assert models["tnews"]["limits"]["max_text_chars"] == 200
    assert requests.get(server + "/models/msra_ner", timeout=10).json()["labels"][0] == "B-PER"


@pytest.mark.parametrize("task_type", [task_type for task_type, _, _ in TASKS])
def test_outputs_equal_the_predictor_on_the_same_model(server, predictors, task_type):
    texts = INPUTS[task_type]
    response = post(server, MODEL_OF[task_type], {"json": {"texts": texts}})
    assert response.status_code == 200, response.text
    # one request alone forms one batch: exactly what the Predictor computes for the same texts
    assert response.json() == {"results": predictors[task_type].predict_texts(texts)}


# -- bad requests -----------------------------------------------------------------------------------------------


BAD_REQUESTS = [
    # (model, body, expected status, part of the error message)
    ("tnews", {"data": b"{not json"}, 400, "malformed JSON"),
    ("tnews", {"data": b"\xff\xfe\xff"}, 400, "the request body is not UTF-8 (invalid start byte at byte 0)"),
    # UTF-16 (json.loads alone would take it): the API is UTF-8 only
    ("tnews", {"data": json.dumps({"texts": ["球队"]}).encode("utf-16")}, 400, "the request body is not UTF-8"),
    ("tnews", {"data": b'{"texts": ["unterminated]}'}, 400, "Unterminated string starting at: line 1 column 12"),
    ("tnews", {"data": b""}, 400, "empty request body"),
    ("tnews", {"json": ["a"]}, 422, "must be a JSON object"),
    ("tnews", {"json": {}}, 422, "missing field 'texts'"),
    ("tnews", {"json": {"text": ["a"]}}, 422, "unknown field 'text'"),
    ("tnews", {"json": {"texts": "球队赢了"}}, 422, "field 'texts' must be a list, got str"),
    ("tnews", {"json": {"texts": []}}, 422, "field 'texts' is empty"),
    ("tnews", {"json": {"texts": ["球队", 3]}}, 422, "texts[1]: tnews classifies single texts: expected a text string, not a number"),
    ("tnews", {"json": {"texts": [None]}}, 422, "texts[0]: tnews classifies single texts: expected a text string, not null"),
    ("tnews", {"json": {"texts": [{"text": "a"}]}}, 422, "expected a text string, not an object"),
    ("tnews", {"json": {"texts": ["  "]}}, 422, "texts[0]: text 1 is empty"),
    ("tnews", {"json": {"texts": [["球队", "冠军"]]}}, 422, "texts[0]: tnews classifies single texts: expected a text string, not a pair"),
    ("tnews", {"json": {"texts": ["长" * 201]}}, 422, "texts[0] has 201 characters; at most 200"),
    ("tnews", {"json": {"texts": ["球队"] * 9}}, 422, "9 texts in one request; at most 8"),
    ("tnews", {"json": {"texts": ["长" * 190] * 8}}, 413, "larger than 8192 bytes"),
    ("tnews", {"data": (b"x" * 4096 for _ in range(3))}, 413, "larger than 8192 bytes"),  # chunked: no length
    ("msra_ner", {"json": {"texts": [["张三", "李四"]]}}, 422, "texts[0]: expected a text string"),
    ("cmrc2018", {"json": {"texts": ["张三在哪里？"]}}, 422, "texts[0]: expected {'question'"),
    ("cmrc2018", {"json": {"texts": [{"question": "谁？", "context": ""}]}}, 422, "'context' is empty"),
    ("cmrc2018", {"json": {"texts": [{"question": "谁？", "context": "长" * 1000}]}}, 422, "1002 characters; at most 1000"),
    ("nope", {"json": {"texts": ["a"]}}, 404, f"unknown model 'nope' (served: {', '.join(SERVED)})"),
    # text content: lone surrogates (valid JSON, not Unicode), invisible-only texts (refused as whitespace-only ones)
    ("tnews", {"data": b'{"texts": ["\\ud800"]}'}, 422, "texts[0]: text 1 holds a lone UTF-16 surrogate (\\ud800)"),
    ("msra_ner", {"data": b'{"texts": ["ok", "\\udfff\\u5f20"]}'}, 422, "texts[1]: the text holds a lone UTF-16 surrogate"),
    ("cmrc2018", {"data": b'{"texts": [{"question": "\\ud83d?", "context": "c"}]}'}, 422, "texts[0]: field 'question' holds a lone"),
    ("tnews", {"data": b'{"\\ud800": 1, "texts": ["a"]}'}, 422, "unknown field"),  # echoed back, escaped
    ("tnews", {"json": {"texts": ["\u200b\u200d\ufeff"]}}, 422, "texts[0]: text 1 is empty"),
    ("msra_ner", {"json": {"texts": [" \u2060\u00ad "]}}, 422, "texts[0]: the text is empty"),
    ("cmrc2018", {"json": {"texts": [{"question": "谁？", "context": "\u200b"}]}}, 422, "'context' is empty"),
    # total characters of a request (5 x 199 = 995 fits, 6 x 199 = 1194 does not)
    ("tnews", {"data": json.dumps({"texts": ["长" * 199] * 6}, ensure_ascii=False).encode()}, 413,
     "hold 1194 characters; at most 1000 are allowed per request"),
]


@pytest.mark.parametrize("model, body, status, message", BAD_REQUESTS, ids=[m for _, _, _, m in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_json_error(server, model, body, status, message):
    response = post(server, model, body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_other_paths_and_methods_answer_in_the_same_shape(server):
    assert requests.get(server + "/models/tnews/predict", timeout=10).status_code == 405
    missing = requests.get(server + "/nowhere", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    assert requests.get(server + "/models/nope", timeout=10).status_code == 404


def test_server_keeps_serving_after_bad_requests(server, predictors):
    for model, body, _, _ in BAD_REQUESTS:
        post(server, model, body)
    assert requests.get(server + "/health", timeout=10).status_code == 200
    assert requests.get(server + "/ready", timeout=10).status_code == 200
    response = post(server, "tnews", {"json": {"texts": ["球队赢得冠军"]}})
    assert response.json()["results"] == predictors["seq_cls"].predict_texts(["球队赢得冠军"])


# -- concurrency and batching -----------------------------------------------------------------------------------


def test_concurrent_requests_are_batched_and_all_answered_correctly(server, predictors):
    def stats():
        return requests.get(server + "/models/tnews", timeout=10).json()["stats"]

    before = stats()
    texts = DEFAULT_INPUTS["seq_cls"] * 2  # 16 requests, 16 threads
    expected = [predictors["seq_cls"].predict_texts([text])[0] for text in texts]
    answers = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def client(index):
        start.wait()
        answers[index] = post(server, "tnews", {"json": {"texts": [texts[index]]}})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(answer is not None and answer.status_code == 200 for answer in answers)
    for answer, reference in zip(answers, expected):
        assert_same_results(answer.json()["results"], [reference])
    after = stats()
    assert after["requests"] - before["requests"] == len(texts)
    assert after["batches"] - before["batches"] < len(texts)  # some requests ran together
    assert after["largest_batch_requests"] > 1
    assert after["largest_batch_texts"] <= LIMITS["max_batch_size"]


def test_concurrent_requests_to_all_task_types(server, predictors):
    jobs = [(task_type, text) for task_type in MODEL_OF for text in INPUTS[task_type]]
    answers = {}

    def client(index, task_type, text):
        answers[index] = post(server, MODEL_OF[task_type], {"json": {"texts": [text]}})

    threads = [threading.Thread(target=client, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for index, (task_type, text) in enumerate(jobs):
        assert answers[index].status_code == 200, answers[index].text
        assert_same_results(answers[index].json()["results"], predictors[task_type].predict_texts([text]))


# -- start-up errors and configs --------------------------------------------------------------------------------


def run_server_to_exit(config):
    completed = subprocess.run(
        [sys.executable, SERVE_SCRIPT, "--config", str(config), "--port", "0"],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
    )  # fmt: skip
    return completed.returncode, [line for line in completed.stderr.splitlines() if line.startswith("error:")]


def test_a_model_that_fails_to_load_stops_start_up_with_one_line(exported, tmp_path):
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    config = write_config(tmp_path / "config.yml", [
        {"name": "tnews", "path": exported["seq_cls"]},
        {"name": "broken", "path": str(not_a_model)},
    ])  # fmt: skip
    status, errors = run_server_to_exit(config)
    assert status == 2
    assert len(errors) == 1 and errors[0].startswith(f"error: model 'broken' could not be loaded: {not_a_model} ")


def test_corrupt_parameters_stop_start_up_with_one_line(exported, tmp_path):
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(exported["seq_cls"], corrupt)
    (corrupt / "model.pdiparams").write_bytes(b"\0" * 100)
    status, errors = run_server_to_exit(write_config(tmp_path / "config.yml", [{"name": "bad", "path": str(corrupt)}]))
    assert status == 2
    assert len(errors) == 1 and errors[0].startswith("error: model 'bad' could not be loaded") and str(corrupt) in errors[0]


@pytest.mark.parametrize("raw, message", [
    ({"models": []}, "'models' must be a non-empty list"),
    ({"models": [{"path": "m"}]}, "models[0]: 'name' is required"),
    ({"models": [{"name": "a b", "path": "m"}]}, "may hold only letters"),
    ({"models": [{"name": "a", "path": "m"}, {"name": "a", "path": "n"}]}, "'a' is used twice"),
    ({"models": [{"name": "a", "path": "m", "threads": 2}]}, "unknown setting 'threads'"),
    ({"models": [{"name": "a", "path": "m", "max_batch_size": 0}]}, "'max_batch_size' must be a positive integer"),
    ({"defaults": {"max_wait_ms": -1}, "models": [{"name": "a", "path": "m"}]}, "'max_wait_ms' must be a number >= 0"),
    ({"server": {"port": "80"}, "models": [{"name": "a", "path": "m"}]}, "'port' must be a port number"),
    ({"server": {"hosts": "x"}, "models": [{"name": "a", "path": "m"}]}, "unknown setting 'hosts'"),
    ({"model": []}, "unknown config section 'model'"),
])  # fmt: skip
def test_config_errors_name_the_setting(raw, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_config(raw, "/configs")


def test_config_defaults_overrides_and_predictor_options():
    config = parse_config({
        "defaults": {"max_batch_size": 8},
        "models": [{"name": "a", "path": "m", "max_wait_ms": 0, "num_threads": 2, "precision": "fp32"}],
    }, "/configs")  # fmt: skip
    model = config.models[0]
    assert model.path == "/configs/m"  # relative to the config file
    assert model.limits == ServingLimits(max_batch_size=8, max_wait_ms=0.0)
    # batch_size: the model's max_batch_size unless given, so the Predictor's shapes stop where batches do
    assert model.predictor_options == {"num_threads": 2, "precision": "fp32", "batch_size": 8}
    assert config.server.host == "127.0.0.1"
    given = parse_config({"models": [{"name": "a", "path": "m", "batch_size": 4}]}, "/configs").models[0]
    assert given.predictor_options == {"batch_size": 4} and given.limits.max_batch_size == 16


def test_the_shipped_config_keeps_predictor_shapes_within_max_batch_size(tiny_exports):
    from ernie3.memory import plan_model
    from ernie3.predict import Predictor

    with open(os.path.join(SERVING_DIR, "config.yml"), encoding="utf-8") as handle:
        config = parse_config(yaml.safe_load(handle), SERVING_DIR)
    for spec in config.models:
        assert spec.predictor_options["batch_size"] <= spec.limits.max_batch_size
    # the memory plan and the Predictor read the same options: the same shapes, none beyond max_batch_size
    spec = config.models[0]
    plan = plan_model(tiny_exports["seq_cls"], dict(spec.predictor_options))
    predictor = Predictor(tiny_exports["seq_cls"], **spec.predictor_options)
    assert plan["buckets"].batch_sizes == predictor.buckets.batch_sizes
    assert max(predictor.buckets.batch_sizes) == spec.limits.max_batch_size == 16


def test_the_sample_config_is_valid():
    with open(os.path.join(SERVING_DIR, "config.yml"), encoding="utf-8") as handle:
        config = parse_config(yaml.safe_load(handle), SERVING_DIR)
    assert [m.name for m in config.models] == ["tnews", "msra_ner", "cmrc2018"]
    assert config.models[0].path == os.path.join(REPO_ROOT, "demo_output", "tnews", "train", "export")


# -- client and load-test scripts -------------------------------------------------------------------------------


def run_script(name, *args):
    return subprocess.run([sys.executable, os.path.join(SERVING_DIR, name), *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)  # fmt: skip


def test_clients_print_one_result_per_text(server, predictors):
    seq_cls = run_script("client_seq_cls.py", "--url", server, "球队赢得冠军", "手机芯片")
    assert seq_cls.returncode == 0, seq_cls.stderr
    lines = [json.loads(line) for line in seq_cls.stdout.splitlines()]
    expected = predictors["seq_cls"].predict_texts(["球队赢得冠军", "手机芯片"])
    assert [line.pop("input") for line in lines] == ["球队赢得冠军", "手机芯片"] and lines == expected

    token_cls = run_script("client_token_cls.py", "--url", server, "张三在北京大学读书")
    assert json.loads(token_cls.stdout)["entities"] == predictors["token_cls"].predict_texts(["张三在北京大学读书"])[0]["entities"]

    qa_input = DEFAULT_INPUTS["qa"][0]
    qa = run_script("client_qa.py", "--url", server, "--question", qa_input["question"], "--context", qa_input["context"])
    assert json.loads(qa.stdout)["answer"] == predictors["qa"].predict_texts([qa_input])[0]["answer"]


def test_client_errors_are_one_line(server):
    wrong_type = run_script("client_seq_cls.py", "--url", server, "--model", "msra_ner", "球队")
    assert wrong_type.returncode == 2 and wrong_type.stderr.strip() == "error: --model: 'msra_ner' is a token_cls model, not seq_cls"
    refused = run_script("client_seq_cls.py", "--url", server, "长" * 201)
    assert refused.stderr.strip() == "error: tnews: HTTP 422: texts[0] has 201 characters; at most 200 are allowed"


def test_load_test_reports_throughput_and_latency(server):
    completed = run_script("load_test.py", "--url", server, "--model", "tnews", "--concurrency", "4",
                           "--requests", "24", "--duration", "30", "--warmup", "2", "--json")  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["requests"] == 24 and summary["errors"] == 0 and summary["concurrency"] == 4
    assert summary["requests_per_s"] > 0 and 0 < summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"]


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://8.8.8.8", "ftp://127.0.0.1"])
def test_load_test_refuses_other_than_loopback(url):
    with pytest.raises(UserError, match="--url"):
        check_loopback(url)
    check_loopback("http://localhost:8000")
    check_loopback("http://[::1]:8000")


# -- hardening: connections stay usable, errors name no internals, slow clients, big requests, keys, paths ---------


def test_a_refused_request_keeps_the_keep_alive_connection_usable(server, predictors):
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        surrogate_texts = {"msra_ner": b'"\\ud800"', "cmrc2018": b'{"question": "\\ud800", "context": "c"}',
                           "tnews": b'"\\ud800"'}  # in the shape each task takes  # fmt: skip
        for model, text in surrogate_texts.items():
            connection.request("POST", f"/models/{model}/predict", body=b'{"texts": [' + text + b']}')
            refused = connection.getresponse()
            assert refused.status == 422 and "surrogate" in json.loads(refused.read())["error"]
            assert refused.getheader("connection") != "close"
        sock = connection.sock
        connection.request("POST", "/models/tnews/predict", body=json.dumps({"texts": ["球队赢得冠军"]}))
        answered = connection.getresponse()
        assert answered.status == 200 and connection.sock is sock  # the same connection, not a new one
        assert json.loads(answered.read())["results"] == predictors["seq_cls"].predict_texts(["球队赢得冠军"])
    finally:
        connection.close()


def read_until_closed(sock, limit_s):
    """Everything the server sends until it closes the connection; fails if it is still open after `limit_s`."""
    import socket

    sock.settimeout(limit_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except socket.timeout:
        raise AssertionError(f"connection still open after {limit_s} s; received {received!r}") from None
    except ConnectionResetError:
        pass
    return received


def test_clients_that_stall_mid_request_are_answered_408_and_dropped(server):
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    body = json.dumps({"texts": ["球队赢得冠军"]}).encode()
    stalls = {
        "nothing sent": b"",
        "half the headers": b"POST /models/tnews/predict HTTP/1.1\r\nHost: x\r\nContent-Le",
        "half the body": b"POST /models/tnews/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body[:10],  # fmt: skip
    }
    sockets = {name: socket.create_connection((parts.hostname, parts.port), timeout=10) for name in stalls}
    try:
        for name, data in stalls.items():
            sockets[name].sendall(data)
        # the bound: read_timeout_s for the headers, as long again for the body; plus slack for a busy machine
        answers = {name: read_until_closed(sock, 2 * READ_TIMEOUT_S + 20) for name, sock in sockets.items()}
    finally:
        for sock in sockets.values():
            sock.close()
    for name in ("nothing sent", "half the headers"):
        assert answers[name].startswith(b"HTTP/1.1 408 "), (name, answers[name])
        assert b"request headers did not arrive within 3 s" in answers[name]
    assert answers["half the body"].startswith(b"HTTP/1.1 408 "), answers["half the body"]
    assert b'{"error":"the request body did not arrive within 3 s"}' in answers["half the body"]
    assert requests.get(server + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("data", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n",  # over h11's header limit
], ids=["garbage", "huge headers"])  # fmt: skip
def test_malformed_http_gets_a_json_400(server, data):
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        answer = read_until_closed(sock, 30)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/json" in head
    assert json.loads(body)["error"].startswith("malformed HTTP request")


# A model that fails, and one that blocks, behind the real app and a real uvicorn server in this process: what
# only a broken or slow model shows (a 500 with no internals, and batches of a big request taking turns).


class FakeTask:
    task_type = "seq_cls"
    input_flags = {"text": "an input text"}

    def describe(self):
        return {"task_name": "fake", "task_type": self.task_type, "labels": ["a", "b"]}

    def sample_inputs(self):
        return ["ok"]  # the start-up check's input

    def example_from_text(self, text):
        from ernie3.tasks import RecordError

        if text == "crash in the handler":
            raise RuntimeError("parser bug at /srv/secret/path.py")
        if not isinstance(text, str) or not text.strip():
            raise RecordError("expected a text string")
        return {"text": text}


class FakePredictor:
    """Fails on "fail"; otherwise answers each text with itself, after `gate` lets the batch through."""

    def __init__(self):
        self.task = FakeTask()
        self.max_seq_length, self.backend_name, self.device, self.precision = 16, "fake", "cpu", "fp32"
        self.batches = []  # the texts of each batch run, in order
        self.gate = threading.Semaphore(1000)
        self.entered = threading.Event()

    def predict_texts(self, texts):
        self.entered.set()
        self.gate.acquire()
        self.batches.append(list(texts))
        if "fail" in texts:
            raise RuntimeError("(PreconditionNotMet) tensor shape mismatch at /paddle/fluid/inference/api.cc:123")
        return [{"label": text} for text in texts]


@pytest.fixture(scope="module")
def fake_server():
    import logging

    import uvicorn

    from ernie3.serving.app import create_app
    from ernie3.serving.config import ModelSpec, ServerSettings
    from ernie3.serving.server import bind_socket, read_timeout_protocol, url_of
    from ernie3.serving.worker import ModelRegistry, ModelWorker

    limits = ServingLimits(max_batch_size=2, max_texts_per_request=64, max_wait_ms=0)
    predictors = {"broken": FakePredictor(), "slow": FakePredictor()}
    registry = ModelRegistry([ModelWorker(ModelSpec(name, "/models/" + name, limits), p) for name, p in predictors.items()])
    for worker in registry.workers.values():
        worker.start()
    for predictor in predictors.values():
        predictor.batches.clear()  # the start-up warm-up's batches
    settings = ServerSettings(read_timeout_s=READ_TIMEOUT_S)
    sock = bind_socket("127.0.0.1", 0, False)
    config = uvicorn.Config(create_app(registry, settings), log_config=None, lifespan="on",
                            http=read_timeout_protocol(settings.read_timeout_s))  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = url_of(sock)
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    logging.getLogger("uvicorn.error").propagate = True  # so that caplog sees the server's log
    try:
        yield url, predictors
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_internal_errors_answer_json_500_naming_no_internals(fake_server, caplog):
    url, _ = fake_server
    with requests.Session() as session, caplog.at_level("ERROR", logger="uvicorn.error"):
        for texts in (["ok", "fail"], ["crash in the handler"]):  # in the model, then in the request handler
            response = session.post(url + "/models/broken/predict", json={"texts": texts}, timeout=30)
            assert response.status_code == 500 and response.headers["content-type"] == "application/json"
            body = response.json()
            assert set(body) == {"error", "request_id"} and body["request_id"] in body["error"]
            for internal in ("Precondition", "paddle", "/srv", "RuntimeError", "Traceback"):
                assert internal not in response.text
            assert body["request_id"] in caplog.text  # the log has the details under the same id
            assert session.post(url + "/models/broken/predict", json={"texts": ["ok"]}, timeout=30).json() == {
                "results": [{"label": "ok"}]}  # the same connection goes on serving
    assert "PreconditionNotMet" in caplog.text and "/srv/secret/path.py" in caplog.text


def test_a_big_request_runs_in_batches_that_take_turns_with_other_requests(fake_server):
    url, predictors = fake_server
    slow = predictors["slow"]
    slow.gate = threading.Semaphore(0)  # each batch waits for a release
    slow.entered.clear()
    big = [f"big{i}" for i in range(6)]  # max_batch_size 2: three batches
    answers = {}

    def send(name, texts):
        answers[name] = requests.post(url + "/models/slow/predict", json={"texts": texts}, timeout=60)

    threads = [threading.Thread(target=send, args=("big", big))]
    threads[0].start()
    assert slow.entered.wait(30)  # the big request's first batch is running
    threads.append(threading.Thread(target=send, args=("small", ["small"])))
    threads[1].start()
    deadline = time.monotonic() + 30
    while requests.get(url + "/models/slow", timeout=10).json()["queued_requests"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until the small request is queued while the big one's first batch runs
    for _ in range(4):
        slow.gate.release()
    for thread in threads:
        thread.join(timeout=60)
    # the big request's rest went back into the queue behind the small one, which ran in the next batch
    assert slow.batches == [["big0", "big1"], ["small", "big2"], ["big3", "big4"], ["big5"]]
    assert answers["big"].json()["results"] == [{"label": text} for text in big]
    assert answers["small"].json()["results"] == [{"label": "small"}]
    assert requests.get(url + "/models/slow", timeout=10).json()["stats"]["split_requests"] == 1
    slow.gate = threading.Semaphore(1000)


def test_models_list_shows_no_filesystem_paths(server, fake_server, exported):
    for listing in (requests.get(server + "/models", timeout=10).text, requests.get(fake_server[0] + "/models", timeout=10).text):
        assert "/models/broken" not in listing and "/tmp" not in listing and '"path"' not in listing
    models = {m["name"]: m for m in requests.get(server + "/models", timeout=10).json()["models"]}
    assert models["tnews"]["inputs"] == ["text"] and models["tnews"]["num_threads"] == SERVER_THREADS
    assert models["cmrc2018"]["inputs"] == ["question", "context"]  # what one text of a request holds, as the task says
    assert {"limits", "stats", "task_name", "task_type", "labels"} <= set(models["msra_ner"])
    assert exported["seq_cls"] not in requests.get(server + "/models/tnews", timeout=10).text


# -- a second server: an API key, a compress output dir, and a QA model that takes big requests -------------------

API_KEY = "test-key-0123456789"
BIG_QA_LIMITS = {"max_texts_per_request": 64, "max_text_chars": 5000, "max_body_bytes": 1 << 20,
                 "max_batch_size": 4, "max_batch_chars": 2000, "max_request_chars": 60000}  # fmt: skip


def compress_like_dir(export_dir, root):
    """The layout compress_*.py writes: OUTPUT/report.json and the chosen candidate in OUTPUT/best/."""
    import shutil

    shutil.copytree(export_dir, root / "best")
    (root / "report.json").write_text(json.dumps({"best": "fp32"}), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def keyed_server(exported, tmp_path_factory):
    root = tmp_path_factory.mktemp("keyed")
    compressed = compress_like_dir(exported["seq_cls"], root / "tnews-compressed")
    models = [
        {"name": "tnews", "path": str(compressed), "num_threads": SERVER_THREADS},
        {"name": "cmrc2018", "path": exported["qa"], "num_threads": SERVER_THREADS, **BIG_QA_LIMITS},
        {**QA_SHORT, "path": exported["qa"], "num_threads": SERVER_THREADS},
    ]
    server_settings = {"api_key_env": "TEST_SERVING_KEY", "read_timeout_s": READ_TIMEOUT_S}
    process = ServerProcess(write_config(root / "config.yml", models, None, server_settings),
                            env={"TEST_SERVING_KEY": API_KEY})  # fmt: skip
    try:
        yield process.wait_ready(headers={"Authorization": f"Bearer {API_KEY}"})
    finally:
        process.stop()


def test_the_api_key_guards_every_endpoint_but_health(keyed_server):
    good = {"Authorization": f"Bearer {API_KEY}"}
    assert requests.get(keyed_server + "/health", timeout=10).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        for method, path in (("GET", "/ready"), ("GET", "/models"), ("GET", "/nowhere"), ("POST", "/models/tnews/predict")):
            response = requests.request(method, keyed_server + path, headers=headers, json={"texts": ["a"]}, timeout=10)
            assert response.status_code == 401, (headers, path)
            assert "API key" in response.json()["error"] and response.headers["www-authenticate"] == "Bearer"
    assert requests.post(keyed_server + "/models/tnews/predict", json={"texts": ["球队"]}, headers=good, timeout=30).status_code == 200


def test_a_models_task_options_change_its_decoding_without_a_new_export(keyed_server, exported):
    """serving's per-model task_options: the same QA export served with a shorter answer limit answers as the
    Predictor with those options does, and the model list shows the options it runs with."""
    from ernie3.predict import Predictor

    headers = {"Authorization": f"Bearer {API_KEY}"}
    texts = INPUTS["qa"]
    response = post(keyed_server, QA_SHORT["name"], {"json": {"texts": texts}}, headers=headers)
    assert response.status_code == 200, response.text
    short = Predictor(exported["qa"], num_threads=SERVER_THREADS, task_options=QA_SHORT["task_options"])
    assert response.json() == {"results": short.predict_texts(texts)}
    listed = requests.get(f"{keyed_server}/models/{QA_SHORT['name']}", headers=headers, timeout=10).json()["options"]
    assert listed["max_answer_length"] == 2 and listed["n_best_size"] == 5 and listed["doc_stride"] == 24


def test_a_compress_output_dir_is_served_from_its_best_candidate(keyed_server, predictors):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    texts = DEFAULT_INPUTS["seq_cls"][:3]
    response = requests.post(keyed_server + "/models/tnews/predict", json={"texts": texts}, headers=headers, timeout=30)
    assert response.json() == {"results": predictors["seq_cls"].predict_texts(texts)}  # best/ is the same export


def test_a_big_qa_request_is_split_and_answered_like_the_predictor(keyed_server, predictors):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    context = "这所学校由张伯苓于1904年创办，位于天津。" * 60  # 1,260 characters: about 50 windows of 64 tokens
    texts = [{"question": "谁创办了这所学校？", "context": context[i:]} for i in range(10)]
    response = requests.post(keyed_server + "/models/cmrc2018/predict", json={"texts": texts}, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    expected = [predictors["qa"].predict_texts([text])[0] for text in texts]
    assert_same_results(response.json()["results"], expected)
    stats = requests.get(keyed_server + "/models/cmrc2018", headers=headers, timeout=10).json()["stats"]
    assert stats["split_requests"] >= 1 and stats["largest_batch_texts"] == 1  # max_batch_chars 2000: one per batch
    too_much = [{"question": "谁？", "context": "长" * 4998}] * 13  # 13 x 5000 characters > max_request_chars 60000
    refused = requests.post(keyed_server + "/models/cmrc2018/predict", json={"texts": too_much}, headers=headers, timeout=30)
    assert refused.status_code == 413 and "at most 60000 are allowed per request" in refused.json()["error"]


def test_clients_and_load_test_send_the_api_key(keyed_server):
    without = run_script("client_seq_cls.py", "--url", keyed_server, "球队")
    assert without.returncode == 2 and without.stderr.strip().startswith("error: GET ") and "HTTP 401" in without.stderr
    with_flag = run_script("client_seq_cls.py", "--url", keyed_server, "--api_key", API_KEY, "球队")
    assert with_flag.returncode == 0, with_flag.stderr
    from_env = subprocess.run([sys.executable, os.path.join(SERVING_DIR, "client_qa.py"), "--url", keyed_server,
                               "--model", "cmrc2018", "--question", "谁？", "--context", "张三在北京。"], capture_output=True, text=True,
                              timeout=120, cwd=REPO_ROOT, env={**os.environ, "ERNIE3_API_KEY": API_KEY})  # fmt: skip
    assert from_env.returncode == 0 and "answer" in json.loads(from_env.stdout), from_env.stderr
    load = run_script("load_test.py", "--url", keyed_server, "--model", "tnews", "--requests", "4", "--warmup", "1",
                      "--api_key", API_KEY, "--json")  # fmt: skip
    assert load.returncode == 0 and json.loads(load.stdout)["errors"] == 0, load.stderr


def test_seq_cls_client_checks_text_pair_against_the_model(server):
    refused = run_script("client_seq_cls.py", "--url", server, "--model", "tnews", "球队", "--text_pair", "冠军")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: 'tnews': --text_pair does not apply to tnews (its inputs: --text)"


def test_pair_tasks_refuse_single_texts_naming_the_index():
    from ernie3.serving.protocol import RequestError, parse_predict_request
    from ernie3.tasks import get_task

    afqmc, tnews = get_task("afqmc"), get_task("tnews")
    assert parse_predict_request({"texts": [["蚂蚁借呗", "借呗"]]}, afqmc, ServingLimits()) == [["蚂蚁借呗", "借呗"]]
    for task, texts, message in [
        (afqmc, [["a", "b"], "单独一句"], "texts[1]: afqmc classifies pairs of texts"),
        (afqmc, [["a", "\u200b"]], "texts[0]: text 2 is empty"),
        (tnews, ["a", "b", ["c", "d"]], "texts[2]: tnews classifies single texts"),
        # what was given is named, not assumed to be a pair
        (afqmc, [["a", 3]], "texts[0]: afqmc classifies pairs of texts: expected a [text, text_pair] pair of strings, "
                            "not a pair of a string and a number"),
        (afqmc, [None], "not null"),
        (tnews, [7], "texts[0]: tnews classifies single texts: expected a text string, not a number"),
        (tnews, [{"text": "a"}], "expected a text string, not an object"),
    ]:
        with pytest.raises(RequestError, match=re.escape(message)) as refused:
            parse_predict_request({"texts": texts}, task, ServingLimits())
        assert refused.value.status == 422


# -- start-up checks ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, value, message", [
    ("batch_size", 0, "'batch_size' must be a positive integer, got 0"),
    ("num_threads", -1, "'num_threads' must be a positive integer, got -1"),
    ("max_seq_length", "64", "'max_seq_length' must be a positive integer"),
    ("precision", "int4", "'precision' must be one of auto, fp32, fp16, bf16, int8, got 'int4'"),
    ("device", "tpu", "'device' must be one of cpu, gpu"),
    ("backend", "", "'backend' must be a non-empty string"),
    ("tensorrt", {"precison": "fp16"}, "unknown tensorrt setting 'precison'"),
    ("tensorrt", {"min_shape": [4, 4], "opt_shape": [2, 2]}, "TensorRT shapes must satisfy min <= opt <= max"),
    ("task_options", ["max_answer_length=3"], "'task_options' must be a mapping of the task's decoding options"),
])  # fmt: skip
def test_predictor_options_are_checked_with_the_config(option, value, message):
    with pytest.raises(UserError, match=re.escape(f"models[0] (a): {message}")):
        parse_config({"models": [{"name": "a", "path": "m", option: value}]}, "/configs")


@pytest.mark.parametrize("server_settings, message", [
    ({"read_timeout_s": 0}, "'read_timeout_s' must be a number > 0"),
    ({"keep_alive_s": -1}, "'keep_alive_s' must be a number > 0"),
    ({"read_timeout_s": float("nan")}, "'read_timeout_s' must be a number > 0 (finite, at most 86400), got nan"),
    ({"read_timeout_s": float("inf")}, "'read_timeout_s' must be a number > 0 (finite, at most 86400), got inf"),
    ({"keep_alive_s": 1e300}, "'keep_alive_s' must be a number > 0 (finite, at most 86400), got 1e+300"),
    ({"max_memory_mb": -1}, "'max_memory_mb' must be an integer >= 0 (0: no limit), got -1"),
    ({"port": float("nan")}, "'port' must be a port number"),
    ({"api_key": ""}, "'api_key' must be a non-empty string"),
])  # fmt: skip
def test_server_settings_are_checked(server_settings, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_config({"server": server_settings, "models": [{"name": "a", "path": "m"}]}, "/configs")


def test_api_key_settings(monkeypatch):
    from ernie3.serving.config import ServerSettings, resolve_api_key

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(UserError, match="'api_key_env' names NO_SUCH_KEY_VAR, which is not set"):
        resolve_api_key(ServerSettings(api_key_env="NO_SUCH_KEY_VAR"))
    with pytest.raises(UserError, match="not both"):
        resolve_api_key(ServerSettings(api_key="a", api_key_env="B"))
    monkeypatch.setenv("SOME_KEY_VAR", "secret")
    assert resolve_api_key(ServerSettings(api_key_env="SOME_KEY_VAR")) == "secret"
    assert resolve_api_key(ServerSettings()) is None


@pytest.mark.parametrize("task_options, message", [
    ({"doc_stride": 16}, "task option 'doc_stride' of cmrc2018 shapes the model's features, not only its decoding"),
    ({"threshold": 0.3}, "unknown task option 'threshold' for cmrc2018 (its decoding options: max_answer_length, "
                         "n_best_size)"),
    ({"n_best_size": 0}, "bad task option for cmrc2018: --n_best_size must be a positive integer, got 0"),
    ({"max_answer_length": "many"}, "task option 'max_answer_length' takes int values, got 'many'"),
])  # fmt: skip
def test_a_bad_task_option_stops_the_model_loading_with_one_line(exported, task_options, message):
    from ernie3.serving.config import ModelSpec
    from ernie3.serving.models import load_predictor

    spec = ModelSpec("qa", exported["qa"], ServingLimits(), {"task_options": task_options, "num_threads": 1})
    with pytest.raises(UserError, match=re.escape(f"model 'qa' could not be loaded: {message}")):
        load_predictor(spec)


def test_bad_predictor_option_stops_start_up_before_loading(exported, tmp_path):
    config = write_config(tmp_path / "config.yml", [{"name": "tnews", "path": exported["seq_cls"], "batch_size": 0}])
    status, errors = run_server_to_exit(config)
    assert status == 2 and len(errors) == 1
    assert errors[0] == f"error: {config}: models[0] (tnews): 'batch_size' must be a positive integer, got 0"


def test_a_max_seq_length_beyond_the_models_positions_stops_start_up(exported):
    from ernie3.serving.config import ModelSpec
    from ernie3.serving.models import load_predictor

    spec = ModelSpec("tnews", exported["seq_cls"], ServingLimits(), {"max_seq_length": 4096, "num_threads": 1})
    with pytest.raises(UserError, match=re.escape("model 'tnews' could not be loaded: max_seq_length 4096 exceeds "
                                                  "the model's 512 position embeddings")):  # fmt: skip
        load_predictor(spec)


def test_listening_beyond_loopback_without_a_key_warns(tmp_path):
    missing = tmp_path / "missing"
    config = write_config(tmp_path / "config.yml", [{"name": "m", "path": str(missing)}], None, {"host": "0.0.0.0"})
    completed = subprocess.run([sys.executable, SERVE_SCRIPT, "--config", str(config), "--port", "0"],
                               capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)  # fmt: skip
    assert completed.returncode == 2
    assert "warning: listening on 0.0.0.0, beyond this machine, without an API key" in completed.stderr
    assert f"error: model 'm' could not be loaded: path not found: {missing}" in completed.stderr


def test_served_paths_resolve_as_infer_does(exported, tmp_path):
    from ernie3.serving.config import ModelSpec
    from ernie3.serving.models import resolve_served_path

    compressed = compress_like_dir(exported["seq_cls"], tmp_path / "compressed")
    assert resolve_served_path(ModelSpec("a", str(compressed), ServingLimits())) == str(compressed / "best")
    assert resolve_served_path(ModelSpec("a", exported["seq_cls"], ServingLimits())) == exported["seq_cls"]
    no_best = tmp_path / "no-best"
    no_best.mkdir()
    (no_best / "report.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(f"model 'a' could not be loaded: {no_best} is a compress output dir without best/")):
        resolve_served_path(ModelSpec("a", str(no_best), ServingLimits()))


def test_load_test_refusal_says_what_it_means():
    with pytest.raises(UserError, match=re.escape("10.0.0.1 is not a loopback address")):
        check_loopback("http://10.0.0.1:8000")


def test_a_warm_up_that_fails_stops_start_up_with_one_line():
    from ernie3.serving.config import ModelSpec
    from ernie3.serving.worker import ModelWorker

    def failing_warm_up():
        raise RuntimeError("(PreconditionNotMet) oneDNN primitive\nbucket 4x64 failed")

    predictor = FakePredictor()
    predictor.warm_up = failing_warm_up  # the backend's pass over its shape buckets, after the first predictions
    worker = ModelWorker(ModelSpec("m", "/models/m", ServingLimits()), predictor)
    with pytest.raises(UserError, match=re.escape("model 'm' failed its warm-up: bucket 4x64 failed")):
        worker.start()
    assert not worker.alive


def test_only_utf8_bodies_are_decoded():
    """json.loads would take UTF-16/32 bytes; the API says UTF-8 (a UTF-8 BOM is still UTF-8)."""
    from ernie3.serving.protocol import RequestError, decode_json

    body = {"texts": ["球队赢了"]}
    assert decode_json(json.dumps(body, ensure_ascii=False).encode("utf-8")) == body
    assert decode_json(b"\xef\xbb\xbf" + json.dumps(body).encode()) == body
    for encoding in ("utf-16", "utf-16-le", "utf-32"):
        with pytest.raises(RequestError) as refused:
            decode_json(json.dumps(body, ensure_ascii=False).encode(encoding))
        assert refused.value.status == 400
        assert "not UTF-8" in refused.value.message or "malformed JSON" in refused.value.message


@pytest.mark.parametrize("limits, message", [
    ({"request_timeout_s": float("nan")}, "defaults: 'request_timeout_s' must be a number > 0 (finite, at most 86400)"),
    ({"max_wait_ms": float("inf")}, "defaults: 'max_wait_ms' must be a number >= 0 (finite, at most 60000), got inf"),
    ({"max_batch_size": float("nan")}, "defaults: 'max_batch_size' must be a positive integer, got nan"),
])  # fmt: skip
def test_serving_limits_refuse_nan_and_inf(limits, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_config({"defaults": limits, "models": [{"name": "a", "path": "m"}]}, "/configs")


def test_zero_settings_that_mean_something_are_accepted():
    config = parse_config({"server": {"max_memory_mb": 0}, "defaults": {"max_wait_ms": 0},
                           "models": [{"name": "a", "path": "m"}]}, "/configs")  # fmt: skip
    assert config.server.max_memory_mb == 0 and config.models[0].limits.max_wait_ms == 0.0


def test_serve_refuses_a_nan_read_timeout_before_starting(tmp_path, capsys):
    from ernie3.cli.serve import main as serve_main
    from ernie3.errors import run_cli

    config = tmp_path / "config.yml"
    config.write_text("server:\n  read_timeout_s: .nan\nmodels:\n  - {name: a, path: nowhere}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: serve_main(["--config", str(config), "--port", "0"]))
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [f"error: {config}: server: 'read_timeout_s' must be a number > 0 (finite, at most 86400), got nan"]


@pytest.mark.parametrize("settings, message", [
    ({"num_cpus": float("nan")}, "ray: 'num_cpus' must be a number > 0 (finite), got nan"),
    ({"target_ongoing_requests": float("inf")}, "ray: 'target_ongoing_requests' must be a number > 0 (finite), got inf"),
    ({"num_replicas": float("nan")}, "ray: 'num_replicas' must be a positive integer, got nan"),
])  # fmt: skip
def test_ray_section_refuses_nan_and_inf(settings, message):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed")
    from ernie3.serving.ray import parse_ray_section

    with pytest.raises(UserError, match=re.escape(message)):
        parse_ray_section(settings, ["a"])


def test_the_per_type_clients_take_the_long_text_variant_of_their_type(capsys):
    """GET /models reports `<name>_long` models as long_<type>: client_seq_cls.py (main("seq_cls")) must take them."""
    import http.server

    from ernie3.cli.client import main as client_main, pick_model

    models = [{"name": "iflytek_long", "task_name": "iflytek_long", "task_type": "long_seq_cls"},
              {"name": "msra_ner", "task_name": "msra_ner", "task_type": "token_cls"}]  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._answer({"models": models})

        def do_POST(self):
            texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
            self._answer({"results": [{"label": "0", "score": 0.5, "windows": 1} for _ in texts]})

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert pick_model(url, None, "seq_cls")["name"] == "iflytek_long"
        assert pick_model(url, "iflytek_long", "seq_cls")["name"] == "iflytek_long"
        with pytest.raises(UserError, match="'iflytek_long' is a long_seq_cls model, not token_cls"):
            pick_model(url, "iflytek_long", "token_cls")
        client_main("seq_cls", ["--url", url, "一段很长的文本"])
        assert json.loads(capsys.readouterr().out) == {"input": "一段很长的文本", "label": "0", "score": 0.5, "windows": 1}
    finally:
        httpd.shutdown()
        httpd.server_close()
