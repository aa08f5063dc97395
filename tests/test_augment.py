"""Distillation data augmentation (compress --distill_augment): new inputs from the train examples for the teacher to
label, made by each task type so that what must stay whole (a QA answer, NER's tagged tokens) does."""
import random

import pytest
from conftest import sample_file

from ernie3.augment import (
    AUGMENTED_KEY,
    AugmentationSettings,
    WordAugmenter,
    augmented_features,
    gold_rows,
    mask_tokens,
    training_features,
)
from ernie3.data import load_examples
from ernie3.distill import DistillationArguments, check_augmentation, check_distillation_settings
from ernie3.errors import UserError
from ernie3.tasks import TASKS
from ernie3.tasks.base import IGNORE_INDEX

SETTINGS = AugmentationSettings(copies=3, mask_rate=0.1, replace_rate=0.5, span_rate=0.5, seed=11)


def words_from(texts, settings=SETTINGS):
    augmenter = WordAugmenter(settings, random.Random(settings.seed))
    for text in texts:
        augmenter.observe(text)
    return augmenter


def test_words_are_replaced_by_words_of_the_same_part_of_speech_from_the_texts():
    texts = ["中国足球队赢得冠军", "日本篮球队输掉比赛", "股市今天大涨"]
    augmenter = words_from(texts, AugmentationSettings(1, 0.0, 1.0, 0.0, seed=3))
    pools = {pos: set(words) for pos, words in augmenter.pools.items()}
    for _ in range(20):
        augmented = augmenter.augment(texts[0], False)
        words = [word for word, _ in augmenter.tagger.cut(augmented)]
        # every word of the new text is a word of the texts (none invented), the text is never cut
        assert all(any(word in pool for pool in pools.values()) or word in augmented for word in words)
        assert augmented and len(augmented) >= 4


def test_span_sampling_keeps_a_contiguous_run_of_words_and_never_empties_a_text():
    augmenter = words_from(["华为发布新款手机售价创新低"], AugmentationSettings(1, 0.0, 0.0, 1.0, seed=5))
    original = "华为发布新款手机售价创新低"
    spans = {augmenter.augment(original, True) for _ in range(30)}
    assert all(span and span in original for span in spans) and len(spans) > 3
    assert augmenter.augment(original, False) == original  # not spannable: the text stays whole
    assert augmenter.augment("   ", True) == "   "


def test_masking_touches_text_tokens_only():
    feature = {"input_ids": [1, 10, 11, 12, 2, 0, 0], "token_type_ids": [0] * 7, "labels": 3}
    masked = mask_tokens(feature, 1.0, random.Random(0), unk_id=99, structural={1, 2, 0})
    assert masked["input_ids"] == [1, 99, 99, 99, 2, 0, 0] and masked["labels"] == 3
    assert feature["input_ids"] == [1, 10, 11, 12, 2, 0, 0]  # the original is not changed
    assert mask_tokens(feature, 0.0, random.Random(0), 99, {1, 2, 0}) == feature


def encoder_of(task, tokenizer, length):
    return lambda batch: task.encode(batch, tokenizer, length)


#: a pair task has no shipped samples: a few AFQMC-style records
PAIRS = [{"sentence1": "花呗怎么还款", "sentence2": "花呗如何还钱", "label": "1"},
         {"sentence1": "借呗额度为什么降低了", "sentence2": "蚂蚁借呗可以提前还款吗", "label": "0"},
         {"sentence1": "我的银行卡被冻结了怎么办", "sentence2": "银行卡冻结如何解冻", "label": "1"}]  # fmt: skip


