"""Bounded memory (ernie3/memory.py, the Predictor's shape buckets, the service's budget, the soak benchmark), on
tiny models: every run stays in the predictor's buckets, bucketing leaves outputs unchanged for all task types, an
impossible budget stops the service with one line, and a short soak stays flat after warm-up."""
import io
import json
import random
from contextlib import redirect_stderr

import numpy as np
import pytest
import yaml

from conftest import TINY_EXPORT_TASKS
from ernie3.errors import UserError, run_cli
from ernie3.memory import ShapeBuckets, summarize_rss

TASKS = TINY_EXPORT_TASKS


@pytest.fixture(scope="module")
def exported(tiny_exports):
    return tiny_exports


def random_text(rng, length):
    return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(length))


def random_inputs(task_type, rng, count):
    if task_type == "qa":
        return [{"question": random_text(rng, rng.randint(1, 20)), "context": random_text(rng, rng.randint(1, 150))}
                for _ in range(count)]  # fmt: skip
    return [random_text(rng, rng.randint(1, 150)) for _ in range(count)]


def test_buckets_cover_every_size_up_to_the_limits():
    buckets = ShapeBuckets.for_limits(24, 300)
    assert buckets.batch_sizes == (1, 2, 4, 8, 16, 24) and buckets.seq_lengths == (32, 64, 128, 256, 300)
    for value in range(1, 25):
        assert value <= buckets.batch_size(value) in buckets.batch_sizes
    for value in range(1, 301):
        assert value <= buckets.seq_length(value) in buckets.seq_lengths
    with pytest.raises(ValueError):
        buckets.seq_length(301)
    with pytest.raises(UserError):
        ShapeBuckets((4, 2), (32,))


def test_every_run_of_a_predictor_stays_inside_its_buckets(exported):
    """Property-style: random batches of random lengths; the backend's `run` is wrapped to record each shape."""
    from ernie3.predict import Predictor

    predictor = Predictor(exported["seq_cls"], batch_size=12)
    allowed = set(predictor.buckets.shapes())
    assert predictor.buckets.batch_sizes == (1, 2, 4, 8, 12)
    seen = []
    original_run = predictor.backend.run

    def recording_run(inputs):
        shapes = {array.shape for array in inputs.values()}
        assert len(shapes) == 1
        seen.append(shapes.pop())
        return original_run(inputs)

    predictor.backend.run = recording_run
    rng = random.Random(3)
    for _ in range(25):
        count = rng.randint(1, 40)
        results = predictor.predict_texts(random_inputs("seq_cls", rng, count))
        assert len(results) == count
    assert seen and set(seen) <= allowed, sorted(set(seen) - allowed)
    plan = predictor.memory_plan()
    assert plan["shapes"] == len(allowed) and plan["expected_peak_rss_mb"] > 0


@pytest.mark.parametrize("task_type", [t for t, _, _ in TASKS])
def test_bucketing_leaves_every_real_output_unchanged(exported, task_type):
    """Each feature's outputs, from a bucketed, length-sorted batch, equal the outputs of that feature run alone
    without any padding (per-token outputs compared over the feature's real tokens)."""
    from ernie3.predict import Predictor

    predictor = Predictor(exported[task_type], batch_size=8)
    rng = random.Random(5)
    examples = [predictor.task.example_from_text(text) for text in random_inputs(task_type, rng, 13)]
    features = predictor.task.encode(examples, predictor.tokenizer, predictor.max_seq_length).features
    bucketed = predictor.outputs(features)
    for index, feature in enumerate(features):
        alone = predictor.backend.run({name: np.array([feature[name]], dtype=np.int64) for name in predictor.input_names})
        for output, reference in zip(bucketed, alone):
            real = output[index][tuple(slice(0, size) for size in reference.shape[1:])]
            np.testing.assert_allclose(real, reference[0], rtol=1e-4, atol=1e-4)
    # decoded results equal those of each example predicted on its own
    together = predictor.predict(examples)
    assert [predictor.task.answer(r) for r in together] == [
        predictor.task.answer(predictor.predict([example])[0]) for example in examples
    ]


