"""Streaming batch prediction (ernie3/batch_predict.py) through infer.py and deploy/python: results equal to the
Predictor's, input order, a SIGKILLed run resumed by the same command giving byte-identical output, bad lines."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT, sample_file

from ernie3.errors import UserError

CHUNK, BATCH = 64, 16  # 1500 inputs: many chunks, each several batches
LINES = 1500


def export_tnews(model_dir: str, output_dir: str) -> str:
    """The tiny random ERNIE as a TNEWS classifier, exported for Paddle Inference (no training: results only need
    to be compared, not to be good)."""
    from paddlenlp.transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ernie3.export import export_inference_model
    from ernie3.tasks import get_task

    task = get_task("tnews")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, **task.model_kwargs())
    return export_inference_model(model, AutoTokenizer.from_pretrained(model_dir), task, output_dir, 64)


def tnews_texts() -> list:
    with open(sample_file("tnews", "dev"), encoding="utf-8") as handle:
        return [json.loads(line)["sentence"] for line in handle if line.strip()]


def write_api_lines(path, count: int, blank_every: int = 0, bad: dict = None) -> list:
    """`count` API-shaped lines (JSON strings) of TNEWS texts; returns the texts by line number (None: no input)."""
    texts = tnews_texts()
    by_line = [None]  # line numbers start at 1
    with open(path, "w", encoding="utf-8") as handle:
        for k in range(count):
            if blank_every and k and k % blank_every == 0:
                handle.write("\n")
                by_line.append(None)
            while bad and len(by_line) in bad:
                handle.write(bad[len(by_line)] + "\n")
                by_line.append(None)
            text = texts[k % len(texts)]
            handle.write(json.dumps(text, ensure_ascii=False) + "\n")
            by_line.append(text)
    return by_line


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    return export_tnews(tiny_model_dir, str(tmp_path_factory.mktemp("tnews-export") / "export"))


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "big.jsonl"
    by_line = write_api_lines(path, LINES, blank_every=97)
    return str(path), by_line


def infer_argv(model, input_file, output_file, *extra):
    return ["--model_path", model, "--input_file", str(input_file), "--output_file", str(output_file),
            "--chunk_size", str(CHUNK), "--batch_size", str(BATCH), "--num_threads", "1", "--no_progress", *extra]  # fmt: skip


def run_infer(argv):
    from ernie3.cli.infer import main

    return main(argv)


@pytest.fixture(scope="module")
def reference(model, big_input, tmp_path_factory):
    """An uninterrupted run: its output bytes."""
    output = tmp_path_factory.mktemp("reference") / "preds.jsonl"
    summary = run_infer(infer_argv(model, big_input[0], output))
    assert summary["records"] == summary["predicted"] == LINES
    return output.read_bytes()


def leftovers(output):
    """Files beside the output that belong to it (partial output, progress manifest, skipped-record log), but for
    the job record every finished job leaves."""
    return sorted(p.name for p in output.parent.iterdir() if p.name.startswith(output.name + ".") and p.name != output.name + ".job.json")


def test_streaming_output_equals_predictor_in_input_order(model, big_input, reference):
    from ernie3.predict import Predictor

    _, by_line = big_input
    numbered = [(number, text) for number, text in enumerate(by_line) if text is not None]
    expected = Predictor(model, num_threads=1, batch_size=BATCH).predict_texts([text for _, text in numbered])
    records = [json.loads(line) for line in reference.decode("utf-8").splitlines()]
    assert [r["line"] for r in records] == [number for number, _ in numbered]  # blank lines give no output
    assert [r["input"] for r in records] == [text for _, text in numbered]  # each input as given, by default
    assert [{k: v for k, v in r.items() if k not in ("line", "input")} for r in records] == expected
    assert list(records[0])[:2] == ["line", "input"]  # where the input was and what it was, then the result


def test_killed_run_resumes_to_identical_output(model, big_input, reference, tmp_path):
    output = tmp_path / "preds.jsonl"
    progress_file = tmp_path / "preds.jsonl.progress.json"
    command = [sys.executable, os.path.join(REPO_ROOT, "infer.py"), *infer_argv(model, big_input[0], output)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    chunks_at_kill = 0
    try:
        while process.poll() is None and chunks_at_kill < 3:  # kill after at least 3 committed chunks
            try:
                chunks_at_kill = json.loads(progress_file.read_text())["chunks"]
            except (FileNotFoundError, ValueError):  # not written yet, or caught mid-rename
                pass
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not output.exists(), "an interrupted run must not leave a final output"
    assert (tmp_path / "preds.jsonl.partial").exists() and progress_file.exists()

    resumed = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout
    assert output.read_bytes() == reference
    assert leftovers(output) == []  # partial file and progress manifest are gone


def test_bad_line_stops_with_file_and_line_and_no_final_output(model, tmp_path):
    input_file = tmp_path / "in.jsonl"
    write_api_lines(input_file, 300, bad={200: "{not json"})
    output = tmp_path / "preds.jsonl"
    with pytest.raises(UserError, match=rf"^{input_file}:200: malformed JSON"):
        run_infer(infer_argv(model, input_file, output))
    assert not output.exists()
    assert (tmp_path / "preds.jsonl.partial").exists()  # chunks before the bad line, clearly marked partial

    # the same command fails the same way (resuming after the committed chunks); another setting is refused
    with pytest.raises(UserError, match=r":200: malformed JSON"):
        run_infer(infer_argv(model, input_file, output))
    with pytest.raises(UserError, match=r"progress.json: an unfinished run with another job"):
        run_infer(infer_argv(model, input_file, output, "--skip_invalid_records"))


def test_skip_invalid_records_logs_line_numbers(model, tmp_path):
    input_file = tmp_path / "in.jsonl"
    bad = {3: "{not json", 150: '["a", "pair"]', 151: '"   "'}
    by_line = write_api_lines(input_file, 200, bad=bad)
    output = tmp_path / "preds.jsonl"
    summary = run_infer(infer_argv(model, input_file, output, "--skip_invalid_records"))
    assert summary["skipped"] == 3 and summary["predicted"] == 200
    skipped = [json.loads(line) for line in (tmp_path / "preds.jsonl.skipped.jsonl").read_text().splitlines()]
    assert [s["line"] for s in skipped] == [3, 150, 151]
    assert "malformed JSON" in skipped[0]["error"] and "single texts" in skipped[1]["error"]
    lines = [json.loads(line)["line"] for line in output.read_text().splitlines()]
    assert lines == [number for number, text in enumerate(by_line) if text is not None]
    assert leftovers(output) == ["preds.jsonl.skipped.jsonl"]


def test_dataset_format_and_deploy_script(model, tmp_path):
    """The task's own dataset file (ids kept), and deploy/python's streaming mode on plain text lines."""
    from ernie3.data import load_local_examples
    from ernie3.cli.predict import main as deploy_main
    from ernie3.predict import Predictor
    from ernie3.tasks import get_task

    dev = sample_file("tnews", "dev")
    output = tmp_path / "dataset.jsonl"
    run_infer(infer_argv(model, dev, output, "--input_format", "dataset"))
    examples = load_local_examples(get_task("tnews"), "dev", dev)
    expected = Predictor(model, num_threads=1, batch_size=BATCH).predict(examples)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r.get("id") for r in records] == [e["id"] for e in examples]
    assert [r["label"] for r in records] == [e["label"] for e in expected]
    with open(dev, encoding="utf-8") as handle:  # the dataset record as given
        assert [r["input"] for r in records] == [json.loads(line) for line in handle if line.strip()]

    text_file = tmp_path / "texts.txt"
    text_file.write_text("\n".join(tnews_texts()[:50]) + "\n", encoding="utf-8")
    deploy_output = tmp_path / "deploy.jsonl"
    summary = deploy_main("cpu", ["--model_path", model, "--input_file", str(text_file), "--output_file", str(deploy_output),
                                  "--input_format", "text", "--num_threads", "1", "--no_progress"])  # fmt: skip
    assert summary["predicted"] == 50
    deployed = [json.loads(line) for line in deploy_output.read_text().splitlines()]
    assert [r["line"] for r in deployed] == list(range(1, 51))
    assert [r["input"] for r in deployed] == tnews_texts()[:50]  # the plain-text line as given


def test_no_input_in_output_drops_the_inputs_and_is_part_of_the_job_fingerprint(model, tmp_path):
    input_file = tmp_path / "in.jsonl"
    write_api_lines(input_file, 150, bad={100: "{not json"})
    with_inputs, without = tmp_path / "with.jsonl", tmp_path / "without.jsonl"
    run_infer(infer_argv(model, input_file, with_inputs, "--skip_invalid_records"))
    run_infer(infer_argv(model, input_file, without, "--skip_invalid_records", "--no_input_in_output"))
    full = [json.loads(line) for line in with_inputs.read_text(encoding="utf-8").splitlines()]
    lean = [json.loads(line) for line in without.read_text(encoding="utf-8").splitlines()]
    assert all("input" not in r for r in lean) and all(isinstance(r["input"], str) for r in full)
    assert lean == [{k: v for k, v in r.items() if k != "input"} for r in full]

    # an unfinished job (stopped at its bad line) is resumed only with the same choice: the lines would differ
    stopped = tmp_path / "stopped.jsonl"
    with pytest.raises(UserError, match=r":100: malformed JSON"):
        run_infer(infer_argv(model, input_file, stopped))
    with pytest.raises(UserError, match=r"progress.json: an unfinished run with another job"):
        run_infer(infer_argv(model, input_file, stopped, "--no_input_in_output"))


def test_ray_actors_give_the_inputs_unless_asked_not_to(model):
    """The Ray engine's actor (run here in-process): the same lines as the local engine, with or without inputs."""
    import numpy as np

    from ernie3.batch_predict import prediction_line
    from ernie3.predict import Predictor
    from ernie3.ray_batch import ChunkPredictor

    texts = tnews_texts()[:3]
    batch = {"line": np.array([1, 2, 3]), "text": np.array([json.dumps(t, ensure_ascii=False) for t in texts], dtype=object),
             "error": np.array(["", "", ""], dtype=object)}  # fmt: skip
    expected = Predictor(model, num_threads=1, batch_size=BATCH).predict_texts(texts)
    options = {"model_path": model, "batch_size": BATCH, "num_threads": 1}
    with_inputs = ChunkPredictor(options, "api")(batch)["output"]
    assert [json.loads(line) for line in with_inputs] == [{"line": n, "input": t, **r} for n, t, r in zip([1, 2, 3], texts, expected)]
    without = ChunkPredictor(options, "api", include_input=False)(batch)["output"]
    assert list(without) == [prediction_line(n, {}, r) for n, r in zip([1, 2, 3], expected)]


