"""ernie3 pipeline: the whole job in one command — fine-tune → compress the best model → benchmark every compressed
candidate → one report (Markdown with an embedded plot, plus JSON) saying which model to deploy and how to run it.

    ernie3 pipeline --task_name tnews --model_name_or_path ernie-3.0-medium-zh \\
        --train_file train.json --dev_file dev.json --output_dir output/pipeline/tnews

Outputs, all under --output_dir (default output/pipeline/<task>):
    train/      the fine-tuning run (best/, export/, checkpoints), as run_<type>.py writes it
    compress/   the compression run (float/, width_mult_*/, PTQ and engine candidates, best/, report.*)
    pipeline_report.md, pipeline_report.json, pipeline_report.png   written last, only when every stage succeeded

Flags go to the stages by name (any flag of run_*.py or compress_*.py works):
    both stages   data and task flags: --task_name --train_file --dev_file --max_seq_length --skip_invalid_records
                  --config --config_replace, the task's own flags (QA: --doc_stride --max_query_length ...),
                  --device --seed, --overwrite_output_dir
    fine-tuning   every other Trainer flag (--num_train_epochs --learning_rate --per_device_train_batch_size
                  --max_steps ...); --test_file adds --do_predict
    compression   the compress-only flags (--strategy --width_mult_list --algo_list --batch_size_list
                  --batch_num_list --engines --max_metric_drop --num_threads --nncf_subset_size ...), and any
                  Trainer flag prefixed with compress_ for the DynaBERT distillation (--compress_max_steps 100
                  --compress_learning_rate 2e-5 → --max_steps 100 --learning_rate 2e-5 for compression only)
    benchmark     the flags below (--bench_*, --optimize_for)
Defaults of both stages come from config.yml as for the scripts (the compress: sections for compression).

The deploy pick: among the candidates within --max_metric_drop of the float model's dev metric (as compression
measured it), the one with the highest batch-N throughput (--optimize_for throughput) or the lowest batch-1 median
latency (--optimize_for latency), as this command's benchmark measured them through the Predictor over
--timing_rounds interleaved rounds (a compress flag; median and range over the rounds), or the smallest on disk (size) or of lowest
predictor peak RSS (memory), as compression measured them. Candidates whose ranges overlap the best's are a tie,
broken by the metric, then by size: the same rule as compression's own best pick (ernie3.pick), which gets
--optimize_for too.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import shlex
import sys
import time
from typing import Any, Iterator, Optional, Sequence

from ernie3 import layout
from ernie3.errors import UserError, run_cli
from ernie3.layout import Candidate
from ernie3.lightweight import OBJECTIVES, peak_rss_of
from ernie3.pick import OBJECTIVE_FIGURES, is_within_drop, pick_best, tie_note
from ernie3.timing import DEFAULT_ROUNDS, SETTLE_SECONDS, Spread, format_duration, interleaved_figures

#: what a pipeline output dir's run record says wrote it (see ernie3.files.RUN_RECORD)
PIPELINE_KIND = "pipeline"
STAGES = ("fine-tune", "compress", "benchmark")
#: flags the pipeline sets for its stages itself
SET_BY_PIPELINE = ("output_dir", "do_train", "do_eval", "do_export", "do_predict", "do_compress", "export_model_dir",
                   "input_infer_model_path", "logging_dir")  # fmt: skip
#: Trainer flags that mean the same to both stages
SHARED_TRAINER_FLAGS = ("device", "seed", "overwrite_output_dir")
#: prefix of a Trainer flag meant for the compress stage's DynaBERT distillation only
COMPRESS_PREFIX = "compress_"
#: the entry points the report's deploy commands name (the repository's scripts, same flags as `ernie3 infer` etc.)
INFER_COMMAND = "python infer.py"
DEPLOY_COMMAND = "python deploy/python/infer_cpu.py"
SERVE_COMMAND = "python deploy/serving/serve.py --config SERVING_CONFIG.yml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ernie3 pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a stage flag such as --optim must not be taken for --optimize_for
    )
    parser.add_argument("--task_name", required=True, help="the task, e.g. tnews, afqmc, msra_ner, cmrc2018")
    parser.add_argument("--model_name_or_path", required=True, help="a pretrained model: hub name or local directory")
    parser.add_argument("--output_dir", help="where every stage writes (default: output/pipeline/<task>)")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="replace a previous pipeline output in --output_dir (only what a pipeline wrote there)")  # fmt: skip
    parser.add_argument("--bench_batch_size", type=int, default=32, help="the batch size of the throughput figures")
    parser.add_argument("--bench_examples", type=int, default=128,
                        help="dev examples each candidate runs in the benchmark (the first N)")  # fmt: skip
    parser.add_argument("--bench_min_seconds", type=float, default=2.0,
                        help="time each candidate at each batch size at least this long")  # fmt: skip
    parser.add_argument("--optimize_for", choices=OBJECTIVES, default="throughput",
                        help="what the deploy pick optimises among candidates within --max_metric_drop: batch-N "
                             "throughput (offline / batched serving), batch-1 median latency (one request at a time), "
                             "size on disk, or predictor peak RSS (memory)")  # fmt: skip
    return parser


# -- flags → stages -----------------------------------------------------------------------------------------------


def field_names(cls: Optional[type]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} if cls is not None else set()


@dataclasses.dataclass
class StageFlags:
    """The flag names each stage takes, from the dataclasses its parser is built from."""

    both: set[str]
    training: set[str]
    compression: set[str]

    @classmethod
    def of(cls, task: Any) -> "StageFlags":
        from paddlenlp.trainer import CompressionArguments, TrainingArguments

        from ernie3.args import DataArguments, ModelArguments
        from ernie3.compress import EXTRA_ARGUMENTS

        trainer = field_names(TrainingArguments)
        both = field_names(DataArguments) | field_names(task.options_class) | set(SHARED_TRAINER_FLAGS)
        compress_only = (field_names(CompressionArguments) - trainer).union(*map(field_names, EXTRA_ARGUMENTS))
        # --optimize_for is the pipeline's own flag (its parser takes it); main() passes it on to compression
        compress_only -= {"optimize_for"}
        return cls(both, (trainer | field_names(ModelArguments)) - both, compress_only)


def flag_groups(tokens: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`--name value ...` tokens as (name, values); `--name=value` too."""
    groups: list[tuple[str, list[str]]] = []
    for token in tokens:
        if token.startswith("--"):
            name, has_value, value = token[2:].partition("=")
            groups.append((name, [value] if has_value else []))
        elif groups:
            groups[-1][1].append(token)
        else:
            raise UserError(f"unexpected argument '{token}' (flags start with --; see ernie3 pipeline --help)")
    return groups


