"""Token classification (named entity recognition): MSRA_NER."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from ernie3.errors import UserError
from ernie3.files import read_lines
from ernie3.metrics import chunk_scores, tag_entities
from ernie3.tasks.base import (
    IGNORE_INDEX,
    Encoded,
    RecordError,
    RecordLocation,
    Task,
    check_text,
    kind_of,
    soft_kl,
)

#: label of positions the loss and the metric skip: special tokens, padding, word pieces after the first
#: paddlenlp's MSRA format: characters joined by \x02, a TAB, tags joined by \x02
MSRA_SEPARATOR = "\x02"
MSRA_HEADER = "text_a\tlabel"
#: the tag of words the model never saw (cut off by max_seq_length)
OUTSIDE = "O"


class TokenClsTask(Task):
    task_type = "token_cls"
    metric_name = "f1"
    architecture_suffix = "ForTokenClassification"
    sample_flags = ("--max_seq_length", "64")
    augmentable = True
    outputs_per_token = True

    def model_class(self) -> Any:
        from paddlenlp.transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def distillation_loss(self, student_outputs: Sequence[Any], teacher_outputs: Sequence[Any], batch: Mapping[str, Any],
                          temperature: float) -> Any:
        """Per-token KL over the tags, on the tokens that carry a tag (each word's first piece): padding, [CLS],
        [SEP] and later word pieces (IGNORE_INDEX) are never decoded, so they are not distilled either."""
        labels = batch.get("labels")
        mask = labels != IGNORE_INDEX if labels is not None else None
        return soft_kl(student_outputs[0], teacher_outputs[0], temperature, mask)

    def data_collator(self, tokenizer: Any) -> Any:
        from paddlenlp.data import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)

    # -- reading --------------------------------------------------------------------------------------------------

    def read_records(self, path: str, flag: str) -> Iterator[tuple[RecordLocation, Any]]:
        """Sentences of a file in paddlenlp's MSRA format or in CoNLL/BIO format, told apart by content."""
        lines = list(read_lines(path, flag, keep_blank=True))
        content = [(number, line) for number, line in lines if line]
        msra = any(MSRA_SEPARATOR in line for _, line in content) or (
            bool(content) and content[0][1].strip() == MSRA_HEADER
        )
        return read_msra_lines(path, content) if msra else read_conll_lines(path, lines)

    def parse_record(self, record: Mapping[str, Any], with_label: bool) -> Optional[dict]:
        tokens = record.get("tokens")
        if tokens is None:
            raise RecordError("missing field 'tokens'")
        if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) for t in tokens):
            raise RecordError("field 'tokens' must be a list of strings")
        if not tokens:
            raise RecordError("the text is empty")
        check_text("".join(tokens), "the text")
        for position, token in enumerate(tokens):
            if not token:
                raise RecordError(f"token {position + 1} is empty")
        label_ids = None
        if with_label:
            tags = record.get("labels")
            if tags is None:
                raise RecordError("the sentence has no tags")
            if not isinstance(tags, (list, tuple)):
                raise RecordError("field 'labels' must be a list of tags")
            if len(tags) != len(tokens):
                raise RecordError(f"{len(tags)} tags for {len(tokens)} characters; every character needs one tag")
            label_ids = [self.tag_index(tag, position) for position, tag in enumerate(tags)]
        return {"id": record.get("id"), "tokens": list(tokens), "text": "".join(tokens), "labels": label_ids}

    def tag_index(self, tag: Any, position: int) -> int:
        # paddlenlp's online copy holds indices into the same label list; local files hold the tags themselves
        if isinstance(tag, int) and not isinstance(tag, bool):
            if not 0 <= tag < len(self.labels):
                raise RecordError(f"tag index {tag} of token {position + 1} is out of range")
            return tag
        return self.label_index(tag, field=f"labels[{position}]")

    def example_from_text(self, text: Any) -> dict:
        """An example from a raw sentence: each character is a token."""
        if not isinstance(text, str):
            raise RecordError(f"expected a text string, not {kind_of(text)}")
        check_text(text, "the text")
        return {"id": None, "tokens": list(text), "text": text, "labels": None}

    def sample_inputs(self) -> list[Any]:
        return list(SAMPLE_TEXTS)

    def augment_example(self, example: Mapping[str, Any], augment: Callable[[str, bool], str]) -> dict:
        """A sentence of characters is augmented as one text, then split into characters again (words replaced by
        other words change its length); a sentence of longer tokens, token by token. Every token gets a placeholder
        tag (the first label): it marks the token as one the distillation loss reads, the teacher says its tag."""
        tokens = example["tokens"]
        if all(len(token) == 1 for token in tokens):
            new_tokens = [char for char in augment("".join(tokens), True) if not char.isspace()] or list(tokens)
        else:
            new_tokens = [augment(token, False) for token in tokens]
        return {**example, "tokens": new_tokens, "text": "".join(new_tokens), "labels": [0] * len(new_tokens)}

    def metric_summary(self, metrics: Mapping[str, float], prefix: str = "") -> str:
        f1, precision, recall = (metrics[prefix + key] for key in ("f1", "precision", "recall"))
        return f"entity F1 {f1:.4f} (P {precision:.4f}, R {recall:.4f})"

    # -- features -------------------------------------------------------------------------------------------------

    def encode(self, examples: Sequence[Mapping[str, Any]], tokenizer: Any, max_seq_length: int) -> Encoded:
        """One feature per sentence; `alignments[i]["token_positions"][w]` is the input position of word w."""
        pieces_of: dict[str, list[str]] = {}  # MSRA repeats the same few thousand characters
        features, alignments = [], []
        for example in examples:
            feature, positions = self._encode_one(example, tokenizer, max_seq_length, pieces_of)
            features.append(feature)
            alignments.append({"token_positions": positions})
        return Encoded(features, list(range(len(examples))), alignments)

    def convert_example(self, example: Mapping[str, Any], tokenizer: Any, max_seq_length: int) -> dict:
        return self._encode_one(example, tokenizer, max_seq_length, {})[0]

    def _encode_one(
        self, example: Mapping[str, Any], tokenizer: Any, max_seq_length: int, pieces_of: dict
    ) -> tuple[dict, list[int]]:
        """Tokenize word by word: the first piece of each word carries its label, the other pieces IGNORE_INDEX.

        Words that do not fit into max_seq_length are left out (truncation); decoding tags them O.
        """
        budget = max_seq_length - tokenizer.num_special_tokens_to_add()
        pieces: list[str] = []
        piece_labels: list[int] = []
        positions: list[int] = []  # input position of each kept word's first piece; [CLS] is position 0
        word_labels = example.get("labels")
        for index, word in enumerate(example["tokens"]):
            if word not in pieces_of:
                # characters the tokenizer drops (spaces, control characters) still get one position and a tag
                pieces_of[word] = tokenizer.tokenize(word) or [tokenizer.unk_token]
            word_pieces = pieces_of[word]
            if len(pieces) + len(word_pieces) > budget:
                break
            positions.append(len(pieces) + 1)
            pieces.extend(word_pieces)
            if word_labels is not None:
                piece_labels.extend([word_labels[index]] + [IGNORE_INDEX] * (len(word_pieces) - 1))
        ids = tokenizer.convert_tokens_to_ids(pieces)
        feature = {
            "input_ids": tokenizer.build_inputs_with_special_tokens(ids),
            "token_type_ids": tokenizer.create_token_type_ids_from_sequences(ids),
        }
        if word_labels is not None:
            feature["labels"] = [IGNORE_INDEX] + piece_labels + [IGNORE_INDEX]
        return feature, positions

    # -- outputs --------------------------------------------------------------------------------------------------

    def decode(self, examples: Sequence[Mapping[str, Any]], encoded: Encoded, outputs: Sequence[np.ndarray]) -> list[dict]:
        """Per sentence: a tag per character and the entities, with character offsets into the original text."""
        logits = outputs[0]
        results = []
        for feature_index, example_index in enumerate(encoded.example_indices):
            example = examples[example_index]
            positions = encoded.alignments[feature_index]["token_positions"]
            predicted = np.asarray(logits[feature_index])[positions].argmax(axis=-1) if positions else []
            tags = [self.labels[int(k)] for k in predicted] + [OUTSIDE] * (len(example["tokens"]) - len(positions))
            results.append({"tags": tags, "entities": entities_in_text(example["tokens"], tags)})
        return results

    def score(self, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> dict:
        """Entity precision/recall/F1 against the full gold tags: entities cut off by truncation count as missed."""
        gold = [[self.labels[k] for k in example["labels"]] for example in examples]
        return chunk_scores(gold, [result["tags"] for result in results])

    def class_report(self, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> list[dict]:
        """Per entity type, entity-level (seqeval's classification report)."""
        from seqeval.metrics import classification_report

        gold = [[self.labels[k] for k in example["labels"]] for example in examples]
        report = classification_report(gold, [list(r["tags"]) for r in results], output_dict=True, zero_division=0)
        return [{"class": kind, "precision": float(row["precision"]), "recall": float(row["recall"]),
                 "f1": float(row["f1-score"]), "support": int(row["support"])}
                for kind, row in report.items() if not kind.endswith(" avg")]  # fmt: skip

    def answer(self, output: dict) -> Any:
        return tuple((entity["type"], entity["start"], entity["end"]) for entity in output["entities"])

    def prediction_record(self, position: int, example: Mapping[str, Any], result: Mapping[str, Any]) -> dict:
        example_id = example.get("id") if example.get("id") is not None else position
        return {"id": example_id, "text": example["text"], "entities": result["entities"]}


def entities_in_text(tokens: Sequence[str], tags: Sequence[str]) -> list[dict]:
    """Entities of a tagged token sequence as {type, text, start, end}: text == "".join(tokens)[start:end]."""
    starts = np.concatenate([[0], np.cumsum([len(token) for token in tokens])]).tolist()
    text = "".join(tokens)
    return [
        {"type": kind, "text": text[starts[first] : starts[last]], "start": starts[first], "end": starts[last]}
        for kind, first, last in tag_entities(tags)
    ]


def read_msra_lines(path: str, lines: Sequence[tuple[int, str]]) -> Iterator[tuple[int, dict]]:
    """paddlenlp's MSRA format; an optional `text_a<TAB>label` header (ERNIE 1.0's split) is skipped."""
    if lines and lines[0][1].strip() == MSRA_HEADER:
        lines = lines[1:]
    for sentence, (line_number, line) in enumerate(lines):
        columns = line.split("\t")
        if len(columns) > 2:
            raise UserError(
                f"{path}:{line_number}: expected characters joined by \\x02, a TAB and tags joined by \\x02; "
                f"found {len(columns)} TAB-separated columns"
            )
        record = {"id": sentence, "tokens": columns[0].split(MSRA_SEPARATOR)}
        if len(columns) == 2:
            record["labels"] = columns[1].split(MSRA_SEPARATOR)
        yield line_number, record


def read_conll_lines(path: str, lines: Sequence[tuple[int, str]]) -> Iterator[tuple[int, dict]]:
    """CoNLL/BIO: one `token<TAB or space>tag` per line, a blank line after each sentence; tags optional (test)."""
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    sentences = 0
    for line_number, line in list(lines) + [(0, "")]:
        if not line or line.startswith("-DOCSTART-"):
            if tokens:
                record = {"id": sentences, "tokens": tokens}
                if tags:
                    record["labels"] = tags
                sentences += 1
                yield first_line, record
            tokens, tags = [], []
            continue
        # a TAB separates the columns when present, so that a space can itself be a token
        columns = line.split("\t") if "\t" in line else line.split()
        if len(columns) > 2 or not columns[0]:
            raise UserError(f"{path}:{line_number}: expected 'token<TAB>tag' (CoNLL/BIO format), got {line!r}")
        if tokens and (len(columns) == 2) != bool(tags):
            raise UserError(f"{path}:{line_number}: some tokens of this sentence have a tag and some do not")
        if not tokens:
            first_line = line_number
        tokens.append(columns[0])
        if len(columns) == 2:
            tags.append(columns[1].strip())


# Raw inputs the load test sends by default: made-up MSRA-like sentences.
SAMPLE_TEXTS = (
    "张三在北京大学读书", "中国外交部发言人今天在记者会上表示", "李明从上海出发前往广州参加会议",
    "联合国秘书长访问了日内瓦", "新华社记者在西藏拉萨报道", "王芳是清华大学的教授",
)  # fmt: skip

# Label order follows paddlenlp's msra_ner dataset, so online (label index) and local (tag text) data agree.
MSRA_NER_LABELS = ("B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O")

# paddlenlp's msra_ner has train and test splits only; ERNIE 3.0's recipe evaluates on test.
TASKS = (
    TokenClsTask("msra_ner", MSRA_NER_LABELS, ("msra_ner", None), online_splits={"dev": "test"}),
)
