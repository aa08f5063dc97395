"""A Rust WordPiece tokenizer (Hugging Face `tokenizers`) that gives the ids of paddlenlp's ErnieTokenizer, for
when the model stops being the cost: a small student reads thousands of texts per second, and paddlenlp's pure-Python
tokenizer becomes the bottleneck.

It is used only where it reproduces paddlenlp exactly: `choose_tokenizer` compares the two on probe texts (and the
task's sample inputs) and keeps paddlenlp's tokenizer, with one line saying why, on any difference.

How it matches paddlenlp's BasicTokenizer + WordpieceTokenizer: every character class paddlenlp decides with Python's
`unicodedata` (controls it removes, white space, accents it strips, punctuation and symbols it splits off) is given
to the Rust regexes as explicit code point ranges computed from Python's own tables, so the two never disagree
because their Unicode versions differ. The classes that would otherwise differ: `tokenizers`' Bert pre-tokenizer
splits punctuation only, paddlenlp also symbols (`_is_symbol`: the full-width `｜`, `＋`, `￥`, currency, emoji...);
`tokenizers` keeps unassigned code points, which paddlenlp drops as controls; its CJK block list differs from
paddlenlp's (U+2B820..U+2B91F); its table of non-spacing marks is older.
"""
from __future__ import annotations

import functools
import unicodedata
from typing import Any, Optional, Sequence

from ernie3.vocab import missing_vocab_token, wordpiece_tokens
from ernie3.errors import UserError

#: --tokenizer choices: auto = the fast one when it gives paddlenlp's ids on the probe texts, else paddlenlp's
TOKENIZER_CHOICES = ("auto", "fast", "paddlenlp")

# paddlenlp's `_is_symbol` treats these letters and numbers as symbols too (paddlenlp/transformers/tokenizer_utils.py)
_EXTRA_SYMBOLS = (0x00AD, 0x00B2, 0x00BA, 0x3007, 0x00B5, 0x00D8, 0x014B, 0x01B1)

# paddlenlp's BasicTokenizer._is_chinese_char blocks (tokenizers' own list has 0x2B920 where this has 0x2B820)
_CJK_BLOCKS = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))  # fmt: skip

#: texts the start-up self-check tokenizes both ways: everything the two implementations could treat differently
PROBE_TEXTS = (
    "今天天气怎么样？北京｜上海｜广州 ｜ 深圳",
    "ＡＢＣ１２３！？（）［］｛｝＋－＝＜＞￥＄％＆＠＃＊／＼＾＿｀～：；，．",
    "Café naïve ÉCOLE Ångström Øre façade São Paulo İstanbul ΣΑΣ ΟΔΟΣ",
    "ERNIE 3.0轻量级模型，比 BERT-base 快 10 倍！Price: $99.99 (约￥699) 50% off… ‘quote’ “双引号” 《书名》【标签】",
    "한국어 텍스트 日本語のテキスト ｶﾀｶﾅ русский текст العربية हिन्दी ภาษาไทย Ελληνικά",
    "emoji 😀👍🏽👨‍👩‍👧 ☺️ ❤ ★☆ ♥ ✓ ⚽ ™ © ® ℃ ° ± × ÷ ∑ ∫ ≤ ≥ ≠ ∞ ① Ⅻ ² µ º 〇 ŋ Ʊ",
    "control\x00chars\x07and\u200bzero\u200dwidth\ufeffbom\u00adsoft\ufffdreplacement\ue000private",
    "tabs\tand\nnew\r\nlines\u2028line\u2029para\u3000ideographic\u00a0nbsp\u2009thin\x0bvt\x1fus\x85nel",
    "unassigned \u0378 \U000e0080 rare CJK \U00020000 \U0002b820 \U0002b920 \U00030000 \u9fff 豈 \u2f00 \u2e80",
    "combining e\u0301 a\u0300\u0301 n\u0303 \u0915\u093f \u0e01\u0e34 \u1100\u1161\u11a8 ﬁ ﬀ Ⅷ ½",
    "supercalifragilisticexpialidocious " + "x" * 99 + " " + "y" * 100 + " " + "z" * 101 + " 中" * 3,
    "[CLS] special [SEP] tokens[MASK]inside [UNK] [PAD] [cls] [ SEP ] <s> </s>",
    "数字 12,345.67 3.1415926 1e-5 0x1F 2026-12-04 12:30 ＃１ 第１２３号 ^_^ :-) <br/> a&b |x| ~y~ `z`",
    "   leading and trailing spaces   ",
    "mixedCASE words with UPPER ŁÓDŹ ΑΘΗΝΑ ǅ ǈ ß ẞ ſ K Å",
)


