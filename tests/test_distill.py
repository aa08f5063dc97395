"""compress --strategy distill*: a smaller student distilled from a fine-tuned tiny teacher, for every task type."""
import copy
import json
import os

import numpy as np
import pytest
from conftest import sample_file

from ernie3.compress import run as compress
from ernie3.errors import UserError
from ernie3.modeling import build_tiny_model, generated_vocab, write_vocab
from ernie3.tasks import TASKS
from ernie3.tasks.base import soft_kl
from ernie3.tasks.seq_cls import SeqClsTask

# (task type, task name, flags) as the tiny exports of conftest: short windows for QA, short NER inputs
TASK_FLAGS = {
    "seq_cls": ("tnews", []),
    "token_cls": ("msra_ner", ["--max_seq_length", "64"]),
    "qa": ("cmrc2018", ["--max_seq_length", "64", "--doc_stride", "24", "--max_query_length", "24"]),
}
#: the teacher is conftest's tiny model (2 layers, hidden 64, 4 heads, FFN 256); the student half of it
SHAPE = ["--student_layers", "1", "--student_hidden", "32", "--student_heads", "2"]


def teacher_of(task_type, tiny_model_dir, output_dir):
    """A tiny model fine-tuned for a few steps: a teacher with a head for the task."""
    from ernie3.train import run

    name, flags = TASK_FLAGS[task_type]
    return run(task_type, [
        "--task_name", name, "--model_name_or_path", tiny_model_dir, "--output_dir", str(output_dir),
        "--train_file", sample_file(name, "train"), "--dev_file", sample_file(name, "dev"),
        "--max_steps", "3", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
        "--evaluation_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false", "--do_train",
        *flags,
    ])["best_model_dir"]  # fmt: skip


@pytest.fixture(scope="module")
def teachers(tiny_model_dir, tmp_path_factory):
    return {kind: teacher_of(kind, tiny_model_dir, tmp_path_factory.mktemp(f"teacher-{kind}")) for kind in TASK_FLAGS}


@pytest.fixture(scope="module")
def small_pretrained(tmp_path_factory):
    """A pretrained-style student directory: smaller than the teacher, same (generated) vocabulary."""
    return build_tiny_model(str(tmp_path_factory.mktemp("small")), hidden_size=32, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=96, seed=7)  # fmt: skip


def distill_argv(task_type, teacher, output_dir, *extra, strategy="distill"):
    name, flags = TASK_FLAGS[task_type]
    return [
        "--task_name", name, "--model_name_or_path", teacher, "--output_dir", str(output_dir),
        "--train_file", sample_file(name, "train"), "--dev_file", sample_file(name, "dev"), "--strategy", strategy,
        "--max_steps", "2", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--engines", "paddle",
        "--algo_list", "hist", "--batch_size_list", "4", "--measure_rss", "false", *flags, *extra,
    ]  # fmt: skip


def student_config(report):
    with open(os.path.join(report["best_dir"], "..", "student", "config.json"), encoding="utf-8") as handle:
        return json.load(handle)


def check_student_loads_on_its_own(task_type, report):
    """The student candidate runs through infer.py alone, with the teacher's metric and the task's outputs."""
    from ernie3.cli.infer import main as infer
    from ernie3.data import load_examples
    from ernie3.predict import Predictor

    name, _ = TASK_FLAGS[task_type]
    rows = {row["name"]: row for row in report["candidates"]}
    student = rows["student"]
    result = infer(["--model_path", student["path"], "--dev_file", sample_file(name, "dev"), "--task_name", name])
    assert result["metrics"] == pytest.approx(student["metrics"])
    examples = load_examples(TASKS[name], "dev", sample_file(name, "dev"))[:4]
    mine = Predictor(student["path"]).predict(examples)
    theirs = Predictor(rows["float"]["path"]).predict(examples)
    assert [sorted(output) for output in mine] == [sorted(output) for output in theirs]


