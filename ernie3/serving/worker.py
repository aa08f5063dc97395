"""The FastAPI service's models at work: each model's Predictor is owned by one worker thread (Paddle predictors
are not thread-safe) that runs batches of texts gathered from requests that arrive together; a request bigger than a
batch runs in parts that take turns with other requests. The event loop only awaits the results, so it keeps
answering while models compute."""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ernie3.errors import UserError
from ernie3.serving.config import ModelSpec
from ernie3.serving.models import (BatchStats, describe_model, last_line, load_predictor, recorded_max_seq_length,
                                   warm_up)  # fmt: skip
from ernie3.serving.protocol import InternalError, RequestError, count_characters, new_request_id

logger = logging.getLogger("uvicorn.error")  # runtime messages appear in uvicorn's log, in its format


@dataclass
class Job:
    """One request's texts, and the future (of the event loop that waits on it) that gets their results.

    A request larger than a batch runs in parts: `results` holds those of the texts done so far, and the job goes
    back to the end of the queue after each part, behind the requests that arrived meanwhile.
    """

    texts: list
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    request_id: str = ""
    characters: list = field(default_factory=list)  # per text
    results: list = field(default_factory=list)

    @property
    def done_texts(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class Part:
    """Texts [start, stop) of one job, in one batch."""

    job: Job
    start: int
    stop: int


_STOP = object()  # queued to end a worker


def _settle(future: asyncio.Future, result: Any = None, error: Optional[BaseException] = None) -> None:
    """Runs on the event loop: a request that timed out has a cancelled future already."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ModelWorker:
    """One model: its Predictor, owned by one thread that runs batches of queued requests."""

    def __init__(self, spec: ModelSpec, predictor: Any):
        self.spec = spec
        self.limits = spec.limits
        self.predictor = predictor
        self.task = predictor.task
        self.stats = BatchStats()
        # unbounded: the worker puts unfinished jobs back; predict() bounds what clients may queue
        self._jobs: queue.Queue = queue.Queue()
        self._carried: Any = None  # a job (or _STOP) that did not fit into the previous batch
        self._thread = threading.Thread(target=self._serve, name=f"model-{spec.name}", daemon=True)
        self._started = threading.Event()  # set once the worker thread has warmed the model up (or failed to)
        self._start_error: Optional[UserError] = None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread and wait for its warm-up; a model that cannot serve stops start-up here."""
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self, timeout: float = 10.0) -> None:
        """Ends the worker after the batch running now; requests still waiting then are refused."""
        if not self._thread.is_alive():
            return
        self._jobs.put(_STOP)
        self._thread.join(timeout)

    def describe(self) -> dict:
        return describe_model(self.spec, self.predictor, self.stats.snapshot(), ready=self.alive,
                              queued_requests=self._jobs.qsize())  # fmt: skip

    async def predict(self, texts: list, request_id: Optional[str] = None) -> list[dict]:
        """Results of `texts` (already validated), computed by the worker thread together with other requests'."""
        if not self.alive:
            raise RequestError(503, f"model '{self.spec.name}' is not running")
        if self._jobs.qsize() >= self.limits.max_queued_requests:
            raise RequestError(503, f"model '{self.spec.name}' is busy ({self.limits.max_queued_requests} requests "
                                    "queued); retry later")  # fmt: skip
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        characters = [count_characters(text) for text in texts]
        self._jobs.put_nowait(Job(texts, future, loop, request_id or new_request_id(), characters))
        try:
            return await asyncio.wait_for(future, self.limits.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(504, f"model '{self.spec.name}' gave no answer within "
                                    f"{self.limits.request_timeout_s:g} s") from None  # fmt: skip

    # -- the worker thread ---------------------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            warm_up(self.spec.name, self.predictor)
        except UserError as exc:
            self._start_error = exc
            return
        except Exception as exc:  # noqa: BLE001 (a worker that died here would leave a server that never gets ready)
            logger.exception("model '%s': warm-up failed", self.spec.name)
            self._start_error = UserError(f"model '{self.spec.name}' failed its warm-up: {last_line(exc)}")
            return
        finally:
            self._started.set()
        while True:
            batch = self._gather()
            if batch is None:
                break
            if batch:
                self._run_batch(batch)
        self._refuse_waiting("the server is shutting down")

    def _next_job(self, timeout: Optional[float]) -> Any:
        """The next queued job still awaited by its client (requests that timed out need no work), or _STOP;
        None when none arrives in time (timeout None: wait as long as it takes, 0: take only what is queued)."""
        while True:
            try:
                if timeout is None:
                    job = self._jobs.get()
                elif timeout > 0:
                    job = self._jobs.get(timeout=timeout)
                else:
                    job = self._jobs.get_nowait()
            except queue.Empty:
                return None
            if job is _STOP or not job.future.cancelled():
                return job

    def _fit(self, job: Job, texts: int, characters: int) -> int:
        """How many of `job`'s remaining texts fit into a batch that holds `texts` texts of `characters` so far
        (at least one when the batch is empty: a text longer than max_batch_chars runs alone)."""
        count = 0
        for chars in job.characters[job.done_texts :]:
            if texts + count >= self.limits.max_batch_size:
                break
            if texts + count > 0 and characters + chars > self.limits.max_batch_chars:
                break
            count += 1
            characters += chars
        return count

    def _gather(self) -> Optional[list[Part]]:
        """Blocks for a first request, then gathers others until the batch is full or `max_wait_ms` has passed.
        None once the worker is asked to stop; an empty list when only requests that timed out were waiting."""
        first = self._carried if self._carried is not None else self._next_job(None)
        self._carried = None
        if first is _STOP:
            return None
        if first.future.cancelled():
            return []
        batch: list[Part] = []
        texts = characters = 0
        deadline = time.monotonic() + self.limits.max_wait_ms / 1000
        job = first
        while True:
            count = self._fit(job, texts, characters)
            if count == 0:
                self._carried = job
                break
            start = job.done_texts
            batch.append(Part(job, start, start + count))
            texts += count
            characters += sum(job.characters[start : start + count])
            if start + count < len(job.texts):  # the job did not fit whole: the batch is full
                break
            job = self._next_job(max(0.0, deadline - time.monotonic()))
            if job is None:
                break
            if job is _STOP:
                self._carried = job
                break
        return batch

    def _run_batch(self, batch: list[Part]) -> None:
        texts = [text for part in batch for text in part.job.texts[part.start : part.stop]]
        started = time.perf_counter()
        try:
            results = self.predictor.predict_texts(texts)
        except Exception:  # noqa: BLE001 (reported to the requests, and logged)
            self.stats.record(len(batch), len(texts), time.perf_counter() - started, failed=True)
            if len(batch) > 1:
                # one request's texts may be what fails: run each alone so the others still get their results
                for part in batch:
                    self._run_batch([part])
                return
            job = batch[0].job
            logger.exception("model '%s': prediction failed (request id %s)", self.spec.name, job.request_id)
            job.loop.call_soon_threadsafe(_settle, job.future, None, InternalError(job.request_id))
            return
        self.stats.record(len(batch), len(texts), time.perf_counter() - started, failed=False)
        offset = 0
        for part in batch:
            job = part.job
            job.results.extend(results[offset : offset + part.stop - part.start])
            offset += part.stop - part.start
            if job.done_texts == len(job.texts):
                job.loop.call_soon_threadsafe(_settle, job.future, job.results)
            elif not job.future.cancelled():
                if part.start == 0:
                    self.stats.record_split()
                self._jobs.put_nowait(job)  # behind the requests that arrived meanwhile

    def _refuse_waiting(self, reason: str) -> None:
        pending = [self._carried] if self._carried is not None else []
        while True:
            try:
                pending.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        for job in pending:
            if job is not _STOP and job is not None:
                job.loop.call_soon_threadsafe(_settle, job.future, None, RequestError(503, reason))


class ModelRegistry:
    """The served models by name, in config order."""

    def __init__(self, workers: Sequence[ModelWorker]):
        self.workers = {worker.spec.name: worker for worker in workers}

    @classmethod
    def load(cls, specs: Sequence[ModelSpec], progress: Callable[[str], None] = print) -> "ModelRegistry":
        """Load every model (one at a time: Paddle's start-up is not meant to run concurrently) and start its worker."""
        from ernie3.memory import serves_without_paddle

        # paddle sets up process-wide state at import; do it here, on the main thread, before any worker runs
        # (a service of OpenVINO / ONNX Runtime models with verified standalone tokenizers never imports it)
        if not serves_without_paddle(specs):
            import paddle.inference  # noqa: F401

        workers = []
        for spec in specs:
            started = time.perf_counter()
            progress(f"loading model '{spec.name}' from {spec.path} ...")
            predictor = load_predictor(spec)
            worker = ModelWorker(spec, predictor)
            worker.start()  # warms the model up on its own thread; one model at a time
            workers.append(worker)
            progress(f"  {spec.name}: {predictor.task.task_type} task {predictor.task.name}, "
                     f"loaded and warmed up in {time.perf_counter() - started:.1f} s")  # fmt: skip
            recorded = recorded_max_seq_length(predictor)
            if recorded is not None and recorded != predictor.max_seq_length:
                progress(f"  {spec.name}: max_seq_length {predictor.max_seq_length} from the config, not the "
                         f"{recorded} the model was exported with")  # fmt: skip
        return cls(workers)

    @property
    def ready(self) -> bool:
        return all(worker.alive for worker in self.workers.values())

    def get(self, name: str) -> ModelWorker:
        worker = self.workers.get(name)
        if worker is None:
            raise RequestError(404, f"unknown model '{name}' (served: {', '.join(self.workers)})")
        return worker

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()