def route_flags(tokens: Sequence[str], flags: StageFlags) -> tuple[list[str], list[str]]:
    """(fine-tuning argv, compression argv) of the flags the pipeline does not handle itself."""
    training: list[str] = []
    compression: list[str] = []
    for name, values in flag_groups(tokens):
        base = name[3:] if name.startswith("no_") else name  # --no_<flag> of a boolean flag
        if base in SET_BY_PIPELINE:
            raise UserError(f"--{name}: the pipeline sets this itself (outputs go under --output_dir)")
        if base in flags.both:
            training += [f"--{name}", *values]
            compression += [f"--{name}", *values]
        elif base in flags.compression:
            compression += [f"--{name}", *values]
        elif base in flags.training:
            training += [f"--{name}", *values]
        elif name.startswith(COMPRESS_PREFIX) and name[len(COMPRESS_PREFIX) :] in flags.training | flags.compression:
            compression += [f"--{name[len(COMPRESS_PREFIX):]}", *values]
        else:
            raise UserError(f"--{name}: unknown flag (see ernie3 pipeline --help for which flags go to which stage)")
    return training, compression


# -- up-front checks ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """paddlenlp's logger off while the stages' flags are only checked (each stage logs its settings when it runs)."""
    from paddlenlp.utils.log import logger

    logger.disable()
    try:
        yield
    finally:
        logger.enable()


def check_output_dir(output_dir: str, model_dir: str, data_files: Sequence[Optional[str]], overwrite: bool) -> None:
    """Before any work: a writable place outside the input model, empty or a previous pipeline output (with
    --overwrite_output_dir), and no input file inside what an overwrite replaces."""
    from ernie3.files import check_output_location, foreign_entries, paths_overlap

    check_output_location(output_dir, "--output_dir")
    if os.path.isdir(model_dir) and paths_overlap(output_dir, model_dir):
        raise UserError(f"--output_dir: {output_dir} overlaps the input model directory {model_dir} "
                        "(--model_name_or_path); choose an output directory outside it")  # fmt: skip
    if not (os.path.isdir(output_dir) and os.listdir(output_dir)):
        return
    if not overwrite:
        raise UserError(f"--output_dir: {output_dir} is not empty; pass --overwrite_output_dir to replace the "
                        "previous pipeline output there")  # fmt: skip
    foreign = foreign_entries(output_dir, PIPELINE_KIND, layout.PIPELINE_LAYOUT)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"--overwrite_output_dir: {output_dir} holds {shown}, which no previous pipeline run wrote; "
                        "refusing to replace it (choose a new or empty --output_dir)")  # fmt: skip
    for path in data_files:
        if path and paths_overlap(path, output_dir):
            raise UserError(f"--overwrite_output_dir: input file {path} lies inside {output_dir}; move it first")


@dataclasses.dataclass
class Plan:
    """What the stages were asked for, parsed and checked before any of them runs."""

    task: Any
    training: Any  # ernie3.args.RunArguments of the fine-tuning stage
    compression: Any  # ... and of the compress stage (its extra holds the candidate evaluation settings)