@pytest.mark.parametrize("task_type", list(TASK_FLAGS))
def test_a_shape_student_is_initialised_from_the_teacher_and_distilled(task_type, teachers, tmp_path):
    # on augmented data too: the teacher labels the copies, the label loss reads the train rows only
    report = compress(task_type, distill_argv(task_type, teachers[task_type], tmp_path / "out", *SHAPE,
                                              "--distill_augment", "2", "--distill_label_weight", "0.5"))  # fmt: skip
    distillation = report["distillation"]
    assert distillation["augmented_features"] > distillation["train_features"] > 0
    assert distillation["augmentation"]["distill_augment"] == 2 and "labelled by the teacher" in report["markdown"]
    config = student_config(report)
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (1, 32, 2)
    assert config["intermediate_size"] == 128  # the teacher's FFN/hidden ratio
    assert report["distillation"]["layer_map"] == [1]  # the last teacher layer
    assert [row["name"] for row in report["candidates"] if row["precision"] != "bf16"] == ["float", "student"]
    sizes = {row["name"]: row["size_mb"] for row in report["candidates"]}
    assert sizes["student"] < sizes["float"] * 0.6
    assert not os.path.exists(tmp_path / "out" / "distill_checkpoints")  # removed once the output is published
    check_student_loads_on_its_own(task_type, report)


@pytest.mark.parametrize("task_type", list(TASK_FLAGS))
def test_a_pretrained_student_directory_is_distilled(task_type, teachers, small_pretrained, tmp_path):
    report = compress(task_type, distill_argv(task_type, teachers[task_type], tmp_path / "out",
                                              "--student_model", small_pretrained, "--distill_hidden_weight", "1"))  # fmt: skip
    config = student_config(report)
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (1, 32, 96)
    assert report["distillation"]["student"] == small_pretrained
    check_student_loads_on_its_own(task_type, report)


def test_distill_then_ptq_quantizes_the_student_and_reports_the_label_only_baseline(teachers, tmp_path):
    report = compress("seq_cls", distill_argv("seq_cls", teachers["seq_cls"], tmp_path / "out", *SHAPE,
                                              "--distill_baseline", strategy="distill+ptq"))  # fmt: skip
    names = [row["name"] for row in report["candidates"] if row["precision"] != "bf16"]
    assert names == ["float", "student", "student/hist4_1", "student/hist4_1/emb-int8"]
    models = report["distillation"]["models"]
    assert set(models) == {"teacher", "student", "baseline"}
    assert models["teacher"]["agreement_with_teacher"] == 1.0
    assert all(0 <= row["agreement_with_teacher"] <= 1 for row in models.values())
    assert "student_baseline" not in {row["name"] for row in report["candidates"]}  # compared, never picked
    assert "| same student, labels only |" in report["markdown"]
    comparison = report["distillation"]["student_vs_baseline"]
    assert comparison["a"] == pytest.approx(models["student"]["metric"])
    assert comparison["b"] == pytest.approx(models["baseline"]["metric"])
    low, high = comparison["ci95"]
    assert low <= high and comparison["beyond_noise"] == (low > 0 or high < 0)
    assert "paired bootstrap interval" in report["markdown"]
    with open(tmp_path / "out" / "report.json", encoding="utf-8") as handle:
        assert json.load(handle)["distillation"]["models"]["baseline"]["candidate"] == "student_baseline"


class SigmoidTnews(SeqClsTask):
    """A test-only task whose head is read through sigmoids: it distils with BCE on the teacher's sigmoids."""

    calls: list

    def reads_models_of(self, task_name):
        return task_name in ("tnews", self.name)

    def distillation_loss(self, student_outputs, teacher_outputs, batch, temperature):
        import paddle.nn.functional as F

        student, teacher = student_outputs[0] / temperature, teacher_outputs[0] / temperature
        loss = F.binary_cross_entropy_with_logits(student, F.sigmoid(teacher)) * temperature**2
        softmax_kl = soft_kl(student_outputs[0], teacher_outputs[0], temperature)
        self.calls.append((float(loss), float(softmax_kl)))
        return loss


