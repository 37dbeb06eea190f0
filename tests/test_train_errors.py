"""Bad input fails with a ferrotune error class and a clear message, before any training starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ferrotune
import pytest
from conftest import require_minilm_dir
from ferrotune.errors import (
    ColumnNotFoundError,
    ConfigError,
    DataSourceNotFoundError,
    FerrotuneError,
    LabelError,
    ModelFileNotFoundError,
)
from train_support import mrpc_dir, small_mrpc


def train_must_fail(error: type, match: str, **options) -> None:
    with pytest.raises(error, match=match) as caught:
        ferrotune.train(**options)
    assert isinstance(caught.value, FerrotuneError)
    output_dir = options.get("output_dir")
    assert output_dir is None or not (Path(output_dir) / "metrics.jsonl").exists(), "training must not have started"


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_unknown_task(tmp_path):
    train_must_fail(ConfigError, "unknown task 'mrcp'", task="mrcp", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [("lora_r", -1, "lora_r"), ("epochs", 0, "epochs"), ("log", "loud", "log"), ("mixed_precision", "fp8", "mixed")],
)
def test_invalid_options(tmp_path, option, value, match):
    train_must_fail(ConfigError, match, **small_mrpc(tmp_path / "out", **{option: value}))


def test_unknown_option_name():
    with pytest.raises(ConfigError, match="lora_rank"):
        ferrotune.TrainConfig.from_dict({"lora_rank": 4})


def test_missing_model_folder_and_files(tmp_path):
    train_must_fail(ModelFileNotFoundError, "does not exist", **small_mrpc(tmp_path / "o1", model=str(tmp_path / "x")))
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(require_minilm_dir() / "config.json", partial / "config.json")
    train_must_fail(ModelFileNotFoundError, "no weights", **small_mrpc(tmp_path / "o2", model=str(partial)))
    for name in ("model.safetensors",):
        shutil.copy(require_minilm_dir() / name, partial / name)
    train_must_fail(ModelFileNotFoundError, "tokenizer.json", **small_mrpc(tmp_path / "o3", model=str(partial)))


def test_missing_data_dir_and_files(tmp_path):
    missing = str(tmp_path / "no")
    train_must_fail(DataSourceNotFoundError, "not a folder", **small_mrpc(tmp_path / "o", data_dir=missing))
    train_must_fail(
        DataSourceNotFoundError, "does not exist", task="classification", train=str(tmp_path / "none.jsonl"),
        output_dir=tmp_path / "o2",
    )  # fmt: skip


def test_unknown_column_lists_the_columns(tmp_path):
    train_must_fail(ColumnNotFoundError, "'#1 Strin'.*#1 String", **small_mrpc(tmp_path / "o", text_column="#1 Strin"))


def test_label_id_outside_the_label_set(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 3}])
    train_must_fail(
        LabelError, "label id 3.*outside the label set", task="classification", train=str(tmp_path / "train.jsonl"),
        label_names=["neg", "pos"], output_dir=tmp_path / "o",
    )  # fmt: skip


def test_label_name_outside_the_label_set(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neutral"}])
    train_must_fail(
        LabelError, "neutral", task="classification", train=str(tmp_path / "train.jsonl"), label_names=["neg", "pos"],
        output_dir=tmp_path / "o",
    )  # fmt: skip


def test_eval_labels_must_belong_to_the_training_label_set(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}])
    write_jsonl(tmp_path / "dev.jsonl", [{"text": "c", "label": "maybe"}])
    train_must_fail(
        LabelError, "maybe", task="classification", train=str(tmp_path / "train.jsonl"),
        eval=str(tmp_path / "dev.jsonl"), output_dir=tmp_path / "o",
    )  # fmt: skip


def test_regression_labels_must_be_numbers(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "score": "high"}])
    train_must_fail(
        LabelError, "numbers", task="regression", train=str(tmp_path / "train.jsonl"), label_column="score",
        output_dir=tmp_path / "o",
    )  # fmt: skip


def test_lora_target_that_the_model_lacks(tmp_path):
    train_must_fail(ConfigError, "q_proj", **small_mrpc(tmp_path / "o", lora_targets=["q_proj"]))


def test_resume_without_checkpoint(tmp_path):
    from ferrotune.errors import CheckpointError

    train_must_fail(CheckpointError, "no complete checkpoint", **small_mrpc(tmp_path / "o", resume="latest"))


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    from ferrotune.cli import main

    assert main(["train", "--task", "mrpc", "--data-dir", str(mrpc_dir()), "--text-column", "nope"]) == 2
    error = capsys.readouterr().err
    assert "ferrotune train: error:" in error and "nope" in error and "Traceback" not in error


def test_unreadable_rows_name_the_file_and_line(tmp_path):
    """Training reads through ferrotune.sources: a broken row is named by file and line, as a DataError."""
    from ferrotune.errors import DataError

    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0\n')
    train_must_fail(DataError, r"bad\.jsonl', line 2: not valid JSON", task="classification",
                    train=str(tmp_path / "bad.jsonl"), output_dir=tmp_path / "o")  # fmt: skip
    (tmp_path / "rows.csv").write_text("text,label\na,1\nb,0,extra\n")
    train_must_fail(DataError, r"rows\.csv', line 3: 3 field\(s\) where the header has 2", task="classification",
                    train=str(tmp_path / "rows.csv"), output_dir=tmp_path / "o")  # fmt: skip


def test_json_and_gzipped_jsonl_files_are_read_as_json_lines(tmp_path):
    import gzip

    from ferrotune.training.config import TrainConfig
    from ferrotune.training.data import load_task_data

    write_jsonl(tmp_path / "train.json", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}])
    data = load_task_data(TrainConfig(task="classification", train=str(tmp_path / "train.json")).validate())
    assert data.train.num_rows == 2 and data.label_names == ["neg", "pos"]
    lines = ['{"text": "a", "label": 1}', "", '{"text": "b"}']
    with gzip.open(tmp_path / "train.jsonl.gz", "wt") as handle:
        handle.write("".join(line + "\n" for line in lines))
    with pytest.raises(LabelError, match=r"train\.jsonl\.gz line 3"):
        load_task_data(TrainConfig(task="classification", train=str(tmp_path / "train.jsonl.gz")).validate())