# -- outputs that would destroy something are refused before any work (issue 18) ---------------------------------


def snapshot(*roots) -> dict:
    """Every file under the roots: its bytes (symlinks: their target), to show that a refused run changed nothing."""
    found = {}
    for root in map(str, roots):
        for directory, _, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                found[path] = os.readlink(path) if os.path.islink(path) else open(path, "rb").read()
    return found


@pytest.fixture
def small_input(tmp_path):
    path = tmp_path / "in.jsonl"
    write_api_lines(path, 20)
    return path


def refused(model, input_file, output, *extra, match, roots=()):
    """The run is refused with `match` and leaves every file under tmp_path (and `roots`) as it was."""
    before = snapshot(input_file.parent, *roots)
    with pytest.raises(UserError, match=match):
        run_infer(infer_argv(model, input_file, output, *extra))
    assert snapshot(input_file.parent, *roots) == before


def test_output_that_is_the_input_is_refused(model, small_input, tmp_path):
    original = small_input.read_bytes()
    refused(model, small_input, small_input, match=r"is the --input_file .* \(the same file\)")
    (tmp_path / "sub").mkdir()
    refused(model, small_input, tmp_path / "sub" / ".." / "in.jsonl", match="the same file")  # another spelling
    os.symlink(small_input, tmp_path / "link.jsonl")
    refused(model, small_input, tmp_path / "link.jsonl", match="the same file")
    os.link(small_input, tmp_path / "hard.jsonl")  # another name, the same inode
    refused(model, small_input, tmp_path / "hard.jsonl", match="the same file")
    # an input named like one of the output's own files would be truncated as its partial file
    partial_named = tmp_path / "p.jsonl.partial"
    partial_named.write_bytes(original)
    refused(model, partial_named, tmp_path / "p.jsonl", match=r"would write .*p\.jsonl\.partial, which is the --input_file")
    assert small_input.read_bytes() == original


