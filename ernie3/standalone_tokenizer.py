"""paddlenlp's ErnieTokenizer without paddlenlp: built from a model directory's own tokenizer files, for predictors
that run OpenVINO or ONNX Runtime models and so need nothing of paddle (issue 20: `import paddlenlp.transformers`
alone peaks at ~570 MB RSS, a small INT8 student's whole predictor far less).

Tokens come from the Rust WordPiece of ernie3/fast_tokenizer.py; special tokens, truncation (paddlenlp 2.8.1's
longest_first), offsets of texts with unknown tokens and padding are paddlenlp's own rules, ported. It is used only
for a model directory whose task record says it was verified against paddlenlp's tokenizer when the model was written
(`verify_model_tokenizer`, the "fast_tokenizer" record), and only while its tokenizer files are the ones verified.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import unicodedata
import warnings
from typing import Any, Optional, Sequence, Union

import numpy as np

from ernie3.errors import UserError
from ernie3.fast_tokenizer import FastUnavailable, build_rust_tokenizer, wordpiece_ids
from ernie3.layout import WORDPIECE_VOCAB_FILE
from ernie3.vocab import attach_wordpiece_vocabulary, read_wordpiece_vocabulary

#: the files paddlenlp's AutoTokenizer reads from a model directory (the verification record names their digests)
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   WORDPIECE_VOCAB_FILE)  # fmt: skip
#: ErnieTokenizer's special-token arguments and their defaults
SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "mask_token": "[MASK]"}  # fmt: skip
# tokenizer_config.json keys that change nothing here, or only what the checks below pin down
_KNOWN_CONFIG = {"do_lower_case", "tokenizer_class", "special_tokens_map_file", "model_max_length", "padding_side",
                 "truncation_side", "name_or_path", "init_inputs", *SPECIAL_TOKENS}  # fmt: skip


def tokenizer_digests(model_dir: str) -> dict[str, str]:
    """sha256 of each tokenizer file present in the directory: what a verification record is valid for."""
    digests = {}
    for name in TOKENIZER_FILES:
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                digests[name] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def _json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError) as exc:
        raise FastUnavailable(f"{os.path.basename(path)} is not readable JSON ({exc})") from None
    if not isinstance(value, dict):
        raise FastUnavailable(f"{os.path.basename(path)} is not a JSON object")
    return value


def read_tokenizer_files(model_dir: str) -> dict:
    """What paddlenlp's AutoTokenizer.from_pretrained(model_dir) builds, read from the same files; FastUnavailable
    for anything beyond a plain ErnieTokenizer (other classes, added tokens, AddedToken options, a vocab elsewhere)."""
    config = _json(os.path.join(model_dir, "tokenizer_config.json"))
    unknown = sorted(set(config) - _KNOWN_CONFIG)
    if unknown:
        raise FastUnavailable(f"tokenizer_config.json sets {unknown[0]}, which the standalone tokenizer does not read")
    if config.get("tokenizer_class") != "ErnieTokenizer":
        raise FastUnavailable(f"tokenizer class {config.get('tokenizer_class')!r} is not ErnieTokenizer")
    for side in ("padding_side", "truncation_side"):
        if config.get(side, "right") != "right":
            raise FastUnavailable(f"{side} {config[side]!r}")
    if _json(os.path.join(model_dir, "added_tokens.json")):
        raise FastUnavailable("added tokens beyond the vocabulary")
    specials = {name: config.get(name, default) for name, default in SPECIAL_TOKENS.items()}
    # from_pretrained sets each entry of special_tokens_map.json on the tokenizer after building it
    for name, value in _json(os.path.join(model_dir, "special_tokens_map.json")).items():
        if name not in SPECIAL_TOKENS:
            raise FastUnavailable(f"special token {name} in special_tokens_map.json")
        specials[name] = value
    if not all(isinstance(value, str) and value for value in specials.values()):
        raise FastUnavailable("a special token that is not a plain string")
    # paddlenlp's load_vocabulary: one token a line (text mode: \r\n and \r end lines too), a later duplicate's id wins
    token_to_idx: dict[str, int] = {}
    with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            token_to_idx[line.rstrip("\n")] = index
    missing = [token for token in specials.values() if token not in token_to_idx]
    if missing:
        raise FastUnavailable(f"special token {missing[0]} is not in the vocabulary")
    lower = bool(config.get("do_lower_case", True))
    try:
        pieces = read_wordpiece_vocabulary(model_dir)
    except UserError as exc:
        raise FastUnavailable(str(exc)) from None
    return {
        "vocab": token_to_idx,
        "wordpiece_vocab": wordpiece_ids(token_to_idx, pieces, specials["unk_token"]),
        "unk_token": specials["unk_token"],
        "max_input_chars_per_word": 100,  # ErnieTokenizer's WordpieceTokenizer default (not configurable)
        "lowercase": lower,
        "strip_accents": lower,  # BasicTokenizer(strip_accents=None): accents go with lower-casing
        "special_tokens": sorted(set(specials.values())),
        "specials": specials,
        "model_max_length": config.get("model_max_length"),
    }


class StandaloneErnieTokenizer:
    """The part of paddlenlp's ErnieTokenizer that the tasks and the Predictor use, without paddlenlp."""

    padding_side = truncation_side = "right"
    pad_token_type_id = 0
    model_input_names = ["input_ids", "token_type_ids"]

    def __init__(self, model_dir: str):
        settings = read_tokenizer_files(model_dir)
        self._rust = build_rust_tokenizer(settings)
        self.vocab: dict[str, int] = settings["vocab"]
        self._id_to_token = {index: token for token, index in self.vocab.items()}
        self.do_lower_case: bool = settings["lowercase"]
        self._strip_accents: bool = settings["strip_accents"]
        for name, token in settings["specials"].items():
            setattr(self, name, token)
            setattr(self, name + "_id", self.vocab[token])
        self.all_special_tokens = list(dict.fromkeys(settings["specials"].values()))
        self.model_max_length = settings["model_max_length"]

    # -- vocabulary ----------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def __len__(self) -> int:
        return len(self._id_to_token)

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str], None]) -> Any:
        if tokens is None:
            return None
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        return [self.vocab.get(token, self.unk_token_id) for token in tokens]

    def convert_ids_to_tokens(self, ids: Union[int, Sequence[int]]) -> Any:
        if isinstance(ids, int):
            return self._id_to_token[ids]
        return [self._id_to_token[int(index)] for index in ids]

    # -- tokens --------------------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        return self._rust.encode(text, add_special_tokens=False).tokens

    def text_ids(self, text: str) -> list[int]:
        """Token ids of a text without special tokens (= convert_tokens_to_ids(tokenize(text)))."""
        return self._rust.encode(text, add_special_tokens=False).ids

    def get_offset_mapping(self, text: str, split_tokens: Optional[list[str]] = None) -> list[tuple[int, int]]:
        """Each token's [start, end) character span in `text`, as paddlenlp gives them."""
        encoding = self._rust.encode(text, add_special_tokens=False)
        if self.unk_token_id not in encoding.ids:
            return [tuple(span) for span in encoding.offsets]
        return self._searched_offsets(text, encoding.tokens)

    def _searched_offsets(self, text: str, split_tokens: list[str]) -> list[tuple[int, int]]:
        """paddlenlp 2.8.1's _get_bert_like_offset_mapping, ported as is: it finds each token by searching the
        normalized text, which places unknown tokens differently from the Rust offsets."""
        removed = _is_removed
        normalized_text, char_mapping = "", []
        for i, ch in enumerate(text):
            if self.do_lower_case:
                ch = ch.lower()
            if self._strip_accents:
                ch = "".join(c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn")
            ch = "".join(c for c in ch if not removed(ord(c)))
            normalized_text += ch
            char_mapping.extend([i] * len(ch))
        text, offset = normalized_text, 0
        spans = []
        for index, token in enumerate(split_tokens):
            if token[:2] == "##":
                token = token[2:]
            if token in self.all_special_tokens:
                token = token.lower() if self.do_lower_case else token
            if "σ" in token or "ς" in token:
                start = text[offset:].replace("ς", "σ").index(token.replace("ς", "σ")) + offset
            elif token not in text[offset:]:
                # consecutive unknown tokens, e.g. ['好', '[UNK]', '[UNK]', 'good']
                if index < len(split_tokens) - 1 and split_tokens[index + 1] in self.all_special_tokens:
                    start, token = offset, " "
                else:
                    start = -1
            else:
                start = text[offset:].index(token) + offset
            end = start + len(token)
            spans.append([start, end])
            if start != -1:
                offset = end
        mapping = []
        for index, (start, end) in enumerate(spans):
            if start == -1:
                start = 0 if index == 0 else spans[index - 1][1]
                end = len(char_mapping) if index == len(spans) - 1 else spans[index + 1][0]
            mapping.append((char_mapping[start], char_mapping[end - 1] + 1))
        return mapping

    # -- model inputs --------------------------------------------------------------------------------------------

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: Optional[list[int]] = None) -> list[int]:
        if token_ids_1 is None:
            return [self.cls_token_id] + list(token_ids_0) + [self.sep_token_id]
        return [self.cls_token_id] + list(token_ids_0) + [self.sep_token_id] + list(token_ids_1) + [self.sep_token_id]

    def create_token_type_ids_from_sequences(self, token_ids_0: list[int], token_ids_1: Optional[list[int]] = None) -> list[int]:
        if token_ids_1 is None:
            return [0] * (len(token_ids_0) + 2)
        return [0] * (len(token_ids_0) + 2) + [1] * (len(token_ids_1) + 1)

    def truncate_sequences(self, ids: list[int], pair_ids: Optional[list[int]] = None, num_tokens_to_remove: int = 0,
                           truncation_strategy: str = "longest_first", stride: int = 0) -> tuple[list, Optional[list], list]:  # fmt: skip
        """paddlenlp's longest_first from the right: a single text loses its tail (left whole when it is shorter
        than what must go, as paddlenlp does); a pair loses one token at a time from the longer text, ties from
        the second."""
        if truncation_strategy != "longest_first":
            raise ValueError(f"the standalone tokenizer truncates longest_first only, not {truncation_strategy}")
        if num_tokens_to_remove <= 0:
            return ids, pair_ids, []
        if pair_ids is None:
            if len(ids) > num_tokens_to_remove:
                window = min(len(ids), stride + num_tokens_to_remove)
                return ids[:-num_tokens_to_remove], None, ids[-window:]
            return ids, None, []
        for _ in range(num_tokens_to_remove):
            if len(ids) > len(pair_ids):
                ids = ids[:-1]
            else:
                pair_ids = pair_ids[:-1]
        return ids, pair_ids, []

    def __call__(self, text: str, text_pair: Optional[str] = None, max_length: Optional[int] = None,
                 truncation: Any = False, return_attention_mask: Optional[bool] = None, **kwargs: Any) -> dict:  # fmt: skip
        """input_ids and token_type_ids of one text or pair, as paddlenlp's `tokenizer(text=, text_pair=,
        max_length=, truncation=True, return_attention_mask=False)` gives them (the call every task makes)."""
        if kwargs or return_attention_mask or truncation not in (False, True, "longest_first"):
            raise TypeError(f"the standalone tokenizer does not take {sorted(kwargs) or 'these settings'}")
        if not isinstance(text, str) or not (text_pair is None or isinstance(text_pair, str)):
            raise TypeError("the standalone tokenizer encodes one text or one pair of texts")
        ids = self.text_ids(text)
        pair_ids = self.text_ids(text_pair) if text_pair is not None else None
        total = len(ids) + len(pair_ids or []) + self.num_special_tokens_to_add(pair=pair_ids is not None)
        if truncation and max_length and total > max_length:
            ids, pair_ids, _ = self.truncate_sequences(ids, pair_ids, num_tokens_to_remove=total - max_length)
        return {
            "input_ids": self.build_inputs_with_special_tokens(ids, pair_ids),
            "token_type_ids": self.create_token_type_ids_from_sequences(ids, pair_ids),
        }

    def pad(self, features: Sequence[dict], padding: Any = "max_length", max_length: Optional[int] = None,
            return_attention_mask: Optional[bool] = False, return_tensors: Optional[str] = "np") -> dict:  # fmt: skip
        """A batch of features padded on the right (input_ids with [PAD], token_type_ids and position_ids with 0)
        to `max_length` (padding "max_length") or the longest (True / "longest"), as int64 arrays or lists."""
        if return_attention_mask:
            raise TypeError("the standalone tokenizer pads without an attention mask (the model masks [PAD])")
        longest = max(len(f["input_ids"]) for f in features)
        length = max_length if padding == "max_length" and max_length is not None else longest
        fill = {"input_ids": self.pad_token_id, "token_type_ids": self.pad_token_type_id, "position_ids": 0}
        batch: dict[str, Any] = {}
        for key in features[0]:
            if key not in fill:
                raise TypeError(f"the standalone tokenizer does not pad {key!r}")
            batch[key] = [list(f[key]) + [fill[key]] * (length - len(f[key])) for f in features]
        if return_tensors == "np":
            return {key: np.asarray(rows, dtype=np.int64) for key, rows in batch.items()}
        return batch


