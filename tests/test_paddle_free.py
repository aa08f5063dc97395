"""Predictors of OpenVINO / ONNX Runtime models run without paddle: the standalone tokenizer (built from the model
dir's files, verified against paddlenlp's where the model was written) gives paddlenlp's features and predictions."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, TINY_EXPORT_TASKS

from ernie3.errors import UserError

# odd inputs beyond the probe texts: combining marks, full-width, emoji, controls, unknown characters
ODD_TEXTS = (
    "e\u0301t\u00e9 cafe\u0301 n\u0303 \u0915\u093f", "ＦＵＬＬ－ｗｉｄｔｈ，１２３！", "🙂 a😀b 👨‍👩‍👧 🇨🇳",
    "ctrl\x00\x07\x1b\x7f\x85mid\u200b\ufeff", "\ue000\U000f0000 unknown \u0378 ☃☃ ⌘好", "ΣΑΣ ΟΔΟΣ σς", "[UNK]好[UNK]good",
    "  ", "x" * 150 + " 中 " + "y" * 30,
)  # fmt: skip
PAIRS = [("短文本", "长" * 300), ("长" * 300, "短"), ("一二三四五六七八九十" * 5, "一二三四五六七八九十" * 5 + "多"),
         ("ＡＢＣ" * 40, "emoji 🙂" * 30)]  # fmt: skip


def openvino_candidate(export_dir: str, target: str) -> str:
    """An OpenVINO IR candidate of an export, made as compress makes them: IR + the export's side files."""
    import openvino as ov

    from ernie3.backends import find_openvino_model, read_openvino_model
    from ernie3.openvino_quant import SIDE_FILES, write_candidate_record

    os.makedirs(target)
    ov.save_model(read_openvino_model(find_openvino_model(export_dir)), os.path.join(target, "model.xml"),
                  compress_to_fp16=False)  # fmt: skip
    for name in SIDE_FILES:
        if os.path.isfile(os.path.join(export_dir, name)):
            shutil.copy2(os.path.join(export_dir, name), target)
    write_candidate_record(target, "openvino", "fp32", "model.xml")
    return target


@pytest.fixture(scope="module")
def candidates(tiny_exports, tmp_path_factory):
    """Task type → an OpenVINO candidate directory of its tiny export (seq_cls, token_cls, qa)."""
    root = tmp_path_factory.mktemp("paddle-free")
    return {kind: openvino_candidate(tiny_exports[kind], str(root / kind)) for kind in ("seq_cls", "token_cls", "qa")}


def task_record(model_dir):
    with open(os.path.join(model_dir, "ernie3_task.json"), encoding="utf-8") as handle:
        return json.load(handle)


