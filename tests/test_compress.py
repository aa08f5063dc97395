"""compress_seq_cls.py's shared compress path on a trained tiny model: DynaBERT + PTQ sweep, report, best pick."""
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, sample_file

from ernie3.backends import create_backend, is_quantized_model
from ernie3.compress import run as compress
from ernie3.errors import UserError

TRAIN, DEV = sample_file("tnews", "train"), sample_file("tnews", "dev")


def compress_argv(trained, output_dir, *extra):
    model_dir = trained["best_model_dir"] if isinstance(trained, dict) else trained
    return [
        "--task_name", "tnews", "--model_name_or_path", model_dir, "--output_dir", str(output_dir),
        "--train_file", TRAIN, "--dev_file", DEV, "--per_device_train_batch_size", "16", "--learning_rate", "1e-4",
        "--algo_list", "hist", "mse", "--batch_size_list", "4", "8", "--max_steps", "6", "--save_steps", "3",
        "--engines", "paddle", "--int8_embeddings", "false", "--measure_rss", "false", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def dynabert_ptq(trained_tnews, tmp_path_factory):
    return compress("seq_cls", compress_argv(trained_tnews, tmp_path_factory.mktemp("compress")))


def test_dynabert_then_ptq_produces_every_candidate_and_a_report(dynabert_ptq):
    names = [c["name"] for c in dynabert_ptq["candidates"] if c["precision"] != "bf16"]  # BF16 where the CPU has it
    assert names == ["float", "width_mult_0.75", "width_mult_0.75/hist4_1", "width_mult_0.75/hist8_1",
                     "width_mult_0.75/mse4_1", "width_mult_0.75/mse8_1"]  # fmt: skip
    output_dir = os.path.dirname(dynabert_ptq["best_dir"])
    with open(os.path.join(output_dir, "report.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["best"] == dynabert_ptq["best"]
    with open(os.path.join(output_dir, "report.md"), encoding="utf-8") as handle:
        markdown = handle.read()
    assert "| width_mult_0.75/mse8_1 | paddle | int8 |" in markdown and "✓" in markdown
    for candidate in report["candidates"]:
        assert candidate["size_mb"] > 0 and candidate["throughput"] > 0
        assert (candidate["precision"] in ("int8", "bf16")) == ("/" in candidate["name"])


def test_every_candidate_loads_in_paddle_inference_and_int8_is_detected_from_the_graph(dynabert_ptq):
    for candidate in dynabert_ptq["candidates"]:
        program = os.path.join(candidate["path"], candidate["model_file"])
        assert is_quantized_model(program) == (candidate["precision"] == "int8")
        backend = create_backend(candidate["path"], model_prefix=candidate["model_file"].split(".")[0])
        assert backend.precision == candidate["precision"]


def weight_shapes(program_file):
    from paddle.base import core

    with open(program_file, "rb") as handle:
        desc = core.ProgramDesc(handle.read())
    weights = [var for var in desc.block(0).all_vars() if var.persistable() and var.name() not in ("feed", "fetch")]
    return {tuple(var.shape()) for var in weights}


def test_pruning_shrinks_the_encoder(dynabert_ptq):
    by_name = {c["name"]: c for c in dynabert_ptq["candidates"]}
    float_shapes = weight_shapes(os.path.join(by_name["float"]["path"], "model.pdmodel"))
    pruned_shapes = weight_shapes(os.path.join(by_name["width_mult_0.75"]["path"], "model.pdmodel"))
    # feed-forward 64→256 becomes 64→192 (3/4 of the neurons); attention keeps 3 of its 4 heads (48 of 64 dims)
    assert (64, 256) in float_shapes and (64, 256) not in pruned_shapes
    assert {(64, 192), (192, 64), (64, 48), (48, 64)} <= pruned_shapes


def test_int8_predictions_agree_with_the_float_model(dynabert_ptq):
    float_accuracy = dynabert_ptq["candidates"][0]["metric"]
    assert float_accuracy > 0.8  # the trained tiny model, so agreement is a meaningful check
    for candidate in dynabert_ptq["candidates"][1:]:
        assert candidate["agreement_with_float"] >= 0.95, candidate["name"]
        if candidate["precision"] == "int8":
            assert candidate["quantized_from"] == "width_mult_0.75"
            assert candidate["agreement_with_source"] >= 0.95, candidate["name"]
        assert candidate["metric"] >= float_accuracy - 0.05, candidate["name"]


def test_best_candidate_is_within_the_allowed_drop_and_loads_on_its_own(dynabert_ptq):
    from ernie3.data import load_examples
    from ernie3.predict import Predictor

    best = next(c for c in dynabert_ptq["candidates"] if c["name"] == dynabert_ptq["best"])
    assert best["metric"] >= dynabert_ptq["candidates"][0]["metric"] * 0.99
    predictor = Predictor(dynabert_ptq["best_dir"])
    examples = load_examples(predictor.task, "dev", DEV)
    accuracy = predictor.task.score(examples, predictor.predict(examples))["accuracy"]
    assert accuracy == pytest.approx(best["metric"])


def test_ptq_strategy_quantizes_the_float_model(trained_tnews, tmp_path):
    report = compress("seq_cls", compress_argv(trained_tnews, tmp_path, "--strategy", "ptq", "--algo_list", "hist",
                                               "--batch_size_list", "4"))  # fmt: skip
    assert [c["name"] for c in report["candidates"] if c["precision"] != "bf16"] == ["float", "float/hist4_1"]
    assert report["candidates"][1]["agreement_with_float"] >= 0.95


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--algo_list", "hist", "fancy"], "--algo_list: unknown algorithm 'fancy'"),
        (["--width_mult_list", "1/3"], "width 1/3 does not keep whole attention heads"),
        (["--strategy", "fancy"], "--strategy: 'fancy' is not supported"),
        (["--timing_rounds", "0"], "--timing_rounds must be at least 1, got 0"),
    ],
)
def test_bad_settings_fail_before_any_work(trained_tnews, tmp_path, extra, message):
    with pytest.raises(UserError, match=message):
        compress("seq_cls", compress_argv(trained_tnews, tmp_path / "out", *extra))
    assert not os.path.exists(tmp_path / "out")


def test_a_model_that_is_not_fine_tuned_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="not a model fine-tuned for tnews"):
        compress("seq_cls", compress_argv(tiny_model_dir, tmp_path / "out"))