@pytest.mark.parametrize("strategy, flags", [("distill", [*SHAPE, "--distill_temperature", "2"]),
                                             ("dynabert", ["--width_mult_list", "3/4"])])  # fmt: skip
def test_a_task_distils_through_its_own_loss(strategy, flags, teachers, tmp_path, monkeypatch):
    task = copy.copy(TASKS["tnews"])  # tnews' data and labels, read through sigmoids
    task.__class__, task.name, task.calls = SigmoidTnews, "tnews_sigmoid", []
    monkeypatch.setitem(TASKS, task.name, task)
    argv = distill_argv("seq_cls", teachers["seq_cls"], tmp_path / "out", *flags, strategy=strategy)
    argv[argv.index("tnews")] = task.name
    report = compress("seq_cls", argv)
    # one call per training step (--max_steps 2; paddlenlp's DynaBERT loop runs one step more): the task's own loss
    assert len(task.calls) == (2 if strategy == "distill" else 3)
    for bce, softmax_kl in task.calls:
        assert np.isfinite(bce) and abs(bce - softmax_kl) > 1e-3
    assert report["task"] == task.name and len(report["candidates"]) > 1


def vocabulary_differs(tmp_path):
    tokens = generated_vocab()
    vocab = write_vocab(tokens[:5] + list(reversed(tokens[5:])), str(tmp_path / "vocab.txt"))  # same tokens, other ids
    return build_tiny_model(str(tmp_path / "other-vocab"), vocab_file=vocab, hidden_size=32, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=128)  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--student_size", "nano"], r"larger than its teacher \(2L-64H-4heads-256FFN\): layers 4 > 2, hidden size 312 > 64, attention heads 12 > 4"),
        (["--student_layers", "3"], "larger than its teacher .*: layers 3 > 2"),
        (["--student_hidden", "30", "--student_heads", "4"], "hidden size 30 is not divisible by its 4 attention heads"),
        (["--student_hidden", "48", "--student_heads", "2"], "head size 24 > 16"),
        (["--student_size", "tiny"], "--student_size: unknown size 'tiny'"),
        ([], "--strategy distill needs a student"),
        (["--student_layers", "0"], "--student_layers must be a positive integer"),
        (["--student_layers", "1", "--distill_temperature", "nan"], "--distill_temperature must be in \\(0, 100\\]"),
        (["--student_model", "x", "--student_layers", "1"], "--student_model takes its shape from the model"),
        (["--student_model", "./no/such/dir"], "--student_model: directory not found"),
    ],
)
def test_bad_students_fail_in_one_line_before_any_work(teachers, tmp_path, extra, message):
    with pytest.raises(UserError, match=message):
        compress("seq_cls", distill_argv("seq_cls", teachers["seq_cls"], tmp_path / "out", *extra))
    assert not os.path.exists(tmp_path / "out")


def test_student_flags_need_the_distill_strategy(teachers, tmp_path):
    with pytest.raises(UserError, match="--student_layers applies to --strategy distill"):
        compress("seq_cls", distill_argv("seq_cls", teachers["seq_cls"], tmp_path / "out", *SHAPE, strategy="ptq"))


def test_a_student_with_another_vocabulary_is_refused(teachers, tmp_path):
    student = vocabulary_differs(tmp_path)
    with pytest.raises(UserError, match=f"--student_model: {student} has another vocabulary than the teacher"):
        compress("seq_cls", distill_argv("seq_cls", teachers["seq_cls"], tmp_path / "out", "--student_model", student))
    assert not os.path.exists(tmp_path / "out")