def check_stage_flags(model_dir: str, training_argv: list[str], compression_argv: list[str]) -> Plan:
    """Parse both stages' flags now (with the input model standing in for the not yet fine-tuned one), so that a
    bad flag or setting fails before fine-tuning rather than after it."""
    from ernie3.args import parse_arguments
    from ernie3.compress import (EXTRA_ARGUMENTS, CandidateEvaluationArguments, check_compression_settings,
                                 pruned_model_config, read_model_config)  # fmt: skip
    from ernie3.distill import DistillationArguments, check_augmentation, check_distillation_settings
    from ernie3.lightweight import check_strategy
    from ernie3.modeling import check_model_source

    with quiet_library_logs():
        training = parse_arguments(training_argv, None)
        compression = parse_arguments(compression_argv, None, EXTRA_ARGUMENTS, for_compression=True)
    distillation = compression.extra[DistillationArguments]
    check_distillation_settings(compression.training.strategy, distillation)
    if "distill" in compression.training.strategy.split("+"):
        check_augmentation(training.task, distillation)
    check_strategy(compression.training.strategy, compression.training.width_mult_list)
    if check_model_source(model_dir) is not None:  # a local model: its shape decides which widths keep whole heads
        config = pruned_model_config(read_model_config(model_dir), compression.training.strategy, distillation)
        check_compression_settings(compression.training, config, compression.extra[CandidateEvaluationArguments])
    return Plan(training.task, training, compression)


# -- cost ---------------------------------------------------------------------------------------------------------

#: measured on this project's shared 2-core machines (paddle 3.1.1 CPU): effective training speed in multiply-adds
#: per second (forward + backward ≈ 3 × forward), the time to build and evaluate one small candidate, and to load
#: and warm up one Predictor
TRAIN_MACS_PER_SECOND = 1.2e10
SECONDS_PER_CANDIDATE = 2.0
SECONDS_PER_PREDICTOR = 0.6
#: measuring one candidate's peak RSS in a process of its own (--measure_rss): interpreter + paddle import + warm-up
SECONDS_PER_RSS_PROBE = 6.0
#: model copies the fine-tuning stage leaves on disk: a checkpoint (weights + optimizer moments), best/, export/
TRAINING_COPIES = 6


def encoder_parameters(model_dir: str) -> Optional[int]:
    """Parameters of the encoder layers (embeddings cost no multiply-adds), from a local model's config."""
    from ernie3.modeling import model_config_value

    hidden = model_config_value(model_dir, "hidden_size")
    layers = model_config_value(model_dir, "num_hidden_layers")
    inner = model_config_value(model_dir, "intermediate_size")
    if not (hidden and layers and inner):
        return None
    return layers * (4 * hidden * hidden + 2 * hidden * inner)


def examples_seen(arguments: Any, train_examples: int) -> int:
    """Training examples a Trainer run goes through: --max_steps batches, else the epochs over the train set."""
    if arguments.max_steps > 0:
        return arguments.max_steps * arguments.per_device_train_batch_size
    return math.ceil(train_examples * arguments.num_train_epochs)


def cost_estimate(plan: Plan, model_dir: str, train_examples: Optional[int], bench: argparse.Namespace) -> str:
    """What the run will cost, said before it starts: a rough figure from the model's shape and the data size."""
    from ernie3.compress import CandidateEvaluationArguments, disk_need_mb, expected_candidates
    from ernie3.lightweight import LightweightArguments

    compression = plan.compression.training
    max_seq_length = plan.training.data.max_seq_length
    candidates = expected_candidates(plan.compression)
    lines = [f"pipeline: {plan.task.name}: fine-tune → compress (strategy {compression.strategy}, about {candidates} "
             f"candidates) → benchmark of each at batch 1 and {bench.bench_batch_size}"]  # fmt: skip
    parameters = encoder_parameters(model_dir)
    if not (train_examples and parameters):
        lines.append("  expected cost: depends on the model and data (a hub model or online data set: not estimated)")
        return "\n".join(lines)
    # padded to the batch's longest input: max_seq_length bounds it; short-text tasks cost less
    per_example = parameters * max_seq_length / TRAIN_MACS_PER_SECOND / 60
    training = examples_seen(plan.training.training, train_examples)
    train_minutes = training * 3 * per_example
    # DynaBERT distillation: the teacher's forward pass on top of the student's forward and backward
    distilled = examples_seen(compression, train_examples) if "dynabert" in compression.strategy else 0
    if "distill" in compression.strategy:  # task distillation: the teacher's forward beside the student's training
        distilled += examples_seen(compression, train_examples)
    distilled += examples_seen(compression, train_examples) if "qat" in compression.strategy else 0
    light = plan.compression.extra[LightweightArguments]
    probes = (candidates if light.optimize_for == "memory" else 2) if light.measure_rss else 0
    compress_minutes = (distilled * 4 * per_example + candidates * SECONDS_PER_CANDIDATE / 60
                        + probes * SECONDS_PER_RSS_PROBE / 60)  # fmt: skip
    rounds = plan.compression.extra[CandidateEvaluationArguments].timing_rounds
    # compression times every candidate in each of its timing rounds; the benchmark at 2 batch sizes per round
    compress_minutes += candidates * rounds * SECONDS_PER_PREDICTOR / 60
    bench_minutes = candidates * 2 * rounds * (bench.bench_min_seconds + SECONDS_PER_PREDICTOR) / 60
    size_mb = (parameters + model_config_size(model_dir)) * 4 / 2**20
    # fine-tuning: checkpoints (weights + optimizer state), best/ and export/; compression as it states itself
    disk_mb = TRAINING_COPIES * size_mb + disk_need_mb(plan.compression, size_mb)
    lines.append(f"  expected on 2 CPU cores, roughly: fine-tuning {format_duration(train_minutes * 60)} ({training} "
                 f"examples of up to {max_seq_length} tokens), compression {format_duration(compress_minutes * 60)}, "
                 f"benchmark {format_duration(bench_minutes * 60)} ({rounds} timing rounds); disk "
                 f"~{disk_mb:.0f} MB ({size_mb:.0f} MB per model copy); longer on a busy machine")  # fmt: skip
    return "\n".join(lines)


