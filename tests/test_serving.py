"""The HTTP server (ernie3/serve.py) for real: started with deploy/serving/serve.py on a free loopback port, asked
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
from conftest import REPO_ROOT

from ernie3.errors import UserError
from ernie3.serve import ServingLimits, parse_config
from ernie3.serve_client import DEFAULT_INPUTS, check_loopback

SERVING_DIR = os.path.join(REPO_ROOT, "deploy", "serving")
SERVE_SCRIPT = os.path.join(SERVING_DIR, "serve.py")
# (task type, task, flags) of each model: two training steps are enough, the tests compare the server with the
# Predictor on the same weights; QA gets short windows so that the sample contexts are cut into several
TASKS = (
    ("seq_cls", "tnews", []),
    ("token_cls", "msra_ner", ["--max_seq_length", "64"]),
    ("qa", "cmrc2018", ["--max_seq_length", "64", "--doc_stride", "24", "--max_query_length", "24"]),
)
# small limits, so that going over them needs small requests
LIMITS = {"max_batch_size": 16, "max_wait_ms": 20, "max_texts_per_request": 8, "max_text_chars": 200,
          "max_body_bytes": 8192}  # fmt: skip
QA_MAX_TEXT_CHARS = 1000  # a per-model override of the default limit
SERVER_THREADS = 1


def export_model(task_type, task_name, flags, model_dir, output_dir):
    from ernie3.demo import sample_file
    from ernie3.tasks.qa import QAArguments
    from ernie3.train import run

    summary = run(task_type, [
        "--task_name", task_name, "--model_name_or_path", model_dir, "--output_dir", str(output_dir),
        "--train_file", sample_file(task_name, "train"), "--dev_file", sample_file(task_name, "dev"),
        "--max_steps", "2", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
        "--evaluation_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--do_train", "--do_export", *flags,
    ], task_arguments=[QAArguments] if task_type == "qa" else [])  # fmt: skip
    return summary["export_dir"]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    """Task type → exported model directory, one per task type."""
    return {
        task_type: export_model(task_type, name, flags, tiny_model_dir, tmp_path_factory.mktemp(name))
        for task_type, name, flags in TASKS
    }


@pytest.fixture(scope="module")
def predictors(exported):
    """The reference: the Predictor on the same models, with the server's thread count."""
    from ernie3.predict import Predictor

    return {task_type: Predictor(path, num_threads=SERVER_THREADS) for task_type, path in exported.items()}


class ServerProcess:
    """deploy/serving/serve.py in a subprocess; its stderr is collected in the background."""

    def __init__(self, config_path):
        self.process = subprocess.Popen(
            [sys.executable, SERVE_SCRIPT, "--config", str(config_path), "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
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

    def wait_ready(self, timeout=180):
        deadline = time.monotonic() + timeout
        self.url_found.wait(timeout)
        assert self.url, "server did not start:\n" + "\n".join(self.lines[-20:])
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/ready", timeout=5).status_code == 200:
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


def write_config(path, models, defaults=None):
    config = {"server": {"host": "127.0.0.1", "port": 8000}, "defaults": defaults or {}, "models": models}
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    models = [
        {"name": name, "path": exported[task_type], "num_threads": SERVER_THREADS}
        for task_type, name, _ in TASKS
    ]
    models[2]["max_text_chars"] = QA_MAX_TEXT_CHARS
    config = write_config(tmp_path_factory.mktemp("serving") / "config.yml", models, LIMITS)
    process = ServerProcess(config)
    try:
        yield process.wait_ready()
    finally:
        process.stop()


MODEL_OF = {task_type: name for task_type, name, _ in TASKS}
INPUTS = {
    "seq_cls": DEFAULT_INPUTS["seq_cls"][:6],  # tnews takes single texts (a pair is refused: see BAD_REQUESTS)
    "token_cls": DEFAULT_INPUTS["token_cls"],
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
    assert ready.status_code == 200 and ready.json() == {"ready": True, "models": {n: True for n in MODEL_OF.values()}}
    models = requests.get(server + "/models", timeout=10).json()["models"]
    assert [(m["name"], m["task_type"], m["task_name"]) for m in models] == [(n, t, n) for t, n, _ in TASKS]
    assert models[0]["labels"][:2] == ["100", "101"] and models[2]["options"]["doc_stride"] == 24
    assert (models[0]["backend"], models[0]["device"], models[0]["precision"]) == ("paddle", "cpu", "fp32")
    assert models[2]["limits"]["max_text_chars"] == QA_MAX_TEXT_CHARS and models[0]["limits"]["max_text_chars"] == 200
    assert requests.get(server + "/models/msra_ner", timeout=10).json()["labels"][0] == "B-PER"


@pytest.mark.parametrize("task_type", ["seq_cls", "token_cls", "qa"])
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
    ("tnews", {"data": b"\xff\xfe\xff"}, 400, "malformed JSON"),
    ("tnews", {"data": b""}, 400, "empty request body"),
    ("tnews", {"json": ["a"]}, 422, "must be a JSON object"),
    ("tnews", {"json": {}}, 422, "missing field 'texts'"),
    ("tnews", {"json": {"text": ["a"]}}, 422, "unknown field 'text'"),
    ("tnews", {"json": {"texts": "球队赢了"}}, 422, "field 'texts' must be a list, got str"),
    ("tnews", {"json": {"texts": []}}, 422, "field 'texts' is empty"),
    ("tnews", {"json": {"texts": ["球队", 3]}}, 422, "texts[1]: tnews classifies single texts"),
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
    ("nope", {"json": {"texts": ["a"]}}, 404, "unknown model 'nope' (served: tnews, msra_ner, cmrc2018)"),
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
    assert len(errors) == 1 and errors[0].startswith(f"error: model 'bad' could not be loaded from {corrupt}")


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
    assert model.predictor_options == {"num_threads": 2, "precision": "fp32"}
    assert config.server.host == "127.0.0.1"


def test_the_sample_config_is_valid():
    with open(os.path.join(SERVING_DIR, "config.yml"), encoding="utf-8") as handle:
        config = parse_config(yaml.safe_load(handle), SERVING_DIR)
    assert [m.name for m in config.models] == ["tnews", "msra_ner", "cmrc2018"]
    assert config.models[0].path == os.path.join(REPO_ROOT, "demo_output", "tnews", "export")


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