@pytest.mark.parametrize("name, length", [("tnews", 64), ("afqmc", 64), ("msra_ner", 64), ("cmrc2018", 64)])
def test_each_task_type_augments_its_own_examples(name, length, tiny_model_dir):
    from ernie3.modeling import load_tokenizer

    task, tokenizer = TASKS[name], load_tokenizer(tiny_model_dir)
    if name == "cmrc2018":
        task = task.with_options(doc_stride=24, max_query_length=24)
    if name == "afqmc":
        examples = [task.parse_record(record, with_label=True) for record in PAIRS]
    else:
        examples = load_examples(task, "train", sample_file(name, "train"))[:6]
    features = augmented_features(task, examples, encoder_of(task, tokenizer, length), tokenizer, SETTINGS)
    originals = {tuple(f["input_ids"]) for f in task.encode(examples, tokenizer, length).features}
    assert features and all(f[AUGMENTED_KEY] == 1 for f in features)
    assert not originals & {tuple(f["input_ids"]) for f in features}  # every copy differs from every example
    keys = set(task.encode(examples[:1], tokenizer, length).features[0])
    assert all(set(f) == keys | {AUGMENTED_KEY} for f in features)  # what the collator batches
    if task.task_type == "token_cls":
        # every kept word's first piece is read by the distillation loss (a placeholder tag, not IGNORE_INDEX)
        assert all(sum(label != IGNORE_INDEX for label in f["labels"]) >= 1 for f in features)


def test_a_qa_answer_stays_whole_and_in_place():
    augmenter = words_from(["北京是中国的首都，有很多名胜古迹。", "首都在哪里？"], AugmentationSettings(1, 0.0, 0.9, 0.9, seed=1))
    example = {"id": "q1", "question": "首都在哪里？", "context": "北京是中国的首都，有很多名胜古迹。",
               "answers": ["中国的首都"], "answer_starts": [3]}
    for _ in range(20):
        new = TASKS["cmrc2018"].augment_example(example, augmenter.augment)
        start, answer = new["answer_starts"][0], new["answers"][0]
        assert new["context"][start : start + len(answer)] == "中国的首都"


def test_the_same_seed_makes_the_same_copies(tiny_model_dir):
    from ernie3.modeling import load_tokenizer

    task, tokenizer = TASKS["tnews"], load_tokenizer(tiny_model_dir)
    examples = load_examples(task, "train", sample_file("tnews", "train"))[:5]
    make = lambda seed: augmented_features(task, examples, encoder_of(task, tokenizer, 64), tokenizer,  # noqa: E731
                                           AugmentationSettings(2, 0.1, 0.3, 0.3, seed))  # fmt: skip
    assert make(4) == make(4) and make(4) != make(5)


def test_only_train_rows_carry_gold_labels():
    import paddle

    rows = training_features([{"input_ids": [1, 2]}], [{"input_ids": [1, 3], AUGMENTED_KEY: 1}])
    assert [row[AUGMENTED_KEY] for row in rows] == [0, 1]
    batch = {AUGMENTED_KEY: paddle.to_tensor([0, 1, 0, 1])}
    assert gold_rows(batch).tolist() == [0, 2]
    assert gold_rows({}) is None


@pytest.mark.parametrize("flags, message", [
    ({"distill_augment": -1}, "--distill_augment takes 0 to 100"),
    ({"distill_augment": 101}, "--distill_augment takes 0 to 100"),
    ({"distill_augment": 2, "distill_augment_mask": float("nan")}, "--distill_augment_mask is a probability"),
    ({"distill_augment": 2, "distill_augment_span": 1.5}, "--distill_augment_span is a probability"),
    ({"distill_augment": 2, "distill_augment_mask": 0, "distill_augment_span": 0, "distill_augment_replace": 0},
     "every augmentation rate is 0"),
])  # fmt: skip
def test_bad_augmentation_settings_are_one_line_errors(flags, message):
    with pytest.raises(UserError, match=message) as error:
        check_distillation_settings("distill", DistillationArguments(student_size="nano", **flags))
    assert "\n" not in str(error.value)


def test_a_task_that_cannot_augment_says_so():
    from ernie3.tasks import get_task

    check_augmentation(get_task("tnews"), DistillationArguments(student_size="nano", distill_augment=2))
    with pytest.raises(UserError, match="tnews_long .* does not say how its examples are augmented"):
        check_augmentation(get_task("tnews_long"), DistillationArguments(student_size="nano", distill_augment=2))
