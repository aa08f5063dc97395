"""Models and tokenizers: by hub name when online, from local directories always, and tiny ones built offline."""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Optional

from ernie3.errors import UserError

# Files that make a directory a paddlenlp model (config) and a loadable tokenizer (vocab).
MODEL_CONFIG_FILES = ("config.json", "model_config.json")


def looks_like_path(name_or_path: str) -> bool:
    return os.path.isabs(name_or_path) or name_or_path.startswith(".") or os.sep in name_or_path


def check_model_source(name_or_path: str, flag: str = "--model_name_or_path") -> Optional[str]:
    """The local directory to load from, or None for a hub name; clear errors for unusable directories."""
    if os.path.isdir(name_or_path):
        if not any(os.path.isfile(os.path.join(name_or_path, f)) for f in MODEL_CONFIG_FILES):
            raise UserError(
                f"{flag}: {name_or_path} is not a model directory (no config.json); "
                "pass a directory written by save_pretrained or a hub name such as ernie-3.0-medium-zh"
            )
        return name_or_path
    if looks_like_path(name_or_path) or os.path.exists(name_or_path):
        raise UserError(f"{flag}: directory not found: {name_or_path}")
    return None


def model_config_value(name_or_path: str, key: str) -> Any:
    """A value of a local model directory's config (None for hub names, or when the config lacks it)."""
    for name in MODEL_CONFIG_FILES:
        path = os.path.join(name_or_path, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    config = json.load(handle)
            except (OSError, ValueError) as exc:
                raise UserError(f"--model_name_or_path: {path} is not a readable JSON config ({exc})") from None
            return config.get(key) if isinstance(config, dict) else None
    return None


def short_reason(exc: BaseException, limit: int = 200) -> str:
    """The first line of an upstream error, cut at a word boundary (with an ellipsis) if it is long."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + " …"


def _from_pretrained(loader: Any, name_or_path: str, what: str, flag: str = "--model_name_or_path", **kwargs: Any) -> Any:
    local_dir = check_model_source(name_or_path, flag)
    try:
        return loader.from_pretrained(name_or_path, **kwargs)
    except Exception as exc:  # paddlenlp raises OSError/ValueError/requests errors; all mean "cannot load"
        reason = short_reason(exc)
        if local_dir is None:
            raise UserError(
                f"could not load {what} '{name_or_path}' from the model hub ({reason}); without network, "
                f"pass a local model directory with {flag}"
            ) from None
        raise UserError(f"could not load {what} from {local_dir}: {reason}") from None


def load_tokenizer(name_or_path: str, flag: str = "--model_name_or_path") -> Any:
    from paddlenlp.transformers import AutoTokenizer

    from ernie3.vocab import attach_wordpiece_vocabulary

    return attach_wordpiece_vocabulary(_from_pretrained(AutoTokenizer, name_or_path, "the tokenizer", flag), name_or_path)


def load_model(name_or_path: str, model_class: Any, flag: str = "--model_name_or_path", **kwargs: Any) -> Any:
    """`model_class.from_pretrained` with errors that say what to do (e.g. pass a local directory offline)."""
    return _from_pretrained(model_class, name_or_path, "the model", flag, **kwargs)


def generated_vocab() -> list[str]:
    """A vocabulary built from Unicode ranges alone: specials, ASCII, CJK punctuation, full-width forms, CJK."""
    specials = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    ranges = [(0x21, 0x7E), (0x3000, 0x303F), (0xFF01, 0xFF5E), (0x4E00, 0x9FA5)]
    tokens = [chr(code) for start, end in ranges for code in range(start, end + 1)]
    # WordPiece continuation pieces, so that Latin words and numbers split into known pieces, not [UNK]
    tokens += ["##" + c for c in "0123456789abcdefghijklmnopqrstuvwxyz"]
    # lower-cased ASCII letters are what the tokenizer produces; keep each token once
    seen: set[str] = set()
    ordered = [t for t in specials + [t.lower() for t in tokens] if not (t in seen or seen.add(t))]
    return ordered


#: the special tokens ErnieTokenizer looks up in a vocabulary (it fails with an AssertionError without [UNK])
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")


def check_vocab_file(path: str, flag: str = "--vocab_file") -> None:
    """A vocabulary the tokenizer can load: UTF-8 text, one token per line, holding ERNIE's special tokens."""
    from ernie3.files import read_lines

    tokens = {line for _, line in read_lines(path, flag)}  # not found / not UTF-8: one line naming the file
    missing = [token for token in SPECIAL_TOKENS if token not in tokens]
    if missing:
        raise UserError(f"{flag}: {path} is not an ERNIE vocabulary (one token per line): it lacks {', '.join(missing)}")


def write_vocab(tokens: Iterable[str], path: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(token + "\n" for token in tokens)
    return path


def build_tiny_model(
    output_dir: str,
    vocab_file: Optional[str] = None,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 256,
    max_position_embeddings: int = 512,
    vocab_size: Optional[int] = None,
    seed: int = 42,
) -> str:
    """A randomly initialised ERNIE 3.0-architecture model + tokenizer, saved like a pretrained model."""
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieModel, ErnieTokenizer

    if vocab_file is not None:
        check_vocab_file(vocab_file)  # before anything is written
    if hidden_size % num_attention_heads:
        raise UserError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}")
    os.makedirs(output_dir, exist_ok=True)
    if vocab_file is None:
        vocab_file = write_vocab(generated_vocab(), os.path.join(output_dir, "generated_vocab.txt"))
    tokenizer = ErnieTokenizer(vocab_file)
    paddle.seed(seed)
    config = ErnieConfig(
        vocab_size=max(vocab_size or 0, len(tokenizer.vocab)),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        type_vocab_size=4,  # as ERNIE 3.0's configs
        hidden_act="gelu",
    )
    ErnieModel(config).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


if __name__ == "__main__":  # the tiny-model command lived here before the `ernie3` console command
    from ernie3.errors import command_moved

    command_moved("ernie3.modeling", "ernie3 tiny-model --output_dir DIR")
