"""Issue 20, light-weight for real: INT8 embeddings (Paddle program and OpenVINO IR), vocabulary trimming, QAT,
and the size / memory columns with --optimize_for, on the trained tiny model."""
import json
import os

import numpy as np
import pytest
from conftest import sample_file

from ernie3.backends import is_quantized_model
from ernie3.compress import run as compress
from ernie3.errors import UserError
from ernie3.layout import Candidate
from ernie3.lightweight import measure_peak_rss
from ernie3.pick import pick_best
from ernie3.quant_embeddings import ir_embedding_dtypes, program_embedding_dtypes

TRAIN, DEV = sample_file("tnews", "train"), sample_file("tnews", "dev")
#: the tnews train sample uses ~150 distinct tokens: 100 leaves some dev tokens out of the vocabulary
SMALL_VOCAB = 100


def compress_argv(trained, output_dir, *extra):
    return [
        "--task_name", "tnews", "--model_name_or_path", trained["best_model_dir"], "--output_dir", str(output_dir),
        "--train_file", TRAIN, "--dev_file", DEV, "--per_device_train_batch_size", "16", "--learning_rate", "1e-4",
        "--max_steps", "6", "--save_steps", "3", "--algo_list", "hist", "--batch_size_list", "4",
        "--nncf_accuracy_control", "false", "--measure_rss", "false", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def light(trained_tnews, tmp_path_factory):
    """PTQ of the untrimmed and a vocabulary-trimmed model, Paddle and OpenVINO INT8, INT8 embeddings, best by size."""
    return compress("seq_cls", compress_argv(
        trained_tnews, tmp_path_factory.mktemp("light"), "--strategy", "ptq", "--engines", "paddle", "openvino",
        "--prune_vocab", "--max_vocab_size", str(SMALL_VOCAB), "--optimize_for", "size",
    ))  # fmt: skip


def by_name(report):
    return {c["name"]: c for c in report["candidates"]}


# -- INT8 embeddings -----------------------------------------------------------------------------------------------


def test_int8_embeddings_of_a_paddle_int8_candidate_are_stored_int8(light):
    candidates = by_name(light)
    source, quantized = candidates["vocab_pruned/hist4_1"], candidates["vocab_pruned/hist4_1/emb-int8"]
    before = program_embedding_dtypes(os.path.join(source["path"], source["model_file"]))
    after = program_embedding_dtypes(os.path.join(quantized["path"], quantized["model_file"]))
    assert len(before) == len(after) == 3  # word, position, token type
    assert set(before.values()) == {"float32"} and set(after.values()) == {"int8"}
    assert quantized["size_mb"] < source["size_mb"]
    assert is_quantized_model(os.path.join(quantized["path"], quantized["model_file"]))
    assert quantized["quantized_from"] == "vocab_pruned/hist4_1" and quantized["agreement_with_source"] >= 0.95


def test_int8_embeddings_of_an_openvino_int8_candidate_are_stored_int8(light):
    candidates = by_name(light)
    source, quantized = candidates["float/openvino-int8"], candidates["float/openvino-int8/emb-int8"]
    # NNCF leaves the word embedding FP32 (it sits behind the Select of the padding row)
    assert "f32" in ir_embedding_dtypes(os.path.join(source["path"], source["model_file"]))
    assert set(ir_embedding_dtypes(os.path.join(quantized["path"], quantized["model_file"]))) == {"i8"}
    assert quantized["size_mb"] < 0.5 * source["size_mb"]  # the tiny model is mostly its 21143 × 64 embedding
    assert quantized["backend"] == "openvino" and quantized["precision"] == "int8"
    assert quantized["agreement_with_float"] >= 0.95


# -- vocabulary trimming -------------------------------------------------------------------------------------------


def test_trimmed_vocabulary_round_trip(trained_tnews, tmp_path):
    from ernie3.modeling import load_model, load_tokenizer
    from ernie3.tasks import get_task
    from ernie3.data import load_examples
    from ernie3.vocab import trim_vocabulary

    task = get_task("tnews")
    model_dir = trained_tnews["best_model_dir"]
    tokenizer, model = load_tokenizer(model_dir), load_model(model_dir, task.model_class())
    features = task.encode(load_examples(task, "train", TRAIN), tokenizer, 64).features
    summary = trim_vocabulary(model, tokenizer, features, None, SMALL_VOCAB, 64, str(tmp_path / "trimmed"))
    assert summary["vocab_size"] == SMALL_VOCAB
    trimmed_tokenizer = load_tokenizer(str(tmp_path / "trimmed"))
    trimmed = load_model(str(tmp_path / "trimmed"), task.model_class())
    assert len(trimmed_tokenizer.vocab) == SMALL_VOCAB == trimmed.config.vocab_size
    assert trimmed.ernie.embeddings.position_embeddings.weight.shape[0] == 64
    kept = [t for t in trimmed_tokenizer.vocab.token_to_idx if not t.startswith("[")]
    text = "".join(kept[:20])  # in-vocabulary text: the same tokens, new ids, the same embedding rows
    tokens = tokenizer.tokenize(text)
    assert trimmed_tokenizer.tokenize(text) == tokens
    old_ids, new_ids = tokenizer.convert_tokens_to_ids(tokens), trimmed_tokenizer.convert_tokens_to_ids(tokens)
    assert max(new_ids) < SMALL_VOCAB
    old_rows = model.ernie.embeddings.word_embeddings.weight.numpy()[old_ids]
    np.testing.assert_array_equal(trimmed.ernie.embeddings.word_embeddings.weight.numpy()[new_ids], old_rows)
    for special in ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"):
        assert special in trimmed_tokenizer.vocab.token_to_idx
    dropped = next(t for t in tokenizer.vocab.token_to_idx if len(t) == 1 and t not in trimmed_tokenizer.vocab.token_to_idx
                   and tokenizer.tokenize(t) == [t])  # fmt: skip
    ids = trimmed_tokenizer(kept[0] + dropped)["input_ids"][1:-1]
    assert ids == [trimmed_tokenizer.vocab.token_to_idx[kept[0]], trimmed_tokenizer.unk_token_id]


def test_a_word_with_a_dropped_piece_splits_as_before_with_that_piece_unknown(trained_tnews, tmp_path):
    """A Latin word whose continuation piece was dropped keeps its untrimmed split (the dropped piece → [UNK]) in
    every tokenizer a trimmed model is used with: paddlenlp's, the fast one, the standalone one of serving."""
    from ernie3.fast_tokenizer import FastErnieTokenizer
    from ernie3.layout import TASK_INFO_FILE, WORDPIECE_VOCAB_FILE
    from ernie3.modeling import load_model, load_tokenizer
    from ernie3.predict import load_model_tokenizer
    from ernie3.standalone_tokenizer import verified_standalone
    from ernie3.tasks import get_task
    from ernie3.vocab import plan_vocabulary, write_trimmed_model
    from ernie3.export import export_inference_model

    task = get_task("tnews")
    model_dir = trained_tnews["best_model_dir"]
    tokenizer, model = load_tokenizer(model_dir), load_model(model_dir, task.model_class())
    ids = tokenizer.vocab.token_to_idx
    # keep "a" and "b" but not "##b": "ab" splits into a + ##b untrimmed; the trimmed vocab.txt alone cannot split it
    plan = plan_vocabulary(tokenizer, [[ids["a"], ids["b"], ids["##c"]]], 30, fill="none")
    write_trimmed_model(model, tokenizer, plan, 64, str(tmp_path / "trimmed"))
    trimmed = load_tokenizer(str(tmp_path / "trimmed"))
    new = trimmed.vocab.token_to_idx
    assert "##b" not in new and tokenizer.tokenize("ab c") == ["a", "##b", "c"]
    expected = [new["a"], trimmed.unk_token_id, trimmed.unk_token_id]  # "c" is dropped too; "##c" kept
    assert trimmed.convert_tokens_to_ids(trimmed.tokenize("ab c")) == expected
    assert trimmed.convert_tokens_to_ids(trimmed.tokenize("ac")) == [new["a"], new["##c"]]
    assert FastErnieTokenizer(trimmed).text_ids("ab c") == expected
    # the trimmed vocab.txt alone (a plain paddlenlp load) re-splits, still into valid ids
    from paddlenlp.transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(str(tmp_path / "trimmed"))
    assert plain.tokenize("ab") == ["[UNK]"] and max(plain("ab c")["input_ids"]) < plan.size
    # an export carries the WordPiece vocabulary; infer/serving tokenizers read it, the standalone one is verified
    export_dir = str(tmp_path / "export")
    export_inference_model(load_model(str(tmp_path / "trimmed"), task.model_class()), trimmed, task, export_dir, 64)
    assert os.path.isfile(os.path.join(export_dir, WORDPIECE_VOCAB_FILE))
    assert load_model_tokenizer(export_dir)("ab c")["input_ids"][1:-1] == expected
    with open(os.path.join(export_dir, TASK_INFO_FILE), encoding="utf-8") as handle:
        record = json.load(handle)["fast_tokenizer"]
    standalone, why = verified_standalone(export_dir, record)
    assert standalone is not None, why
    assert standalone("ab c")["input_ids"][1:-1] == expected
    # a WordPiece vocabulary that is not of this vocab.txt is one clear error
    with open(os.path.join(export_dir, WORDPIECE_VOCAB_FILE), "w", encoding="utf-8") as handle:
        handle.write("[UNK]\n")
    with pytest.raises(UserError, match="lacks the token"):
        load_model_tokenizer(export_dir)
    assert verified_standalone(export_dir, record)[0] is None  # its digest changed


def test_the_rest_of_the_vocabulary_size_is_filled_in_vocabulary_order(tiny_model_dir):
    from ernie3.modeling import load_tokenizer
    from ernie3.vocab import plan_vocabulary, special_token_ids

    tokenizer = load_tokenizer(tiny_model_dir)
    used = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("球队赢得冠军"))
    only_texts = plan_vocabulary(tokenizer, [used], 50, fill="none")
    assert only_texts.size == len(set(used) | set(special_token_ids(tokenizer))) and only_texts.filled == 0
    filled = plan_vocabulary(tokenizer, [used], 50)  # default: fill in vocabulary order
    assert filled.size == 50 and filled.filled == 50 - only_texts.size
    assert set(only_texts.kept_ids) < set(filled.kept_ids)
    added = sorted(set(filled.kept_ids) - set(only_texts.kept_ids))
    first_ids = sorted(set(tokenizer.vocab.token_to_idx.values()) - set(only_texts.kept_ids))[: len(added)]
    assert added == first_ids  # the lowest ids the texts did not use
    # texts that use more tokens than the size keep their most frequent ones and nothing is filled
    assert plan_vocabulary(tokenizer, [used * 3 + [used[0]]], len(special_token_ids(tokenizer)) + 1).filled == 0


