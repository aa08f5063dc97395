"""Throughput and memory of batch prediction (ernie3/batch_predict.py, ernie3/ray_batch.py) on one machine.

    flock /tmp/bench.lock python scripts/bench_batch_predict.py --model_path MODEL --texts_file tnews/dev.json \\
        --lines 4000 --engine local --threads 1 --work_dir /tmp/bench-batch

Writes `--lines` API-shaped input lines (the texts file's sentences, repeated), runs one job in this process while a
thread samples the resident memory of this process and all its descendants (Ray's raylet, workers and actors),
and prints one JSON line: wall time, time to the first committed chunk (start-up: model load, Ray start and actor
creation), steady throughput after it, and RSS samples over the run.
"""
import argparse
import json
import os
import threading
import time


def write_input(texts_file: str, lines: int, path: str) -> None:
    with open(texts_file, encoding="utf-8") as handle:
        texts = [json.loads(line)["sentence"] for line in handle if line.strip()]
    with open(path, "w", encoding="utf-8") as handle:
        for k in range(lines):
            handle.write(json.dumps(texts[k % len(texts)], ensure_ascii=False) + "\n")


class MemorySampler(threading.Thread):
    """RSS (MB) of this process tree every `interval` seconds."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        import psutil

        self.root, self.interval, self.samples, self.done = psutil.Process(), interval, [], threading.Event()

    def run(self) -> None:
        started = time.perf_counter()
        while not self.done.is_set():
            total = 0
            for process in [self.root, *self.root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except Exception:  # noqa: BLE001 (a process that just ended)
                    pass
            self.samples.append((round(time.perf_counter() - started, 1), round(total / 2**20)))
            self.done.wait(self.interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--texts_file", required=True, help="JSON lines with a 'sentence' field (e.g. TNEWS dev.json)")
    parser.add_argument("--lines", type=int, default=4000)
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--workers", type=int, default=1, help="--engine ray: actors")
    parser.add_argument("--threads", type=int, default=1, help="threads of the predictor (per actor with ray)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--chunk_size", type=int, default=256)
    parser.add_argument("--work_dir", required=True)
    args = parser.parse_args()

    from ernie3.batch_predict import BatchSettings, predict_file

    os.makedirs(args.work_dir, exist_ok=True)
    input_file = os.path.join(args.work_dir, f"input-{args.lines}.jsonl")
    if not os.path.isfile(input_file):
        write_input(args.texts_file, args.lines, input_file)
    output = os.path.join(args.work_dir, f"out-{args.engine}-{args.workers}x{args.threads}-{args.lines}")
    # a rerun measures again: it replaces the previous run's output (only an output of this tool)
    settings = BatchSettings(input_file, output + (".jsonl" if args.engine == "local" else ""), chunk_size=args.chunk_size,
                             progress=False, overwrite=True)  # fmt: skip
    sampler = MemorySampler()
    sampler.start()
    started = time.perf_counter()
    if args.engine == "local":
        from ernie3.predict import Predictor

        predictor = Predictor(args.model_path, num_threads=args.threads, batch_size=args.batch_size)
        load_seconds = time.perf_counter() - started
        summary = predict_file(predictor, settings, log=lambda _: None)
        startup = load_seconds + summary["first_chunk_seconds"]
    else:
        from ernie3.ray_batch import RayOptions, predict_on_ray

        summary = predict_on_ray(settings, {"model_path": args.model_path, "batch_size": args.batch_size},
                                 RayOptions(num_workers=args.workers, threads_per_worker=args.threads), log=lambda _: None)  # fmt: skip
        startup = summary["first_chunk_seconds"]
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    rss = [mb for _, mb in sampler.samples]
    quarter = [rss[min(len(rss) - 1, len(rss) * k // 4)] for k in (1, 2, 3)] + [rss[-1]]
    steady = (args.lines - args.chunk_size) / (wall - startup) if wall > startup else None
    print(json.dumps({
        "engine": args.engine, "workers": args.workers if args.engine == "ray" else 1, "threads": args.threads,
        "lines": args.lines, "wall_s": round(wall, 1), "startup_s": round(startup, 1),
        "lines_per_s": round(args.lines / wall, 1), "steady_lines_per_s": round(steady, 1) if steady else None,
        "rss_mb_at_25_50_75_100pct": quarter, "rss_mb_peak": max(rss),
    }))


if __name__ == "__main__":
    main()
