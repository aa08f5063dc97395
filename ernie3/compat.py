"""The only module that knows about upstream breakages in the pinned stack (requirements.txt).

Each fix names the upstream problem it covers. Nothing else in the project works around library bugs.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional


#: OMP_NUM_THREADS as the user's environment had it, read before paddle's import overwrites it (see
#: use_every_core_for_training)
_USER_OMP_THREADS: Optional[str] = None


def configure_environment() -> None:
    """Environment settings that must be in place before paddle is first imported."""
    from ernie3.logs import quiet_native_logs

    global _USER_OMP_THREADS
    if "paddle" not in sys.modules:
        _USER_OMP_THREADS = os.environ.get("OMP_NUM_THREADS")

    # paddle 3.1 logs glog INFO lines to stderr at every static run and bf16 config (`New Executor is Running`,
    # `Hardware support for BFLOAT16 is enabled`), unasked; its Python API has no switch for glog's level.
    quiet_native_logs()
    if "paddle" not in sys.modules:
        # paddle 3.x exports PIR `model.json` by default; paddlenlp/paddleslim PTQ and
        # `enable_memory_optim()` need the legacy `model.pdmodel` program format.
        os.environ.setdefault("FLAGS_enable_pir_api", "0")
    # paddle's cpp_extension warns about ccache and setuptools about distutils at every import.
    warnings.filterwarnings("ignore", message="No ccache found")
    warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")


def use_every_core_for_training() -> int:
    """paddle 3.1's import sets OMP_NUM_THREADS=1 when it is unset (paddle/base/__init__.py `__bootstrap__`; a value
    above 1 makes it print a data-parallel WARNING on every import), so its dygraph CPU kernels train on one core.
    Measured here: a medium-shape step (batch 32 × seq 40) 3.7 s on one thread, 2.6 s on both cores. Called where
    training starts (fine-tuning, distillation, DynaBERT); inference engines set their own counts (--num_threads).
    The user's OMP_NUM_THREADS, as it was before paddle loaded, wins. Returns the thread count."""
    from paddle.base import core

    try:
        threads = max(1, int(_USER_OMP_THREADS)) if _USER_OMP_THREADS else training_threads()
    except ValueError:
        threads = training_threads()
    core.set_num_threads(threads)
    return threads


