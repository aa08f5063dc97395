"""Long-text classification (<name>_long): windows over long texts, mean/max pooling of their logits, its own flags
recorded with the model, and one tiny model through training, export, infer.py, deploy, compression and serving."""
import json
import os

import numpy as np
import pytest
from conftest import fixture_path

from ernie3.errors import UserError
from ernie3.tasks import get_task
from ernie3.tasks.long_text import pool_logits, text_windows

TASK = get_task("iflytek_long")
TRAIN, DEV = fixture_path("long_text", "train.json"), fixture_path("long_text", "dev.json")
SHORT_TEXT = "一键叫车，司机三分钟内到达。"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from ernie3.modeling import load_tokenizer

    return load_tokenizer(tiny_model_dir)


def same_results(got, expected):
    """Equal labels and window counts; scores equal but for the last bits (other batches pad to other lengths)."""
    assert [(r["label"], r["windows"]) for r in got] == [(r["label"], r["windows"]) for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], rel=1e-4)
    return True


def long_text(characters):
    """A made-up text of `characters` distinct-looking CJK characters (one token each with the tiny vocab)."""
    return "".join(chr(0x4E00 + (i * 7) % 2000) for i in range(characters))


def test_every_classification_task_has_a_long_variant_with_its_formats_labels_and_recipe():
    from ernie3.args import parse_arguments
    from ernie3.tasks.seq_cls import TASKS as SEQ_CLS_TASKS

    for base in SEQ_CLS_TASKS:
        task = get_task(f"{base.name}_long")
        assert (task.task_type, task.labels, task.pair, task.input_flags) == ("long_seq_cls", base.labels, base.pair,
                                                                              base.input_flags)  # fmt: skip
        assert task.config_sections() == ("seq_cls", base.name, "long_seq_cls", f"{base.name}_long")
    csl = parse_arguments(["--task_name", "csl_long", "--do_eval"])
    # the csl recipe (max_seq_length 256, lr 1e-5) and the long_seq_cls window settings both apply
    assert (csl.data.max_seq_length, csl.training.learning_rate) == (256, 1e-5)
    assert csl.task.options == {"doc_stride": 64, "pooling": "mean", "max_windows_per_text": 16}
    given = parse_arguments(["--task_name", "iflytek_long", "--doc_stride", "32", "--pooling", "max", "--do_eval"])
    assert given.task.options["doc_stride"] == 32 and given.task.options["pooling"] == "max"
    record = {"label": "110", "label_des": "社区超市", "sentence": "朴朴快送超市"}
    assert TASK.parse_record(record, True) == get_task("iflytek").parse_record(record, True)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--pooling", "avg"], "--pooling must be one of mean, max, got 'avg'"),
        (["--doc_stride", "0"], "--doc_stride must be a positive integer, got 0"),
        (["--max_windows_per_text", "-1"], "--max_windows_per_text must be a positive integer, got -1"),
    ],
)
def test_bad_window_flags_are_one_clear_error(flags, message):
    from ernie3.args import parse_arguments

    with pytest.raises(UserError, match="invalid arguments: " + message):
        parse_arguments(["--task_name", "iflytek_long", "--do_eval", *flags])
    with pytest.raises(ValueError, match="unknown long_seq_cls options: stride"):
        TASK.with_options(stride=3)


def test_a_stride_of_a_whole_window_or_more_is_refused(tokenizer):
    example = TASK.example_from_text(long_text(100))
    with pytest.raises(UserError, match=r"--doc_stride 30 must be smaller than the 30 text tokens of a window "
                                        r"\(--max_seq_length 32 minus 2 special tokens\)"):  # fmt: skip
        TASK.with_options(doc_stride=30).encode([example], tokenizer, 32)


def test_windows_cover_every_token_doc_stride_apart():
    assert text_windows(40, 12, 6, 100) == [(0, 12), (6, 12), (12, 12), (18, 12), (24, 12), (30, 10)]
    assert text_windows(12, 12, 6, 100) == [(0, 12)]  # a text that fits is one window
    assert text_windows(0, 12, 6, 100) == [(0, 0)]
    assert text_windows(40, 12, 6, 3) == [(0, 12), (6, 12), (12, 12)]  # the cap: the rest is not read
    assert text_windows(30, 8, 20, 100) == [(0, 8), (8, 8), (16, 8), (24, 6)]  # never a gap between windows
    for tokens, window, stride in [(1, 5, 1), (97, 10, 3), (100, 10, 9), (55, 20, 7)]:
        windows = text_windows(tokens, window, stride, 1000)
        covered = set()
        for (start, length), following in zip(windows, windows[1:] + [None]):
            assert 0 < length <= window
            covered.update(range(start, start + length))
            if following:
                assert following[0] - start == stride
        assert covered == set(range(tokens)) and windows[-1][0] + windows[-1][1] == tokens