def test_compress_reports_unknown_tokens_and_agreement_of_the_trimmed_model(light):
    vocabulary = light["settings"]["vocabulary"]
    assert vocabulary["vocab_size"] == SMALL_VOCAB and vocabulary["vocab_size_before"] > 20000
    assert vocabulary["dev_unk_share_before"] == 0 and 0 < vocabulary["dev_unk_share"] < 0.5
    assert f"{vocabulary['dev_unk_share']:.2%}" in light["markdown"]
    trimmed = by_name(light)["vocab_pruned"]
    assert trimmed["quantized_from"] is None and 0.5 <= trimmed["agreement_with_float"] <= 1
    assert trimmed["size_mb"] < 0.2 * by_name(light)["float"]["size_mb"]
    # the rest of the strategy ran on the trimmed model: its PTQ candidate and its tokenizer
    with open(os.path.join(by_name(light)["vocab_pruned/hist4_1"]["path"], "vocab.txt"), encoding="utf-8") as handle:
        assert len(handle.read().splitlines()) == SMALL_VOCAB
    # and every candidate of the trimmed model splits words as it was measured: with the untrimmed pieces
    from ernie3.layout import WORDPIECE_VOCAB_FILE

    trimmed_names = [name for name in by_name(light) if name.startswith("vocab_pruned")]
    assert {"vocab_pruned", "vocab_pruned/hist4_1/emb-int8", "vocab_pruned/openvino-int8"} <= set(trimmed_names)
    for name in trimmed_names:
        assert os.path.isfile(os.path.join(by_name(light)[name]["path"], WORDPIECE_VOCAB_FILE)), name


