"""Each CLUE classification task's record → example → features conversion, on hand-written fixtures."""
import json

import pytest
from conftest import fixture_path

from ernie3.data import load_examples
from ernie3.errors import UserError
from ernie3.tasks import TASKS, get_task


def examples_of(task_name, file_name=None, split="dev"):
    return load_examples(get_task(task_name), split, fixture_path("clue", file_name or f"{task_name}.json"))


def test_pair_tasks_keep_both_sentences():
    examples = examples_of("afqmc")
    assert [(e["text_a"], e["text_b"], e["label"]) for e in examples] == [
        ("花呗怎么还款", "花呗如何还钱", 1),
        ("借呗可以提前还吗", "余额宝收益怎么算", 0),
    ]


def test_single_sentence_tasks_and_label_indices_from_the_task_definition():
    tnews = examples_of("tnews")
    labels = get_task("tnews").labels
    assert [labels[e["label"]] for e in tnews] == ["103", "109"]
    assert tnews[0]["text_b"] is None
    # IFLYTEK's description field is `label_des`; only `label` and `sentence` matter
    iflytek = examples_of("iflytek")
    assert [e["label"] for e in iflytek] == [11, 0]


def test_nli_rows_without_gold_label_are_dropped():
    assert [e["text_a"] for e in examples_of("ocnli")] == ["他在图书馆看书", "会议推迟到明天"]
    cmnli = examples_of("cmnli")
    assert [get_task("cmnli").labels[e["label"]] for e in cmnli] == ["entailment", "neutral"]


def test_csl_joins_keywords_as_first_text_and_abstract_as_second():
    first, second = examples_of("csl")
    assert (first["text_a"], first["text_b"]) == ("注意力机制 文本分类", "本文提出一种基于注意力机制的文本分类方法。")
    assert second["text_a"] == "深度学习" and first["id"] == 3


def test_cluewsc_marks_query_span_and_pronoun():
    texts = [e["text_a"] for e in examples_of("cluewsc2020")]
    assert texts == [
        "_小明_把书借给小红，[他]很大方。",  # pronoun after the query
        "[她]觉得_老师_说得对。",  # pronoun before the query
        "_妈妈_[她]今天很累。",  # pronoun right after the query
    ]
    assert [e["id"] for e in examples_of("cluewsc2020")] == [0, 1, 2]


def test_label_lists_match_paddlenlp_clue_so_online_and_local_data_agree():
    from paddlenlp.datasets.clue import Clue

    for name, config in Clue.BUILDER_CONFIGS.items():
        assert list(TASKS[name].labels) == list(config["labels"]), name


def test_test_split_needs_no_label_and_keeps_ids():
    examples = examples_of("tnews", "tnews_test.json", split="test")
    assert [(e["id"], e["label"]) for e in examples] == [(7, None), (8, None)]


GOOD_RECORDS = {
    "tnews": {"sentence": "体育新闻", "label": "103"},
    "afqmc": {"sentence1": "花呗", "sentence2": "借呗", "label": "1"},
    "csl": {"abst": "摘要", "keyword": ["关键词"], "label": "1"},
    "cluewsc2020": {"text": "小明来了", "label": "true", "target": {"span1_index": 0, "span1_text": "小明", "span2_index": 2, "span2_text": "来"}},
}