def _is_removed(cp: int) -> bool:
    """Whether paddlenlp's offset search drops a character (NUL, U+FFFD, controls other than \\t \\n \\r)."""
    from ernie3.fast_tokenizer import character_runs

    runs = character_runs()["removed"]
    at = bisect.bisect_right(runs, (cp, 0x110000)) - 1
    return at >= 0 and runs[at][0] <= cp <= runs[at][1]


# -- the proof, made where a model directory is written -----------------------------------------------------------

#: "fast_tokenizer" status of a model directory whose standalone tokenizer gave paddlenlp's results
VERIFIED = "verified"


def verify_model_tokenizer(model_dir: str, task: Any, max_seq_length: int) -> dict:
    """Check the standalone tokenizer of a model directory against paddlenlp's (the one its Predictor would load)
    on the probe texts and the task's sample inputs (as given and repeated, so that truncation and windows happen):
    settings, ids, offsets, truncated pairs, the task's features and their padding. The result is the task
    record's "fast_tokenizer" entry: {"status": "verified", "checked_on", "tokenizer_files": digests} or
    {"status": "not verified", "reason"}. Needs paddlenlp (it runs where models are written)."""
    from paddlenlp.transformers import AutoTokenizer

    from ernie3.fast_tokenizer import PROBE_TEXTS

    try:
        with warnings.catch_warnings():  # paddlenlp warns at every truncated pair that it returns no overflow
            warnings.simplefilter("ignore", UserWarning)
            slow = attach_wordpiece_vocabulary(AutoTokenizer.from_pretrained(model_dir), model_dir)
            reason = _difference(model_dir, task, max_seq_length, slow)
    except FastUnavailable as exc:
        reason = str(exc)
    except Exception as exc:  # e.g. the task's encoding asked the standalone tokenizer for something it does not do
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
    if reason is not None:
        return {"status": "not verified", "reason": reason}
    return {"status": VERIFIED, "tokenizer_files": tokenizer_digests(model_dir),
            "checked_on": f"{len(PROBE_TEXTS)} probe texts and {len(task.sample_inputs())} sample inputs of "
                          f"{task.name} (as given and repeated 8 times), max_seq_length {max_seq_length}"}  # fmt: skip


