"""run_seq_cls end to end on a tiny model: fine-tune, evaluate, predict, export, reload; resume; CLI errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, fixture_path

from ernie3.data import load_examples
from ernie3.errors import UserError
from ernie3.train import run

SAMPLES = os.path.join(REPO_ROOT, "ernie3", "samples", "tnews")


def sample(split):
    return os.path.join(SAMPLES, f"{split}.json")


def base_argv(model_dir, output_dir, *extra):
    return [
        "--task_name", "tnews", "--model_name_or_path", model_dir, "--output_dir", str(output_dir),
        "--train_file", sample("train"), "--dev_file", sample("dev"), "--test_file", sample("test"),
        "--learning_rate", "1e-3", "--per_device_train_batch_size", "16", "--logging_steps", "5",
        "--evaluation_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "10", "--save_steps", "10",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("tnews-run")
    argv = base_argv(tiny_model_dir, output_dir, "--max_steps", "30", "--do_train", "--do_eval", "--do_predict", "--do_export")
    return run("seq_cls", argv)


def test_pipeline_writes_best_model_metrics_predictions_and_export(trained):
    output_dir = trained["output_dir"]
    assert 0.0 <= trained["eval"]["eval_accuracy"] <= 1.0
    assert os.path.isfile(os.path.join(output_dir, "eval_results.json"))
    assert os.path.isfile(os.path.join(trained["best_model_dir"], "model.safetensors"))
    with open(os.path.join(trained["best_model_dir"], "config.json"), encoding="utf-8") as handle:
        assert json.load(handle)["id2label"]["3"] == "103"  # real label names, not LABEL_3
    for name in ("model.pdmodel", "model.pdiparams", "vocab.txt", "ernie3_task.json"):
        assert os.path.isfile(os.path.join(trained["export_dir"], name)), name
    with open(trained["predict_file"], encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    test_ids = [json.loads(line)["id"] for line in open(sample("test"), encoding="utf-8")]
    assert [line["id"] for line in lines] == test_ids
    assert all(line["label"] in ("100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112",
                                 "113", "114", "115", "116") for line in lines)  # fmt: skip


def test_exported_model_matches_the_dynamic_graph_model(trained):
    import paddle
    from paddlenlp.transformers import AutoModelForSequenceClassification

    from ernie3.predict import Predictor

    predictor = Predictor(trained["export_dir"], batch_size=8)
    examples = load_examples(predictor.task, "dev", sample("dev"))[:20]
    static_logits = predictor.logits(examples)

    model = AutoModelForSequenceClassification.from_pretrained(trained["best_model_dir"])
    model.eval()
    features = [predictor.task.convert_example(e, predictor.tokenizer, 128) for e in examples]

    def dynamic(batch):
        with paddle.no_grad():
            return [model(paddle.to_tensor(batch["input_ids"]), paddle.to_tensor(batch["token_type_ids"])).numpy()]

    np.testing.assert_allclose(static_logits, predictor.outputs(features, run=dynamic)[0], atol=1e-5)
    assert len(predictor.predict_texts(["球队赢得冠军", "手机芯片"])) == 2


def test_evaluating_the_best_model_again_reproduces_its_accuracy(trained, tmp_path):
    summary = run("seq_cls", [
        "--task_name", "tnews", "--model_name_or_path", trained["best_model_dir"], "--output_dir", str(tmp_path),
        "--dev_file", sample("dev"), "--do_eval",
    ])  # fmt: skip
    assert summary["eval"]["eval_accuracy"] == pytest.approx(trained["eval"]["eval_accuracy"])


def test_interrupted_training_resumes_from_its_last_checkpoint(tiny_model_dir, tmp_path):
    first = run("seq_cls", base_argv(tiny_model_dir, tmp_path, "--max_steps", "10", "--do_train"))
    assert first["resumed_from"] is None
    second = run("seq_cls", base_argv(tiny_model_dir, tmp_path, "--max_steps", "20", "--do_train"))
    assert second["resumed_from"].endswith("checkpoint-10")
    with open(os.path.join(tmp_path, "checkpoint-20", "trainer_state.json"), encoding="utf-8") as handle:
        assert json.load(handle)["global_step"] == 20


def test_model_dir_checks(tiny_model_dir, tmp_path, trained):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="is not a model directory"):
        run("seq_cls", ["--task_name", "tnews", "--model_name_or_path", str(empty), "--dev_file", sample("dev"), "--do_eval"])
    with pytest.raises(UserError, match="directory not found"):
        run("seq_cls", ["--task_name", "tnews", "--model_name_or_path", str(tmp_path / "missing"), "--do_eval"])
    with pytest.raises(UserError, match="is a ErnieModel, not a model fine-tuned for tnews"):
        run("seq_cls", ["--task_name", "tnews", "--model_name_or_path", tiny_model_dir, "--dev_file", sample("dev"),
                        "--output_dir", str(tmp_path / "o"), "--do_eval"])  # fmt: skip
    with pytest.raises(UserError, match="was fine-tuned for tnews, not afqmc"):
        run("seq_cls", ["--task_name", "afqmc", "--model_name_or_path", trained["best_model_dir"],
                        "--dev_file", fixture_path("clue", "afqmc.json"), "--output_dir", str(tmp_path / "o"), "--do_eval"])  # fmt: skip


def test_nothing_to_do_is_an_error():
    with pytest.raises(UserError, match="nothing to do"):
        run("seq_cls", ["--task_name", "tnews"])


def test_offline_hub_name_fails_fast_with_a_hint():
    from ernie3.modeling import load_tokenizer

    try:
        load_tokenizer("ernie-3.0-medium-zh")
    except UserError as error:
        assert "could not load the tokenizer 'ernie-3.0-medium-zh' from the model hub" in str(error)
        assert "pass a local model directory with --model_name_or_path" in str(error)
    else:
        pytest.skip("the model hub is reachable from this machine")


def test_offline_dataset_by_name_fails_fast_with_the_flag_to_use():
    from ernie3.data import load_examples as load
    from ernie3.tasks import get_task

    try:
        load(get_task("tnews"), "dev", None)
    except UserError as error:
        assert "could not download the tnews dev split" in str(error) and "--dev_file" in str(error)
    else:
        pytest.skip("the dataset server is reachable from this machine")


def run_script(*argv):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "run_seq_cls.py"), *argv],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)  # fmt: skip


def test_cli_bad_line_gives_one_error_line_and_no_output(tiny_model_dir, tmp_path):
    bad = tmp_path / "dev.json"
    bad.write_text('{"sentence": "好", "label": "103"}\n{"sentence": "坏", "label": "999"}\n', encoding="utf-8")
    out = tmp_path / "out"
    result = run_script(*base_argv(tiny_model_dir, out, "--dev_file", str(bad), "--do_train", "--do_export",
                                   "--num_train_epochs", "3"))  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}:2: unknown label '999' in field 'label' (task tnews: 100, 101, 102, 103, 104, "
                      "106, 107, 108, 109, 110, 112, 113, 114, 115, 116)"]  # fmt: skip
    assert not os.path.exists(out / "export") and not os.path.exists(out / "best")
    # no settings table ahead of the error line (it goes to the log of a run that gets past its checks)
    assert "Effective settings" not in result.stderr and not (out / "ernie3.log").exists()


def test_cli_unknown_task(tmp_path):
    result = run_script("--task_name", "nope", "--do_train")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: unknown seq_cls task 'nope'" in result.stderr


def test_data_parallel_training_with_two_cpu_processes(tiny_model_dir, tmp_path):
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"),
               os.path.join(REPO_ROOT, "run_seq_cls.py"),
               *base_argv(tiny_model_dir, tmp_path / "out", "--max_steps", "4", "--do_train", "--do_export",
                          "--log_level", "debug")]  # fmt: skip  (each worker's argument dump in its workerlog)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    worker_logs = "".join(open(tmp_path / "log" / name, encoding="utf-8").read() for name in ("workerlog.0", "workerlog.1"))
    assert worker_logs.count("world_size                    : 2") == 2
    assert os.path.isfile(tmp_path / "out" / "export" / "model.pdmodel")
