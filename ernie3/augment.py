"""Data augmentation for task distillation (compress --distill_augment N): the teacher labels new inputs made from
the train examples, so the student learns the teacher's function beyond the points the teacher was fitted on
(where its outputs are close to the gold labels and teach little more than they do).

The recipe is ERNIE Slim's data distillation (PaddlePaddle/ERNIE, distill/README.md), after Tang et al. 2019,
"Distilling Task-Specific Knowledge from BERT into Simple Neural Networks" (arXiv:1903.12136), §3.3:
- same-POS word replacement: each word, with probability --distill_augment_replace, becomes another word of the
  same part of speech drawn from the train texts (jieba's POS tagger, offline, cuts the Chinese text into words);
- n-gram sampling: with probability --distill_augment_span the text becomes a random span of its words (where the
  task allows it: never across a QA answer);
- masking: each text token, with probability --distill_augment_mask, becomes [UNK] (on the token ids, so every
  tokenizer does the same and no offset moves).

Each task type says how its examples are augmented (`Task.augment_example`): it passes each of its texts through
the augmenter and keeps what must stay whole (a QA answer). An augmented example's gold labels are placeholders:
the distillation trainer leaves augmented rows out of the label loss (`AUGMENTED_KEY`).
"""
from __future__ import annotations

import collections
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

#: a feature key: 1 for an augmented row (teacher labels only), 0 for a train example (gold labels too)
AUGMENTED_KEY = "distill_augmented"
#: tries per wanted copy before an example is given fewer copies (short texts have few distinct variants)
TRIES_PER_COPY = 4

#: (text, whether it may be cut to a span) → the augmented text; what `Task.augment_example` calls per text
TextAugmenter = Callable[[str, bool], str]


@dataclass
class AugmentationSettings:
    copies: int
    mask_rate: float
    replace_rate: float
    span_rate: float
    seed: int


def load_pos_tagger() -> Any:
    """jieba's part-of-speech tagger, quiet (its dictionary loads in about a second, then it caches in /tmp)."""
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


class WordAugmenter:
    """Same-POS word replacement and span sampling on texts, with word pools learnt from the train texts."""

    def __init__(self, settings: AugmentationSettings, rng: random.Random):
        self.settings, self.rng = settings, rng
        self.tagger = load_pos_tagger()
        self.segmented: dict[str, list[tuple[str, str]]] = {}
        self.pools: dict[str, list[str]] = collections.defaultdict(list)  # POS → words, once per occurrence

    def words(self, text: str) -> list[tuple[str, str]]:
        if text not in self.segmented:
            self.segmented[text] = [(pair.word, pair.flag) for pair in self.tagger.cut(text)]
        return self.segmented[text]

    def observe(self, text: str, spannable: bool = True) -> str:
        """Learn the words of a train text (its POS pools); the text is returned unchanged."""
        for word, pos in self.words(text):
            if word.strip():
                self.pools[pos].append(word)
        return text

    def augment(self, text: str, spannable: bool = True) -> str:
        words = [self.replace(word, pos) for word, pos in self.words(text)]
        if spannable and len(words) > 1 and self.rng.random() < self.settings.span_rate:
            length = self.rng.randint(1, len(words))
            start = self.rng.randint(0, len(words) - length)
            words = words[start : start + length]
        augmented = "".join(words)
        return augmented if augmented.strip() else text

    def replace(self, word: str, pos: str) -> str:
        pool = self.pools.get(pos)
        if not pool or not word.strip() or self.rng.random() >= self.settings.replace_rate:
            return word
        return self.rng.choice(pool)


def mask_tokens(feature: dict, rate: float, rng: random.Random, unk_id: int, structural: set) -> dict:
    """A copy of `feature` whose text tokens (not [CLS]/[SEP]/[PAD]) are each [UNK] with probability `rate`."""
    if rate <= 0:
        return dict(feature)
    ids = [token if token in structural or rng.random() >= rate else unk_id for token in feature["input_ids"]]
    return {**feature, "input_ids": ids}


def augmented_features(task: Any, examples: Sequence[dict], encode: Callable[[list], Any], tokenizer: Any,
                       settings: AugmentationSettings) -> list[dict]:
    """`settings.copies` augmented variants of each example (fewer when a short text has no more distinct ones),
    encoded by `encode` (a list of examples → the task's Encoded), each marked AUGMENTED_KEY = 1."""
    from tqdm import tqdm

    rng = random.Random(settings.seed)
    words = WordAugmenter(settings, rng)
    for example in examples:
        task.augment_example(example, words.observe)
    structural = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    unk_id = tokenizer.unk_token_id
    features: list[dict] = []
    for example in tqdm(examples, desc="Augmenting the train examples", unit="example", leave=False):
        seen = {tuple(feature["input_ids"]) for feature in encode([example]).features}
        made = 0
        for _ in range(settings.copies * TRIES_PER_COPY):
            if made >= settings.copies:
                break
            variant = task.augment_example(example, words.augment)
            encoded = [mask_tokens(f, settings.mask_rate, rng, unk_id, structural) for f in encode([variant]).features]
            key = tuple(token for feature in encoded for token in feature["input_ids"])
            if key in seen:
                continue
            seen.add(key)
            made += 1
            features.extend({**feature, AUGMENTED_KEY: 1} for feature in encoded)
    return features


def training_features(original: Sequence[dict], augmented: Sequence[dict]) -> list[dict]:
    """The distillation's train set: the train features (AUGMENTED_KEY 0) and the augmented ones."""
    return [{**feature, AUGMENTED_KEY: 0} for feature in original] + list(augmented)


def gold_rows(inputs: dict) -> Optional[Any]:
    """Indices of the batch rows that carry gold labels (None: every row does, no augmentation)."""
    import paddle

    flags = inputs.get(AUGMENTED_KEY)
    if flags is None:
        return None
    return paddle.nonzero(flags.reshape([-1]) == 0).reshape([-1])