def _difference(model_dir: str, task: Any, max_seq_length: int, slow: Any) -> Optional[str]:
    """The first difference between the standalone tokenizer and paddlenlp's `slow` one, or None."""
    from ernie3.fast_tokenizer import PROBE_TEXTS, fast_settings, first_difference
    from ernie3.tasks.base import map_texts

    standalone = StandaloneErnieTokenizer(model_dir)
    reason = _settings_difference(fast_settings(slow), read_tokenizer_files(model_dir), slow, standalone)
    texts: list[str] = []
    samples = list(task.sample_inputs())
    for sample in samples:
        map_texts(sample, lambda text: texts.append(text) or text)
    length = min(max_seq_length, 32)
    reason = reason or first_difference(slow, standalone, [*PROBE_TEXTS, *texts], length)
    inputs = samples + [map_texts(sample, lambda text: text * 8) for sample in samples]
    return reason or _features_difference(task, slow, standalone, inputs, max_seq_length)


def _settings_difference(expected: dict, got: dict, slow: Any, standalone: StandaloneErnieTokenizer) -> Optional[str]:
    for key in ("vocab", "wordpiece_vocab", "unk_token", "max_input_chars_per_word", "lowercase", "strip_accents"):
        if expected[key] != got[key]:
            return f"tokenizer setting {key} differs from paddlenlp's"
    if sorted(set(expected["special_tokens"])) != got["special_tokens"]:
        return "special tokens differ from paddlenlp's"
    for name in (*SPECIAL_TOKENS, *(n + "_id" for n in SPECIAL_TOKENS), "pad_token_type_id", "padding_side"):
        if getattr(slow, name) != getattr(standalone, name):
            return f"{name} differs from paddlenlp's"
    if len(slow) != len(standalone) or any(slow.num_special_tokens_to_add(pair=p) != standalone.num_special_tokens_to_add(pair=p) for p in (False, True)):
        return "vocabulary size or special-token count differs from paddlenlp's"
    return None