def test_a_pretrained_student_larger_than_its_teacher_is_refused(teachers, tiny_model_dir, tmp_path):
    big = build_tiny_model(str(tmp_path / "big"), hidden_size=64, num_hidden_layers=3, num_attention_heads=4)
    with pytest.raises(UserError, match=f"--student_model {big} is larger than its teacher .*: layers 3 > 2"):
        compress("seq_cls", distill_argv("seq_cls", teachers["seq_cls"], tmp_path / "out", "--student_model", big))


def test_token_distillation_ignores_untagged_positions():
    import paddle

    from ernie3.tasks.base import IGNORE_INDEX

    task = TASKS["msra_ner"]
    student = paddle.to_tensor(np.random.RandomState(0).randn(1, 3, 4).astype("float32"))
    teacher = paddle.to_tensor(np.random.RandomState(1).randn(1, 3, 4).astype("float32"))
    changed = teacher.numpy().copy()
    changed[0, 2] = 50.0 * np.arange(4)  # a padded position: whatever the teacher says there does not count
    labels = paddle.to_tensor([[1, 2, IGNORE_INDEX]])
    first = float(task.distillation_loss([student], [teacher], {"labels": labels}, 1.0))
    second = float(task.distillation_loss([student], [paddle.to_tensor(changed)], {"labels": labels}, 1.0))
    assert first == pytest.approx(second) and first > 0
    assert first == pytest.approx(float(soft_kl(student[:, :2], teacher[:, :2], 1.0)), rel=1e-5)


class InterruptedTnews(SeqClsTask):
    """tnews, whose distillation stops at a given step (as a kill would), counting the steps it distils."""

    def distillation_loss(self, student_outputs, teacher_outputs, batch, temperature):
        self.steps += 1
        if self.steps == self.stop_at:
            raise KeyboardInterrupt
        return super().distillation_loss(student_outputs, teacher_outputs, batch, temperature)


def test_an_interrupted_distillation_resumes_from_its_last_checkpoint(teachers, tmp_path, monkeypatch):
    argv = distill_argv("seq_cls", teachers["seq_cls"], tmp_path / "out", *SHAPE, "--max_steps", "4",
                        "--evaluation_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps",
                        "--save_steps", "2")  # fmt: skip
    task = copy.copy(TASKS["tnews"])
    task.__class__, task.steps, task.stop_at = InterruptedTnews, 0, 3
    monkeypatch.setitem(TASKS, "tnews", task)
    with pytest.raises(KeyboardInterrupt):
        compress("seq_cls", argv)
    # nothing else but the run's log: no half-built output
    assert sorted(os.listdir(tmp_path / "out")) == ["distill_checkpoints", "ernie3.log"]
    task.steps, task.stop_at = 0, None
    report = compress("seq_cls", argv)  # the same command again: no --overwrite_output_dir needed
    assert report["distillation"]["resumed_from"] == "checkpoint-2"
    assert task.steps == 2  # steps 3 and 4 only
    assert not os.path.exists(tmp_path / "out" / "distill_checkpoints")


