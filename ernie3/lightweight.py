"""Light-weight compression beyond DynaBERT + PTQ (issue 20): vocabulary trimming, INT8 embeddings, QAT, and
candidates judged by size and memory as well as speed.

- `LightweightArguments`: the compress flags (--prune_vocab --max_vocab_size --vocab_corpus --int8_embeddings
  --optimize_for --measure_rss).
- QAT (paddlenlp's `qat` strategy through paddleslim) writes `int8.*` into the compress dir (or a width dir);
  `collect_qat_outputs` moves them into a `qat/` candidate directory of their float model.
- the pick's objectives (--optimize_for): throughput, latency, size, memory (ernie3.pick, shared by compress and
  the pipeline).
- `measure_peak_rss`: a candidate's predictor peak RSS in a child process of its own (fresh interpreter: no
  allocator pools or oneDNN caches of other candidates), after it ran every shape bucket (what the memory plan's
  estimate describes).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ernie3.errors import UserError
from ernie3.layout import FLOAT_DIR, QUANTIZED_PREFIX, WIDTH_DIR_PATTERN, Candidate

#: what the best pick optimises among candidates within --max_metric_drop
OBJECTIVES = ("throughput", "latency", "size", "memory")
#: the candidate directory QAT's INT8 model is moved to, under its float model's directory
QAT_DIR = "qat"


@dataclass
class LightweightArguments:
    prune_vocab: bool = field(
        default=False,
        metadata={"help": "Trim the vocabulary before compressing: keep the special tokens and the tokens the train "
                          "file (and --vocab_corpus) uses, most frequent first, up to --max_vocab_size (the rest of "
                          "it filled as --vocab_fill says); the word "
                          "embedding keeps those rows, the position embedding max_seq_length rows. The trimmed model "
                          "(vocab_pruned/) is what DynaBERT, PTQ and QAT then compress."},
    )  # fmt: skip
    max_vocab_size: int = field(default=6000, metadata={"help": "Largest vocabulary --prune_vocab keeps."})
    vocab_fill: str = field(
        default="order",
        metadata={"help": "What --prune_vocab keeps beyond the texts' tokens: order (the vocabulary's first tokens up "
                          "to --max_vocab_size: ERNIE vocabularies list the commonest first, so new text meets fewer "
                          "[UNK]s) or none (the texts' tokens only: the smallest model)."},
    )  # fmt: skip
    vocab_corpus: Optional[str] = field(
        default=None, metadata={"help": "A UTF-8 text file (one text a line) whose tokens --prune_vocab also keeps."}
    )
    int8_embeddings: bool = field(
        default=True,
        metadata={"help": "Beside every INT8 candidate, one whose embedding tables are stored INT8 too "
                          "(<candidate>/emb-int8): the word embedding is most of an INT8 model's size."},
    )  # fmt: skip
    optimize_for: str = field(
        default="throughput",
        metadata={"help": "What the best pick optimises among candidates within --max_metric_drop: throughput "
                          "(evaluation seq/s), latency (batch-1 median), size (on disk) or memory (measured predictor "
                          "peak RSS, else the memory plan's estimate)."},
    )  # fmt: skip
    measure_rss: bool = field(
        default=True,
        metadata={"help": "Measure predictor peak RSS in a child process per candidate (about 5 s each for the "
                          "interpreter and paddle import, plus one run of every shape bucket): of every candidate "
                          "with --optimize_for memory, else of the float model and the pick."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.optimize_for not in OBJECTIVES:
            raise UserError(f"--optimize_for: '{self.optimize_for}' is not one of {', '.join(OBJECTIVES)}")
        from ernie3.vocab import VOCAB_FILLS

        if self.vocab_fill not in VOCAB_FILLS:
            raise UserError(f"--vocab_fill: '{self.vocab_fill}' is not one of {', '.join(VOCAB_FILLS)}")
        if self.vocab_corpus is not None:
            if not self.prune_vocab:
                raise UserError("--vocab_corpus is used only with --prune_vocab")
            if not os.path.isfile(self.vocab_corpus):
                raise UserError(f"--vocab_corpus: not a file: {self.vocab_corpus}")
            if not os.access(self.vocab_corpus, os.R_OK):
                raise UserError(f"--vocab_corpus: cannot read {self.vocab_corpus} (permission denied)")


def check_strategy(strategy: str, width_mult_list: Optional[Sequence[Any]]) -> None:
    # paddlenlp 2.8.1 runs QAT for every width on `self.model`, which after the DynaBERT export is the last width's
    # model, quantized again for each further width: only one width gives a correct QAT model
    if "dynabert" in strategy and "qat" in strategy and width_mult_list and len(width_mult_list) > 1:
        raise UserError("--strategy dynabert+qat takes one width in --width_mult_list (paddlenlp quantizes only the "
                        f"last width's model), got {len(width_mult_list)}")  # fmt: skip


def collect_qat_outputs(output_dir: str, trained: str = FLOAT_DIR) -> list[str]:
    """Move QAT's int8.* (and its best_quant.pdparams) from the compress dir / each width dir into a `qat/`
    candidate directory of the float model it trained (`trained`: the float dir QAT started from, for a QAT
    output in the compress dir itself); returns the new directories."""
    moved = []
    homes = [(output_dir, os.path.join(output_dir, trained))]
    homes += [(width, width) for width in sorted(glob.glob(os.path.join(output_dir, WIDTH_DIR_PATTERN)))]
    for where, float_dir in homes:
        files = glob.glob(os.path.join(where, QUANTIZED_PREFIX + ".pdiparams*")) + glob.glob(os.path.join(where, QUANTIZED_PREFIX + ".pdmodel"))
        if not files:
            continue
        target = os.path.join(float_dir, QAT_DIR)
        os.makedirs(target, exist_ok=True)
        for path in files + glob.glob(os.path.join(where, "best_quant.pdparams")):
            shutil.move(path, os.path.join(target, os.path.basename(path)))
        moved.append(target)
    return moved


def qat_candidates(output_dir: str, floats: Sequence[Candidate]) -> list[Candidate]:
    """QAT INT8 models whose own float directory is not a candidate (dynabert+qat: paddlenlp exports no pruned
    float model), with the float baseline as their source."""
    known = {c.path for c in floats}
    found = []
    for width in sorted(glob.glob(os.path.join(output_dir, WIDTH_DIR_PATTERN))):
        model = os.path.join(width, QAT_DIR, QUANTIZED_PREFIX + ".pdmodel")
        if width not in known and os.path.isfile(model):
            found.append(Candidate(os.path.relpath(os.path.dirname(model), output_dir), os.path.dirname(model),
                                   QUANTIZED_PREFIX + ".pdmodel", precision="int8", source=FLOAT_DIR))  # fmt: skip
    return found


# -- the best pick ---------------------------------------------------------------------------------------------------


def peak_rss_of(result: dict) -> float:
    """The measured peak RSS, else the memory plan's estimate."""
    measured = result.get("peak_rss_mb")
    return measured if measured is not None else result["expected_peak_rss_mb"]