def model_config_size(model_dir: str) -> int:
    """Embedding parameters (vocabulary × hidden), which add to the size on disk."""
    from ernie3.modeling import model_config_value

    return (model_config_value(model_dir, "vocab_size") or 0) * (model_config_value(model_dir, "hidden_size") or 0)


def count_examples(task: Any, path: Optional[str]) -> Optional[int]:
    from ernie3.data import load_examples

    if not path:
        return None
    with quiet_library_logs():
        return len(load_examples(task, "train", path))


# -- stages -------------------------------------------------------------------------------------------------------


def announce(number: int, message: str) -> float:
    print(f"[pipeline {number}/{len(STAGES)}] {STAGES[number - 1]}: {message}", flush=True)
    return time.time()


def benchmark_candidates(
    candidates: Sequence[Candidate],
    examples: list[dict],
    batch_size: int,
    num_threads: int,
    min_seconds: float,
    rounds: int = DEFAULT_ROUNDS,
) -> dict[str, dict]:
    """Batch-1 latency and batch-N throughput of every candidate, end to end through the Predictor, over
    `rounds` interleaved rounds (each round times every candidate once, in rotated order; predictors rebuilt and
    warmed up in each round, so that no more than one candidate's is in memory): medians, with `<figure>_spread`."""
    from ernie3.cli.bench import measure_candidate

    by_name = {candidate.name: candidate for candidate in candidates}
    done = [0]

    def measure(candidate: Candidate):
        def run() -> dict:
            figures = measure_candidate(candidate, examples, [1, batch_size], num_threads, min_seconds)
            one, many = figures[1], figures[batch_size]
            return {"batch1_latency_p50_ms": one["latency_p50_ms"], "batch1_latency_p99_ms": one["latency_p99_ms"],
                    "batch1_throughput": one["throughput"], "batch_throughput": many["throughput"],
                    "batch_latency_p50_ms": many["latency_p50_ms"]}  # fmt: skip
        return run

    def progress(round_index: int, name: str, found: dict) -> None:
        done[0] += 1
        candidate = by_name[name]
        print(f"  {done[0]}/{rounds * len(candidates)} round {round_index + 1}: {name} ({candidate.backend} "
              f"{candidate.precision}): batch 1 p50 {found['batch1_latency_p50_ms']:.1f} ms; batch {batch_size} "
              f"{found['batch_throughput']:.1f} seq/s", flush=True)  # fmt: skip

    spreads = interleaved_figures({c.name: measure(c) for c in candidates}, rounds, progress, SETTLE_SECONDS)
    measured = {}
    for name, figures in spreads.items():
        measured[name] = {key: round(spread.median, 3) for key, spread in figures.items()}
        for key in ("batch1_latency_p50_ms", "batch_throughput"):
            measured[name][f"{key}_spread"] = figures[key].as_dict()
    return measured


def candidates_of(report: dict) -> list[Candidate]:
    """The compress report's candidates as layout records (float baseline first)."""
    return [Candidate(r["name"], r["path"], r["model_file"], r["backend"], r["precision"], r.get("quantized_from"))
            for r in report["candidates"]]  # fmt: skip


# -- the deploy pick and its commands -------------------------------------------------------------------------------