@functools.lru_cache(maxsize=1)
def character_runs() -> dict[str, tuple[tuple[int, int], ...]]:
    """The code point runs of each class in which paddlenlp's BasicTokenizer treats characters alike, by Python's
    unicodedata (the predicates of paddlenlp/transformers/tokenizer_utils.py, inlined: one walk over Unicode). Kept
    as runs, not code point lists: the lists held ~40 MB for the life of a predictor."""
    category = unicodedata.category
    runs: dict[str, list[list[int]]] = {"removed": [], "space": [], "mark": [], "split": []}

    def add(name: str, cp: int) -> None:
        found = runs[name]
        if found and found[-1][1] == cp - 1:
            found[-1][1] = cp
        else:
            found.append([cp, cp])

    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates cannot occur in a Rust string (such texts are refused earlier)
            continue
        char = chr(cp)
        cat = category(char)
        if cp == 0 or cp == 0xFFFD or (cat[0] == "C" and char not in "\t\n\r"):  # _clean_text, _is_control
            add("removed", cp)
        elif cat == "Zs" or char.isspace():  # _is_whitespace, and what whitespace_tokenize's str.split() splits on
            add("space", cp)
        elif cat[0] in "PS" or cp in _EXTRA_SYMBOLS:  # _is_punctuation (all ASCII ones are P or S), _is_symbol
            add("split", cp)
        if cat == "Mn":  # _run_strip_accents
            add("mark", cp)
    return {name: tuple((a, b) for a, b in found) for name, found in runs.items()}


def character_sets() -> dict[str, list[int]]:
    """character_runs as code point lists."""
    return {name: [cp for a, b in found for cp in range(a, b + 1)] for name, found in character_runs().items()}


def _regex_class(runs: Sequence[tuple[int, int]]) -> str:
    """An Oniguruma character class of code point ranges."""
    parts = [f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in runs]
    return "[" + "".join(parts) + "]"


@functools.lru_cache(maxsize=1)
def _character_classes() -> dict[str, str]:
    """character_runs as regex classes; each CJK character is split off like a punctuation character."""
    classes = {name: list(found) for name, found in character_runs().items()}
    classes["split"] += list(_CJK_BLOCKS)
    return {name: _regex_class(runs) for name, runs in classes.items()}


class FastUnavailable(Exception):
    """The fast tokenizer cannot reproduce this paddlenlp tokenizer (the message says why)."""


def fast_settings(slow: Any) -> dict:
    """What the fast tokenizer needs to know of a paddlenlp tokenizer; FastUnavailable for configurations it does not
    reproduce (it then is never used)."""
    from paddlenlp.transformers import BertTokenizer, ErnieTokenizer

    # a subclass that changes how texts are tokenized builds, and the self-check (first_difference) catches it
    if not isinstance(slow, (ErnieTokenizer, BertTokenizer)):
        raise FastUnavailable(f"{type(slow).__name__} is not a WordPiece ErnieTokenizer")
    basic, wordpiece = getattr(slow, "basic_tokenizer", None), getattr(slow, "wordpiece_tokenizer", None)
    if basic is None or wordpiece is None:
        raise FastUnavailable("the tokenizer has no basic/wordpiece tokenizer")
    if not basic.tokenize_chinese_chars or basic.never_split:
        raise FastUnavailable("the basic tokenizer keeps CJK characters together or has never_split words")
    if slow.added_tokens_encoder:
        raise FastUnavailable(f"{len(slow.added_tokens_encoder)} added tokens beyond the vocabulary")
    if getattr(slow, "truncation_side", "right") != "right":
        raise FastUnavailable("truncation from the left")
    lower = bool(basic.do_lower_case)
    if bool(getattr(slow, "do_lower_case", lower)) != lower:
        raise FastUnavailable("do_lower_case differs between the tokenizer and its basic tokenizer")
    strip = basic.strip_accents is not False if lower else bool(basic.strip_accents)
    vocab = dict(slow.vocab.token_to_idx)  # paddlenlp's mapping: with duplicate tokens the later id wins
    return {
        "vocab": vocab,
        "wordpiece_vocab": wordpiece_ids(vocab, wordpiece_tokens(slow), str(wordpiece.unk_token)),
        "unk_token": str(wordpiece.unk_token),
        "max_input_chars_per_word": int(wordpiece.max_input_chars_per_word),
        "lowercase": lower,
        "strip_accents": strip,
        # what paddlenlp's tokenize() keeps whole when written in a text (empty for a tokenizer built directly
        # from a vocab file rather than loaded with from_pretrained)
        "special_tokens": [str(t) for t in slow.unique_no_split_tokens],
    }


