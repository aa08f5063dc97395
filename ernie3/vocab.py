"""Vocabulary trimming (issue 20): keep the special tokens and the tokens a task's own texts use (most frequent
first, up to --max_vocab_size), fill what is left of --max_vocab_size with the vocabulary's first tokens (ERNIE
vocabularies list tokens most frequent first, so these are the commonest tokens the texts happened not to use: fewer
[UNK]s on new text), cut the word embedding to those rows and the position embedding to max_seq_length, and save
a tokenizer whose vocabulary gives the new ids.

paddlenlp 2.8.1 has `Trainer.cut_embeddings` for this, but it is not used: it writes `vocab_size = max_vocab_size`
into the config whatever number of rows it kept (a model that then fails to load when the texts use fewer
tokens), writes vocab.txt and the tokenizer config without an encoding (odd Unicode fails under a non-UTF-8
locale) and not atomically, and saves no special_tokens_map.json. The same steps are done here on the state dict.

Words split as before trimming: the model directory keeps the untrimmed vocabulary as WORDPIECE_VOCAB_FILE, which
WordPiece splits words with, and a piece that vocab.txt lacks becomes [UNK]. Splitting with the trimmed vocab.txt
alone would re-split a word whose piece was dropped (a Latin word into shorter pieces): on real TNEWS (medium
teacher, 2000 held-out titles) that agreed with the untrimmed model on 98.80% of titles at 6000 tokens, mapping the
dropped pieces to [UNK] on 99.65% (99.25% and 99.85% at 11000). A plain paddlenlp tokenizer loaded from such a
directory, without `attach_wordpiece_vocabulary`, still gives valid ids (it re-splits).
"""
from __future__ import annotations

import collections
import copy
import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from ernie3.errors import UserError
from ernie3.files import atomic_directory
from ernie3.layout import VOCAB_DIR, WORDPIECE_VOCAB_FILE

VOCAB_FILE = "vocab.txt"


@dataclass
class VocabularyPlan:
    """Which old token ids the trimmed vocabulary keeps (in their old order) and how they were chosen."""

    kept_ids: list[int]
    special_ids: list[int]
    counted_tokens: int  # tokens seen in the texts
    distinct_tokens: int  # distinct ids among them
    filled: int = 0  # tokens added in vocabulary order beyond those of the texts

    @property
    def size(self) -> int:
        return len(self.kept_ids)


def id_bound(tokenizer: Any) -> int:
    """One past the largest token id. Not len(vocab): ids are line numbers of vocab.txt, and a vocabulary with a
    repeated line (ERNIE 3.0's has 39980 lines, 39979 distinct tokens, [UNK] = 39979) has fewer tokens than ids."""
    return max(tokenizer.vocab.token_to_idx.values()) + 1


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the tokenizer's special tokens ([PAD], [UNK], [CLS], [SEP], [MASK], ...), sorted, once each."""
    ids = set(tokenizer.all_special_ids)
    return sorted(i for i in ids if i is not None and 0 <= i < id_bound(tokenizer))


def check_max_vocab_size(max_vocab_size: int, tokenizer: Any) -> None:
    specials = special_token_ids(tokenizer)
    if max_vocab_size < len(specials):
        names = " ".join(tokenizer.convert_ids_to_tokens(specials))
        raise UserError(
            f"--max_vocab_size {max_vocab_size} is below the {len(specials)} special tokens the vocabulary must keep "
            f"({names}); pass at least {len(specials)} (a few thousand keeps most texts' tokens)"
        )


def corpus_token_ids(path: str, tokenizer: Any) -> Iterable[int]:
    """Token ids of every line of a plain-text corpus file (UTF-8), tokenized as the model's tokenizer does."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                text = line.strip()
                if text:
                    yield from tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
    except UnicodeDecodeError as exc:
        raise UserError(f"--vocab_corpus: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"--vocab_corpus: cannot read {path} ({exc.strerror or exc})") from None


#: how --prune_vocab fills --max_vocab_size beyond the texts' tokens
VOCAB_FILLS = ("order", "none")


def plan_vocabulary(tokenizer: Any, token_ids: Iterable[Iterable[int]], max_vocab_size: int,
                    fill: str = "order") -> VocabularyPlan:  # fmt: skip
    """The special tokens, then the most frequent of `token_ids` (ties: lower old id first), up to the size; with
    `fill="order"` the rest of the size in the vocabulary's own order (lowest ids first)."""
    check_max_vocab_size(max_vocab_size, tokenizer)
    specials = special_token_ids(tokenizer)
    counts: collections.Counter = collections.Counter()
    for ids in token_ids:
        counts.update(ids)
    special_set = set(specials)
    bound = id_bound(tokenizer)
    ranked = sorted((i for i in counts if i not in special_set and 0 <= i < bound),
                    key=lambda i: (-counts[i], i))  # fmt: skip
    kept = special_set | set(ranked[: max_vocab_size - len(specials)])
    added = 0
    if fill == "order":
        # the ids the tokenizer produces: of a repeated line (ERNIE 3.0's "$"), only the id its lookup gives
        for token_id in sorted(set(tokenizer.vocab.token_to_idx.values())):
            if len(kept) >= max_vocab_size:
                break
            if token_id not in kept:
                kept.add(token_id)
                added += 1
    return VocabularyPlan(sorted(kept), specials, sum(counts.values()), len(counts), added)