def input_flag_values(task: Any, raw: Any) -> Optional[list[tuple[str, str]]]:
    """The deploy script's input flags that give one raw input (the task's sample), checked by reading them back."""
    flags = list(task.input_flags)
    if isinstance(raw, dict):
        values = [raw.get(flag) for flag in flags]
    elif isinstance(raw, (list, tuple)):
        values = list(raw)
    else:
        values = [raw]
    if len(values) != len(flags) or not all(isinstance(v, str) for v in values):
        return None
    try:
        if task.inputs_from_flags({flag: [value] for flag, value in zip(flags, values)}) != [raw]:
            return None
    except ValueError:
        return None
    return list(zip(flags, values))


def deploy_commands(task: Any, model_path: str, dev_file: Optional[str], num_threads: int) -> dict[str, Any]:
    """How to run the picked model: infer.py on the dev set (metric + speed), deploy/python on raw inputs, serving."""
    infer_argv = ["--model_path", model_path, *(["--dev_file", dev_file] if dev_file else []), "--perf",
                  "--num_threads", str(num_threads)]  # fmt: skip
    deploy_argv = ["--model_path", model_path, "--num_threads", str(num_threads)]
    samples = task.sample_inputs()
    sample_flags = input_flag_values(task, samples[0]) if samples else None
    for flag, value in sample_flags or [(next(iter(task.input_flags)), "TEXT")]:
        deploy_argv += [f"--{flag}", value]
    serving = (f"models:\n  - name: {task.name}\n    path: {os.path.abspath(model_path)}\n    num_threads: {num_threads}")
    return {
        "infer_argv": infer_argv,
        "infer": f"{INFER_COMMAND} {shlex.join(infer_argv)}",
        "deploy_argv": deploy_argv,
        "deploy": f"{DEPLOY_COMMAND} {shlex.join(deploy_argv)}",
        "serving_config": serving,
        "serve": SERVE_COMMAND,
    }


def pick_deployment(
    rows: list[dict], max_metric_drop: float, optimize_for: str, higher_is_better: bool = True
) -> tuple[dict, list[str]]:
    """Compression's pick rule (ernie3.pick), with throughput and latency as this command's benchmark measured
    them: (the pick, the candidates it tied with)."""
    return pick_best(rows, max_metric_drop, optimize_for, higher_is_better, throughput_key="batch_throughput",
                     latency_key="batch1_latency_p50_ms")  # fmt: skip


def spread_text(row: dict, key: str, digits: int, unit: str) -> str:
    """A measured figure as "median unit, range low–high over N rounds", or the bare number where it has no spread."""
    spread = row.get(f"{key}_spread")
    if not spread:
        return f"{row[key]:.{digits}f} {unit}"
    found = Spread.from_dict(spread)
    return (f"{found.median:.{digits}f} {unit}, range {found.low:.{digits}f}–{found.high:.{digits}f} over "
            f"{found.rounds} rounds")  # fmt: skip


def relation_to_compress(picked: str, compressed: dict, optimize_for: str, batch_size: int) -> str:
    """How the deploy pick relates to compression's best/ (the same rule; other figures for speed)."""
    best = compressed["best"]
    if picked == best:
        return f"It is also compression's best/ ({best})."
    if optimize_for in ("size", "memory"):  # the same figures: the same rule cannot differ (kept as a guard)
        return f"Compression's best/ is {best}."
    settings = compressed["settings"]
    return (f"Compression's best/ is {best}: the same pick rule on its evaluation pass (batch "
            f"{settings['batch_size']}, {settings.get('timing', {}).get('examples', settings['eval_examples'])} dev "
            f"examples); this pick rests on the end-to-end benchmark at batch 1 and {batch_size} above, so deploy "
            f"{picked} for that load.")  # fmt: skip


# -- the report -----------------------------------------------------------------------------------------------------