@pytest.mark.parametrize(
    "task_name, record, message",
    [
        ("tnews", {"sentence": "体育新闻", "label": "105"}, "unknown label '105' in field 'label'"),
        ("afqmc", {"sentence1": "花呗", "label": "1"}, "missing field 'sentence2'"),
        ("afqmc", {"sentence1": "花呗", "sentence2": "  ", "label": "1"}, "field 'sentence2' is empty"),
        ("tnews", {"sentence": "体育新闻"}, "missing field 'label'"),
        ("tnews", {"sentence": 12, "label": "103"}, "field 'sentence' must be a string"),
        ("csl", {"abst": "摘要", "keyword": "不是列表", "label": "1"}, "field 'keyword' must be a list of strings"),
        (
            "cluewsc2020",
            {"text": "小明来了", "label": "true", "target": {"span1_index": 1, "span1_text": "小明", "span2_index": 0, "span2_text": "小"}},
            "'target.span1_text' ('小明') does not occur at target.span1_index=1",
        ),
    ],
)
def test_bad_records_name_the_file_line_and_field(tmp_path, task_name, record, message):
    path = tmp_path / "bad.json"
    lines = [json.dumps(GOOD_RECORDS[task_name], ensure_ascii=False), json.dumps(record, ensure_ascii=False)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as error:
        load_examples(get_task(task_name), "dev", str(path))
    assert str(error.value).startswith(f"{path}:2: ")
    assert message in str(error.value)


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"sentence": "好", "label": "103"}\n\n{"sentence": "坏", "label": \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"broken.json:3: malformed JSON"):
        load_examples(get_task("tnews"), "train", str(path))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match=r"--train_file: file not found: .*nope.json"):
        load_examples(get_task("tnews"), "train", str(tmp_path / "nope.json"))
    empty = tmp_path / "empty.json"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="holds no usable tnews examples"):
        load_examples(get_task("tnews"), "dev", str(empty))


def test_unknown_task_lists_the_choices():
    with pytest.raises(UserError, match=r"unknown seq_cls task 'tnewz' \(choose one of: afqmc, cluewsc2020, cmnli, csl, iflytek, ocnli, tnews\)"):
        get_task("tnewz", "seq_cls")


def test_over_long_text_is_truncated_to_max_seq_length(tiny_model_dir):
    from paddlenlp.transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = get_task("afqmc")
    example = {"text_a": "很长的句子" * 200, "text_b": "另一个很长的句子" * 100, "label": 1}
    features = task.convert_example(example, tokenizer, max_seq_length=32)
    assert len(features["input_ids"]) == len(features["token_type_ids"]) == 32
    assert features["labels"] == 1
    assert 1 in features["token_type_ids"]  # both texts kept, each shortened


def test_postprocess_gives_label_description_and_probability():
    import numpy as np

    task = get_task("tnews")
    logits = np.zeros((1, task.num_labels))
    logits[0, task.labels.index("103")] = 5.0
    (result,) = task.postprocess(logits)
    assert result["label"] == "103" and result["label_desc"] == "news_sports"
    assert 0.9 < result["score"] < 1.0


@pytest.mark.parametrize("task_name, wrong", [("afqmc", "只有一句"), ("ocnli", ["一", "二", "三"]), ("tnews", ["一句", "两句"])])
def test_raw_input_must_match_the_task_shape(task_name, wrong):
    """A pair task refuses a single text and a single-text task refuses a pair, wherever raw input arrives."""
    from ernie3.tasks import RecordError, get_task

    with pytest.raises(RecordError, match="pairs of texts|single texts"):
        get_task(task_name).example_from_text(wrong)


def test_raw_input_of_the_right_shape():
    from ernie3.tasks import get_task

    assert get_task("afqmc").example_from_text(["花呗怎么还", "花呗如何还款"])["text_b"] == "花呗如何还款"
    assert get_task("tnews").example_from_text("球队赢得冠军")["text_b"] is None


@pytest.mark.parametrize("text, message", [
    ("\u200b\u200d", "text 1 is empty"),           # zero-width only, as whitespace-only
    (" \t\ufeff", "text 1 is empty"),
    ("好\ud800", "lone UTF-16 surrogate .* at character 1"),  # JSON can carry it; no tokenizer can
    ("\u3164\u2800\x07", "text 1 is empty"),  # fillers and controls show nothing either
])  # fmt: skip
def test_invisible_or_invalid_texts_are_refused_like_empty_ones(text, message):
    from ernie3.tasks import RecordError, get_task

    with pytest.raises(RecordError, match=message):
        get_task("tnews").example_from_text(text)
    with pytest.raises(RecordError, match=message.replace("text 1", "the text")):
        get_task("msra_ner").example_from_text(text)


def test_a_utf8_bom_is_accepted_in_json_lines(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes('\ufeff{"label": "100", "sentence": "球队赢得冠军"}\n'.encode("utf-8"))
    assert load_examples(get_task("tnews"), "dev", str(path))[0]["text_a"] == "球队赢得冠军"