def test_the_pipeline_passes_distillation_flags_to_compression(tiny_model_dir, tmp_path):
    from ernie3.cli.pipeline import StageFlags, main, route_flags
    from ernie3.tasks import get_task

    flags = ["--strategy", "distill+ptq", "--student_size", "nano", "--distill_hidden_weight", "0.5",
             "--distill_baseline", "--compress_num_train_epochs", "2", "--num_train_epochs", "3"]  # fmt: skip
    training, compression = route_flags(flags, StageFlags.of(get_task("tnews")))
    assert training == ["--num_train_epochs", "3"]
    assert compression == flags[:7] + ["--num_train_epochs", "2"]
    common = ["--task_name", "tnews", "--model_name_or_path", tiny_model_dir, "--train_file", sample_file("tnews", "train"),
              "--dev_file", sample_file("tnews", "dev"), "--max_steps", "2", "--engines", "paddle"]  # fmt: skip
    with pytest.raises(UserError, match="larger than its teacher"):  # before fine-tuning, not after it
        main([*common, "--output_dir", str(tmp_path / "refused"), *flags[:4]])
    assert not (tmp_path / "refused").exists()
    report = main([*common, "--output_dir", str(tmp_path / "out"), "--strategy", "distill+ptq", *SHAPE,
                   "--algo_list", "hist", "--batch_size_list", "4", "--bench_min_seconds", "0", "--bench_examples", "8",
                   "--bench_batch_size", "4"])  # fmt: skip
    with open(tmp_path / "out" / "compress" / "report.json", encoding="utf-8") as handle:
        compressed = json.load(handle)
    assert compressed["distillation"]["shape"]["hidden"] == 32
    assert {"student", "student/hist4_1"} <= {row["name"] for row in compressed["candidates"]}
    benchmarked = {row["name"] for row in report["candidates"]}  # the pipeline benchmarks the student too
    assert {"float", "student", "student/hist4_1"} <= benchmarked


def tiny_batch(task, tokenizer):
    from ernie3.data import load_examples

    examples = load_examples(task, "dev", sample_file("tnews", "dev"))[:8]
    encoded = task.encode(examples, tokenizer, 64)
    return task.data_collator(tokenizer)(encoded.features)


