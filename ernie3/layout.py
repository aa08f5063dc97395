"""The one owner of the output layout: every directory and file name a run writes, and the compress candidates.

    TRAIN_OUT/checkpoint-*/  best/  export/  predict/<task>_predict.json  *_results.json  eval_per_class.{json,md}
              runs/ (VisualDL logs)  ernie3_run.json  ernie3.log (the libraries' INFO/DEBUG lines; kept across runs)
    PIPELINE_OUT/train/ (a TRAIN_OUT)  compress/ (a COMPRESS_OUT)  pipeline_report.{md,json,png}
    COMPRESS_OUT/float/  vocab_pruned/  student/ (+ student_baseline/)  width_mult_*/  <float or width>/<algo>_<batch>_.../int8.pdmodel
                 <float or width>/<engine>-<precision>/  <float or width>/qat/  <int8 candidate>/emb-int8/
                 best/ (+ candidate.json)  report.json  report.md  ernie3.log
A model directory holds model.pdmodel/.pdiparams (or int8.*, model.onnx, model.xml) and ernie3_task.json.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Optional

from ernie3.errors import UserError

# -- model directories ---------------------------------------------------------------------------------------------
#: the task record every model directory carries (task, labels, options, max_seq_length)
TASK_INFO_FILE = "ernie3_task.json"
#: its entry saying whether the standalone fast tokenizer was verified on the model's tokenizer files
FAST_TOKENIZER_KEY = "fast_tokenizer"
#: a trimmed-vocabulary model's WordPiece vocabulary (the untrimmed one): words split exactly as before trimming,
#: and a piece that is not in vocab.txt becomes [UNK] instead of re-splitting into other pieces
WORDPIECE_VOCAB_FILE = "wordpiece_vocab.txt"
#: file prefix of exported static models (model.pdmodel + model.pdiparams)
STATIC_MODEL_PREFIX = "model"
#: file prefix paddlenlp gives post-training-quantized models
QUANTIZED_PREFIX = "int8"
ONNX_FILE = "model.onnx"
#: OpenVINO's own format (+ model.bin), what NNCF INT8 models are saved as
OPENVINO_IR_FILE = "model.xml"
#: which backend and precision run a compress candidate (written into candidates derived for another engine, and best/)
CANDIDATE_FILE = "candidate.json"
#: files that make a directory a model directory (anything written into one could replace a part of a model)
MODEL_FILES = (TASK_INFO_FILE, f"{STATIC_MODEL_PREFIX}.pdmodel", f"{STATIC_MODEL_PREFIX}.pdiparams",
               f"{QUANTIZED_PREFIX}.pdmodel", f"{QUANTIZED_PREFIX}.pdiparams", ONNX_FILE, "model.int8.onnx",
               OPENVINO_IR_FILE, "model.bin")  # fmt: skip

#: a training or compress run's log: every library record (paddlenlp's argument dump, per-step INFO, PTQ progress),
#: appended per run; the terminal shows warnings only (--verbose / --log_level info bring the rest back)
RUN_LOG_FILE = "ernie3.log"

# -- training output -----------------------------------------------------------------------------------------------
BEST_DIR = "best"
EXPORT_DIR = "export"
PREDICT_DIR = "predict"
#: --do_eval's per-class precision/recall/F1 table, beside eval_results.json
EVAL_PER_CLASS_JSON = "eval_per_class.json"
EVAL_PER_CLASS_MD = "eval_per_class.md"
#: what a training run writes into its output dir (a later --overwrite_output_dir deletes only these)
TRAIN_LAYOUT = ("checkpoint-*", BEST_DIR, EXPORT_DIR, PREDICT_DIR, "runs", "*_results.json", "trainer_state.json",
                EVAL_PER_CLASS_JSON, EVAL_PER_CLASS_MD)  # fmt: skip

# -- compress output -----------------------------------------------------------------------------------------------
FLOAT_DIR = "float"
#: the float model with a trimmed vocabulary (--prune_vocab), compressed further like `float/`
VOCAB_DIR = "vocab_pruned"
#: the distilled student (--strategy distill*): a model directory (weights, tokenizer) that is also a float candidate
STUDENT_DIR = "student"
#: the same student fine-tuned on the labels alone (--distill_baseline), for comparison; not a candidate
STUDENT_BASELINE_DIR = "student_baseline"
#: distillation checkpoints, kept in the final output dir while the run lasts so that a killed run resumes
DISTILL_CHECKPOINTS_DIR = "distill_checkpoints"
WIDTH_DIR_PATTERN = "width_mult_*"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
#: what a compress run writes into its output dir (a later --overwrite_output_dir deletes only these)
COMPRESS_LAYOUT = (FLOAT_DIR, VOCAB_DIR, STUDENT_DIR, STUDENT_BASELINE_DIR, DISTILL_CHECKPOINTS_DIR, WIDTH_DIR_PATTERN,
                   BEST_DIR, REPORT_JSON, REPORT_MD, "runs", "checkpoint-*")  # fmt: skip


# -- pipeline output (fine-tune → compress → benchmark → report) -------------------------------------------------------
PIPELINE_TRAIN_DIR = "train"
PIPELINE_COMPRESS_DIR = "compress"
PIPELINE_REPORT_MD = "pipeline_report.md"
PIPELINE_REPORT_JSON = "pipeline_report.json"
#: the plot the Markdown report embeds (by this relative name)
PIPELINE_PLOT = "pipeline_report.png"
PIPELINE_REPORTS = (PIPELINE_REPORT_MD, PIPELINE_REPORT_JSON, PIPELINE_PLOT)
#: what a pipeline run writes into its output dir (a later --overwrite_output_dir replaces only these)
PIPELINE_LAYOUT = (PIPELINE_TRAIN_DIR, PIPELINE_COMPRESS_DIR, *PIPELINE_REPORTS)

def enclosing_model_dir(path: str) -> Optional[str]:
    """The nearest directory at or above `path` (symlinks resolved) that holds a model, or None."""
    directory = os.path.realpath(path)
    while True:
        if os.path.isdir(directory) and any(os.path.isfile(os.path.join(directory, name)) for name in MODEL_FILES):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def predictions_file(output_dir: str, task_name: str) -> str:
    return os.path.join(output_dir, PREDICT_DIR, f"{task_name}_predict.json")


def is_compress_output(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, REPORT_JSON))


def enclosing_compress_output(path: str) -> Optional[str]:
    """The compress output dir a candidate path (best/, float/hist4_1/, float/openvino-int8/, a file in one) lies
    in, or None; relative as `path` is, so that messages show the user's own spelling."""
    directory = os.path.normpath(path)
    for _ in range(5):  # OUTPUT/<src>/<variant>/emb-int8/model.xml at the deepest
        if is_compress_output(directory):
            return directory
        parent = os.path.dirname(directory) or "."
        if parent == directory:
            return None
        directory = parent
    return None