def test_an_empty_dev_set_is_refused(trained_tnews, tmp_path):
    empty = tmp_path / "dev.json"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="holds no usable tnews examples"):
        compress("seq_cls", compress_argv(trained_tnews, tmp_path / "out", "--dev_file", str(empty)))


def test_script_reports_errors_in_one_line(trained_tnews, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "compress_seq_cls.py"),
         *compress_argv(trained_tnews, tmp_path / "out", "--width_mult_list", "0.3")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: --width_mult_list: width 0.3 does not keep whole attention heads" in result.stderr


def test_speed_figures_come_from_interleaved_rounds_with_a_spread(dynabert_ptq):
    from ernie3.pick import pick_best
    from ernie3.timing import Spread

    for candidate in dynabert_ptq["candidates"]:
        for key in ("throughput", "latency_ms"):
            spread = Spread.from_dict(candidate[f"{key}_spread"])
            assert spread.rounds == 3 and 0 < spread.low <= spread.median <= spread.high
            assert candidate[key] == pytest.approx(spread.median, rel=1e-3)
    settings = dynabert_ptq["settings"]
    assert settings["timing"]["rounds"] == 3 and settings["timing"]["predictors"] in (
        "kept alive across rounds", "rebuilt in each round")
    # best/ is the shared rule's pick from the report's own figures, and the report says when it was a tie
    best, tied = pick_best(dynabert_ptq["candidates"], settings["max_metric_drop"], settings["optimize_for"])
    assert (best["name"], tied) == (dynabert_ptq["best"], dynabert_ptq["best_tied_with"])
    markdown = dynabert_ptq["markdown"]
    assert "throughput (seq/s): median (range)" in markdown and "interleaved timing rounds" in markdown
    assert ("tied on throughput with" in markdown) == bool(tied)


def test_the_stated_disk_need_covers_the_output(dynabert_ptq, trained_tnews):
    from ernie3.args import parse_arguments
    from ernie3.compress import EXTRA_ARGUMENTS, disk_need_mb, model_weights_mb

    output_dir = os.path.dirname(dynabert_ptq["best_dir"])
    arguments = parse_arguments(compress_argv(trained_tnews, output_dir), "seq_cls", EXTRA_ARGUMENTS, for_compression=True)
    need = disk_need_mb(arguments, model_weights_mb(trained_tnews["best_model_dir"]))
    files = {}  # by inode: BF16 candidates are hard links to their float model's files, on disk once
    for root, _, names in os.walk(output_dir):
        for name in names:
            info = os.stat(os.path.join(root, name))
            files[(info.st_dev, info.st_ino)] = info.st_size
    used = sum(files.values()) / 2**20
    assert used <= need <= 4 * used, (used, need)  # an upper estimate, but not a wild one
