"""CMRC2018: SQuAD-style loading, windows over long contexts, n-best decoding, official EM/F1, bad input, and
fine-tune → export → reload."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, fixture_path, shared_data

from ernie3.data import load_examples
from ernie3.errors import UserError
from ernie3.metrics import cmrc_em, cmrc_f1, cmrc_scores, mixed_segmentation
from ernie3.tasks import get_task
from ernie3.tasks.qa import context_windows, max_context_flags

SAMPLES = os.path.join(REPO_ROOT, "ernie3", "samples", "cmrc2018")
TASK = get_task("cmrc2018")


def sample(split):
    return os.path.join(SAMPLES, f"{split}.json")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from ernie3.modeling import load_tokenizer

    return load_tokenizer(tiny_model_dir)


def small_examples(split="dev"):
    return load_examples(TASK, split, fixture_path("cmrc2018", "small.json"))


def logits_for(encoded, spans):
    """Start/end logits that put the highest score on given (feature, start position, end position) triples."""
    length = max(len(f["input_ids"]) for f in encoded.features)
    start = np.zeros((len(encoded.features), length), dtype=np.float32)
    end = np.zeros_like(start)
    for feature, s, e in spans:
        start[feature, s] += 10.0
        end[feature, e] += 10.0
    return start, end


# -- task definition and loading ------------------------------------------------------------------------------------


def test_task_definition_and_options():
    assert TASK.task_type == "qa" and TASK.metric_name == "f1"
    assert TASK.label_names == ("start_positions", "end_positions")
    assert TASK.online_dataset == ("cmrc2018", None) and TASK.online_split("test") is None
    configured = TASK.with_options(doc_stride=64)
    assert configured.options["doc_stride"] == 64 and TASK.options["doc_stride"] == 128  # the registry is untouched
    assert configured.describe()["options"]["doc_stride"] == 64
    with pytest.raises(ValueError, match="--doc_stride must be a positive integer"):
        TASK.with_options(doc_stride=0)
    with pytest.raises(ValueError, match="unknown qa options: stride"):
        TASK.with_options(stride=1)


def test_squad_style_file_loads_every_question():
    examples = small_examples()
    assert [e["id"] for e in examples] == ["Q_0", "Q_1", "Q_2", "Q_3"]
    assert examples[2]["answers"] == ["3.5万人", "三万五千人"]
    assert examples[2]["answer_starts"] == [51, -1]  # -1: a reference that is not a span (CMRC2018 dev has 200)
    assert examples[1]["context"] == examples[0]["context"]
    assert all(e["answers"] == [] for e in small_examples("test"))  # test split: answers not needed


def test_qa_flags_come_from_config_and_command_line():
    from ernie3.args import parse_arguments

    parsed = parse_arguments(["--task_name", "cmrc2018", "--do_eval"], "qa")
    options = parsed.task.options  # the task's own flags (QAOptions) became its options
    assert (options["doc_stride"], options["max_query_length"], parsed.data.max_seq_length) == (128, 64, 512)
    assert parse_arguments(["--task_name", "cmrc2018", "--doc_stride", "32"], "qa").task.options["doc_stride"] == 32
    with pytest.raises(UserError, match="invalid arguments: --n_best_size must be a positive integer"):
        parse_arguments(["--task_name", "cmrc2018", "--n_best_size", "0"], "qa")
    with pytest.raises(UserError, match="unknown qa task 'tnews'"):
        parse_arguments(["--task_name", "tnews"], "qa")


# -- windows ----------------------------------------------------------------------------------------------------------


def test_windows_cover_the_context_doc_stride_apart():
    assert context_windows(40, 12, 6) == [(0, 12), (6, 12), (12, 12), (18, 12), (24, 12), (30, 10)]
    assert context_windows(10, 12, 6) == [(0, 10)]
    assert context_windows(0, 12, 6) == [(0, 0)]
    assert context_windows(30, 12, 20) == [(0, 12), (12, 12), (24, 6)]  # a stride longer than a window leaves no gap


def test_each_token_is_max_context_in_exactly_one_window():
    windows = context_windows(40, 12, 6)
    flags = max_context_flags(windows)
    for token in range(40):
        owners = [w for w, (start, length) in enumerate(windows) if start <= token < start + length and flags[w][token - start]]
        assert len(owners) == 1, token
    # token 8: 8 left / 3 right in window 0, 2 left / 9 right in window 1 → window 0; token 9 → window 1
    assert flags[0][8] and not flags[1][8 - 6]
    assert flags[1][9 - 6] and not flags[0][9]


def test_an_answer_across_a_window_border_is_labelled_only_in_the_window_that_holds_it(tokenizer):
    context = "甲乙丙丁戊己庚辛壬癸" + "北京大学图书馆" + "子丑寅卯辰巳午未申酉戌亥" * 2
    example = TASK.parse_record(
        {"id": "border", "question": "哪里？", "context": context,
         "answers": [{"text": "北京大学图书馆", "answer_start": 10}]}, with_label=True,
    )  # fmt: skip
    task = TASK.with_options(doc_stride=6, max_query_length=8)
    encoded = task.encode([example], tokenizer, max_seq_length=3 + 3 + 12)  # 3 question tokens, 12 context tokens
    windows = context_windows(len(context), 12, 6)
    assert len(encoded.features) == len(windows) and encoded.example_indices == [0] * len(windows)
    labels = [(f["start_positions"], f["end_positions"]) for f in encoded.features]
    # window 0 = tokens 0-11 cuts the answer (tokens 10-16); window 1 = tokens 6-17 holds it; window 2 starts at 12
    assert labels[0] == (0, 0) and labels[2:] == [(0, 0)] * (len(windows) - 2)
    start, end = labels[1]
    alignment = encoded.alignments[1]
    first = alignment["context_start"]
    assert first == 5  # [CLS] + 3 question tokens + [SEP]
    offsets = alignment["offsets"]
    assert context[offsets[start - first][0] : offsets[end - first][1]] == "北京大学图书馆"
    for feature in encoded.features:
        assert len(feature["input_ids"]) <= 18 and feature["token_type_ids"][first:] == [1] * (len(feature["input_ids"]) - first)


def test_long_questions_are_truncated_and_unusable_settings_rejected(tokenizer):
    example = TASK.parse_record({"id": "q", "question": "问" * 100, "context": "答" * 30}, with_label=False)
    encoded = TASK.with_options(max_query_length=10).encode([example], tokenizer, max_seq_length=32)
    assert encoded.alignments[0]["context_start"] == 12
    with pytest.raises(UserError, match="--max_seq_length 64 leaves no room for the context after --max_query_length 64"):
        TASK.encode([example], tokenizer, max_seq_length=64)


# -- decoding ---------------------------------------------------------------------------------------------------------


def test_n_best_decoding_returns_exact_characters_of_the_original_context(tokenizer):
    examples = small_examples()
    task = TASK.with_options(doc_stride=8, max_query_length=16, max_answer_length=20)
    encoded = task.encode(examples, tokenizer, max_seq_length=40)
    answer = "ERNIE 3.0研究组"
    answer_start = examples[1]["context"].index(answer)
    spans = []
    for row, (example_index, alignment) in enumerate(zip(encoded.example_indices, encoded.alignments)):
        if example_index != 1:
            continue
        first, offsets = alignment["context_start"], alignment["offsets"]
        starts = [i for i, (s, _) in enumerate(offsets) if s == answer_start]
        ends = [i for i, (_, e) in enumerate(offsets) if e == answer_start + len(answer)]
        if starts and ends:
            spans.append((row, first + starts[0], first + ends[0]))
        spans.append((row, 0, 0))  # [CLS] and question tokens are never answers
        spans.append((row, 1, 2))
    assert len([s for s in spans if s[1] > 2]) >= 2  # the answer lies in several windows
    start_logits, end_logits = logits_for(encoded, spans)
    start_logits[:, 0] += 50.0
    results = task.decode(examples, encoded, [start_logits, end_logits])
    result = results[1]
    assert result["answer"] == answer and (result["start"], result["end"]) == (answer_start, answer_start + len(answer))
    assert examples[1]["context"][result["start"] : result["end"]] == result["answer"]
    assert 0.0 < result["score"] <= 1.0
    assert all(r["answer"] == r_context[r["start"] : r["end"]] for r, r_context in
               zip(results, [e["context"] for e in examples]))  # fmt: skip


def test_decoding_respects_max_answer_length_and_trims_whitespace(tokenizer):
    context = "我喜欢ＡＢＣ１２３ 和绿茶。"  # the tokenizer's [UNK] offsets run over the following space
    example = TASK.parse_record({"id": "w", "question": "喜欢什么？", "context": context}, with_label=False)
    encoded = TASK.with_options(max_answer_length=2).encode([example], tokenizer, max_seq_length=96)
    first, offsets = encoded.alignments[0]["context_start"], encoded.alignments[0]["offsets"]
    unk = [i for i, (s, _) in enumerate(offsets) if context[s] == "Ａ"][0]
    start_logits, end_logits = logits_for(encoded, [(0, first + unk, first + unk)])
    start_logits[0, first + unk + 1 :] = -100.0  # no other start worth having
    end_logits[0, first + len(offsets) - 1] = 30.0  # a far better end, but too far after the start
    [result] = TASK.with_options(max_answer_length=2).decode([example], encoded, [start_logits, end_logits])
    assert result["answer"] == "ＡＢＣ１２３" and context[result["start"] : result["end"]] == "ＡＢＣ１２３"


# -- metric: the official CMRC2018 evaluation ---------------------------------------------------------------------------


def test_cmrc_em_and_f1_on_known_cases():
    # punctuation from the script's list is ignored by both EM and F1
    assert cmrc_em(["《红楼梦》"], "红楼梦") == 1 and cmrc_f1(["《红楼梦》"], "红楼梦") == 1.0
    # Chinese characters are segments of their own: 北京 vs 北京大学 → P = 1, R = 1/2
    assert cmrc_em(["北京大学"], "北京") == 0 and cmrc_f1(["北京大学"], "北京") == pytest.approx(2 / 3)
    # English and digit runs stay words; case does not matter
    assert mixed_segmentation("2010年NBA总决赛") == ["2010", "年", "nba", "总", "决", "赛"]
    assert cmrc_f1(["2010年NBA总决赛"], "NBA总决赛") == pytest.approx(2 * 1 * (4 / 6) / (1 + 4 / 6))
    assert cmrc_em(["NBA"], "nba") == 1
    # the longest common *contiguous* run of segments: hello … world shares one segment at a time
    assert cmrc_f1(["hello world"], "hello there world") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    # best over all references
    assert cmrc_f1(["上海", "北京市"], "北京") == pytest.approx(0.8) and cmrc_em(["上海", "北京"], "北京") == 1
    # ASCII commas are not in the script's list: "1,000" and "1000" differ in EM and F1 alike
    assert cmrc_em(["1,000"], "1000") == 0 and cmrc_f1(["1,000"], "1000") == 0.0
    assert cmrc_f1(["3.5万人"], "3.5万") == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert cmrc_f1(["答案"], "") == 0.0


def test_cmrc_scores_are_percentages_and_count_missing_predictions_as_zero():
    references = {"a": ["北京"], "b": ["上海"], "c": ["广州"], "d": ["深圳"]}
    scores = cmrc_scores(references, {"a": "北京", "b": "上海市", "c": "杭州"})
    assert scores["em"] == pytest.approx(25.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8 + 0.5) / 4)
    assert (scores["total"], scores["skipped"]) == (4, 1)


# -- bad input --------------------------------------------------------------------------------------------------------


def squad(qas, context="百川大学是江南省的一所大学，创办于1921年。"):
    return {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}


QA_OK = {"id": "Q_0", "question": "哪一年？", "answers": [{"text": "1921年", "answer_start": 17}]}
WHERE = r"question 'Q_1' \(data\[0\]\.paragraphs\[0\]\.qas\[1\]\)"


@pytest.mark.parametrize(
    "document, message",
    [
        (squad([QA_OK, {**QA_OK, "id": "Q_1", "answers": [{"text": "1921年", "answer_start": 3}]}]),
         WHERE + r": answer 1 '1921年' is not at answer_start=3 \(it occurs at 17\)"),
        (squad([QA_OK, {**QA_OK, "id": "Q_1", "answers": [{"text": "1922年", "answer_start": 17}]}]),
         WHERE + r": answer 1 '1922年' is not at answer_start=17 \(it does not occur in the context\)"),
        (squad([QA_OK, {**QA_OK, "id": "Q_1", "question": "  "}]), WHERE + r": field 'question' is empty"),
        (squad([QA_OK, {**QA_OK, "id": "Q_1", "answers": []}]), WHERE + r": field 'answers' must be a non-empty list"),
        (squad([QA_OK, {"id": "Q_1", "question": "哪一年？"}]), WHERE + r": missing field 'answers'"),
        (squad([QA_OK, {**QA_OK, "id": "Q_1", "answers": [{"text": "1921年"}]}]),
         WHERE + r": answer 1: 'answer_start' must be a character offset \(or -1\), got None"),
        (squad([QA_OK, {**QA_OK, "id": "Q_1", "answers": [{"text": "", "answer_start": 7}]}]),
         WHERE + r": answer 1: 'text' must be a non-empty string"),
        (squad([QA_OK], context=" "), r"question 'Q_0' \(data\[0\]\.paragraphs\[0\]\.qas\[0\]\): field 'context' is empty"),
        (squad([{k: v for k, v in QA_OK.items() if k != "id"}]), r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: missing field 'id'"),
        (squad([QA_OK, {**QA_OK}]), r"question 'Q_0' \(data\[0\]\.paragraphs\[0\]\.qas\[1\]\): duplicate question id"),
        ({"data": [{"paragraphs": [{"context": "x"}]}]}, r"data\[0\]\.paragraphs\[0\]: expected an object with 'context' and a 'qas' list"),
        ({"version": "1"}, r"expected a SQuAD-style JSON object with a 'data' list"),
    ],
)
def test_bad_squad_files_name_the_question(tmp_path, document, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UserError, match=message) as error:
        load_examples(TASK, "train", str(path))
    assert str(error.value).startswith(f"{path}: ")


def test_answer_starts_a_few_characters_off_are_repaired(tmp_path):
    path = tmp_path / "shifted.json"
    path.write_text(json.dumps(squad([{**QA_OK, "answers": [{"text": "1921年", "answer_start": 19}]}])), "utf-8")
    [example] = load_examples(TASK, "train", str(path))
    assert example["answer_starts"] == [17]


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "data": [\n    {"paragraphs": [}\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(UserError, match=rf"{path}:3: malformed JSON"):
        load_examples(TASK, "dev", str(path))
    with pytest.raises(UserError, match="--dev_file: file not found"):
        load_examples(TASK, "dev", str(tmp_path / "missing.json"))


def test_invalid_questions_can_be_skipped_on_request(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(squad([QA_OK, {**QA_OK, "id": "Q_1", "question": ""}]), ensure_ascii=False), "utf-8")
    assert [e["id"] for e in load_examples(TASK, "train", str(path), skip_invalid=True)] == ["Q_0"]


def test_cli_reports_bad_input_in_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps(squad([{**QA_OK, "answers": [{"text": "1921年", "answer_start": 0}]}])), "utf-8")
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "run_qa.py"), "--task_name", "cmrc2018",
         "--model_name_or_path", tiny_model_dir, "--train_file", str(bad), "--do_train"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: question 'Q_0' (data[0].paragraphs[0].qas[0]): answer 1 '1921年' is not at answer_start=0 "
        "(it occurs at 17)"
    )


# -- fine-tune → export → reload --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    from ernie3.train import run

    output_dir = tmp_path_factory.mktemp("cmrc-run")
    return run("qa", [
        "--task_name", "cmrc2018", "--model_name_or_path", tiny_model_dir, "--output_dir", str(output_dir),
        "--train_file", sample("train"), "--dev_file", sample("dev"), "--test_file", sample("dev"),
        "--max_seq_length", "64", "--doc_stride", "24", "--max_query_length", "24", "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64", "--max_steps", "10",
        "--evaluation_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "5", "--save_steps", "5",
        "--logging_steps", "5", "--do_train", "--do_eval", "--do_predict", "--do_export",
    ])  # fmt: skip


def test_pipeline_writes_metrics_submission_and_export(trained):
    assert set(trained["eval"]) >= {"eval_f1", "eval_em"} and 0.0 <= trained["eval"]["eval_f1"] <= 100.0
    with open(trained["predict_file"], encoding="utf-8") as handle:
        submission = json.load(handle)
    dev = load_examples(TASK, "dev", sample("dev"))
    assert list(submission) == [e["id"] for e in dev]
    assert all(isinstance(answer, str) for answer in submission.values())
    with open(os.path.join(trained["export_dir"], "ernie3_task.json"), encoding="utf-8") as handle:
        info = json.load(handle)
    assert info["options"] == {"doc_stride": 24, "max_query_length": 24, "n_best_size": 20, "max_answer_length": 50}


def test_exported_model_matches_the_dynamic_graph_model(trained):
    import paddle
    from paddlenlp.transformers import AutoModelForQuestionAnswering

    from ernie3.predict import Predictor

    predictor = Predictor(trained["export_dir"], batch_size=16)
    assert predictor.task.options["doc_stride"] == 24  # the windows it was trained with
    examples = load_examples(predictor.task, "dev", sample("dev"))[:12]
    encoded = predictor.task.encode(examples, predictor.tokenizer, predictor.max_seq_length)
    assert len(encoded.features) > len(examples)  # several windows per question
    static_start, static_end = predictor.outputs(encoded.features)

    model = AutoModelForQuestionAnswering.from_pretrained(trained["best_model_dir"])
    model.eval()

    def dynamic(batch):
        with paddle.no_grad():
            return [t.numpy() for t in model(paddle.to_tensor(batch["input_ids"]), paddle.to_tensor(batch["token_type_ids"]))]

    dynamic_start, dynamic_end = predictor.outputs(encoded.features, run=dynamic)
    np.testing.assert_allclose(static_start, dynamic_start, atol=1e-4)
    np.testing.assert_allclose(static_end, dynamic_end, atol=1e-4)
    dynamic_results = predictor.task.decode(examples, encoded, [dynamic_start, dynamic_end])
    assert [r["answer"] for r in predictor.predict(examples)] == [r["answer"] for r in dynamic_results]

    context = examples[0]["context"]
    [result] = predictor.predict_texts([{"question": examples[0]["question"], "context": context}])
    assert set(result) >= {"answer", "start", "end", "score"}
    assert context[result["start"] : result["end"]] == result["answer"]


# -- real data (../shared/data) ---------------------------------------------------------------------------------------


def test_real_cmrc2018_dev_loads_and_gold_answers_score_100():
    examples = load_examples(TASK, "dev", shared_data("cmrc2018", "cmrc2018_dev.json"))
    assert len(examples) == 3219
    by_id = {e["id"]: e for e in examples}
    assert by_id["DEV_101_QUERY_3"]["answer_starts"][0] == 174  # the file says 175: repaired, with a warning
    references = {e["id"]: e["answers"] for e in examples}
    scores = cmrc_scores(references, {e["id"]: e["answers"][0] for e in examples})
    assert scores["em"] == 100.0 and scores["f1"] == pytest.approx(100.0)


def test_real_cmrc2018_trial_flaws_are_reported_or_skipped_on_request():
    path = shared_data("cmrc2018", "cmrc2018_trial.json")
    with pytest.raises(UserError, match=r"question 'TRIAL_\d+_QUERY_\d+' \(data\[\d+\]\.paragraphs\[0\]\.qas\[\d+\]\): field 'question' is empty"):
        load_examples(TASK, "train", path)
    assert len(load_examples(TASK, "train", path, skip_invalid=True)) == 1002 - 2  # its 2 empty questions


def official_cmrc_scores(references: dict, predictions: dict) -> tuple[float, float]:
    """The official cmrc2018_evaluate.py (v5), transcribed line by line to Python 3 as the test's oracle:
    its own loops, its own find_lcs matrix, nltk.word_tokenize on non-Chinese runs (Punkt skipped: no data here)."""
    import re

    import nltk

    sp_char = ['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=', '，', '。', '：', '？', '！', '“', '”', '；', '’',
               '《', '》', '……', '·', '、', '「', '」', '（', '）', '－', '～', '『', '』']  # fmt: skip

    def segments(in_str, rm_punc):
        in_str = str(in_str).lower().strip()
        out, temp = [], ""
        for char in in_str:
            if rm_punc and char in sp_char:
                continue
            if re.search("[\u4e00-\u9fa5]", char) or char in sp_char:
                if temp != "":
                    out.extend(nltk.word_tokenize(temp, preserve_line=True))
                    temp = ""
                out.append(char)
            else:
                temp += char
        if temp != "":
            out.extend(nltk.word_tokenize(temp, preserve_line=True))
        return out

    def lcs_length(s1, s2):
        m = [[0] * (len(s2) + 1) for _ in range(len(s1) + 1)]
        best = 0
        for i in range(len(s1)):
            for j in range(len(s2)):
                if s1[i] == s2[j]:
                    m[i + 1][j + 1] = m[i][j] + 1
                    best = max(best, m[i + 1][j + 1])
        return best

    f1 = em = 0.0
    for query_id, answers in references.items():
        prediction = predictions[query_id]
        scores = []
        for answer in answers:
            a, p = segments(answer, True), segments(prediction, True)
            n = lcs_length(a, p)
            scores.append(0 if n == 0 else 2 * (n / len(p)) * (n / len(a)) / (n / len(p) + n / len(a)))
        f1 += max(scores)
        clean = lambda text: "".join(c for c in str(text).lower().strip() if c not in sp_char)  # noqa: E731
        em += int(any(clean(answer) == clean(prediction) for answer in answers))
    return 100.0 * f1 / len(references), 100.0 * em / len(references)


def test_cmrc_scores_equal_the_official_script_on_mixed_text():
    """Dashes (—, –), quotes, contractions and mixed Chinese/English: nltk's own tokenizer, as the official script."""
    with open(fixture_path("cmrc2018", "mixed_predictions.json"), encoding="utf-8") as handle:
        fixture = json.load(handle)
    f1, em = official_cmrc_scores(fixture["references"], fixture["predictions"])
    scores = cmrc_scores(fixture["references"], fixture["predictions"])
    assert scores["f1"] == pytest.approx(f1, abs=1e-3) and scores["em"] == pytest.approx(em, abs=1e-3)
    # nltk's word splitting, which the old hand-written copy got wrong
    assert mixed_segmentation("1997年——2001年") == ["1997", "年", "—", "—", "2001", "年"]
    assert mixed_segmentation("don't 'that") == ["do", "n't", "'", "that"]
    assert mixed_segmentation("″—40") == ["″", "—", "40"]