@pytest.mark.parametrize("size", ["4", "0", "-3"])
def test_a_vocabulary_below_the_special_tokens_is_refused_in_one_line(trained_tnews, tmp_path, size):
    with pytest.raises(UserError, match=r"--max_vocab_size .* below the 5 special tokens") as error:
        compress("seq_cls", compress_argv(trained_tnews, tmp_path / "out", "--strategy", "ptq", "--engines", "paddle",
                                          "--prune_vocab", "--max_vocab_size", size))  # fmt: skip
    assert "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / "out")


# -- QAT -----------------------------------------------------------------------------------------------------------


def test_qat_produces_an_int8_candidate_that_infer_loads(trained_tnews, tmp_path):
    from ernie3.cli.infer import main as infer

    report = compress("seq_cls", compress_argv(trained_tnews, tmp_path / "qat", "--strategy", "qat",
                                               "--engines", "paddle"))  # fmt: skip
    qat = by_name(report)["float/qat"]
    assert qat["precision"] == "int8" and qat["quantized_from"] == "float"
    assert is_quantized_model(os.path.join(qat["path"], qat["model_file"]))
    assert not os.path.exists(tmp_path / "qat" / "int8.pdmodel")  # moved into its candidate directory
    assert "float/qat/emb-int8" in by_name(report)
    result = infer(["--model_path", qat["path"], "--dev_file", DEV, "--num_threads", "1"])
    assert result["precision"] == "int8" and result["backend"] == "paddle"
    assert result["metrics"]["accuracy"] == pytest.approx(qat["metric"])


