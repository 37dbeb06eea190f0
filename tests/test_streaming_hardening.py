"""Regression tests for data silently lost, duplicated or mistyped by the streaming sources (issue 11),
and for the errors that must name the file, line and column.

Every test builds its own small files, so none needs ../shared.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import ferrotune  # noqa: E402
from ferrotune import StreamingLoader  # noqa: E402

ROWS = 50


def _table(rows: int = ROWS):
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "input_ids": [rng.integers(5, 100, size=int(n)).tolist() for n in rng.integers(1, 12, size=rows)],
            "idx": list(range(rows)),
        }
    )


def _indices(source, **options) -> list[int]:
    loader = StreamingLoader(
        source, input_ids_column="input_ids", label_column="idx", pad_token_id=0, shuffle=False, **options
    )
    return [i for batch in loader for i in batch["labels"].tolist()]


# --------------------------------------------------------------------------------------------------
# Folder sources: each example once


def test_save_to_disk_folder_with_map_cache_files_yields_each_example_once(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    datasets.Dataset(_table()).save_to_disk(str(folder))
    reloaded = datasets.load_from_disk(str(folder))
    reloaded.map(lambda batch: {"n": [len(x) for x in batch["input_ids"]]}, batched=True)
    assert list(folder.glob("cache-*.arrow")), "datasets did not write its cache file into the folder"
    assert _indices(folder) == list(range(ROWS))


def test_save_to_disk_folder_after_tokenize_dataset_yields_each_example_once(tmp_path, minilm_dir):
    datasets = pytest.importorskip("datasets")
    tok = ferrotune.Tokenizer.from_pretrained(minilm_dir)
    folder = tmp_path / "saved"
    texts = [f"example number {i}" for i in range(ROWS)]
    datasets.Dataset.from_dict({"text": texts, "idx": list(range(ROWS))}).save_to_disk(str(folder))
    ferrotune.tokenize_dataset(datasets.load_from_disk(str(folder)), tok, "text")
    loader = StreamingLoader(folder, tok, text_column="text", label_column="idx", shuffle=False)
    assert [i for batch in loader for i in batch["labels"].tolist()] == list(range(ROWS))


def test_dataset_dict_folder_asks_for_a_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    split = datasets.Dataset(_table())
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ferrotune.DataSourceError, match=r"DatasetDict.*'test', 'train'.*dd/test"):
        _indices(tmp_path / "dd")


def test_hidden_folders_and_files_are_not_data(tmp_path):
    rows = _table().to_pylist()
    (tmp_path / ".ipynb_checkpoints").mkdir()
    for path in (tmp_path / "train.jsonl", tmp_path / ".ipynb_checkpoints" / "train-checkpoint.jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / ".train.jsonl.swp").write_text("junk", encoding="utf-8")
    assert _indices(tmp_path) == list(range(ROWS))


# --------------------------------------------------------------------------------------------------
# Truncated files: an error, never fewer rows


def _write_stream(path, table, chunk):
    with pa.ipc.new_stream(path, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=chunk):
            writer.write_batch(batch)


def test_arrow_stream_cut_at_a_record_batch_boundary_is_an_error(tmp_path):
    table = pa.table({"input_ids": [[1, 2, 3]] * 5000, "idx": list(range(5000))})
    whole = tmp_path / "whole.arrow"
    _write_stream(whole, table, 1000)
    assert len(_indices(whole, batch_size=1000)) == 5000
    data = whole.read_bytes()
    # Message boundaries: where each read_message stops.
    source, ends = pa.BufferReader(data), []
    while True:
        try:
            pa.ipc.read_message(source)
        except EOFError:
            break
        ends.append(source.tell())
    for end in ends[:-1] + [len(data) - 4]:
        cut = tmp_path / f"cut-{end}.arrow"
        cut.write_bytes(data[:end])
        with pytest.raises(ferrotune.DataSourceError, match=f"cut-{end}.arrow"):
            _indices(cut, batch_size=1000)


# --------------------------------------------------------------------------------------------------
# Labels: one dtype per stream


def test_jsonl_labels_int_in_one_unit_and_float_in_another(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [{"text": "a", "score": 1} for _ in range(10)] + [{"text": "b", "score": 2.5} for _ in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    pre = tmp_path / "ids.jsonl"
    pre.write_text(
        "".join(json.dumps({"input_ids": [1, 2], "score": r["score"]}) + "\n" for r in lines), encoding="utf-8"
    )

    def batches(**options):
        return list(
            StreamingLoader(
                pre,
                input_ids_column="input_ids",
                label_column="score",
                pad_token_id=0,
                shuffle=False,
                rows_per_unit=10,
                batch_size=10,
                **options,
            )
        )

    with pytest.raises(ferrotune.InputTypeError, match=r"ids.jsonl', line 11: label 2.5 is not a whole number"):
        batches()
    regression = batches(label_dtype="float32")
    assert [b["labels"].dtype for b in regression] == [torch.float32, torch.float32]
    assert regression[1]["labels"].tolist() == [2.5] * 10
    # Floats first: the whole stream is float32 (the int unit is widened, not left int64).
    lines.reverse()
    pre.write_text(
        "".join(json.dumps({"input_ids": [1, 2], "score": r["score"]}) + "\n" for r in lines), encoding="utf-8"
    )
    assert [b["labels"].dtype for b in batches()] == [torch.float32, torch.float32]


# --------------------------------------------------------------------------------------------------
# Clear errors: file, line, column, what to do


def _text_loader(path, **options):
    return list(StreamingLoader(path, input_ids_column="input_ids", pad_token_id=0, shuffle=False, **options))


def test_columns_of_different_types_across_files(tmp_path):
    pq.write_table(pa.table({"input_ids": [[1, 2]] * 4, "label": [0, 1, 0, 1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"input_ids": [[1, 2]] * 4, "label": ["x", "y", "x", "y"]}), tmp_path / "b.parquet")
    with pytest.raises(ferrotune.DataSourceError, match=r"column 'label' has different types.*int64 in .*a.parquet"):
        _text_loader(tmp_path, label_column="label")


def test_latin1_jsonl_names_file_line_and_column(tmp_path):
    good = "".join(json.dumps({"input_ids": [1], "text": "x"}) + "\n" for _ in range(5))
    (tmp_path / "latin.jsonl").write_bytes((good + '{"input_ids": [1], "text": "caf\xe9"}\n').encode("latin-1"))
    with pytest.raises(ferrotune.DataSourceError, match=r"latin.jsonl', line 6, column 32: byte 0xe9 is not UTF-8"):
        _text_loader(tmp_path / "latin.jsonl")
    (tmp_path / "first.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ferrotune.DataSourceError, match=r"first.jsonl', line 1, column 14: byte 0xe9 is not UTF-8"):
        _text_loader(tmp_path / "first.jsonl")


def test_two_json_objects_on_one_line(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text('{"input_ids": [1]}\n{"input_ids": [2]} {"input_ids": [3]}\n{"input_ids": [4]}\n', encoding="utf-8")
    with pytest.raises(ferrotune.DataSourceError, match=r"two.jsonl', line 2, column 20: a second JSON value") as err:
        _text_loader(path)
    assert "GLUE" not in str(err.value)


def test_ragged_csv_row_is_reported_at_its_own_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(20)) + "bad\nx,1\n", encoding="utf-8")
    with pytest.raises(ferrotune.DataSourceError, match=r"ragged.csv', line 22: 1 field\(s\) where the header has 2"):
        _csv(path)


def _csv(path, **options):
    from conftest import require_minilm_dir

    tok = ferrotune.Tokenizer.from_pretrained(require_minilm_dir())
    return list(StreamingLoader(path, tok, text_column="text", shuffle=False, **options))


def test_csv_with_carriage_return_line_endings(tmp_path):
    path = tmp_path / "cr.csv"
    path.write_bytes(b"text,label\r" + b"".join(f"t{i},{i % 2}\r".encode() for i in range(20)))
    with pytest.raises(ferrotune.DataSourceError, match=r"cr.csv' ends its lines with a carriage return only"):
        _csv(path)


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(("text,label\n" + "".join(f"t{i},1\n" for i in range(5)) + "caf\xe9,1\n").encode("latin-1"))
    with pytest.raises(ferrotune.DataSourceError, match=r"latin.csv', line 7, column 4: byte 0xe9 is not UTF-8"):
        _csv(path)
