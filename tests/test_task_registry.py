"""The task registry and the Task contract (issue 18): task modules named in ERNIE3_TASK_MODULES (the test-only
multi-label type of tests/task_plugins reaches every shared test that way), each type's sample fixture, `<name>_long`
for any windowable task, decoding-only options set at deployment (--task_option), the metric direction, score on a
single example, and tasks without an online dataset."""
import copy
import json

import numpy as np
import pytest
from conftest import TINY_EXPORT_TASKS, sample_file

from ernie3.errors import UserError, run_cli
from ernie3.tasks import TASKS, get_task, sample_tasks

PLUGIN = """
from ernie3.tasks.seq_cls import SeqClsTask, single_sentence

class Renamed(SeqClsTask):
    task_type = "renamed_cls"

TASKS = (Renamed("plugin_news", ("a", "b"), single_sentence),)
"""


def cli_error(capsys, entry) -> str:
    """An entry point run as its command runs it: exit 2 and exactly one `error:` line, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(entry)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


# -- the registry ------------------------------------------------------------------------------------------------


def test_the_shared_fixture_list_is_every_type_with_samples_the_test_only_one_included():
    assert [case[0] for case in TINY_EXPORT_TASKS] == [task.task_type for task in sample_tasks()]
    assert {"seq_cls", "token_cls", "qa", "multi_label"} <= {case[0] for case in TINY_EXPORT_TASKS}
    cases = {task_type: (name, flags) for task_type, name, flags in TINY_EXPORT_TASKS}
    assert cases["qa"] == ("cmrc2018", ["--max_seq_length", "64", "--doc_stride", "24", "--max_query_length", "24"])
    assert cases["multi_label"][0] == "topics" and sample_file("topics", "train").endswith("multi_label/train.json")


def test_the_demo_runs_every_type_that_ships_samples():
    from ernie3.cli.demo import demo_tasks

    assert demo_tasks() == [name for _, name, _ in TINY_EXPORT_TASKS]
    assert {"tnews", "msra_ner", "cmrc2018", "topics"} <= set(demo_tasks())


def test_task_modules_named_in_the_environment_join_the_registry(monkeypatch, tmp_path):
    from ernie3.tasks import _discover

    plugin = tmp_path / "my_tasks.py"
    plugin.write_text(PLUGIN, encoding="utf-8")
    monkeypatch.setenv("ERNIE3_TASK_MODULES", str(plugin))
    found = _discover()
    assert found["plugin_news"].task_type == "renamed_cls" and "tnews" in found
    assert found["plugin_news_long"].task_type == "long_renamed_cls"  # windowable: its long variant comes too
    assert "topics" not in found  # only what the variable names


@pytest.mark.parametrize("entry, message", [
    ("/no/such/tasks.py", "cannot load task module '/no/such/tasks.py' (FileNotFoundError"),
    ("no_such_module_here", "cannot load task module 'no_such_module_here' (ModuleNotFoundError"),
])  # fmt: skip
def test_a_task_module_that_cannot_load_is_one_line(monkeypatch, entry, message):
    from ernie3.tasks import _discover

    monkeypatch.setenv("ERNIE3_TASK_MODULES", entry)
    with pytest.raises(UserError, match=r"^ERNIE3_TASK_MODULES: " + message.replace("(", r"\(")):
        _discover()


# -- the Task contract ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", [case[0] for case in TINY_EXPORT_TASKS])
def test_score_works_on_a_single_example(tiny_exports, task_type):
    """Accuracy-controlled NNCF scores every dev example on its own: each task's metric is defined for one."""
    from ernie3.data import load_examples
    from ernie3.predict import Predictor

    predictor = Predictor(tiny_exports[task_type])
    task = predictor.task
    examples = load_examples(task, "dev", sample_file(task.name, "dev"))[:3]
    for example, result in zip(examples, predictor.predict(examples)):
        value = task.score([example], [result])[task.metric_name]
        assert np.isfinite(value) and value >= 0  # (QA reports percentages)


def test_a_task_without_an_online_dataset_names_the_local_file_flags():
    from ernie3.data import load_examples

    with pytest.raises(UserError, match=r"^task topics has no online dataset: pass local files with "
                                        r"--train_file/--dev_file \(the train split: --train_file\)$"):  # fmt: skip
        load_examples(get_task("topics"), "train", None)