def test_output_inside_a_model_directory_is_refused(model, small_input, tmp_path):
    weights = os.path.join(model, "model.pdiparams")
    refused(model, small_input, weights, match=r"lies in the model directory", roots=[model])
    refused(model, small_input, os.path.join(model, "preds.jsonl"), match=r"lies in the model directory", roots=[model])
    # any directory holding a model, at any depth above the output, not only the one being run
    other = tmp_path / "other_model"
    (other / "sub").mkdir(parents=True)
    (other / "model.onnx").write_bytes(b"onnx")
    refused(model, small_input, other / "sub" / "preds.jsonl", match=rf"lies in the model directory {other};")
    # through the deploy script too
    from ernie3.cli.predict import main as deploy_main

    with pytest.raises(UserError, match="lies in the model directory"):
        deploy_main("cpu", ["--model_path", model, "--input_file", str(small_input), "--output_file", weights, "--no_progress"])
    assert not os.path.exists(weights + ".partial")


def test_directory_output_is_refused(model, small_input, tmp_path):
    (tmp_path / "preds").mkdir()
    refused(model, small_input, tmp_path / "preds", match=r"is a directory; give a file name")
    refused(model, small_input, str(tmp_path / "new") + os.sep, match=r"is a directory; give a file name")
    assert not (tmp_path / "new").exists()