def plot(rows: list[dict], picked: dict, batch_size: int, path: str) -> None:
    """Batch-1 median latency and batch-N throughput per candidate; the deploy pick outlined, candidates outside the
    metric drop faded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    colours = {"fp32": "#4c72b0", "bf16": "#55a868", "int8": "#dd8452"}
    colour = [colours.get(r["precision"], "#8172b2") for r in rows]
    height = max(3.0, 0.32 * len(rows) + 1.2)
    figure, axes = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    panels = ((axes[0], "batch1_latency_p50_ms", "batch 1: median latency (ms, lower is better)"),
              (axes[1], "batch_throughput", f"batch {batch_size}: throughput (seq/s, higher is better)"))  # fmt: skip
    for axis, key, title in panels:
        # error bars: the range over the timing rounds
        spreads = [Spread.from_dict(r[f"{key}_spread"]) if r.get(f"{key}_spread") else None for r in rows]
        # clamped at 0: the shown figure is rounded, so with a tiny range it may sit just outside it
        errors = [[max(0.0, r[key] - s.low) if s else 0.0 for r, s in zip(rows, spreads)],
                  [max(0.0, s.high - r[key]) if s else 0.0 for r, s in zip(rows, spreads)]]  # fmt: skip
        bars = axis.barh(range(len(rows)), [r[key] for r in rows], color=colour, xerr=errors, ecolor="#333333",
                         error_kw={"elinewidth": 0.8, "capsize": 2})  # fmt: skip
        for bar, row in zip(bars, rows):
            if not row["within_drop"]:
                bar.set_alpha(0.35)
            if row is picked:
                bar.set_edgecolor("black")
                bar.set_linewidth(2.0)
        axis.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        axis.margins(x=0.15)  # room for the labels
        axis.set_title(title, fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
    axes[0].set_yticks(range(len(rows)), [f"{n} ◀ deploy" if r is picked else n for n, r in zip(names, rows)], fontsize=8)
    axes[0].invert_yaxis()
    from matplotlib.patches import Patch

    shown = dict.fromkeys(r["precision"] for r in rows)
    handles = [Patch(color=colours.get(p, "#8172b2"), label=p) for p in shown]
    handles.append(Patch(color="#999999", alpha=0.35, label="faded: outside the metric drop"))
    figure.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles), frameon=False)
    figure.tight_layout(rect=(0, 0.4 / height, 1, 1))  # room for the legend below the panels
    partial = path + ".partial.png"
    figure.savefig(partial, dpi=110)
    plt.close(figure)
    os.replace(partial, path)


def cell(row: dict, key: str, digits: int) -> str:
    spread = row.get(f"{key}_spread")
    return Spread.from_dict(spread).cell(digits) if spread else f"{row[key]:.{digits}f}"


def markdown_report(report: dict, task: Any) -> str:
    deploy, settings = report["deploy"], report["settings"]
    batch = settings["bench_batch_size"]
    rows = report["candidates"]
    metric_names = list(rows[0]["metrics"])
    header = ["candidate", "engine", "numeric precision", *metric_names, "agreement with float", "size (MB)",
              "batch 1 p50 (ms): median (range)", "batch 1 p99 (ms)", f"batch {batch} (seq/s): median (range)",
              "within drop", "deploy"]  # fmt: skip
    lines = [
        f"# Pipeline report: {task.name}",
        "",
        f"Model `{settings['model_name_or_path']}` fine-tuned on `{settings['train_file']}`, compressed "
        f"(strategy `{report['stages']['compress']['strategy']}`), every candidate measured on "
        f"`{settings['dev_file']}`. Wall time {report['wall_seconds']:.0f} s "
        f"(fine-tune {report['stages']['fine-tune']['seconds']:.0f} s, compress "
        f"{report['stages']['compress']['seconds']:.0f} s, benchmark {report['stages']['benchmark']['seconds']:.0f} s).",
        "",
        f"## Deploy: {deploy['candidate']} — run it with: `{deploy['commands']['infer']}`",
        "",
        f"{deploy['reason']}",
        "",
        "```bash",
        "# the dev metric and speed of the picked model",
        deploy["commands"]["infer"],
        "# raw inputs in, one JSON result per line out",
        deploy["commands"]["deploy"],
        "# serving: put this model in a serving config (see deploy/serving/README.md), then",
        deploy["commands"]["serve"],
        "```",
        "",
        "```yaml",
        deploy["commands"]["serving_config"],
        "```",
        "",
        f"![batch-1 latency and batch-{batch} throughput per candidate]({layout.PIPELINE_PLOT})",
        "",
        "## Candidates",
        "",
        f"Metrics and agreement with the float model on {report['stages']['compress']['eval_examples']} dev examples "
        f"(compression's evaluation); latency and throughput end to end (tokenization + model + decoding) through the "
        f"Predictor on {settings['bench_examples_used']} dev examples, {settings['num_threads']} CPU threads, "
        f"after warm-up; medians and ranges (lowest–highest) over "
        f"{report['stages']['benchmark'].get('timing_rounds', 1)} interleaved rounds (each round times every "
        f"candidate once, in rotated order; a difference within the ranges is a tie). Within drop: the dev {task.metric_name} is within {settings['max_metric_drop']:.1%} of the "
        f"float model's.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in rows:
        cells = [r["name"], r["backend"], r["precision"], *(f"{r['metrics'][m]:.4f}" for m in metric_names),
                 f"{r['agreement_with_float']:.2%}", f"{r['size_mb']:.2f}", cell(r, "batch1_latency_p50_ms", 2),
                 f"{r['batch1_latency_p99_ms']:.2f}", cell(r, "batch_throughput", 1), "✓" if r["within_drop"] else "",
                 "**deploy**" if r["name"] == deploy["candidate"] else ""]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    train = report["stages"]["fine-tune"]
    lines += [
        "",
        "## Stages",
        "",
        f"- fine-tune: dev {train['metric_summary']}; best checkpoint `{train['best_model_dir']}`, static export "
        f"`{train['export_dir']}`",
        f"- compress: `{report['stages']['compress']['output_dir']}` (its own report: "
        f"`{report['stages']['compress']['report']}`; its best/ by the same rule on its evaluation pass: "
        f"{report['stages']['compress']['best']})",
        f"- this report: `{layout.PIPELINE_REPORT_JSON}` beside it holds every figure",
    ]
    return "\n".join(lines) + "\n"


def write_report(output_dir: str, report: dict, task: Any) -> str:
    """PNG, JSON, then the Markdown that refers to both: each atomically, the Markdown last."""
    from ernie3.files import write_json_atomic, write_text_atomic

    plot(report["candidates"], next(r for r in report["candidates"] if r["name"] == report["deploy"]["candidate"]),
         report["settings"]["bench_batch_size"], os.path.join(output_dir, layout.PIPELINE_PLOT))  # fmt: skip
    write_json_atomic(os.path.join(output_dir, layout.PIPELINE_REPORT_JSON), report)
    markdown = markdown_report(report, task)
    path = os.path.join(output_dir, layout.PIPELINE_REPORT_MD)
    write_text_atomic(path, markdown)
    return path


def remove_previous_reports(output_dir: str) -> None:
    """A run that fails must not leave an earlier run's report looking like its own."""
    for name in layout.PIPELINE_REPORTS:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(output_dir, name))