def wordpiece_ids(vocab: dict, pieces: Optional[Sequence[str]], unk_token: str) -> Optional[dict]:
    """The Rust WordPiece's vocabulary for a trimmed-vocabulary tokenizer (ernie3.vocab): every piece words split
    into, with its id in `vocab` or the unknown token's; None when words split with `vocab` itself."""
    if pieces is None:
        return None
    if unk_token not in vocab:
        raise FastUnavailable(f"the unknown token {unk_token} is not in the vocabulary")
    missing = missing_vocab_token(vocab, set(pieces))
    if missing is not None:
        raise FastUnavailable(f"the WordPiece vocabulary lacks the token {missing!r} of vocab.txt")
    unknown = vocab[unk_token]
    return {piece: vocab.get(piece, unknown) for piece in pieces}


def build_rust_tokenizer(settings: dict) -> Any:
    """The `tokenizers.Tokenizer` of `fast_settings`: tokens only (special tokens and truncation stay paddlenlp's)."""
    try:
        from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    except ImportError as exc:
        raise FastUnavailable(f"the tokenizers package is not installed ({exc})") from None
    classes = _character_classes()
    vocab = settings["vocab"]
    if settings["unk_token"] not in vocab:
        raise FastUnavailable(f"the unknown token {settings['unk_token']} is not in the vocabulary")
    pieces = settings.get("wordpiece_vocab") or vocab
    tokenizer = Tokenizer(models.WordPiece(pieces, unk_token=settings["unk_token"],
                                           max_input_chars_per_word=settings["max_input_chars_per_word"]))  # fmt: skip
    steps = [normalizers.Replace(Regex(classes["removed"]), ""), normalizers.Replace(Regex(classes["space"]), " ")]
    if settings["lowercase"]:
        steps.append(normalizers.Lowercase())
    if settings["strip_accents"]:
        steps += [normalizers.NFD(), normalizers.Replace(Regex(classes["mark"]), "")]
    tokenizer.normalizer = normalizers.Sequence(steps)
    # white space separates words; each CJK, punctuation or symbol character is a word of its own
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(" ", "removed"), pre_tokenizers.Split(Regex(classes["split"]), "isolated")]
    )
    # paddlenlp keeps special tokens written in the text whole (matched before normalization, case-sensitive)
    missing = [t for t in settings["special_tokens"] if t not in vocab]
    if missing:
        raise FastUnavailable(f"special token {missing[0]} is not in the vocabulary")
    tokenizer.add_special_tokens(settings["special_tokens"])
    return tokenizer


class FastErnieTokenizer:
    """paddlenlp's tokenizer with tokenization (`tokenize`, `get_offset_mapping`, `text_ids` and the plain
    `__call__` the tasks make) done in Rust; everything else (special tokens, padding, truncation rules, saving) is
    the paddlenlp tokenizer's own, reached through attribute access."""

    def __init__(self, slow: Any):
        self.slow = slow
        self._rust = build_rust_tokenizer(fast_settings(slow))
        self._unk_id = slow.convert_tokens_to_ids(slow.unk_token)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("slow", "_rust", "_unk_id"):  # copy/pickle probe before __init__ ran
            raise AttributeError(name)
        return getattr(self.slow, name)

    def __len__(self) -> int:
        return len(self.slow)

    def _encode(self, text: str) -> Any:
        return self._rust.encode(text, add_special_tokens=False)

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        if kwargs:
            return self.slow.tokenize(text, **kwargs)
        return self._encode(text).tokens

    def text_ids(self, text: str) -> list[int]:
        """Token ids of a text without special tokens (= convert_tokens_to_ids(tokenize(text)))."""
        return self._encode(text).ids

    def get_offset_mapping(self, text: str, split_tokens: Optional[list[str]] = None) -> list[tuple[int, int]]:
        """Each token's [start, end) character span in `text`, as paddlenlp gives them."""
        encoding = self._encode(text)
        if self._unk_id in encoding.ids:
            # paddlenlp places an unknown token by searching the text around it, which spans differently
            return self.slow.get_offset_mapping(text)
        return [tuple(span) for span in encoding.offsets]

    def __call__(
        self,
        text: Any,
        text_pair: Any = None,
        max_length: Optional[int] = None,
        truncation: Any = False,
        return_attention_mask: Optional[bool] = None,
        **kwargs: Any,
    ) -> dict:
        """input_ids and token_type_ids of one text or pair, as paddlenlp's `tokenizer(...)` gives them; any use
        beyond that (batches, padding, other outputs) goes to paddlenlp."""
        plain = not kwargs and isinstance(text, str) and (text_pair is None or isinstance(text_pair, str))
        if not plain or return_attention_mask or truncation not in (False, True, "longest_first"):
            return self.slow(text, text_pair=text_pair, max_length=max_length, truncation=truncation,
                             return_attention_mask=return_attention_mask, **kwargs)  # fmt: skip
        ids = self.text_ids(text)
        pair_ids = self.text_ids(text_pair) if text_pair is not None else None
        if truncation and max_length is not None:
            total = len(ids) + len(pair_ids or []) + self.slow.num_special_tokens_to_add(pair=pair_ids is not None)
            # paddlenlp's own longest_first (one token at a time from the longer text, ties from the second),
            # which differs from the Rust one (balanced halves)
            ids, pair_ids, _ = self.slow.truncate_sequences(ids, pair_ids, num_tokens_to_remove=total - max_length,
                                                            truncation_strategy="longest_first")  # fmt: skip
        return {
            "input_ids": self.slow.build_inputs_with_special_tokens(ids, pair_ids),
            "token_type_ids": self.slow.create_token_type_ids_from_sequences(ids, pair_ids),
        }