def test_long_texts_become_overlapping_windows_with_the_texts_label(tokenizer):
    text = long_text(100)
    example = TASK.parse_record({"label": "5", "sentence": text}, with_label=True)
    short = TASK.parse_record({"label": "0", "sentence": SHORT_TEXT}, with_label=True)
    task = TASK.with_options(doc_stride=10)
    encoded = task.encode([example, short], tokenizer, max_seq_length=32)  # 30 text tokens per window
    ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
    assert len(ids) == 100
    windows = [i for i, e in enumerate(encoded.example_indices) if e == 0]
    assert len(windows) == 8  # starts 0, 10, ..., 70; the last one ends at token 100
    assert encoded.example_indices == [0] * 8 + [1]
    for number, feature in enumerate(encoded.features[:8]):
        start = number * 10
        assert feature["input_ids"] == [tokenizer.cls_token_id, *ids[start : start + 30], tokenizer.sep_token_id]
        assert feature["token_type_ids"] == [0] * len(feature["input_ids"]) and feature["labels"] == 5
    # a text that fits gives exactly the feature its seq_cls task gives
    assert encoded.features[8] == get_task("iflytek").convert_example(short, tokenizer, 32)
    unlabeled = task.encode([task.example_from_text(text)], tokenizer, 32)
    assert all("labels" not in feature for feature in unlabeled.features)


def test_pairs_keep_the_first_text_whole_and_window_the_second(tokenizer):
    csl = get_task("csl_long").with_options(doc_stride=8)
    abstract = long_text(60)
    example = csl.parse_record({"id": 3, "keyword": ["关键", "词"], "abst": abstract, "label": "1"}, with_label=True)
    encoded = csl.encode([example], tokenizer, max_seq_length=24)
    first = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("关键 词"))
    second = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(abstract))
    room = 24 - 3 - len(first)  # the abstract's tokens per window
    assert len(encoded.features) == len(text_windows(len(second), room, 8, 100)) > 1
    seen = set()
    for feature, alignment in zip(encoded.features, encoded.alignments):
        start, length = alignment["window_start"], alignment["window_tokens"]
        piece = second[start : start + length]
        assert feature["input_ids"] == tokenizer.build_inputs_with_special_tokens(first, piece)
        assert feature["token_type_ids"] == [0] * (len(first) + 2) + [1] * (length + 1)
        assert len(feature["input_ids"]) <= 24 and feature["labels"] == 1
        seen.update(range(start, start + length))
    assert seen == set(range(len(second)))
    # a pathological first text takes at most half of the window
    huge = csl.example_from_text([long_text(100), abstract])
    assert all(len(f["input_ids"]) <= 24 for f in csl.encode([huge], tokenizer, 24).features)