def _features_difference(task: Any, slow: Any, standalone: StandaloneErnieTokenizer, inputs: list,
                         max_seq_length: int) -> Optional[str]:  # fmt: skip
    """Where the task's features (and their padded batch) differ between the two tokenizers."""
    if not inputs:
        return None
    examples = [task.example_from_text(raw) for raw in inputs]
    want, have = task.encode(examples, slow, max_seq_length), task.encode(examples, standalone, max_seq_length)
    if want.features != have.features or want.example_indices != have.example_indices or want.alignments != have.alignments:
        return f"the {task.name} features of its sample inputs differ"
    names = [name for name in ("input_ids", "token_type_ids") if name in want.features[0]]
    rows = [{name: f[name] for name in names} for f in want.features]
    length = max(len(f["input_ids"]) for f in want.features) + 3
    padded = slow.pad(rows, padding="max_length", max_length=length, return_attention_mask=False, return_tensors="np")
    mine = standalone.pad(rows, padding="max_length", max_length=length, return_attention_mask=False, return_tensors="np")
    if any(not np.array_equal(padded[name], mine[name]) for name in names):
        return "padded batches differ"
    return None


def is_verified(model_dir: str, record: Any) -> bool:
    """Whether a model directory's task record says its standalone tokenizer was verified for the tokenizer files
    it holds now (what `verified_standalone` checks before it builds the tokenizer)."""
    return (isinstance(record, dict) and record.get("status") == VERIFIED
            and record.get("tokenizer_files") == tokenizer_digests(model_dir))  # fmt: skip


def verified_standalone(model_dir: str, record: Any) -> tuple[Optional[StandaloneErnieTokenizer], str]:
    """The standalone tokenizer of a model directory whose task record says it was verified for the tokenizer
    files it holds now; else None and why not."""
    if not isinstance(record, dict) or record.get("status") != VERIFIED:
        return None, "no verification record" if record is None else f"not verified ({record.get('reason', '?')})"
    if record.get("tokenizer_files") != tokenizer_digests(model_dir):
        return None, "its tokenizer files changed since they were verified"
    try:
        return StandaloneErnieTokenizer(model_dir), "standalone fast tokenizer (verified against paddlenlp's when the model was written)"
    except (FastUnavailable, OSError, ValueError) as exc:  # (unreadable files: paddlenlp's loader says why)
        return None, f"the standalone tokenizer cannot be built ({exc})"