# -- the command ----------------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> dict:
    from ernie3 import compress, train
    from ernie3.data import load_examples
    from ernie3.export import task_of_model_dir
    from ernie3.files import write_run_record
    from ernie3.tasks import get_task

    started = time.time()
    args, rest = build_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    for name in ("bench_batch_size", "bench_examples"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not (math.isfinite(args.bench_min_seconds) and args.bench_min_seconds >= 0):
        raise UserError(f"--bench_min_seconds must be a finite number >= 0, got {args.bench_min_seconds}")
    task = get_task(args.task_name)
    output_dir = args.output_dir or os.path.join("output", "pipeline", task.name)
    train_dir = os.path.join(output_dir, layout.PIPELINE_TRAIN_DIR)
    compress_dir = os.path.join(output_dir, layout.PIPELINE_COMPRESS_DIR)
    training_flags, compression_flags = route_flags(rest, StageFlags.of(task))
    common = ["--task_name", task.name, *(["--overwrite_output_dir"] if args.overwrite_output_dir else [])]
    steps = ["--do_train", "--do_eval", "--do_export"]
    training_argv = [*common, "--model_name_or_path", args.model_name_or_path, "--output_dir", train_dir, *steps,
                     *training_flags]  # fmt: skip
    if "--test_file" in training_flags:
        training_argv.append("--do_predict")

    def compression_argv_for(model_dir: str) -> list[str]:
        return [*common, "--model_name_or_path", model_dir, "--output_dir", compress_dir, *compression_flags,
                "--optimize_for", args.optimize_for]  # fmt: skip

    compression_argv = compression_argv_for(os.path.join(train_dir, layout.BEST_DIR))
    # everything that can be checked before any long work (the input model stands in for the fine-tuned one)
    plan = check_stage_flags(args.model_name_or_path, training_argv, compression_argv_for(args.model_name_or_path))
    data = plan.training.data
    check_output_dir(output_dir, args.model_name_or_path, [data.train_file, data.dev_file, data.test_file],
                     args.overwrite_output_dir)  # fmt: skip
    print(cost_estimate(plan, args.model_name_or_path, count_examples(task, data.train_file), args), flush=True)

    os.makedirs(output_dir, exist_ok=True)
    remove_previous_reports(output_dir)
    write_run_record(output_dir, PIPELINE_KIND, command="ernie3 pipeline", task=task.name)

    stage_started = announce(1, f"{args.model_name_or_path} on {data.train_file or 'the online train split'} → {train_dir}")
    trained = train.run(None, training_argv)
    fine_tune_seconds = time.time() - stage_started
    trained_task = task_of_model_dir(trained["best_model_dir"])
    summary = trained_task.metric_summary(trained["eval"], prefix="eval_")
    print(f"  done in {fine_tune_seconds:.0f} s: dev {summary}", flush=True)

    stage_started = announce(2, f"{trained['best_model_dir']} → {compress_dir}")
    compressed = compress.run(None, compression_argv)
    compress_seconds = time.time() - stage_started
    print(f"  done in {compress_seconds:.0f} s: {len(compressed['candidates'])} candidates", flush=True)

    candidates = candidates_of(compressed)
    num_threads = compressed["settings"]["num_threads"]
    with quiet_library_logs():
        examples = load_examples(trained_task, "dev", data.dev_file)[: args.bench_examples]
    stage_started = announce(3, f"{len(candidates)} candidates at batch 1 and {args.bench_batch_size}, "
                                f"{len(examples)} dev examples, {num_threads} threads")  # fmt: skip
    timing_rounds = compressed["settings"].get("timing_rounds", DEFAULT_ROUNDS)
    measured = benchmark_candidates(candidates, examples, args.bench_batch_size, num_threads, args.bench_min_seconds,
                                    timing_rounds)  # fmt: skip
    bench_seconds = time.time() - stage_started

    max_metric_drop = compressed["settings"]["max_metric_drop"]
    reference = compressed["candidates"][0]["metric"]
    rows = [{**{k: v for k, v in r.items() if k not in ("throughput", "throughput_spread")},
             "eval_throughput": r["throughput"], "eval_throughput_spread": r.get("throughput_spread"),
             **measured[r["name"]],
             "within_drop": is_within_drop(r["metric"], reference, max_metric_drop, trained_task.higher_is_better)}
            for r in compressed["candidates"]]  # fmt: skip
    picked, tied_with = pick_deployment(rows, max_metric_drop, args.optimize_for, trained_task.higher_is_better)
    deploy_path = picked["path"]
    objective = {
        "latency": lambda: f"the lowest batch-1 median latency ({spread_text(picked, 'batch1_latency_p50_ms', 2, 'ms')})",
        "throughput": lambda: (f"the highest batch-{args.bench_batch_size} throughput "
                               f"({spread_text(picked, 'batch_throughput', 1, 'seq/s')})"),
        "size": lambda: f"the smallest size on disk ({picked['size_mb']:.2f} MB)",
        "memory": lambda: f"the lowest predictor peak RSS ({peak_rss_of(picked):.0f} MB)",
    }[args.optimize_for]()  # fmt: skip
    reason = (f"`{picked['name']}` ({picked['backend']} {picked['precision']}, {picked['size_mb']:.1f} MB) has "
              f"{objective} among the {sum(r['within_drop'] for r in rows)} candidates whose dev "
              f"{trained_task.metric_name} is within {max_metric_drop:.1%} of the float model's "
              f"({trained_task.metric_name} {picked['metric']:.4f} vs {rows[0]['metric']:.4f}; agreement with float "
              f"{picked['agreement_with_float']:.2%}). Its directory `{deploy_path}` loads on its own: tokenizer, "
              f"task record and the backend/precision it was measured with.")  # fmt: skip
    note = tie_note(picked, tied_with, OBJECTIVE_FIGURES[args.optimize_for], args.optimize_for)
    if note:
        reason += f" A tie: {note}."
    reason += " " + relation_to_compress(picked["name"], compressed, args.optimize_for, args.bench_batch_size)
    report = {
        "task": trained_task.name,
        "settings": {
            "argv": list(sys.argv[1:] if argv is None else argv), "model_name_or_path": args.model_name_or_path,
            "train_file": data.train_file, "dev_file": data.dev_file, "output_dir": output_dir,
            "optimize_for": args.optimize_for, "bench_batch_size": args.bench_batch_size,
            "bench_examples_used": len(examples), "bench_min_seconds": args.bench_min_seconds,
            "num_threads": num_threads, "max_metric_drop": max_metric_drop,
            "training_argv": training_argv, "compression_argv": compression_argv,
        },
        "stages": {
            "fine-tune": {"output_dir": train_dir, "best_model_dir": trained["best_model_dir"],
                          "export_dir": trained["export_dir"], "eval": trained["eval"], "metric_summary": summary,
                          "seconds": round(fine_tune_seconds, 1)},
            "compress": {"output_dir": compress_dir, "strategy": compressed["settings"]["strategy"],
                         "report": os.path.join(compress_dir, layout.REPORT_MD), "best": compressed["best"],
                         "eval_examples": compressed["settings"]["eval_examples"], "seconds": round(compress_seconds, 1)},
            "benchmark": {"seconds": round(bench_seconds, 1), "timing_rounds": timing_rounds},
        },
        "candidates": rows,
        "deploy": {"candidate": picked["name"], "tied_with": tied_with, "path": deploy_path, "backend": picked["backend"],
                   "precision": picked["precision"], "reason": reason,
                   "commands": deploy_commands(trained_task, deploy_path, data.dev_file, num_threads)},
        "wall_seconds": round(time.time() - started, 1),
    }  # fmt: skip
    markdown_path = write_report(output_dir, report, trained_task)
    print(f"[pipeline] report: {markdown_path} (+ {layout.PIPELINE_REPORT_JSON}, {layout.PIPELINE_PLOT}); "
          f"deploy {picked['name']}: {report['deploy']['commands']['infer']}", flush=True)  # fmt: skip
    logs = [path for path in (trained.get("log_file"), compressed.get("log_file")) if path]
    if logs:
        print(f"[pipeline] library logs (INFO/DEBUG lines): {', '.join(logs)}", flush=True)
    report["markdown_file"] = markdown_path
    return report


if __name__ == "__main__":
    run_cli(main)