def write_serving_config(path, model_path, **server):
    config = {"server": {"host": "127.0.0.1", "port": 0, **server},
              "models": [{"name": "tnews", "path": model_path, "num_threads": 1, "batch_size": 16}]}  # fmt: skip
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def test_the_service_refuses_a_budget_its_models_cannot_fit(exported, tmp_path):
    from ernie3.cli.serve import main

    config = write_serving_config(tmp_path / "config.yml", exported["seq_cls"], max_memory_mb=10)
    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(["--config", config]))
    assert exit_info.value.code == 2
    errors = [line for line in stderr.getvalue().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "max_memory_mb is 10 MB" in errors[0] and "tnews" in errors[0], stderr.getvalue()
    assert "Traceback" not in stderr.getvalue()


def test_a_budget_that_fits_states_each_models_plan(exported):
    from ernie3.memory import check_memory_budget
    from ernie3.serving.config import ModelSpec, ServingLimits

    spec = ModelSpec("tnews", exported["seq_cls"], ServingLimits(), {"batch_size": 4, "max_seq_length": 64})
    lines = check_memory_budget([spec], max_memory_mb=100_000)
    assert "batch 1/2/4 × sequence 32/64" in lines[0] and "of max_memory_mb 100000" in lines[-1]


def test_a_budget_of_0_means_no_limit(exported, tmp_path):
    from ernie3.memory import check_memory_budget
    from ernie3.serving.config import load_config

    config = load_config(write_serving_config(tmp_path / "config.yml", exported["seq_cls"], max_memory_mb=0))
    assert config.server.max_memory_mb == 0
    lines = check_memory_budget(config.models, config.server.max_memory_mb)
    assert lines[-1].startswith("memory: expected peak RSS") and "max_memory_mb" not in lines[-1]
    with pytest.raises(UserError, match=r"'max_memory_mb' must be an integer >= 0 \(0: no limit\), got -1"):
        load_config(write_serving_config(tmp_path / "negative.yml", exported["seq_cls"], max_memory_mb=-1))


def test_rss_summary_reads_warm_up_peak_and_late_growth():
    samples = [(0, 100.0), (1, 400.0), (2, 410.0), (3, 420.0), (4, 440.0), (5, 462.0)]
    summary = summarize_rss(samples, warm_at=1)
    assert summary["after_warmup_mb"] == 400 and summary["peak_mb"] == 462 and summary["end_mb"] == 462
    assert summary["growth_last_half"] == pytest.approx(462 / 420 - 1, abs=1e-3)


def test_a_short_soak_stays_flat_after_warm_up(exported, tmp_path):
    from ernie3.cli import soak

    run = soak.main(["--model_path", exported["seq_cls"], "--minutes", "0.3", "--interval", "0.25",
                     "--batch_size", "8", "--max_text_chars", "120", "--output_dir", str(tmp_path)])  # fmt: skip
    summary = run["summary"]
    assert run["batches"] > 0 and summary["after_warmup_mb"] >= summary["start_mb"]
    # generous bounds: what is asserted is "no growth with traffic", not a figure
    assert summary["peak_over_warm"] < 1.2 and summary["growth_last_half"] < 0.05, summary
    written = json.loads((tmp_path / "soak.json").read_text(encoding="utf-8"))
    assert len(written) == 1 and (tmp_path / "soak.png").is_file()
    assert "after warm-up MB" in (tmp_path / "soak.md").read_text(encoding="utf-8")


def test_soak_traffic_takes_the_shape_of_the_task_inputs():
    """Pairs and question/context tasks get random inputs of their own shape, so the soak runs on every task type."""
    from ernie3.cli.soak import Traffic
    from ernie3.tasks import get_task

    for task_name in ("afqmc", "msra_ner", "cmrc2018"):
        task = get_task(task_name)
        traffic = Traffic(4, 30, seed=1, template=task.sample_inputs()[0])
        for raw in traffic.batch() + traffic.largest():
            task.example_from_text(raw)  # the task accepts it: no RecordError