def test_dynabert_qat_takes_one_width(trained_tnews, tmp_path):
    with pytest.raises(UserError, match="dynabert\\+qat takes one width"):
        compress("seq_cls", compress_argv(trained_tnews, tmp_path / "out", "--strategy", "dynabert+qat",
                                          "--width_mult_list", "3/4", "1/2"))  # fmt: skip


# -- size / memory columns and --optimize_for ----------------------------------------------------------------------


def test_report_has_size_latency_and_memory_columns(light):
    header = next(line for line in light["markdown"].splitlines() if line.startswith("| candidate"))
    for column in ("size (MB)", "batch-1 latency (ms)", "peak RSS estimate (MB)", "peak RSS measured (MB)"):
        assert column in header
    for candidate in light["candidates"]:
        assert candidate["size_mb"] > 0 and candidate["latency_ms"] > 0 and candidate["expected_peak_rss_mb"] > 100


def test_optimize_for_size_picks_the_smallest_candidate_within_the_drop(light):
    floor = light["candidates"][0]["metric"] * (1 - light["settings"]["max_metric_drop"])
    eligible = [c for c in light["candidates"] if c["metric"] >= floor - 1e-12]
    best = by_name(light)[light["best"]]
    assert best["size_mb"] == min(c["size_mb"] for c in eligible)
    assert min(c["size_mb"] for c in light["candidates"]) < best["size_mb"]  # the smallest of all is outside the drop
    assert "smallest candidate on disk" in light["markdown"]
    with open(os.path.join(light["best_dir"], "candidate.json"), encoding="utf-8") as handle:
        assert json.load(handle)["name"] == best["name"]