def batch1_latency_ms(predictor: Any, examples: Sequence[dict], count: int = 8) -> float:
    """Median time (ms) of one example alone, over the first `count` examples (after one warm-up run)."""
    import statistics
    import time

    sample = list(examples[:count])
    predictor.predict(sample[:1])
    times = []
    for example in sample:
        started = time.perf_counter()
        predictor.predict([example])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# -- measured predictor memory ---------------------------------------------------------------------------------------


def measure_peak_rss(candidate: Candidate, batch_size: int, num_threads: int, timeout_s: float = 900.0) -> Optional[float]:
    """Peak RSS (MB) of a fresh process that loads the candidate's Predictor and runs every shape bucket once;
    None when the child fails (its last error line is logged)."""
    from paddlenlp.utils.log import logger

    settings = {"path": candidate.path, "backend": candidate.backend, "precision": candidate.precision,
                "model_prefix": candidate.model_prefix, "batch_size": batch_size, "num_threads": num_threads}  # fmt: skip
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    try:
        done = subprocess.run([sys.executable, "-m", "ernie3.lightweight", json.dumps(settings)], env=env,
                              capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
    except subprocess.TimeoutExpired:
        logger.warning(f"RSS of {candidate.name}: no result within {timeout_s:.0f} s")
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        logger.warning(f"RSS of {candidate.name}: the measuring process failed ({errors[-1] if errors else done.returncode})")
        return None
    return float(json.loads(lines[-1])["peak_rss_mb"])


def _process_peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM), in MB."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _probe(settings: dict) -> None:
    from ernie3.predict import Predictor

    predictor = Predictor(settings["path"], backend=settings["backend"], precision=settings["precision"],
                          model_prefix=settings["model_prefix"], num_threads=settings["num_threads"],
                          batch_size=settings["batch_size"])  # fmt: skip
    predictor.warm_up()
    print(json.dumps({"peak_rss_mb": round(_process_peak_rss_mb(), 1),
                      "expected_peak_rss_mb": round(predictor.expected_peak_rss_mb, 1)}), flush=True)  # fmt: skip


if __name__ == "__main__":  # the child process of measure_peak_rss
    import ernie3  # noqa: F401  (environment set-up before paddle is imported)

    _probe(json.loads(sys.argv[1]))