def training_threads() -> int:
    """Every core this process may run on, shared among the local processes of a multi-process launch."""
    local_processes = os.environ.get("PADDLE_LOCAL_SIZE") or os.environ.get("PADDLE_TRAINERS_NUM") or "1"
    try:
        share = max(1, int(local_processes))
    except ValueError:
        share = 1
    return max(1, len(os.sched_getaffinity(0)) // share)


_COMPRESSION_PATCHED = False


def patch_for_compression() -> None:
    """Make paddlenlp 2.8.1 `Trainer.compress()` + paddleslim 2.6.0 run on paddle 3.x. Idempotent."""
    global _COMPRESSION_PATCHED
    if _COMPRESSION_PATCHED:
        return
    _ptq_accepts_batch_generator()
    _super_layer_norm_uses_public_layer_norm()
    _COMPRESSION_PATCHED = True


class _FeedDictLoader:
    """Turns a generator of input lists into the feed-dict loader PostTrainingQuantization reads."""

    def __init__(self, batch_generator):
        self.batch_generator = batch_generator
        self.quantizer = None  # set once the quantizer exists; its feed names are known after the model loads

    def __call__(self):
        feed_names = self.quantizer._feed_list
        for batch in self.batch_generator():
            yield dict(zip(feed_names, batch))


def _ptq_accepts_batch_generator() -> None:
    # paddle >= 2.6: PostTrainingQuantization ignores `batch_generator=` (paddlenlp's Trainer.compress passes only
    # that) and asserts "data_loader cannot be None"; give it a loader that yields feed dicts from the generator.
    from paddle.static.quantization import PostTrainingQuantization

    original_init = PostTrainingQuantization.__init__

    def __init__(self, *args, batch_generator=None, data_loader=None, **kwargs):
        loader = data_loader
        if loader is None and batch_generator is not None:
            loader = _FeedDictLoader(batch_generator)
        original_init(self, *args, batch_generator=batch_generator, data_loader=loader, **kwargs)
        if isinstance(loader, _FeedDictLoader):
            loader.quantizer = self

    PostTrainingQuantization.__init__ = __init__


def _super_layer_norm_uses_public_layer_norm() -> None:
    # paddleslim 2.6 SuperLayerNorm.forward unpacks three results from the private `_C_ops.layer_norm`, which
    # returns one tensor on paddle 3.x ("too many values to unpack"); the public op on the sliced
    # weight/bias computes the same thing.
    import paddle.nn.functional as F
    from paddleslim.nas.ofa.layers import SuperLayerNorm

    def forward(self, input):
        feature_dim = int(input.shape[-1])
        weight = None if self._weight_attr is False else self.weight[:feature_dim]
        bias = None if self._bias_attr is False else self.bias[:feature_dim]
        self.cur_config = {"prune_dim": feature_dim}
        return F.layer_norm(input, [feature_dim], weight=weight, bias=bias, epsilon=self._epsilon)

    SuperLayerNorm.forward = forward


def trainer_class() -> type:
    """paddlenlp's Trainer with fixes for paddlenlp 2.8.1 behaviour that breaks plain uses of it."""
    import paddle.io as paddle_io
    from paddlenlp.trainer import Trainer
    from paddlenlp.trainer.trainer_utils import TrainOutput

    class _SeededEpochBatchSampler(paddle_io.DistributedBatchSampler):
        def __init__(self, dataset, seed: int, **kwargs):
            super().__init__(dataset, **kwargs)
            self.seed = seed
            self.set_epoch(0)

        def set_epoch(self, epoch: int) -> None:
            super().set_epoch((self.seed * 1_000_003 + epoch) % 2**32)

    class FixedTrainer(Trainer):
        #: sum of the training losses of the steps before the checkpoint a run resumes from (None: unknown)
        loss_before_resume: Optional[float] = 0.0

        def train(self, resume_from_checkpoint=None, *args, **kwargs):
            output = super().train(resume_from_checkpoint, *args, **kwargs)
            # paddlenlp 2.8.1 sums the losses of the resumed steps only, then divides by all steps (global_step):
            # a resumed run reports a train_loss far from the uninterrupted run's. Add the steps before.
            if resume_from_checkpoint and self.state.global_step and self.loss_before_resume is not None:
                loss = output.training_loss + self.loss_before_resume / self.state.global_step
                output.metrics["train_loss"] = loss
                output = TrainOutput(output.global_step, loss, output.metrics)
            return output

        def _get_train_sampler(self):
            # paddlenlp 2.8.1 shuffles a single-process run with paddle.io.BatchSampler, i.e. with numpy's global
            # RNG at the start of each epoch. A resumed run draws that permutation from a different RNG state,
            # so its batches differ from the uninterrupted run's (and the "skip the trained batches" step skips
            # the wrong ones). Multi-process runs use DistributedBatchSampler, whose order depends only on the
            # epoch it is told: use that here too, seeded by --seed so that seeds still give different orders.
            sampler = super()._get_train_sampler()
            single_process = isinstance(sampler, paddle_io.BatchSampler)
            if not single_process or isinstance(sampler, paddle_io.DistributedBatchSampler):
                return sampler
            return _SeededEpochBatchSampler(
                self.train_dataset, self.args.seed, batch_size=self.args.per_device_train_batch_size,
                num_replicas=1, rank=0, shuffle=True, drop_last=self.args.dataloader_drop_last,
            )  # fmt: skip

        def _load_from_checkpoint(self, resume_from_checkpoint=None):
            super()._load_from_checkpoint(resume_from_checkpoint)
            # paddlenlp 2.8.1 restores a checkpoint's RNG state (dropout) only after skipping the batches of a
            # partly trained epoch; resuming from a checkpoint at an epoch boundary continues with fresh RNG
            # state, so the resumed run drifts from the uninterrupted one. Restoring it here as well is harmless:
            # the mid-epoch path restores it again after its skipping.
            if resume_from_checkpoint and not self.args.should_load_sharding_stage1_model:
                self._load_rng_state(resume_from_checkpoint)

        def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test"):
            # paddlenlp 2.8.1 Trainer.predict asks for `prediction_loss_only=True` whenever `compute_metrics` is
            # None (a run with --do_predict and no dev set), so it returns the loss and no predictions at all.
            if self.compute_metrics is not None:
                return super().predict(test_dataset, ignore_keys, metric_key_prefix)
            self.compute_metrics = lambda prediction: {}
            try:
                return super().predict(test_dataset, ignore_keys, metric_key_prefix)
            finally:
                self.compute_metrics = None

    return FixedTrainer


def rotate_checkpoints_in_single_process(trainer) -> None:
    """Apply `save_total_limit` in a single-process run; multi-process runs rotate upstream already.

    paddlenlp 2.8.1 `Trainer._save_checkpoint` deletes old checkpoints only when `args.local_rank == 0`
    ("Delete only by one process"), but a run without paddle.distributed.launch has local_rank -1, so
    `save_total_limit` is silently ignored and every checkpoint is kept.
    """
    args = trainer.args
    if args.local_rank != -1 or not args.should_save_model_state or args.use_hybrid_parallel:
        return
    best = trainer.state.best_model_checkpoint
    if best:
        # upstream finds the best checkpoint by exact path string among the globbed ones (a ValueError otherwise):
        # a run resumed with the output dir spelled differently (relative/absolute) must still protect it
        local = os.path.join(args.output_dir, os.path.basename(os.path.normpath(best)))
        if not os.path.isdir(local):
            return  # the best checkpoint lives elsewhere; rotating could not protect it, so keep everything
        trainer.state.best_model_checkpoint = str(Path(local))
    # by step number, not mtime: a resumed run rewrites files, and mtimes of copied dirs mislead
    trainer._rotate_checkpoints(use_mtime=False, output_dir=args.output_dir)


@contextlib.contextmanager
def dynabert_logit_loss(loss: Callable[[Any, Any], Any]) -> Iterator[None]:
    """Within the block, DynaBERT distils each output with `loss(student_logits, teacher_logits)`."""
    # paddlenlp 2.8.1 `_dynabert_training` distils the logits with its module-level `soft_cross_entropy`, a softmax
    # cross-entropy whatever the task's head: a head read through sigmoids (multi-label) would learn only the
    # teacher's relative logits. The task's own distillation loss replaces it (same gradients for softmax heads).
    from paddlenlp.trainer import trainer_compress

    original = trainer_compress.soft_cross_entropy
    trainer_compress.soft_cross_entropy = loss
    try:
        yield
    finally:
        trainer_compress.soft_cross_entropy = original