def test_objectives_share_one_pick_rule():
    from ernie3.cli.pipeline import pick_deployment

    rows = [
        {"name": "float", "metric": 0.9, "throughput": 10, "latency_ms": 5, "size_mb": 100, "expected_peak_rss_mb": 900,
         "peak_rss_mb": 700, "batch_throughput": 10, "batch1_latency_p50_ms": 5},
        {"name": "small", "metric": 0.9, "throughput": 20, "latency_ms": 9, "size_mb": 10, "expected_peak_rss_mb": 800,
         "peak_rss_mb": 650, "batch_throughput": 30, "batch1_latency_p50_ms": 3},
        {"name": "lean", "metric": 0.9, "throughput": 5, "latency_ms": 2, "size_mb": 50, "expected_peak_rss_mb": 600,
         "peak_rss_mb": None, "batch_throughput": 5, "batch1_latency_p50_ms": 8},
        {"name": "tiny-but-wrong", "metric": 0.5, "throughput": 99, "latency_ms": 1, "size_mb": 1,
         "expected_peak_rss_mb": 100, "peak_rss_mb": 100, "batch_throughput": 99, "batch1_latency_p50_ms": 1},
    ]  # fmt: skip
    picks = {goal: pick_best(rows, 0.01, goal)[0]["name"] for goal in ("throughput", "latency", "size", "memory")}
    assert picks == {"throughput": "small", "latency": "lean", "size": "small", "memory": "lean"}
    # the pipeline: the same rule, with its own benchmark's throughput and latency
    assert pick_deployment(rows, 0.01, "latency")[0]["name"] == "small"
    assert pick_deployment(rows, 0.01, "size")[0]["name"] == "small"


def test_measured_peak_rss_of_a_candidate_in_its_own_process(light):
    candidate = by_name(light)["float"]
    measured = measure_peak_rss(Candidate("float", candidate["path"], candidate["model_file"]), 8, 1)
    assert measured is not None and 100 < measured < 4000


def test_openvino_candidates_load_and_are_measured_without_paddle(light):
    """Every OpenVINO candidate (untrimmed and trimmed vocabulary, INT8 embeddings) carries a verified tokenizer
    record, so its predictor and RSS probe load no paddle: its measured peak RSS is far below the float one's."""
    from ernie3.predict import Predictor

    candidates = [c for c in light["candidates"] if c["backend"] == "openvino"]
    assert {"float/openvino-int8", "vocab_pruned/openvino-int8"} <= {c["name"] for c in candidates}
    for candidate in candidates:
        with open(os.path.join(candidate["path"], "ernie3_task.json"), encoding="utf-8") as handle:
            assert json.load(handle)["fast_tokenizer"]["status"] == "verified", candidate["name"]
        assert Predictor(candidate["path"], num_threads=1).paddle_free, candidate["name"]
    paddle_float = by_name(light)["float"]
    heavy = measure_peak_rss(Candidate("float", paddle_float["path"], paddle_float["model_file"]), 8, 1)
    small = by_name(light)["vocab_pruned/openvino-int8"]
    light_rss = measure_peak_rss(Candidate(small["name"], small["path"], small["model_file"], "openvino", "int8"), 8, 1)
    assert light_rss is not None and heavy is not None and light_rss < heavy - 300


def test_a_corpus_adds_its_tokens_and_bad_corpora_fail_in_one_line(tiny_model_dir, tmp_path):
    from ernie3.modeling import load_tokenizer
    from ernie3.vocab import corpus_token_ids, plan_vocabulary

    tokenizer = load_tokenizer(tiny_model_dir)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("鲸鲸鲸\n\n  鲸 鲨\n", encoding="utf-8")
    train = [tokenizer.convert_tokens_to_ids(["球", "队"])]
    plan = plan_vocabulary(tokenizer, [*train, corpus_token_ids(str(corpus), tokenizer)], 9)
    kept = set(tokenizer.convert_ids_to_tokens(plan.kept_ids))
    assert {"球", "队", "鲸", "鲨"} <= kept and len(kept) == plan.size == 9  # 5 special tokens + 4
    tight = plan_vocabulary(tokenizer, [*train, corpus_token_ids(str(corpus), tokenizer)], 6)
    assert "鲸" in tokenizer.convert_ids_to_tokens(tight.kept_ids)  # the most frequent token wins the last place
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(UserError, match="--vocab_corpus: .* is not UTF-8"):
        plan_vocabulary(tokenizer, [corpus_token_ids(str(latin1), tokenizer)], 100)