def write_record(model_dir, record):
    with open(os.path.join(model_dir, "ernie3_task.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle)


# -- the standalone tokenizer against paddlenlp's -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tiny_exports):
    from paddlenlp.transformers import AutoTokenizer

    from ernie3.standalone_tokenizer import StandaloneErnieTokenizer

    return AutoTokenizer.from_pretrained(tiny_exports["seq_cls"]), StandaloneErnieTokenizer(tiny_exports["seq_cls"])


def test_tokens_ids_offsets_and_vocabulary_equal_paddlenlps(pair):
    from ernie3.fast_tokenizer import PROBE_TEXTS

    slow, standalone = pair
    for text in [*PROBE_TEXTS, *ODD_TEXTS]:
        assert standalone.tokenize(text) == slow.tokenize(text), text
        assert standalone.text_ids(text) == slow.convert_tokens_to_ids(slow.tokenize(text)), text
        assert standalone.get_offset_mapping(text) == [tuple(s) for s in slow.get_offset_mapping(text)], text
    tokens = slow.tokenize("今天 unknown☃ [SEP]")
    assert standalone.convert_tokens_to_ids(tokens) == slow.convert_tokens_to_ids(tokens)
    assert standalone.convert_tokens_to_ids("no-such-token") == slow.convert_tokens_to_ids("no-such-token")
    assert standalone.convert_ids_to_tokens([0, 1, 5, 7]) == slow.convert_ids_to_tokens([0, 1, 5, 7])
    assert (len(standalone), standalone.vocab_size, standalone.unk_token, standalone.pad_token_id, standalone.cls_token_id) == (
        len(slow), slow.vocab_size, slow.unk_token, slow.pad_token_id, slow.cls_token_id)  # fmt: skip
    for is_pair in (False, True):
        assert standalone.num_special_tokens_to_add(pair=is_pair) == slow.num_special_tokens_to_add(pair=is_pair)


@pytest.mark.parametrize("max_length", [3, 4, 9, 32, 128])
def test_texts_and_long_pairs_truncate_as_paddlenlp_does(pair, max_length):
    slow, standalone = pair
    cases = [(text, None) for text in ODD_TEXTS] + PAIRS + [(a, b) for a, b in zip(ODD_TEXTS, ODD_TEXTS[::-1])]
    for text, text_pair in cases:
        expected = slow(text=text, text_pair=text_pair, max_length=max_length, truncation=True, return_attention_mask=False)
        got = standalone(text=text, text_pair=text_pair, max_length=max_length, truncation=True, return_attention_mask=False)
        assert got == {key: expected[key] for key in ("input_ids", "token_type_ids")}, (text[:20], max_length)


def test_padding_equals_paddlenlps(pair):
    slow, standalone = pair
    rows = [standalone(text=t, max_length=16, truncation=True) for t in ("短", "一二三四五六七八九十" * 3)]
    expected = slow.pad(rows, padding="max_length", max_length=32, return_attention_mask=False, return_tensors="np")
    got = standalone.pad(rows, padding="max_length", max_length=32, return_attention_mask=False, return_tensors="np")
    for key in ("input_ids", "token_type_ids"):
        assert got[key].dtype == expected[key].dtype and (got[key] == expected[key]).all()


@pytest.mark.parametrize("task_type, task_name, flags", TINY_EXPORT_TASKS)
def test_every_task_type_encodes_identically(tiny_exports, task_type, task_name, flags):
    """seq_cls pairs, token_cls word lists, QA offsets and windows, and the task's sample inputs long enough to be
    truncated or windowed: the same features, example indices and alignments."""
    from paddlenlp.transformers import AutoTokenizer

    from ernie3.export import task_of_model_dir
    from ernie3.standalone_tokenizer import StandaloneErnieTokenizer
    from ernie3.tasks.base import map_texts

    model_dir = tiny_exports[task_type]
    task = task_of_model_dir(model_dir)
    slow, standalone = AutoTokenizer.from_pretrained(model_dir), StandaloneErnieTokenizer(model_dir)
    odd = ODD_TEXTS[:-2] + ODD_TEXTS[-1:]  # (not the blank one: not a valid input)
    inputs = list(task.sample_inputs())
    inputs += [map_texts(raw, lambda text, i=i: odd[i % len(odd)] + text * 20) for i, raw in enumerate(inputs)]
    examples = [task.example_from_text(raw) for raw in inputs]
    for max_length in (task_record(model_dir)["max_seq_length"], 64):  # short: truncation and windows
        expected, got = task.encode(examples, slow, max_length), task.encode(examples, standalone, max_length)
        assert got.features == expected.features
        assert (got.example_indices, got.alignments) == (expected.example_indices, expected.alignments)
    if task_type == "qa":
        assert len(expected.features) > len(examples)  # long contexts were cut into windows


def test_the_real_ernie_vocab_with_its_duplicate_token(tiny_model_dir, tmp_path):
    """The ERNIE 3.0 vocab lists a token twice: paddlenlp keeps the later id and counts unique tokens."""
    from conftest import shared_data
    from paddlenlp.transformers import AutoTokenizer

    from ernie3.fast_tokenizer import PROBE_TEXTS
    from ernie3.standalone_tokenizer import StandaloneErnieTokenizer

    vocab = shared_data("vocab", "ernie-3.0-zh-vocab.txt")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(os.path.join(tiny_model_dir, name), tmp_path)
    shutil.copy2(vocab, tmp_path / "vocab.txt")
    slow, standalone = AutoTokenizer.from_pretrained(str(tmp_path)), StandaloneErnieTokenizer(str(tmp_path))
    assert len(standalone) == len(slow) < 39980
    for text in [*PROBE_TEXTS, *ODD_TEXTS, "$5 a$b"]:
        assert standalone.text_ids(text) == slow.convert_tokens_to_ids(slow.tokenize(text)), text


def test_configurations_it_does_not_reproduce_are_refused(tiny_exports, tmp_path):
    from ernie3.fast_tokenizer import FastUnavailable
    from ernie3.standalone_tokenizer import StandaloneErnieTokenizer

    changes = {
        "tokenizer_config.json": lambda c: {**c, "tokenizer_class": "BertTokenizer"},
        "special_tokens_map.json": lambda c: {**c, "additional_special_tokens": ["[X]"]},
    }
    for name, change in changes.items():
        model_dir = tmp_path / name
        shutil.copytree(tiny_exports["seq_cls"], model_dir)
        config = json.loads((model_dir / name).read_text(encoding="utf-8"))
        (model_dir / name).write_text(json.dumps(change(config)), encoding="utf-8")
        with pytest.raises(FastUnavailable):
            StandaloneErnieTokenizer(str(model_dir))


# -- the record written with the model, and the Predictor's choice ----------------------------------------------------


def test_exports_record_the_verification_and_candidates_carry_it(tiny_exports, candidates):
    from ernie3.standalone_tokenizer import tokenizer_digests

    for kind, model_dir in candidates.items():
        record = task_record(model_dir)["fast_tokenizer"]
        assert record["status"] == "verified" and "probe texts" in record["checked_on"]
        assert record["tokenizer_files"] == tokenizer_digests(model_dir) == tokenizer_digests(tiny_exports[kind])


@pytest.mark.parametrize("kind", ["seq_cls", "token_cls", "qa"])
def test_openvino_candidate_predicts_the_same_with_the_standalone_tokenizer(candidates, kind):
    from ernie3.predict import Predictor
    from ernie3.standalone_tokenizer import StandaloneErnieTokenizer

    light = Predictor(candidates[kind], num_threads=1, batch_size=4)
    heavy = Predictor(candidates[kind], num_threads=1, batch_size=4, tokenizer="paddlenlp")
    assert isinstance(light.tokenizer, StandaloneErnieTokenizer) and light.tokenizer_choice.startswith("standalone")
    assert not isinstance(heavy.tokenizer, StandaloneErnieTokenizer) and "as asked" in heavy.tokenizer_choice
    assert light.backend_name == "openvino" and light.paddle_free and not heavy.paddle_free
    # the memory plan counts the smaller runtime of a process without paddle
    assert light.expected_peak_rss_mb == pytest.approx(heavy.expected_peak_rss_mb - 585.0 + 100.0)
    if kind == "qa":
        # (odd texts one at a time: paddlenlp's own offset search fails on some runs of them, IndexError)
        inputs = [{"question": q, "context": c + "海钓比赛地点在厦门与金门之间的海域。" * 4} for q, c in zip(ODD_TEXTS[:6], ODD_TEXTS[3:])]
    else:
        inputs = [t for t in ODD_TEXTS if t.strip()] + ["长" * 600]  # (tnews: single texts; pairs are tested above)
    assert light.predict_texts(inputs) == heavy.predict_texts(inputs)
    light.warm_up()  # every bucket shape, padded by the standalone tokenizer


def test_onnx_runtime_model_dir_uses_the_standalone_tokenizer(tiny_exports, tmp_path):
    from ernie3.onnx import export_onnx
    from ernie3.predict import Predictor
    from ernie3.standalone_tokenizer import StandaloneErnieTokenizer

    onnx_file = export_onnx(tiny_exports["seq_cls"], str(tmp_path / "onnx"))
    light = Predictor(onnx_file, num_threads=1, batch_size=4)
    assert light.backend_name == "onnxruntime" and isinstance(light.tokenizer, StandaloneErnieTokenizer)
    heavy = Predictor(onnx_file, num_threads=1, batch_size=4, tokenizer="paddlenlp")
    texts = ["体育｜足球", "长" * 300, ODD_TEXTS[2]]
    assert light.predict_texts(texts) == heavy.predict_texts(texts)


def test_paddle_backend_and_old_or_changed_model_dirs_keep_paddlenlps_path(tiny_exports, candidates, tmp_path):
    from ernie3.fast_tokenizer import FastErnieTokenizer
    from ernie3.predict import Predictor

    # Paddle Inference imports paddle anyway: today's self-checked fast tokenizer
    assert isinstance(Predictor(tiny_exports["seq_cls"], num_threads=1).tokenizer, FastErnieTokenizer)
    expected = Predictor(candidates["seq_cls"], num_threads=1).predict_texts(["体育｜足球"])
    old = tmp_path / "old"
    shutil.copytree(candidates["seq_cls"], old)
    write_record(old, {k: v for k, v in task_record(old).items() if k != "fast_tokenizer"})
    predictor = Predictor(str(old), num_threads=1)
    assert isinstance(predictor.tokenizer, FastErnieTokenizer)
    assert "no standalone tokenizer: no verification record" in predictor.tokenizer_choice
    assert predictor.predict_texts(["体育｜足球"]) == expected
    changed = tmp_path / "changed"
    shutil.copytree(candidates["seq_cls"], changed)
    with open(changed / "vocab.txt", "a", encoding="utf-8") as handle:
        handle.write("新词\n")
    predictor = Predictor(str(changed), num_threads=1)
    assert isinstance(predictor.tokenizer, FastErnieTokenizer)
    assert "tokenizer files changed since they were verified" in predictor.tokenizer_choice


@pytest.mark.parametrize("value, message", [
    ("verified", "field 'fast_tokenizer' must be an object with a 'status' string"),
    ({"status": "verified"}, "field 'fast_tokenizer' is verified but names no tokenizer file digests"),
    ({"status": "verified", "tokenizer_files": {"vocab.txt": 3}}, "names no tokenizer file digests"),
])  # fmt: skip
def test_a_damaged_record_is_one_line(candidates, tmp_path, value, message):
    from ernie3.predict import Predictor

    model_dir = tmp_path / "damaged"
    shutil.copytree(candidates["seq_cls"], model_dir)
    write_record(model_dir, {**task_record(model_dir), "fast_tokenizer": value})
    with pytest.raises(UserError, match="damaged task record") as error:
        Predictor(str(model_dir), num_threads=1)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_predictor_process_and_the_rss_probe_import_nothing_of_paddle(candidates):
    """A fresh process: the RSS probe of compress (ernie3.lightweight's child) on an OpenVINO candidate, then a
    prediction; neither paddle, paddlenlp nor paddleslim is imported."""
    code = (
        "import json, sys\n"
        "from ernie3.lightweight import _probe\n"
        "_probe({'path': sys.argv[1], 'backend': None, 'precision': 'auto', 'model_prefix': None, 'batch_size': 4,"
        " 'num_threads': 1})\n"
        "from ernie3.predict import Predictor\n"
        "print(Predictor(sys.argv[1], num_threads=1).predict_texts(['体育｜足球'])[0]['label'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('paddle', 'paddlenlp', 'paddleslim')))))\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    done = subprocess.run([sys.executable, "-c", code, candidates["seq_cls"]], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[0])["peak_rss_mb"] > 0
    assert json.loads(lines[-1]) == []


def test_a_service_of_openvino_models_imports_nothing_of_paddle(candidates, tiny_exports):
    """A fresh process: the memory check and model loading of the service on an OpenVINO candidate, a request
    through its worker, and no paddle module; with a Paddle model beside it, the service imports paddle."""
    code = (
        "import json, sys\n"
        "from ernie3.memory import check_memory_budget\n"
        "from ernie3.serving.config import parse_config\n"
        "from ernie3.serving.worker import ModelRegistry\n"
        "models = [{'name': f'm{i}', 'path': path, 'num_threads': 1} for i, path in enumerate(sys.argv[1:])]\n"
        "config = parse_config({'models': models}, '.')\n"
        "print(json.dumps(check_memory_budget(config.models)))\n"
        "registry = ModelRegistry.load(config.models, progress=lambda line: None)\n"
        "print(registry.get('m0').predictor.predict_texts(['体育｜足球'])[0]['label'])\n"
        "registry.stop()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('paddle', 'paddlenlp', 'paddleslim')))))\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)

    def serve(*paths):
        done = subprocess.run([sys.executable, "-c", code, *paths], env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[0]), json.loads(lines[-1])

    memory, modules = serve(candidates["seq_cls"])
    assert modules == [] and "(runtime 140 MB + models)" in memory[-1]
    memory, modules = serve(candidates["seq_cls"], tiny_exports["seq_cls"])
    assert "paddle.inference" in modules and "(runtime 585 MB + models)" in memory[-1]


def test_a_tokenizer_it_cannot_reproduce_is_recorded_not_verified(tiny_exports, tmp_path):
    from ernie3.export import task_of_model_dir
    from ernie3.predict import Predictor
    from ernie3.standalone_tokenizer import verify_model_tokenizer

    model_dir = tmp_path / "added"
    shutil.copytree(tiny_exports["seq_cls"], model_dir)
    vocab_size = len((model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())
    (model_dir / "added_tokens.json").write_text(json.dumps({"新词语": vocab_size}), encoding="utf-8")
    record = verify_model_tokenizer(str(model_dir), task_of_model_dir(str(model_dir)), 128)
    assert record == {"status": "not verified", "reason": "added tokens beyond the vocabulary"}
    write_record(model_dir, {**task_record(model_dir), "fast_tokenizer": record})
    predictor = Predictor(str(model_dir), backend="openvino", num_threads=1)
    assert "no standalone tokenizer: not verified (added tokens beyond the vocabulary)" in predictor.tokenizer_choice
