"""ernie3 pipeline (ernie3/cli/pipeline.py): fine-tune → compress → benchmark of the candidates → one report, end to
end on the TNEWS samples with the tiny model, and the inputs it refuses before any work."""
import json
import os
import subprocess
import sys

import pytest

from conftest import TINY_EXPORT_TASKS, sample_file
from ernie3 import layout
from ernie3.errors import UserError

# a few training steps, one PTQ candidate on Paddle only, a short benchmark: the shape of a run, not its quality
FAST = ["--max_steps", "6", "--learning_rate", "1e-3", "--per_device_train_batch_size", "16", "--save_total_limit", "1",
        "--strategy", "ptq", "--algo_list", "hist", "--batch_size_list", "4", "--engines", "paddle",
        "--bench_min_seconds", "0", "--bench_examples", "16", "--bench_batch_size", "8"]  # fmt: skip


def pipeline_argv(model_dir, output_dir, *extra):
    return ["--task_name", "tnews", "--model_name_or_path", str(model_dir), "--output_dir", str(output_dir),
            "--train_file", sample_file("tnews", "train"), "--dev_file", sample_file("tnews", "dev"), *FAST, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def pipeline_run(tiny_model_dir, tmp_path_factory):
    from ernie3.cli.pipeline import main

    output_dir = tmp_path_factory.mktemp("pipeline") / "tnews"
    return main(pipeline_argv(tiny_model_dir, output_dir)), output_dir


def test_report_names_every_candidate_and_the_deploy_pick(pipeline_run):
    returned, output_dir = pipeline_run
    assert sorted(os.listdir(output_dir)) == sorted(
        [layout.PIPELINE_TRAIN_DIR, layout.PIPELINE_COMPRESS_DIR, *layout.PIPELINE_REPORTS, "ernie3_run.json"]
    )
    with open(output_dir / layout.PIPELINE_REPORT_JSON, encoding="utf-8") as handle:
        report = json.load(handle)
    names = [c["name"] for c in report["candidates"]]
    # the float baseline first, then the PTQ INT8 model compression built from it
    assert names[0] == layout.FLOAT_DIR and any(c["precision"] == "int8" for c in report["candidates"])
    for candidate in report["candidates"]:
        assert candidate["batch1_latency_p50_ms"] > 0 and candidate["batch1_latency_p99_ms"] >= candidate["batch1_latency_p50_ms"]
        assert candidate["batch_throughput"] > 0 and 0 <= candidate["metric"] <= 1
    deploy = report["deploy"]
    assert deploy["candidate"] in names and os.path.isdir(deploy["path"])
    picked = next(c for c in report["candidates"] if c["name"] == deploy["candidate"])
    assert picked["within_drop"] and deploy["path"] == picked["path"]
    assert report["stages"]["fine-tune"]["best_model_dir"].startswith(str(output_dir / layout.PIPELINE_TRAIN_DIR))

    with open(output_dir / layout.PIPELINE_REPORT_MD, encoding="utf-8") as handle:
        markdown = handle.read()
    assert f"## Deploy: {deploy['candidate']} — run it with: `{deploy['commands']['infer']}`" in markdown
    assert f"]({layout.PIPELINE_PLOT})" in markdown and os.path.getsize(output_dir / layout.PIPELINE_PLOT) > 1000
    for name in names:
        assert f"| {name} |" in markdown
    assert returned["deploy"] == deploy


def test_the_deploy_pick_rests_on_interleaved_rounds_and_names_compress_best(pipeline_run):
    from ernie3.cli.pipeline import pick_deployment
    from ernie3.timing import Spread

    report, output_dir = pipeline_run
    assert report["stages"]["benchmark"]["timing_rounds"] == 3
    for candidate in report["candidates"]:
        for key in ("batch_throughput", "batch1_latency_p50_ms"):
            spread = Spread.from_dict(candidate[f"{key}_spread"])
            assert spread.rounds == 3 and spread.low <= candidate[key] <= spread.high
    settings, deploy = report["settings"], report["deploy"]
    picked, tied = pick_deployment(report["candidates"], settings["max_metric_drop"], settings["optimize_for"])
    assert (picked["name"], tied) == (deploy["candidate"], deploy["tied_with"])
    compress_best = report["stages"]["compress"]["best"]
    assert (f"It is also compression's best/ ({compress_best})" in deploy["reason"]) == (compress_best == picked["name"])
    assert "Compression's best/ is" in deploy["reason"] or compress_best == picked["name"]
    assert ("A tie: " in deploy["reason"]) == bool(tied)
    with open(output_dir / layout.PIPELINE_REPORT_MD, encoding="utf-8") as handle:
        markdown = handle.read()
    assert "seq/s): median (range)" in markdown and "over 3 interleaved rounds" in markdown


def test_the_deploy_commands_run(pipeline_run):
    """The report's infer.py and deploy/python commands, run in-process, work on the directory it names."""
    from ernie3.cli.predict import main as deploy_main
    from ernie3.cli.infer import main as infer_main

    report, _ = pipeline_run
    deploy = report["deploy"]
    picked = next(c for c in report["candidates"] if c["name"] == deploy["candidate"])
    measured = infer_main(deploy["commands"]["infer_argv"])
    assert measured["task"] == "tnews" and "perf" in measured
    assert (measured["backend"], measured["precision"]) == (picked["backend"], picked["precision"])
    assert measured["metrics"]["accuracy"] == pytest.approx(picked["metric"], abs=0.05)
    results = deploy_main("cpu", deploy["commands"]["deploy_argv"])
    assert len(results) == 1 and "label" in results[0]


def test_flags_go_to_their_stages():
    from ernie3.cli.pipeline import StageFlags, route_flags
    from ernie3.tasks import get_task

    training, compression = route_flags(
        ["--max_seq_length", "64", "--doc_stride=24", "--num_train_epochs", "2", "--strategy", "ptq",
         "--algo_list", "hist", "mse", "--compress_max_steps", "5", "--max_metric_drop", "0.02", "--seed", "3",
         "--no_load_best_model_at_end"],
        StageFlags.of(get_task("cmrc2018")),
    )  # fmt: skip
    assert training == ["--max_seq_length", "64", "--doc_stride", "24", "--num_train_epochs", "2", "--seed", "3",
                        "--no_load_best_model_at_end"]  # fmt: skip
    assert compression == ["--max_seq_length", "64", "--doc_stride", "24", "--strategy", "ptq", "--algo_list", "hist",
                           "mse", "--max_steps", "5", "--max_metric_drop", "0.02", "--seed", "3"]  # fmt: skip


@pytest.mark.parametrize("task_name", [task_name for _, task_name, _ in TINY_EXPORT_TASKS])
def test_the_samples_config_is_valid_for_both_stages(tiny_model_dir, task_name, tmp_path):
    """ernie3/samples/config.yml (the demo's settings) parses for fine-tuning and compression of each sample task."""
    from ernie3.cli.pipeline import check_stage_flags
    from ernie3.data import SAMPLES_DIR

    common = ["--task_name", task_name, "--model_name_or_path", tiny_model_dir, "--output_dir", str(tmp_path),
              "--config", os.path.join(SAMPLES_DIR, "config.yml")]  # fmt: skip
    plan = check_stage_flags(tiny_model_dir, [*common, "--do_train"], common)
    assert plan.training.training.learning_rate == pytest.approx(1e-3)
    assert plan.compression.training.max_steps == 20


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task_name", "no_such_task"], "unknown task 'no_such_task'"),
        (["--no_such_flag", "1"], "--no_such_flag: unknown flag"),
        (["--do_predict"], "--do_predict: the pipeline sets this itself"),
        # compression settings fail before fine-tuning starts
        (["--algo_list", "nope"], "--algo_list: unknown algorithm 'nope'"),
        (["--strategy", "dynabert", "--width_mult_list", "2/3"], "does not keep whole attention heads"),
        (["--bench_batch_size", "0"], "--bench_batch_size must be at least 1"),
    ],
)
def test_bad_input_fails_before_any_work(tiny_model_dir, tmp_path, extra, message):
    from ernie3.cli.pipeline import main

    output_dir = tmp_path / "out"
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        main(pipeline_argv(tiny_model_dir, output_dir, *extra))
    assert not output_dir.exists()