@pytest.mark.parametrize("extra, message", [
    (["--vocab_corpus", "{tmp}"], "--vocab_corpus is used only with --prune_vocab"),
    (["--prune_vocab", "--vocab_fill", "random"], "--vocab_fill: 'random' is not one of order, none"),
    (["--prune_vocab", "--vocab_corpus", "{tmp}"], "--vocab_corpus: not a file"),
    (["--optimize_for", "beauty"], "--optimize_for: 'beauty' is not one of"),
])  # fmt: skip
def test_bad_light_weight_flags_fail_before_any_work(trained_tnews, tmp_path, extra, message):
    extra = [value.replace("{tmp}", str(tmp_path)) for value in extra]
    with pytest.raises(UserError, match=message):
        compress("seq_cls", compress_argv(trained_tnews, tmp_path / "out", "--strategy", "ptq", *extra))
    assert not os.path.exists(tmp_path / "out")


def test_peak_rss_is_measured_for_the_float_model_and_the_pick_by_default(trained_tnews, tmp_path):
    """A probe costs a process: by default only the reference and the pick (every candidate with --optimize_for
    memory); the others keep the memory plan's estimate."""
    from conftest import sample_file

    from ernie3.compress import run as compress

    report = compress("seq_cls", [
        "--task_name", "tnews", "--model_name_or_path", trained_tnews["best_model_dir"], "--output_dir",
        str(tmp_path / "out"), "--train_file", sample_file("tnews", "train"), "--dev_file", sample_file("tnews", "dev"),
        "--strategy", "ptq", "--algo_list", "hist", "--batch_size_list", "4", "--engines", "paddle",
        "--int8_embeddings", "false", "--timing_rounds", "1",
    ])  # fmt: skip
    measured = {c["name"]: c.get("peak_rss_mb") for c in report["candidates"]}
    assert measured["float"] > 50 and measured[report["best"]] > 50
    assert all(value is None for name, value in measured.items() if name not in ("float", report["best"]))


def test_the_benchmark_compares_a_trimmed_vocabulary_end_to_end_with_the_float_model(light, tmp_path):
    """A trimmed vocabulary splits words as before (the same token counts); without its WordPiece vocabulary it
    splits them into other token counts, and that end-to-end row still has a baseline (the real-data run stopped
    here once)."""
    import shutil

    from ernie3.cli.bench import BASELINE, END_TO_END, run_benchmark
    from ernie3.data import load_examples
    from ernie3.layout import WORDPIECE_VOCAB_FILE
    from ernie3.tasks import get_task

    rows = by_name(light)
    trimmed_dir = rows["vocab_pruned"]["path"]
    resplit_dir = str(tmp_path / "resplit")
    shutil.copytree(trimmed_dir, resplit_dir)
    os.remove(os.path.join(resplit_dir, WORDPIECE_VOCAB_FILE))
    model_file = rows["vocab_pruned"]["model_file"]
    variants = [Candidate(BASELINE, rows["float"]["path"], rows["float"]["model_file"], "paddle", "fp32"),
                Candidate("trimmed", trimmed_dir, model_file, "paddle", "fp32"),
                Candidate("resplit", resplit_dir, model_file, "paddle", "fp32")]
    # a Latin word is letter pieces in the full vocabulary; its letters are not in the Chinese train sample: each
    # piece [UNK] when split as before, the whole word one [UNK] when split with the trimmed vocab.txt alone
    texts = [{**example, "text_a": example["text_a"] + " quixotic wavefunction"}
             for example in load_examples(get_task("tnews"), "dev", DEV)]
    measured = run_benchmark(variants, [4], [16], 1, iterations=1, min_seconds=0.0, vocab_size=SMALL_VOCAB, texts=texts,
                             rounds=1)  # fmt: skip
    end_to_end = {r["variant"]: r for r in measured if r["mode"] == END_TO_END}
    assert end_to_end[BASELINE]["seq_length"] == end_to_end["trimmed"]["seq_length"]
    assert end_to_end[BASELINE]["seq_length"] != end_to_end["resplit"]["seq_length"]
    assert end_to_end["resplit"]["vs_paddle_fp32"] > 0 and end_to_end["trimmed"]["vs_paddle_fp32"] > 0
