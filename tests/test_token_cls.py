"""MSRA_NER: file formats, label alignment, truncation, chunk metric, bad input, fine-tune → export → reload."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, fixture_path, shared_data

from ernie3.data import load_examples, with_label_names
from ernie3.errors import UserError
from ernie3.metrics import chunk_scores, tag_entities
from ernie3.tasks import get_task
from ernie3.tasks.token_cls import IGNORE_INDEX, MSRA_NER_LABELS, entities_in_text

SAMPLES = os.path.join(REPO_ROOT, "ernie3", "samples", "msra_ner")
TASK = get_task("msra_ner")


def sample(split):
    return os.path.join(SAMPLES, f"{split}.tsv")


def tags_of(example):
    return [TASK.labels[k] for k in example["labels"]]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from ernie3.modeling import load_tokenizer

    return load_tokenizer(tiny_model_dir)


def perfect_logits(encoded, tag_ids_per_example):
    """Logits whose argmax is the given tag at every encoded word position."""
    length = max(len(f["input_ids"]) for f in encoded.features)
    logits = np.zeros((len(encoded.features), length, len(MSRA_NER_LABELS)), dtype=np.float32)
    for row, (alignment, tag_ids) in enumerate(zip(encoded.alignments, tag_ids_per_example)):
        for word, position in enumerate(alignment["token_positions"]):
            logits[row, position, tag_ids[word]] = 10.0
    return logits


# -- task definition and file formats -------------------------------------------------------------------------------


def test_task_is_registered_with_paddlenlp_label_order():
    from paddlenlp.datasets.msra_ner import MsraNer

    assert TASK.task_type == "token_cls" and TASK.metric_name == "f1"
    assert list(TASK.labels) == MsraNer().get_labels()
    assert TASK.online_dataset == ("msra_ner", None)
    assert TASK.online_split("dev") == "test"  # paddlenlp's msra_ner has no dev split


def test_msra_and_conll_files_give_the_same_examples():
    msra = load_examples(TASK, "dev", fixture_path("msra_ner", "msra_with_header.tsv"))  # header skipped
    conll_tab = load_examples(TASK, "dev", fixture_path("msra_ner", "conll_tab.txt"))
    conll_space = load_examples(TASK, "dev", fixture_path("msra_ner", "conll_space.txt"))  # -DOCSTART-, blank runs
    assert len(msra) == 3
    for other in (conll_tab, conll_space):
        assert [(e["tokens"], e["labels"]) for e in other] == [(e["tokens"], e["labels"]) for e in msra]
    assert msra[0]["text"] == "张三和李四在北京见面。"
    assert tags_of(msra[2]) == ["B-LOC", "I-LOC", "B-LOC", "I-LOC"]


def test_test_split_needs_no_tags_and_ignores_present_ones():
    untagged = load_examples(TASK, "test", fixture_path("msra_ner", "msra_no_tags.tsv"))
    tagged = load_examples(TASK, "test", fixture_path("msra_ner", "msra_with_header.tsv"))
    assert [e["text"] for e in untagged] == [e["text"] for e in tagged]
    assert all(e["labels"] is None for e in untagged + tagged)


def test_online_records_with_label_indices_are_read_back_as_tags():
    record = with_label_names({"tokens": ["北", "京"], "labels": [4, 5]}, list(MSRA_NER_LABELS))
    assert record["labels"] == ["B-LOC", "I-LOC"]
    assert TASK.parse_record({"tokens": ["北", "京"], "labels": [4, 5]}, with_label=True)["labels"] == [4, 5]


# -- features -------------------------------------------------------------------------------------------------------


def test_labels_are_aligned_to_the_first_piece_of_each_word(tokenizer):
    # a word the tokenizer splits into pieces, a space it would drop, and plain characters
    example = TASK.parse_record({"tokens": ["王", "hello", " ", "京"], "labels": ["B-PER", "B-ORG", "O", "B-LOC"]}, True)
    encoded = TASK.encode([example], tokenizer, max_seq_length=32)
    feature, positions = encoded.features[0], encoded.alignments[0]["token_positions"]
    pieces = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert pieces[0] == tokenizer.cls_token and pieces[-1] == tokenizer.sep_token
    assert pieces[positions[1] : positions[2]] == tokenizer.tokenize("hello")  # several pieces
    assert pieces[positions[2]] == tokenizer.unk_token  # a dropped character still gets a position
    index = {tag: i for i, tag in enumerate(MSRA_NER_LABELS)}
    expected = [IGNORE_INDEX] * len(pieces)
    for word, tag in enumerate(["B-PER", "B-ORG", "O", "B-LOC"]):
        expected[positions[word]] = index[tag]
    assert feature["labels"] == expected  # special tokens and later pieces: IGNORE_INDEX
    assert len(feature["labels"]) == len(feature["input_ids"]) == len(feature["token_type_ids"])


def test_collator_pads_labels_with_the_ignore_index(tokenizer):
    examples = load_examples(TASK, "dev", fixture_path("msra_ner", "msra_with_header.tsv"))
    features = TASK.encode(examples, tokenizer, 32).features
    batch = TASK.data_collator(tokenizer)(features)
    labels = batch["labels"].numpy()
    assert labels.shape == tuple(batch["input_ids"].shape)
    assert (labels[2, len(features[2]["labels"]) :] == IGNORE_INDEX).all()  # the 4-character sentence is padded


def test_long_sentences_are_truncated_and_the_cut_off_part_is_tagged_o(tokenizer):
    text = "张三在北京" * 100  # 500 characters
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"] * 100
    example = TASK.parse_record({"tokens": list(text), "labels": tags}, with_label=True)
    encoded = TASK.encode([example], tokenizer, max_seq_length=16)
    assert len(encoded.features[0]["input_ids"]) == 16
    assert len(encoded.alignments[0]["token_positions"]) == 14
    result = TASK.decode([example], encoded, [perfect_logits(encoded, [example["labels"]])])[0]
    assert len(result["tags"]) == 500
    assert result["tags"][:14] == tags[:14] and set(result["tags"][14:]) == {"O"}


# -- metric ---------------------------------------------------------------------------------------------------------


def test_chunk_scores_on_known_cases():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O"]]
    assert chunk_scores(gold, gold) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    # one wrong type, one missed entity: 1 of 2 predicted correct, 1 of 3 gold found
    predicted = [["B-PER", "I-PER", "O", "B-ORG", "I-ORG"], ["O", "O", "O", "O"]]
    scores = chunk_scores(gold, predicted)
    assert scores["precision"] == pytest.approx(1 / 2) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert chunk_scores([["O", "O"]], [["O", "O"]])["f1"] == 0.0  # nothing to find, nothing found


def test_adjacent_entities_of_one_type_stay_separate():
    gold = [["B-LOC", "I-LOC", "B-LOC", "I-LOC"]]  # 中国 | 北京
    assert tag_entities(gold[0]) == [("LOC", 0, 2), ("LOC", 2, 4)]
    merged = [["B-LOC", "I-LOC", "I-LOC", "I-LOC"]]  # one 4-character entity: both gold entities missed
    assert chunk_scores(gold, merged) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # seqeval's rule: an I- tag that does not continue an entity starts one
    assert tag_entities(["O", "I-PER", "I-PER", "I-LOC"]) == [("PER", 1, 3), ("LOC", 3, 4)]


def test_chunk_scores_agree_with_seqeval():
    from seqeval.metrics import f1_score, precision_score, recall_score

    rng = np.random.default_rng(0)
    gold = [list(rng.choice(MSRA_NER_LABELS, size=rng.integers(1, 30))) for _ in range(50)]
    predicted = [[tag if rng.random() < 0.7 else str(rng.choice(MSRA_NER_LABELS)) for tag in s] for s in gold]
    scores = chunk_scores(gold, predicted)
    assert scores["precision"] == pytest.approx(precision_score(gold, predicted))
    assert scores["recall"] == pytest.approx(recall_score(gold, predicted))
    assert scores["f1"] == pytest.approx(f1_score(gold, predicted))


def test_entities_cut_by_truncation_count_as_missed(tokenizer):
    # 赵 钱 孙 | 在 上 海 市: the LOC 上海市 starts before the cut at 5 characters and ends after it
    example = TASK.parse_record(
        {"tokens": list("赵钱孙在上海市"), "labels": ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"]}, True
    )
    encoded = TASK.encode([example], tokenizer, max_seq_length=5 + 2)
    result = TASK.decode([example], encoded, [perfect_logits(encoded, [example["labels"]])])[0]
    assert result["entities"] == [{"type": "PER", "text": "赵钱孙", "start": 0, "end": 3},
                                  {"type": "LOC", "text": "上", "start": 4, "end": 5}]  # fmt: skip
    # scored against the full gold tags: PER found, the cut LOC missed, and its stub is a false positive
    assert TASK.score([example], [result]) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_entities_carry_character_offsets_of_the_original_text():
    tokens = ["在", "New", "York", "见", "李", "雷"]  # multi-character tokens shift the offsets
    tags = ["O", "B-LOC", "I-LOC", "O", "B-PER", "I-PER"]
    entities = entities_in_text(tokens, tags)
    text = "".join(tokens)
    assert entities == [{"type": "LOC", "text": "NewYork", "start": 1, "end": 8},
                        {"type": "PER", "text": "李雷", "start": 9, "end": 11}]  # fmt: skip
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)


# -- bad input ------------------------------------------------------------------------------------------------------

MSRA_LINE = "\x02".join("北京") + "\t" + "\x02".join(["B-LOC", "I-LOC"])


@pytest.mark.parametrize(
    "content, message",
    [
        (MSRA_LINE + "\n" + "\x02".join("上海") + "\tB-LOC\n", r":2: 1 tags for 2 characters"),
        (MSRA_LINE + "\n" + "\x02".join("上海") + "\tB-LOC\x02I-CITY\n", r":2: unknown label 'I-CITY'"),
        (MSRA_LINE + "\n" + "\x02".join("上海") + "\n", r":2: the sentence has no tags"),
        (MSRA_LINE + "\n" + "北\x02\x02京\tO\x02O\x02O\n", r":2: token 2 is empty"),
        (MSRA_LINE + "\n \x02 \tO\x02O\n", r":2: the text is empty"),
        (MSRA_LINE + "\tO\n", r":1: expected characters joined by \\x02, a TAB and tags"),
        ("北\tB-LOC\n京\tI-LOC\n\n上\tB-LOC\n海\tI-XXX\n", r":4: unknown label 'I-XXX' in field 'labels\[1\]'"),
        ("北\tB-LOC\n京\tI-LOC\tx\n", r":2: expected 'token<TAB>tag'"),
        ("北\tB-LOC\n京\n", r":2: some tokens of this sentence have a tag and some do not"),
        ("", r"holds no usable msra_ner examples"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as error:
        load_examples(TASK, "train", str(path))
    assert str(path) in str(error.value)


def test_invalid_records_can_be_skipped_on_request(tmp_path):
    path = tmp_path / "mixed.tsv"
    path.write_text(MSRA_LINE + "\n" + "\x02".join("上海") + "\tB-LOC\n" + MSRA_LINE + "\n", encoding="utf-8")
    assert len(load_examples(TASK, "train", str(path), skip_invalid=True)) == 2


def test_cli_reports_bad_input_in_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "train.tsv"
    bad.write_text(MSRA_LINE + "\n" + "\x02".join("上海") + "\tB-LOC\n", encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "run_token_cls.py"), "--task_name", "msra_ner",
         "--model_name_or_path", tiny_model_dir, "--train_file", str(bad), "--do_train"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1] == f"error: {bad}:2: 1 tags for 2 characters; every character needs one tag"


# -- fine-tune → export → reload ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    from ernie3.train import run

    output_dir = tmp_path_factory.mktemp("msra-run")
    return run("token_cls", [
        "--task_name", "msra_ner", "--model_name_or_path", tiny_model_dir, "--output_dir", str(output_dir),
        "--train_file", sample("train"), "--dev_file", sample("dev"), "--test_file", sample("test"),
        "--max_seq_length", "48", "--learning_rate", "1e-3", "--per_device_train_batch_size", "16",
        "--max_steps", "12", "--evaluation_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "6",
        "--save_steps", "6", "--logging_steps", "6", "--do_train", "--do_eval", "--do_predict", "--do_export",
    ])  # fmt: skip


def test_pipeline_writes_metrics_entity_predictions_and_export(trained):
    assert set(trained["eval"]) >= {"eval_precision", "eval_recall", "eval_f1"}
    with open(os.path.join(trained["best_model_dir"], "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    assert config["architectures"] == ["ErnieForTokenClassification"] and config["id2label"]["0"] == "B-PER"
    with open(trained["predict_file"], encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    texts = [line.rstrip("\n").split("\t")[0].replace("\x02", "") for line in open(sample("test"), encoding="utf-8")]
    assert [line["text"] for line in lines] == texts
    for line in lines:
        for entity in line["entities"]:
            assert line["text"][entity["start"] : entity["end"]] == entity["text"]
            assert entity["type"] in ("PER", "ORG", "LOC")


def test_exported_model_matches_the_dynamic_graph_model(trained):
    import paddle
    from paddlenlp.transformers import AutoModelForTokenClassification

    from ernie3.predict import Predictor
    from ernie3.tasks.base import output_list

    predictor = Predictor(trained["export_dir"], batch_size=8)
    examples = load_examples(predictor.task, "dev", sample("dev"))[:20]
    encoded = predictor.task.encode(examples, predictor.tokenizer, predictor.max_seq_length)
    static_logits = predictor.outputs(encoded.features)[0]

    model = AutoModelForTokenClassification.from_pretrained(trained["best_model_dir"])
    model.eval()

    def dynamic(batch):
        with paddle.no_grad():
            return [model(paddle.to_tensor(batch["input_ids"]), paddle.to_tensor(batch["token_type_ids"])).numpy()]

    dynamic_logits = predictor.outputs(encoded.features, run=dynamic)[0]
    np.testing.assert_allclose(static_logits, dynamic_logits, atol=1e-4)
    assert predictor.predict(examples) == predictor.task.decode(examples, encoded, output_list(dynamic_logits))

    [result] = predictor.predict_texts(["李晓红昨天在杭州参观了蓝海集团。"])
    assert len(result["tags"]) == len("李晓红昨天在杭州参观了蓝海集团。")
    assert all("李晓红昨天在杭州参观了蓝海集团。"[e["start"] : e["end"]] == e["text"] for e in result["entities"])


# -- real data (../shared/data) ---------------------------------------------------------------------------------------


def test_real_msra_test_split_loads_and_gold_tags_score_100():
    examples = load_examples(TASK, "dev", shared_data("msra_ner", "test.tsv"))
    assert len(examples) == 3442
    gold = [tags_of(e) for e in examples]
    assert chunk_scores(gold, gold)["f1"] == 1.0
    entity_counts = {}
    for tags in gold:
        for kind, _, _ in tag_entities(tags):
            entity_counts[kind] = entity_counts.get(kind, 0) + 1
    assert entity_counts == {"LOC": 2886, "ORG": 1331, "PER": 1973}  # the counts SOURCES.md gives


def test_real_conll_copy_and_ernie_split_with_header_load():
    conll = load_examples(TASK, "dev", shared_data("msra_ner", "msra_test_bio.txt"))
    msra = load_examples(TASK, "dev", shared_data("msra_ner", "test.tsv"))
    assert [(e["tokens"], e["labels"]) for e in conll] == [(e["tokens"], e["labels"]) for e in msra]
    assert len(load_examples(TASK, "dev", shared_data("msra_ner", "ernie1.0_split", "dev.tsv"))) == 2318