def test_missing_or_unwritable_directory_is_refused(model, small_input, tmp_path):
    # `missing/..` is resolved as open() would resolve it (os.path.abspath would drop it and write beside)
    refused(model, small_input, tmp_path / "missing" / ".." / "preds.jsonl",
            match=r"cannot use the directory .*missing/\.\.: No such file or directory")  # fmt: skip
    refused(model, small_input, tmp_path / "in.jsonl" / "preds.jsonl", match=r"in\.jsonl is not a directory")
    refused(model, small_input, tmp_path / "a" / "b" / "preds.jsonl", match=r"No such file or directory")
    # a name that fits, but not with the suffixes of the job's own files (OUT.skipped.jsonl.partial)
    refused(model, small_input, tmp_path / ("预测" * 40), match=r"file name too long \(240 bytes; at most 233 here\)")
    # a place even root cannot create files in (tests run as root, so permission bits would not do)
    try:
        open("/sys/ernie3-probe", "w").close()
        pytest.skip("/sys is writable here")
    except OSError:
        pass
    with pytest.raises(UserError, match=r"^--output_file: cannot write to /sys: "):
        run_infer(infer_argv(model, small_input, "/sys/preds.jsonl"))


def test_existing_file_not_written_by_the_tool_is_left_alone(model, small_input, tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("three weeks of annotations\n")
    for extra in ((), ("--overwrite",)):  # not even with --overwrite
        refused(model, small_input, precious, *extra, match=r"notes\.txt exists and is not the output of a finished batch")
    # nor the files beside an output that no job of this tool announced
    (tmp_path / "preds.jsonl.partial").write_text("someone else's\n")
    refused(model, small_input, tmp_path / "preds.jsonl", match=r"preds\.jsonl\.partial exists but no preds\.jsonl\.progress")
    (tmp_path / "preds.jsonl.partial").unlink()
    (tmp_path / "preds.jsonl.skipped.jsonl").write_text("mine\n")
    refused(model, small_input, tmp_path / "preds.jsonl", "--skip_invalid_records", match=r"skipped\.jsonl exists and is not")


def test_overwrite_replaces_only_a_finished_output_of_the_tool(model, small_input, tmp_path):
    output = tmp_path / "preds.jsonl"
    bad_input = tmp_path / "bad.jsonl"
    write_api_lines(bad_input, 10, bad={4: "{not json"})
    run_infer(infer_argv(model, bad_input, output, "--skip_invalid_records"))
    first = output.read_bytes()
    assert (tmp_path / "preds.jsonl.skipped.jsonl").exists() and (tmp_path / "preds.jsonl.job.json").exists()
    refused(model, small_input, output, match=r"holds the output of an earlier run; pass --overwrite")
    assert output.read_bytes() == first

    summary = run_infer(infer_argv(model, small_input, output, "--overwrite"))
    assert summary["predicted"] == 20 and len(output.read_text().splitlines()) == 20
    assert not (tmp_path / "preds.jsonl.skipped.jsonl").exists()  # the earlier run's log would describe another input
    assert leftovers(output) == []
    # a kill right after the output took its name leaves the manifest: the job is finished, not refused as broken
    (tmp_path / "preds.jsonl.progress.json").write_text("{}")
    assert run_infer(infer_argv(model, small_input, output, "--overwrite"))["predicted"] == 20
    assert leftovers(output) == []

    with open(output, "a", encoding="utf-8") as handle:  # edited since: no longer what the tool wrote
        handle.write('{"line": 99, "note": "hand-made"}\n')
    edited = output.read_bytes()
    refused(model, small_input, output, "--overwrite", match="exists and is not the output of a finished batch")
    assert output.read_bytes() == edited


def test_binary_input_is_refused_naming_file_and_line(model, tmp_path):
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    output = tmp_path / "preds.jsonl"
    with pytest.raises(UserError, match=rf"^{binary}:1: not UTF-8 text \(invalid start byte at byte 0 of the line\)"):
        run_infer(infer_argv(model, binary, output, "--input_format", "text"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.png"]  # nothing created

    # one bad line among good ones: skipped with its line number like any invalid record; a BOM is not text
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes("\ufeff球队赢了\n".encode() + b"caf\xe9\n" + "新手机上市\n".encode())
    summary = run_infer(infer_argv(model, mixed, output, "--input_format", "text", "--skip_invalid_records"))
    assert (summary["predicted"], summary["skipped"]) == (2, 1)
    skipped = json.loads((tmp_path / "preds.jsonl.skipped.jsonl").read_text())
    assert skipped == {"line": 2, "error": "not UTF-8 text (unexpected end of data at byte 3 of the line)"}
    from ernie3.predict import Predictor

    expected = Predictor(model, num_threads=1, batch_size=BATCH).predict_texts(["球队赢了", "新手机上市"])
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r.pop("input") for r in records] == ["球队赢了", "新手机上市"]  # the BOM is not part of the text
    assert [{k: v for k, v in r.items() if k != "line"} for r in records] == expected


def test_json_error_wording(model, tmp_path):
    input_file = tmp_path / "in.jsonl"
    input_file.write_text('"unterminated\n', encoding="utf-8")
    with pytest.raises(UserError, match=r":1: malformed JSON \(Unterminated string starting at column 1\)"):
        run_infer(infer_argv(model, input_file, tmp_path / "preds.jsonl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_metrics_report_output_never_replaces_a_model_or_a_foreign_file(model, tmp_path):
    """infer.py without --input_file writes its metrics report to --output_file: the same protection."""
    dev = sample_file("tnews", "dev")
    base = ["--model_path", model, "--dev_file", dev, "--num_threads", "1", "--max_examples", "8"]
    weights = os.path.join(model, "model.pdiparams")
    before = snapshot(model)
    with pytest.raises(UserError, match="lies in the model directory"):
        run_infer([*base, "--output_file", weights])
    assert snapshot(model) == before
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    with pytest.raises(UserError, match=r"notes\.json exists and is not a report of this command"):
        run_infer([*base, "--output_file", str(notes)])
    assert notes.read_text() == '{"mine": true}'
    report = tmp_path / "report.json"
    run_infer([*base, "--output_file", str(report)])
    first = json.loads(report.read_text())
    assert run_infer([*base, "--output_file", str(report)])["metrics"] == first["metrics"]  # its own report: replaced


def test_deploy_output_file_needs_an_input_file(model, tmp_path):
    """deploy/python prints results of --text inputs: an --output_file it would silently ignore is refused."""
    from ernie3.cli.predict import main as deploy_main

    with pytest.raises(UserError, match="--output_file needs --input_file"):
        deploy_main("cpu", ["--model_path", model, "--text", "球队赢了", "--output_file", str(tmp_path / "out.jsonl")])
    assert list(tmp_path.iterdir()) == []