def test_the_metric_direction_picks_checkpoints_and_candidates():
    from ernie3.args import best_model_settings
    from ernie3.cli.pipeline import pick_deployment
    from ernie3.pick import pick_best

    higher = get_task("topics")
    lower = copy.copy(higher)
    lower.higher_is_better = False  # as a task type with an error rate or a loss for its metric declares
    assert best_model_settings(higher, {}, set())["greater_is_better"] is True
    assert best_model_settings(lower, {}, set())["greater_is_better"] is False
    assert "greater_is_better" not in best_model_settings(lower, {}, {"greater_is_better"})  # a flag wins

    # the float model first; a faster candidate 5% worse in the metric's direction, one 5% better
    rows = [{"name": "float", "metric": 0.20, "throughput": 1.0},
            {"name": "up", "metric": 0.21, "throughput": 3.0},
            {"name": "down", "metric": 0.19, "throughput": 2.0}]  # fmt: skip
    assert pick_best(rows, 0.01)[0]["name"] == "up"
    assert pick_best(rows, 0.01, metric_higher_is_better=False)[0]["name"] == "down"
    assert pick_best(rows, 0.10, metric_higher_is_better=False)[0]["name"] == "up"  # within a 10% rise of the error
    bench = [{**row, "batch_throughput": row["throughput"], "batch1_latency_p50_ms": 1 / row["throughput"]} for row in rows]
    assert pick_deployment(bench, 0.01, "throughput", higher_is_better=False)[0]["name"] == "down"


# -- <name>_long for any windowable task -------------------------------------------------------------------------


def test_every_windowable_task_has_a_long_variant_with_its_head_metric_and_options():
    windowable = [task for task in TASKS.values() if task.windowable]
    assert {"tnews", "csl", "topics"} <= {task.name for task in windowable}
    for base in windowable:
        long = get_task(f"{base.name}_long")
        assert (long.task_type, long.metric_name, long.labels) == (f"long_{base.task_type}", base.metric_name, base.labels)
        assert long.decoding_options == {"pooling"} | base.decoding_options
        assert set(base.options) <= set(long.options)
    topics = get_task("topics_long")
    assert topics.options == {"doc_stride": 64, "pooling": "mean", "max_windows_per_text": 16, "threshold": 0.5}
    with pytest.raises(ValueError, match="--threshold must be a probability"):
        topics.with_options(threshold=1.5)
    assert not any(task.windowable for task in TASKS.values() if task.name.endswith("_long"))


@pytest.fixture(scope="module")
def topics_long(tiny_model_dir, tmp_path_factory):
    """The test-only multi-label type read in windows: a few training steps on short windows, then exported."""
    from ernie3.train import run

    output_dir = tmp_path_factory.mktemp("topics-long")
    return run(None, [
        "--task_name", "topics_long", "--model_name_or_path", tiny_model_dir, "--output_dir", str(output_dir),
        "--train_file", sample_file("topics", "train"), "--dev_file", sample_file("topics", "dev"),
        "--max_seq_length", "8", "--doc_stride", "3", "--max_steps", "4", "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "16", "--save_total_limit", "1", "--do_train", "--do_export",
    ])  # fmt: skip


def test_a_multi_label_task_reads_long_texts_in_windows_with_its_own_decoding(topics_long):
    from ernie3.predict import Predictor

    predictor = Predictor(topics_long["export_dir"])
    texts = ["球队在主场赢得冠军，新款手机搭载自研芯片，股市今天大幅上涨", "股市"]
    results = predictor.predict_texts(texts)
    assert results[0]["windows"] > 2 and results[1]["windows"] == 1
    for result in results:
        assert len(result["scores"]) == 3 and all(0 < p < 1 for p in result["scores"])  # a sigmoid per label
        assert result["labels"] == [label for label, p in zip(("sports", "tech", "finance"), result["scores"]) if p >= 0.5]
    for threshold, every in ((0.01, True), (0.99, False)):
        lenient = Predictor(topics_long["export_dir"], task_options={"threshold": threshold}).predict_texts(texts)
        assert [r["scores"] for r in lenient] == [r["scores"] for r in results]  # same features, other decoding
        assert all(r["labels"] == (["sports", "tech", "finance"] if every else []) for r in lenient)
    pooled = Predictor(topics_long["export_dir"], task_options={"pooling": "max"}).predict_texts(texts)
    assert pooled[1] == results[1] and pooled[0]["scores"] != results[0]["scores"]  # one window: nothing to pool
    with pytest.raises(UserError, match="task option 'doc_stride' of topics_long shapes the model's features"):
        Predictor(topics_long["export_dir"], task_options={"doc_stride": 2})


# -- decoding-only options at deployment ----------------------------------------------------------------------------