def text_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a text without special tokens, by the fast path where the tokenizer has one."""
    if isinstance(tokenizer, FastErnieTokenizer) or callable(getattr(type(tokenizer), "text_ids", None)):
        return tokenizer.text_ids(text)  # the Rust one (also ernie3.standalone_tokenizer's)
    return tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))


def first_difference(slow: Any, fast: FastErnieTokenizer, texts: Sequence[str], max_length: int = 16) -> Optional[str]:
    """Where the fast tokenizer differs from paddlenlp's on `texts` (ids, offsets, and pairs of neighbouring texts
    truncated to `max_length`), or None when it gives the same everywhere."""

    def shown(text: str) -> str:
        return repr(text if len(text) <= 40 else text[:37] + "...")

    for text in texts:
        expected, got = slow.convert_tokens_to_ids(slow.tokenize(text)), fast.text_ids(text)
        if got != expected:
            at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
            return (f"ids differ on {shown(text)} at token {at}: paddlenlp {slow.convert_ids_to_tokens(expected[at:at + 3])}, "
                    f"fast {fast.convert_ids_to_tokens(got[at:at + 3])}")  # fmt: skip
        if [tuple(s) for s in slow.get_offset_mapping(text)] != fast.get_offset_mapping(text):
            return f"character offsets differ on {shown(text)}"
    for first, second in zip(texts, list(texts[1:]) + list(texts[:1])):
        for pair in (None, second):
            want = slow(text=first, text_pair=pair, max_length=max_length, truncation=True, return_attention_mask=False)
            have = fast(text=first, text_pair=pair, max_length=max_length, truncation=True, return_attention_mask=False)
            if any(list(want[key]) != list(have[key]) for key in ("input_ids", "token_type_ids")):
                return f"truncated {'pair' if pair else 'text'} features differ on {shown(first)}"
    return None


def choose_tokenizer(slow: Any, choice: str, texts: Sequence[str] = (), max_length: int = 16) -> tuple[Any, str, bool]:
    """The tokenizer to use, why, and whether that deserves a warning. auto: the fast one when it gives paddlenlp's
    ids, offsets and truncated features on PROBE_TEXTS + `texts`, else paddlenlp's (a warning); fast: the fast one
    (an error if it cannot be built, a warning naming any difference); paddlenlp: paddlenlp's."""
    if choice not in TOKENIZER_CHOICES:
        raise UserError(f"tokenizer must be one of {', '.join(TOKENIZER_CHOICES)}, got {choice!r}")
    if choice == "paddlenlp":
        return slow, "paddlenlp tokenizer, as asked", False
    try:
        fast = FastErnieTokenizer(slow)
    except FastUnavailable as exc:
        if choice == "fast":
            raise UserError(f"fast tokenizer asked for, but it cannot reproduce this tokenizer: {exc}") from None
        return slow, f"paddlenlp tokenizer: the fast one cannot reproduce it ({exc})", True
    difference = first_difference(slow, fast, [*PROBE_TEXTS, *texts], max_length)
    if difference is None:
        return fast, "fast tokenizer: same ids as paddlenlp's on the probe texts", False
    if choice == "fast":
        return fast, f"fast tokenizer as asked, although it differs from paddlenlp's: {difference}", True
    return slow, f"paddlenlp tokenizer: the fast one differs ({difference})", True


def tokenizer_for_task(slow: Any, choice: str, task: Any, max_seq_length: int) -> tuple[Any, str, bool]:
    """choose_tokenizer, checked on the task's sample inputs too (what its predictors and services warm up with)."""
    from ernie3.tasks.base import map_texts  # the task modules import this module

    texts: list[str] = []
    for sample in task.sample_inputs():
        map_texts(sample, lambda text: texts.append(text) or text)
    return choose_tokenizer(slow, choice, texts, max_length=min(max_seq_length, 32))