def test_mean_and_max_pooling_of_the_windows_logits():
    # text 0: two windows mildly for label 1, one window very sure of label 2; text 1: one window
    logits = np.array([[0.0, 2.0, 0.0], [0.0, 2.0, 0.0], [0.0, -3.0, 5.0], [1.0, 0.0, 0.0]])
    mean, counts = pool_logits(logits, [0, 0, 0, 1], 2, "mean")
    np.testing.assert_allclose(mean, [[0.0, 1 / 3, 5 / 3], [1.0, 0.0, 0.0]])
    maximum, _ = pool_logits(logits, [0, 0, 0, 1], 2, "max")
    np.testing.assert_allclose(maximum, [[0.0, 2.0, 5.0], [1.0, 0.0, 0.0]])
    assert counts == [3, 1]
    logits = np.array([[0.0, 3.0, 0.0], [0.0, 3.0, 0.0], [0.0, -1.0, 4.0], [1.0, 0.0, 0.0]])
    examples = [TASK.example_from_text(SHORT_TEXT)] * 2
    from ernie3.tasks.base import Encoded

    encoded = Encoded([{}] * 4, [0, 0, 0, 1], [{}] * 4)
    labels = TASK.labels
    by_mean = TASK.with_options(pooling="mean").decode(examples, encoded, [logits])
    by_max = TASK.with_options(pooling="max").decode(examples, encoded, [logits])
    assert [r["label"] for r in by_mean] == [labels[1], labels[0]]  # mean (0, 5/3, 4/3): two windows outvote one
    assert [r["label"] for r in by_max] == [labels[2], labels[0]]  # max (0, 3, 4): the surest window decides
    assert by_mean[0]["windows"] == 3 and by_mean[1]["windows"] == 1
    # the score is the probability of the pooled logits, as seq_cls gives it for one feature
    expected = get_task("iflytek").postprocess(np.array([[0.0, 3.0, 4.0] + [0.0] * 116]))[0]
    padded = np.zeros((4, 119))
    padded[:, :3] = logits
    assert TASK.with_options(pooling="max").decode(examples, encoded, [padded])[0]["score"] == pytest.approx(expected["score"])
    with pytest.raises(RuntimeError, match="not to each of 3"):
        pool_logits(logits, [0, 0, 0, 1], 3, "mean")


# -- one tiny model through every stage -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    from ernie3.train import run

    output_dir = tmp_path_factory.mktemp("iflytek-long")
    return run(None, [
        "--task_name", "iflytek_long", "--model_name_or_path", tiny_model_dir, "--output_dir", str(output_dir),
        "--train_file", TRAIN, "--dev_file", DEV, "--test_file", DEV, "--max_seq_length", "64", "--doc_stride", "32",
        "--pooling", "max", "--num_train_epochs", "4", "--learning_rate", "3e-3", "--per_device_train_batch_size", "16",
        "--save_total_limit", "1", "--do_train", "--do_eval", "--do_predict", "--do_export",
    ])  # fmt: skip