def answers_of(results):
    return [r["answer"] for r in results]


def test_infer_and_the_deploy_predictor_take_decoding_options(tiny_exports, tmp_path, capsys):
    from ernie3.cli.infer import main as infer
    from ernie3.cli.predict import main as deploy
    from ernie3.predict import Predictor

    qa = tiny_exports["qa"]
    inputs = [{"question": "谁创办了这所学校？", "context": "这所学校由张伯苓于1904年创办。" * 6}]
    short = deploy("cpu", ["--model_path", qa, "--question", inputs[0]["question"], "--context", inputs[0]["context"],
                           "--task_option", "max_answer_length=1", "--task_option", "n_best_size=3"])  # fmt: skip
    reference = Predictor(qa, task_options={"max_answer_length": 1, "n_best_size": 3})
    assert reference.task.options == {**Predictor(qa).task.options, "max_answer_length": 1, "n_best_size": 3}
    assert answers_of(short) == answers_of(reference.predict_texts(inputs))

    dev = sample_file("cmrc2018", "dev")
    strict = infer(["--model_path", qa, "--dev_file", dev, "--task_option", "max_answer_length=1"])
    assert strict["task"] == "cmrc2018" and set(strict["metrics"]) == {"em", "f1"}
    # prediction mode (a file of any size, through the batch job) takes them too
    input_file, output_file = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    input_file.write_text(json.dumps(inputs[0], ensure_ascii=False) + "\n", encoding="utf-8")
    infer(["--model_path", qa, "--input_file", str(input_file), "--output_file", str(output_file), "--no_progress",
           "--task_option", "max_answer_length=1", "--task_option", "n_best_size=3"])  # fmt: skip
    [line] = [json.loads(line) for line in output_file.read_text(encoding="utf-8").splitlines()]
    assert line["answer"] == short[0]["answer"]

    topics = tiny_exports["multi_label"]
    capsys.readouterr()
    everything = deploy("cpu", ["--model_path", topics, "--text", "球队赢了", "--task_option", "threshold=0.001"])
    nothing = deploy("cpu", ["--model_path", topics, "--text", "球队赢了", "--task_option", "threshold=0.999"])
    assert everything[0]["labels"] == ["sports", "tech", "finance"] and nothing[0]["labels"] == []


@pytest.mark.parametrize("flags, message", [
    (["--task_option", "doc_stride=16"], "error: task option 'doc_stride' of cmrc2018 shapes the model's features, not "
                                         "only its decoding: it is fixed when the model is exported (export again to "
                                         "change it)"),
    (["--task_option", "beam=3"], "error: unknown task option 'beam' for cmrc2018 (its decoding options: "
                                  "max_answer_length, n_best_size)"),
    (["--task_option", "n_best_size=0"], "error: bad task option for cmrc2018: --n_best_size must be a positive "
                                         "integer, got 0"),
    (["--task_option", "n_best_size=1e9x"], "error: task option 'n_best_size' takes int values, got '1e9x'"),
    (["--task_option", "n_best_size"], "error: --task_option takes NAME=VALUE (e.g. max_answer_length=30), got "
                                       "'n_best_size'"),
    (["--task_option", "n_best_size=2", "--task_option", "n_best_size=3"], "error: --task_option n_best_size is given twice"),
])  # fmt: skip
def test_bad_task_options_are_one_line_errors(tiny_exports, capsys, flags, message):
    from ernie3.cli.infer import main as infer
    from ernie3.cli.predict import main as deploy

    qa = tiny_exports["qa"]
    assert cli_error(capsys, lambda: deploy("cpu", ["--model_path", qa, "--question", "谁？", "--context", "张三。",
                                                    *flags])) == message  # fmt: skip
    assert cli_error(capsys, lambda: infer(["--model_path", qa, "--dev_file", sample_file("cmrc2018", "dev"), *flags])) == message


@pytest.mark.parametrize("value, message", [
    ("nan", "error: task option 'threshold' must be a finite number, got 'nan'"),
    ("1", "error: bad task option for topics: --threshold must be a probability between 0 and 1 (exclusive), got 1.0"),
    ("-inf", "error: task option 'threshold' must be a finite number, got '-inf'"),
])  # fmt: skip
def test_hostile_threshold_values_are_refused(tiny_exports, capsys, value, message):
    from ernie3.cli.predict import main as deploy

    argv = ["--model_path", tiny_exports["multi_label"], "--text", "球队", "--task_option", f"threshold={value}"]
    assert cli_error(capsys, lambda: deploy("cpu", argv)) == message