def test_a_full_size_student_computes_what_its_teacher_computes(teachers):
    """Reordering heads and neurons by importance keeps the function: a student of the teacher's own shape, built
    with a non-trivial order, gives the teacher's logits; the measured importance has one score per head/neuron."""
    import paddle

    from ernie3.distill import head_neuron_importance, initialise_from_teacher, teacher_shape
    from ernie3.modeling import load_model, load_tokenizer

    task = TASKS["tnews"]
    teacher = load_model(teachers["seq_cls"], task.model_class())
    batch = tiny_batch(task, load_tokenizer(teachers["seq_cls"]))
    heads, neurons = head_neuron_importance(teacher, [batch], task)
    assert [h.shape for h in heads] == [(4,), (4,)] and [n.shape for n in neurons] == [(256,), (256,)]
    assert all(np.isfinite(h).all() and (h >= 0).all() and h.sum() > 0 for h in heads + neurons)
    order = np.random.RandomState(0)
    shuffled = ([order.permutation(4).astype(float) for _ in heads], [order.permutation(256).astype(float) for _ in neurons])
    student = initialise_from_teacher(teacher, teacher_shape(teacher.config), shuffled)
    teacher.eval(), student.eval()
    inputs = {"input_ids": batch["input_ids"], "token_type_ids": batch["token_type_ids"]}
    with paddle.no_grad():
        np.testing.assert_allclose(student(**inputs).numpy(), teacher(**inputs).numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(student.ernie.encoder.layers[0].linear1.weight.numpy(),
                           teacher.ernie.encoder.layers[0].linear1.weight.numpy())  # fmt: skip


def test_a_narrower_student_takes_the_most_important_heads_cut_to_its_head_size(teachers):
    from ernie3.distill import StudentShape, initialise_from_teacher
    from ernie3.modeling import load_model

    teacher = load_model(teachers["seq_cls"], TASKS["tnews"].model_class())
    heads = [np.array([0.0, 3.0, 1.0, 2.0])] * 2  # most important first: heads 1, 3, 2, 0
    neurons = [np.arange(256, dtype=float)] * 2  # most important first: 255, 254, ...
    student = initialise_from_teacher(teacher, StudentShape(1, 32, 4, 64), (heads, neurons))
    assert student.config.num_hidden_layers == 1 and student.ernie.encoder.layers[0].self_attn.head_dim == 8
    source = teacher.ernie.encoder.layers[1]  # the one student layer maps onto the last teacher layer
    columns = np.concatenate([h * 16 + np.arange(8) for h in (1, 3, 2, 0)])
    layer = student.ernie.encoder.layers[0]
    np.testing.assert_array_equal(layer.self_attn.q_proj.weight.numpy(), source.self_attn.q_proj.weight.numpy()[:32, columns])
    np.testing.assert_array_equal(layer.linear2.weight.numpy(), source.linear2.weight.numpy()[255:191:-1, :32])
    np.testing.assert_array_equal(student.ernie.embeddings.word_embeddings.weight.numpy(),
                                  teacher.ernie.embeddings.word_embeddings.weight.numpy()[:, :32])  # fmt: skip
    np.testing.assert_array_equal(student.classifier.weight.numpy(), teacher.classifier.weight.numpy()[:32])


@pytest.mark.parametrize("student_layers, teacher_layers, expected", [(4, 6, [1, 2, 4, 5]), (1, 2, [1]), (3, 12, [3, 7, 11]), (2, 2, [0, 1])])
def test_layer_map_takes_every_kth_layer(student_layers, teacher_layers, expected):
    from ernie3.distill import layer_map

    assert layer_map(student_layers, teacher_layers) == expected


def test_a_previous_student_inside_the_output_is_not_overwritten_by_its_own_run(teachers, tmp_path):
    output = tmp_path / "out"
    compress("seq_cls", distill_argv("seq_cls", teachers["seq_cls"], output, *SHAPE))
    before = sorted(os.listdir(output / "student"))
    with pytest.raises(UserError, match="student lies inside .*; move it first"):
        compress("seq_cls", distill_argv("seq_cls", teachers["seq_cls"], output, "--student_model",
                                         str(output / "student"), "--overwrite_output_dir"))  # fmt: skip
    assert sorted(os.listdir(output / "student")) == before


@pytest.mark.parametrize("task_type", list(TASK_FLAGS))
def test_the_cached_teacher_outputs_are_the_dygraph_teachers(task_type, teachers, tmp_path):
    """Distilling outputs only, the teacher runs once over the train set through its static export: per batch,
    the cache gives what the dygraph teacher gives (padding beyond a feature's tokens: no probability)."""
    import paddle

    from ernie3.data import load_examples
    from ernie3.distill import PADDING_LOGIT, TeacherOutputs, logits_of
    from ernie3.export import export_inference_model
    from ernie3.modeling import load_model, load_tokenizer
    from ernie3.tasks import get_task

    name, flags = TASK_FLAGS[task_type]
    task = get_task(name)
    if task_type == "qa":
        task = task.with_options(doc_stride=24, max_query_length=24)
    length = int(flags[flags.index("--max_seq_length") + 1]) if flags else 128
    tokenizer, model = load_tokenizer(teachers[task_type]), load_model(teachers[task_type], task.model_class())
    model.eval()
    export = export_inference_model(model, tokenizer, task, str(tmp_path / "export"), length)
    features = task.encode(load_examples(task, "train", sample_file(name, "train")), tokenizer, length).features[:12]
    cache = TeacherOutputs(task, export, features, num_threads=1, batch_size=4)
    batch = task.data_collator(tokenizer)([dict(f) for f in features[:6]])
    inputs = {key: batch[key] for key in ("input_ids", "token_type_ids")}
    with paddle.no_grad():
        dygraph = logits_of(model(**inputs, return_dict=True))
    cached = cache.batch(np.arange(6), dygraph)
    for mine, theirs in zip(cached, dygraph):
        mine, theirs = mine.numpy(), theirs.numpy()
        assert mine.shape == theirs.shape
        if task.outputs_per_token:
            for row, feature in enumerate(features[:6]):
                own = len(feature["input_ids"])
                np.testing.assert_allclose(mine[row, :own], theirs[row, :own], atol=1e-4)
                assert (mine[row, own:] == PADDING_LOGIT).all()
        else:
            np.testing.assert_allclose(mine, theirs, atol=1e-4)