def test_training_uses_every_window_and_the_settings_travel_with_the_model(trained):
    from ernie3.export import apply_recorded_settings
    from ernie3.predict import Predictor

    assert trained["train"]["train_loss"] < np.log(TASK.num_labels)  # it learnt something (the labels in use)
    assert 0 <= trained["eval"]["eval_accuracy"] <= 1  # per text, its windows pooled (7 texts, 1 short)
    with open(trained["predict_file"], encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert len(lines) == 7 and set(lines[0]) == {"id", "label"}
    with open(os.path.join(trained["export_dir"], "ernie3_task.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["task_name"] == "iflytek_long" and record["max_seq_length"] == 64
    assert record["options"] == {"doc_stride": 32, "pooling": "max", "max_windows_per_text": 16}
    assert Predictor(trained["export_dir"]).task.options == record["options"]
    # a later run on the fine-tuned model reads them too, unless a flag says otherwise
    task, length = apply_recorded_settings(trained["best_model_dir"], TASK, 128, given=set())
    assert (task.options["doc_stride"], task.options["pooling"], length) == (32, "max", 64)
    task, _ = apply_recorded_settings(trained["best_model_dir"], TASK, 128, given={"pooling"})
    assert task.options["pooling"] == "mean"


def test_infer_deploy_compress_and_serving_read_long_texts_in_windows(trained, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from ernie3.compress import run as compress
    from ernie3.cli.predict import main as deploy
    from ernie3.cli.infer import main as infer
    from ernie3.predict import Predictor
    from ernie3.serving import ModelRegistry, ModelSpec, ServingLimits, create_app

    export_dir = trained["export_dir"]
    report = infer(["--model_path", export_dir, "--dev_file", DEV])
    assert report["task"] == "iflytek_long" and report["metrics"]["accuracy"] == pytest.approx(
        trained["eval"]["eval_accuracy"])

    with open(DEV, encoding="utf-8") as handle:
        texts = [json.loads(line)["sentence"] for line in handle]
    expected = Predictor(export_dir).predict_texts(texts)
    assert [r["windows"] for r in expected][-1] == 1 and all(r["windows"] > 2 for r in expected[:-1])
    capsys.readouterr()
    assert same_results(deploy("cpu", ["--model_path", export_dir, "--text", texts[0], "--text", texts[-1]]),
                        [expected[0], expected[-1]])
    assert json.loads(capsys.readouterr().out.splitlines()[0])["windows"] == expected[0]["windows"]
    input_file = tmp_path / "texts.txt"
    input_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert same_results(deploy("cpu", ["--model_path", export_dir, "--input_file", str(input_file)]), expected)

    compressed = compress(None, [
        "--task_name", "iflytek_long", "--model_name_or_path", trained["best_model_dir"],
        "--output_dir", str(tmp_path / "compress"), "--dev_file", DEV, "--strategy", "ptq", "--algo_list", "hist",
        "--batch_size_list", "4", "--engines", "paddle",
    ])  # fmt: skip
    assert compressed["task"] == "iflytek_long" and compressed["candidates"][0]["metrics"]["accuracy"] == pytest.approx(
        report["metrics"]["accuracy"])  # the float candidate, windows pooled as recorded
    assert infer(["--model_path", str(tmp_path / "compress"), "--dev_file", DEV])["task"] == "iflytek_long"

    registry = ModelRegistry.load([ModelSpec("iflytek_long", export_dir, ServingLimits(max_text_chars=5000),
                                             {"num_threads": 1})], progress=lambda message: None)  # fmt: skip
    with TestClient(create_app(registry)) as client:
        [listed] = client.get("/models").json()["models"]
        assert listed["task_type"] == "long_seq_cls" and listed["options"]["pooling"] == "max"
        served = client.post("/models/iflytek_long/predict", json={"texts": texts[:3]})
        assert served.status_code == 200, served.text
        results = served.json()["results"]
    assert same_results(results, expected[:3])


def test_pairs_through_training_export_and_deploy(tiny_model_dir, tmp_path, capsys):
    """csl_long: keywords whole in every window, the abstract windowed, from the dataset file to deploy's
    --text/--text_pair and text<TAB>text_pair input lines."""
    from ernie3.cli.predict import main as deploy
    from ernie3.predict import Predictor
    from ernie3.train import run

    csl = fixture_path("long_text", "csl.json")
    summary = run(None, [
        "--task_name", "csl_long", "--model_name_or_path", tiny_model_dir, "--output_dir", str(tmp_path / "csl"),
        "--train_file", csl, "--dev_file", csl, "--max_seq_length", "48", "--doc_stride", "24", "--max_steps", "2",
        "--per_device_train_batch_size", "8", "--evaluation_strategy", "no", "--save_strategy", "no",
        "--load_best_model_at_end", "false", "--do_train", "--do_eval", "--do_export",
    ])  # fmt: skip
    assert 0 <= summary["eval"]["eval_accuracy"] <= 1
    with open(csl, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    pairs = [[" ".join(r["keyword"]), r["abst"]] for r in records]
    expected = Predictor(summary["export_dir"]).predict_texts(pairs)
    assert all(r["windows"] > 1 for r in expected)
    capsys.readouterr()
    flags = ["--text", pairs[0][0], "--text_pair", pairs[0][1], "--text", pairs[1][0], "--text_pair", pairs[1][1]]
    assert same_results(deploy("cpu", ["--model_path", summary["export_dir"], *flags]), expected[:2])
    lines = tmp_path / "pairs.txt"
    lines.write_text("".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
    assert same_results(deploy("cpu", ["--model_path", summary["export_dir"], "--input_file", str(lines)]), expected)


def test_a_model_fine_tuned_on_truncated_texts_is_evaluated_in_windows(trained_tnews, tmp_path):
    """`<name>_long` reads a `<name>` model (same labels and head): evaluate a truncation-trained model in windows."""
    from conftest import sample_file

    from ernie3.errors import UserError
    from ernie3.train import run

    argv = ["--model_name_or_path", trained_tnews["best_model_dir"], "--dev_file", sample_file("tnews", "dev"),
            "--output_dir", str(tmp_path / "eval"), "--do_eval", "--max_seq_length", "8", "--doc_stride", "3"]  # fmt: skip
    windows = run(None, ["--task_name", "tnews_long", *argv])
    assert 0 <= windows["eval"]["eval_accuracy"] <= 1
    with pytest.raises(UserError, match="was fine-tuned for tnews, not iflytek_long"):  # TNEWS labels parse as IFLYTEK's
        run(None, ["--task_name", "iflytek_long", *argv])