def resolve_model_path(model_path: str) -> str:
    """A compress output dir means its best/ candidate; anything else is used as given."""
    if not os.path.exists(model_path):
        raise UserError(f"--model_path: not found: {model_path}")
    if is_compress_output(model_path):
        best = os.path.join(model_path, BEST_DIR)
        if not os.path.isdir(best):
            raise UserError(f"--model_path: {model_path} is a compress output dir without {BEST_DIR}/")
        return best
    return model_path


@dataclass
class Candidate:
    """One compression candidate: a directory that loads on its own, the backend and precision that run it, and the
    float candidate it was derived from (None for the float baseline and pruned float models)."""

    name: str
    path: str
    model_file: str
    backend: str = "paddle"
    precision: str = "auto"
    source: Optional[str] = None

    @property
    def model_prefix(self) -> Optional[str]:
        return os.path.splitext(self.model_file)[0] if self.model_file.endswith(".pdmodel") else None

    @property
    def model_path(self) -> str:
        return os.path.join(self.path, self.model_file)


def float_candidates(output_dir: str) -> list[Candidate]:
    """The float models of a compress output: the unpruned `float/` first, then the vocabulary-trimmed one and the
    distilled student (if any), then each pruned width."""
    model_file = STATIC_MODEL_PREFIX + ".pdmodel"
    found = [Candidate(FLOAT_DIR, os.path.join(output_dir, FLOAT_DIR), model_file)]
    for name in (VOCAB_DIR, STUDENT_DIR):
        if os.path.isfile(os.path.join(output_dir, name, model_file)):
            found.append(Candidate(name, os.path.join(output_dir, name), model_file))
    for pruned in sorted(glob.glob(os.path.join(output_dir, WIDTH_DIR_PATTERN))):
        if os.path.isfile(os.path.join(pruned, model_file)):
            found.append(Candidate(os.path.basename(pruned), pruned, model_file))
    return found


def quantized_candidates(output_dir: str, sources: list[Candidate]) -> list[Candidate]:
    """The PTQ INT8 models paddlenlp wrote under each float candidate (one per algorithm × calibration setting)."""
    found = []
    for source in sources:
        for quantized in sorted(glob.glob(os.path.join(source.path, "*", QUANTIZED_PREFIX + ".pdmodel"))):
            directory = os.path.dirname(quantized)
            found.append(Candidate(os.path.relpath(directory, output_dir), directory, QUANTIZED_PREFIX + ".pdmodel",
                                   precision="int8", source=source.name))  # fmt: skip
    return found


def derived_candidate_path(source: Candidate, variant: str) -> tuple[str, str]:
    """(name, directory) of a candidate derived from a float one for another engine/precision, e.g. openvino-int8."""
    return f"{source.name}/{variant}", os.path.join(source.path, variant)


def compress_candidates(output_dir: str) -> list[Candidate]:
    """Every model of a compress output, float baseline first: floats, PTQ INT8 models."""
    floats = float_candidates(output_dir)
    return floats + quantized_candidates(output_dir, floats)