def test_output_dir_checks(tiny_model_dir, tmp_path):
    from ernie3.cli.pipeline import main

    with pytest.raises(UserError, match="overlaps the input model directory"):
        main(pipeline_argv(tiny_model_dir, os.path.join(tiny_model_dir, "pipeline")))
    assert not os.path.exists(os.path.join(tiny_model_dir, "pipeline"))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a pipeline's", encoding="utf-8")
    with pytest.raises(UserError, match="is not empty; pass --overwrite_output_dir"):
        main(pipeline_argv(tiny_model_dir, foreign))
    with pytest.raises(UserError, match="holds notes.txt, which no previous pipeline run wrote"):
        main(pipeline_argv(tiny_model_dir, foreign, "--overwrite_output_dir"))
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "not a pipeline's"


def test_command_line_error_is_one_line(tiny_model_dir):
    done = subprocess.run([sys.executable, "-m", "ernie3.cli.pipeline", "--task_name", "no_such_task",
                           "--model_name_or_path", tiny_model_dir], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown task 'no_such_task'") and len(done.stderr.strip().splitlines()) == 1


def test_a_failed_stage_leaves_no_report(pipeline_run, tiny_model_dir):
    """Rerun over the complete output: fine-tuning fails (a length the model cannot hold, found only once the
    stage loads the model), so the previous run's report must be gone rather than pass for this run's. Runs last:
    it replaces the module's pipeline output."""
    from ernie3.cli.pipeline import main

    _, output_dir = pipeline_run
    assert os.path.isfile(output_dir / layout.PIPELINE_REPORT_MD)
    with pytest.raises(UserError, match="max_position_embeddings"):
        main(pipeline_argv(tiny_model_dir, output_dir, "--overwrite_output_dir", "--max_seq_length", "4096"))
    for name in layout.PIPELINE_REPORTS:
        assert not os.path.exists(output_dir / name)