class WordpieceVocabulary:
    """The pieces WordPiece may split a word into, in vocabulary order (paddlenlp's WordpieceTokenizer only asks
    `piece in vocab`; the ids come from the tokenizer's own, trimmed, vocab)."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self._members = frozenset(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._members

    def __len__(self) -> int:
        return len(self.tokens)


def wordpiece_tokens(tokenizer: Any) -> Optional[list[str]]:
    """The pieces a tokenizer's WordPiece splits with when they are not its vocabulary (a trimmed model's), else None."""
    vocab = getattr(getattr(tokenizer, "wordpiece_tokenizer", None), "vocab", None)
    return vocab.tokens if isinstance(vocab, WordpieceVocabulary) else None


def missing_vocab_token(vocab_tokens: Iterable[str], pieces: Any) -> Optional[str]:
    """The first vocab.txt token that a WordPiece vocabulary lacks (the two files are then not of one model)."""
    return next((token for token in vocab_tokens if token not in pieces), None)


def read_wordpiece_vocabulary(model_dir: str) -> Optional[list[str]]:
    """The WORDPIECE_VOCAB_FILE of a model directory (one token a line, as vocab.txt), or None without one."""
    path = os.path.join(model_dir, WORDPIECE_VOCAB_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable UTF-8 vocabulary ({exc})") from None


def attach_wordpiece_vocabulary(tokenizer: Any, model_dir: str) -> Any:
    """Make a tokenizer loaded from `model_dir` split words with the directory's WORDPIECE_VOCAB_FILE (when it has
    one): the tokenizer then gives the ids the trimmed model was measured with."""
    tokens = read_wordpiece_vocabulary(model_dir)
    if tokens is None:
        return tokenizer
    path = os.path.join(model_dir, WORDPIECE_VOCAB_FILE)
    wordpiece = getattr(tokenizer, "wordpiece_tokenizer", None)
    if wordpiece is None:
        raise UserError(f"{path}: {type(tokenizer).__name__} has no WordPiece step to split words with it")
    pieces = WordpieceVocabulary(tokens)
    missing = missing_vocab_token(tokenizer.vocab.token_to_idx, pieces)
    if missing is not None:
        raise UserError(f"{path} lacks the token {missing!r} of vocab.txt: the two files are not of one model")
    wordpiece.vocab = pieces
    return tokenizer


def save_tokenizer(tokenizer: Any, directory: str) -> None:
    """`save_pretrained`, plus the WordPiece vocabulary of a trimmed-vocabulary tokenizer."""
    tokenizer.save_pretrained(directory)
    tokens = wordpiece_tokens(tokenizer)
    if tokens is not None:
        _write_tokens(os.path.join(directory, WORDPIECE_VOCAB_FILE), tokens)


def _write_tokens(path: str, tokens: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(token + "\n" for token in tokens)


def write_trimmed_model(model: Any, tokenizer: Any, plan: VocabularyPlan, max_seq_length: int, output_dir: str) -> str:
    """A model directory (weights, config, tokenizer) with the trimmed vocabulary: word-embedding rows of the kept
    ids in their old order, position embeddings cut to `max_seq_length`; all or nothing."""
    import paddle

    prefix = model.base_model_prefix
    state = model.state_dict()
    word_name, position_name = f"{prefix}.embeddings.word_embeddings.weight", f"{prefix}.embeddings.position_embeddings.weight"
    if word_name not in state:
        raise UserError(f"--prune_vocab: the model has no {word_name}: not an ERNIE model")
    index = paddle.to_tensor(plan.kept_ids, dtype="int64")
    state = dict(state)
    state[word_name] = paddle.gather(state[word_name], index)
    if position_name in state and state[position_name].shape[0] > max_seq_length:
        state[position_name] = state[position_name][:max_seq_length]
    new_id = {old: new for new, old in enumerate(plan.kept_ids)}
    config = copy.deepcopy(model.config)
    config.vocab_size = plan.size
    config.max_position_embeddings = min(config.max_position_embeddings or max_seq_length, max_seq_length)
    if getattr(config, "pad_token_id", None) in new_id:
        config.pad_token_id = new_id[config.pad_token_id]
    with atomic_directory(output_dir) as staging:
        paddle.save(state, os.path.join(staging, "model_state.pdparams"))
        config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)  # tokenizer config and special tokens; the vocabulary is replaced next
        _write_tokens(os.path.join(staging, VOCAB_FILE), tokenizer.convert_ids_to_tokens(plan.kept_ids))
        # words split with the untrimmed pieces (of a trimmed-again model: the first untrimmed ones)
        pieces = wordpiece_tokens(tokenizer) or list(tokenizer.vocab.token_to_idx)
        _write_tokens(os.path.join(staging, WORDPIECE_VOCAB_FILE), pieces)
    return output_dir


def unknown_share(features: Sequence[dict], tokenizer: Any) -> float:
    """The share of the text tokens (not [CLS]/[SEP]/[PAD]) of encoded features that are [UNK]."""
    unk = tokenizer.unk_token_id
    structural = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    total = unknown = 0
    for feature in features:
        for token in feature["input_ids"]:
            if token in structural:
                continue
            total += 1
            unknown += token == unk
    return unknown / total if total else 0.0


def trim_vocabulary(model: Any, tokenizer: Any, train_features: Sequence[dict], corpus: Optional[str],
                    max_vocab_size: int, max_seq_length: int, output_dir: str, fill: str = "order") -> dict:
    """Plan from the train features (+ the corpus file) and write the trimmed model to `output_dir`; a summary."""
    sources: list[Iterable[int]] = [feature["input_ids"] for feature in train_features]
    if corpus:
        sources.append(corpus_token_ids(corpus, tokenizer))
    plan = plan_vocabulary(tokenizer, sources, max_vocab_size, fill)
    write_trimmed_model(model, tokenizer, plan, max_seq_length, output_dir)
    return {"vocab_size_before": model.config.vocab_size, "vocab_size": plan.size, "max_vocab_size": max_vocab_size,
            "distinct_tokens_in_texts": plan.distinct_tokens, "filled_in_vocabulary_order": plan.filled,
            "corpus": corpus, "max_position_embeddings": max_seq_length}  # fmt: skip


def trim_for_compression(model: Any, task: Any, data: Any, data_args: Any, light: Any, output_dir: str) -> tuple:
    """Trim the vocabulary to the train texts' (+ corpus) tokens, export the trimmed float model to VOCAB_DIR and
    reload model and data with it; (model, data, summary)."""
    import shutil
    import tempfile

    from ernie3.export import export_inference_model
    from ernie3.modeling import load_model
    from ernie3.predict import load_model_tokenizer
    from ernie3.train import load_run_data

    dygraph_dir = tempfile.mkdtemp(prefix=".vocab-", dir=output_dir)
    try:
        summary = trim_vocabulary(model, data.tokenizer, data.encoded["train"].features, light.vocab_corpus,
                                  light.max_vocab_size, data_args.max_seq_length, dygraph_dir, light.vocab_fill)  # fmt: skip
        trimmed = load_run_data(task, dygraph_dir, data_args.max_seq_length, data_args, list(data.examples),
                                data_args.max_seq_length)  # fmt: skip
        model = load_model(dygraph_dir, task.model_class())
        # the tokenizer saves by copying its vocab file, which lives in dygraph_dir
        export_inference_model(model, trimmed.tokenizer, task, os.path.join(output_dir, VOCAB_DIR),
                               data_args.max_seq_length)  # fmt: skip
        trimmed.tokenizer = load_model_tokenizer(os.path.join(output_dir, VOCAB_DIR))
    finally:
        shutil.rmtree(dygraph_dir, ignore_errors=True)
    summary["dev_unk_share_before"] = round(unknown_share(data.encoded["dev"].features, data.tokenizer), 4)
    summary["dev_unk_share"] = round(unknown_share(trimmed.encoded["dev"].features, trimmed.tokenizer), 4)
    return model, trimmed, summary


def vocabulary_report_lines(summary: Optional[dict]) -> list[str]:
    """The compress report's lines on the trimmed vocabulary (none without --prune_vocab)."""
    if not summary:
        return []
    filled = summary.get("filled_in_vocabulary_order")
    fill = f", {filled} of them beyond the texts' tokens in vocabulary order" if filled else ""
    return ["", f"Vocabulary trimmed (`{VOCAB_DIR}`): {summary['vocab_size_before']} → {summary['vocab_size']} tokens "
                f"(--max_vocab_size {summary['max_vocab_size']}{fill}), position embeddings → "
                f"{summary['max_position_embeddings']}; "
                f"dev tokens that are [UNK]: {summary['dev_unk_share_before']:.2%} before, {summary['dev_unk_share']:.2%} "
                "after; its agreement with the untrimmed model is its `agreement with float`."]  # fmt: skip
