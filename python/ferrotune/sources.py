"""Data sources for the streaming loader: files split into *units* that can be read on their own.

A unit is a Parquet row group, an Arrow IPC record batch, a byte range of a JSONL / CSV / TSV file
(its rows found by ferrotune's Rust row indexer, quote-aware), a whole ``.jsonl.gz`` file, or a
record batch of an in-memory table. Reading any row range of a unit needs only that unit, so memory
is bounded by one unit and sharding never needs to read rows another reader owns (a unit at the
border of two readers' ranges is read by both, each keeping its own rows).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _core
from .errors import ColumnNotFoundError, DataSourceError, DataSourceNotFoundError, InputTypeError, InvalidArgumentError

__all__ = ["FORMATS", "DataFiles", "Unit", "arrow_column", "check_columns", "open_sources"]

# Extension -> format. `.json` is left out on purpose: `datasets` folders hold `state.json` and
# `dataset_info.json`, which are metadata, not rows.
_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".ipc": "arrow",
    ".feather": "arrow",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonl.gz": "jsonl.gz",
    ".ndjson.gz": "jsonl.gz",
    ".csv": "csv",
    ".tsv": "tsv",
    ".conll": "conll",
}
FORMATS = ("parquet", "arrow", "jsonl", "jsonl.gz", "csv", "tsv", "conll", "squad")
# The columns of a CoNLL file (one ``word ... tag`` line per token, blank lines between sentences): datasets' names.
CONLL_COLUMNS = ("tokens", "ner_tags")
# The columns of a SQuAD JSON file (one row per question): those of the Hugging Face ``squad`` dataset.
SQUAD_COLUMNS = ("id", "title", "context", "question", "answers")
# What an Arrow IPC stream ends with: continuation marker + zero length (legacy streams: zero length only).
_ARROW_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"
_ARROW_LEGACY_END_OF_STREAM = b"\x00\x00\x00\x00"


@dataclass(frozen=True)
class Unit:
    """Rows ``[0, rows)`` of part ``part`` of source ``source``."""

    source: int
    part: int
    rows: int


@dataclass(frozen=True)
class CsvOptions:
    quoting: bool = True
    delimiter: str | None = None
    has_header: bool = True
    column_names: tuple[str, ...] | None = None


def _format_of(path: Path, explicit: str | None) -> str | None:
    if explicit is not None:
        return explicit
    name = path.name.lower()
    for extension in sorted(_EXTENSIONS, key=len, reverse=True):
        if name.endswith(extension):
            return _EXTENSIONS[extension]
    return None


def _files_of(source: str | os.PathLike[str], explicit_format: str | None) -> list[tuple[Path, str]]:
    path = Path(source)
    if not path.exists():
        raise DataSourceNotFoundError(f"data source '{path}' does not exist")
    if path.is_file():
        fmt = _format_of(path, explicit_format)
        if fmt is None:
            raise InvalidArgumentError(
                f"cannot tell the format of '{path}' from its extension; pass format= one of {list(FORMATS)}"
            )
        return [(path, fmt)]
    saved = _saved_dataset_files(path)
    if saved is not None:
        return saved
    found = []
    for child in sorted(p for p in path.rglob("*") if p.is_file() and not _skipped(p.relative_to(path))):
        fmt = _format_of(child, None)
        if fmt is not None and (explicit_format is None or fmt == explicit_format):
            found.append((child, fmt))
    if not found:
        raise DataSourceError(
            f"folder '{path}' holds no data file ({', '.join(sorted(_EXTENSIONS))})"
            + (f" of format {explicit_format!r}" if explicit_format else "")
        )
    return found


def _skipped(relative: Path) -> bool:
    """Files a folder walk must not read as data: anything under a hidden name (``.ipynb_checkpoints``,
    ``.git``, editor swap files) and ``datasets``' cache files (``cache-*.arrow``, written beside the data
    by ``Dataset.map`` / ``tokenize_dataset``: the same rows again, processed)."""
    if any(part.startswith(".") for part in relative.parts):
        return True
    name = relative.name
    return name.startswith("cache-") and name.endswith(".arrow")


def _saved_dataset_files(path: Path) -> list[tuple[Path, str]] | None:
    """The data files of a ``datasets`` ``save_to_disk`` folder, as its ``state.json`` lists them (the
    folder may also hold cache files of later ``map`` calls, which are not the dataset's rows)."""
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if (p / "state.json").is_file())
        raise DataSourceError(
            f"'{path}' is a datasets DatasetDict saved with save_to_disk (splits {splits}); "
            f"pass one split's folder, e.g. '{path / (splits[0] if splits else 'train')}'"
        )
    state_file = path / "state.json"
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        names = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataSourceError(
            f"'{state_file}' is not a readable datasets state file ({err}); pass the data files themselves"
        ) from err
    files = []
    for name in names:
        file = path / name
        if not file.is_file():
            raise DataSourceNotFoundError(f"'{file}', listed in '{state_file}', does not exist")
        files.append((file, "arrow"))
    return files


class _Source:
    """One file (or table) and how to read its units."""

    name: str

    def parts(self) -> list[int]:
        """Row counts of the parts, in order."""
        raise NotImplementedError

    def columns(self) -> list[str]:
        raise NotImplementedError

    def read(self, part: int, lo: int, hi: int, columns: list[str]) -> Any:
        """Rows ``lo..hi`` of ``part`` as a ``pyarrow.Table`` with ``columns``."""
        raise NotImplementedError

    def describe_row(self, part: int, row: int) -> str:
        return f"{self.name}, row {sum(self.parts()[:part]) + row}"

    def line_of(self, part: int, row: int) -> int | None:
        """1-based line number of row ``row`` of unit ``part`` in a text file; None where rows have no line."""
        return None

    def close(self) -> None:
        """Drops open handles (before pickling into a worker)."""


class _TableSource(_Source):
    def __init__(self, table: Any, name: str, rows_per_unit: int) -> None:
        self.name = name
        self.table = table
        self.rows_per_unit = rows_per_unit
        self._offsets = list(range(0, table.num_rows, rows_per_unit))

    def parts(self) -> list[int]:
        return [min(self.rows_per_unit, self.table.num_rows - start) for start in self._offsets]

    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def read(self, part: int, lo: int, hi: int, columns: list[str]) -> Any:
        return self.table.select(columns).slice(self._offsets[part] + lo, hi - lo)


class _ParquetSource(_Source):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._file: Any = None
        self._cached: tuple[int, tuple[str, ...], Any] | None = None

    def _open(self) -> Any:
        import pyarrow.parquet as pq

        if self._file is None:
            try:
                self._file = pq.ParquetFile(self.path)
                _ = self._file.schema_arrow.names  # a damaged footer can hold names that are not UTF-8
            except Exception as err:  # pyarrow raises ArrowInvalid / OSError for damaged files
                self._file = None
                raise DataSourceError(f"'{self.path}' is not a readable Parquet file: {err}") from err
        return self._file

    def parts(self) -> list[int]:
        metadata = self._open().metadata
        counts = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        if sum(counts) != metadata.num_rows or min(counts, default=0) < 0:
            raise DataSourceError(
                f"'{self.path}' is a damaged Parquet file: its row groups hold {sum(counts)} rows but its footer "
                f"says {metadata.num_rows}; re-create or re-copy it"
            )
        return counts

    def columns(self) -> list[str]:
        return list(self._open().schema_arrow.names)

    def read(self, part: int, lo: int, hi: int, columns: list[str]) -> Any:
        key = tuple(columns)
        if self._cached is None or self._cached[:2] != (part, key):
            try:
                table = self._open().read_row_group(part, columns=columns)
            except Exception as err:
                raise DataSourceError(f"'{self.path}': cannot read row group {part}: {err}") from err
            if table.num_rows != self.parts()[part]:
                raise DataSourceError(
                    f"'{self.path}' is a damaged Parquet file: row group {part} holds {table.num_rows} rows, its "
                    f"metadata says {self.parts()[part]}; re-create or re-copy it"
                )
            self._cached = (part, key, table)
        return self._cached[2].slice(lo, hi - lo)

    def close(self) -> None:
        self._file = None
        self._cached = None


class _ArrowSource(_Source):
    """An Arrow IPC file: the random-access file format, or the stream format `datasets` writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._reader: Any = None
        self._is_stream = False
        self._counts: list[int] | None = None
        self._schema: Any = None
        self._cached: tuple[int, Any] | None = None

    def _fail(self, err: Exception) -> DataSourceError:
        return DataSourceError(f"'{self.path}' is not a readable Arrow IPC file (truncated or corrupt?): {err}")

    def _open(self) -> Any:
        import pyarrow as pa

        if self._reader is None:
            try:
                self._reader = pa.ipc.open_file(pa.memory_map(str(self.path)))
                self._schema = self._reader.schema
            except pa.ArrowInvalid:
                try:
                    stream = pa.ipc.open_stream(pa.memory_map(str(self.path)))
                    self._schema = stream.schema
                except Exception as err:
                    raise self._fail(err) from err
                self._is_stream = True
                self._reader = stream
            except Exception as err:
                raise self._fail(err) from err
            try:
                _ = self._schema.names  # damaged metadata can hold names that are not UTF-8
            except Exception as err:
                self._reader = None
                raise self._fail(err) from err
        return self._reader

    def _stream_batches(self) -> Any:
        import pyarrow as pa

        # Memory-mapped and zero-copy: walking past batches reads only their headers.
        try:
            yield from pa.ipc.open_stream(pa.memory_map(str(self.path)))
        except Exception as err:
            raise self._fail(err) from err

    def _check_stream_end(self) -> None:
        """A stream cut at a record-batch boundary reads as a shorter valid stream: only the missing
        end-of-stream marker tells. Walks the message headers (memory-mapped, bodies untouched)."""
        import pyarrow as pa

        source = pa.memory_map(str(self.path))
        end = 0
        while True:
            try:
                pa.ipc.read_message(source)
            except EOFError:
                break
            end = source.tell()
        source.seek(end)
        tail = source.read()
        if tail not in (_ARROW_END_OF_STREAM, _ARROW_LEGACY_END_OF_STREAM):
            raise DataSourceError(
                f"'{self.path}' is a truncated Arrow IPC stream: it stops after {end:,} bytes without the "
                "end-of-stream marker (a copy or write cut short?); rewrite or re-copy the file"
            )

    def parts(self) -> list[int]:
        if self._counts is None:
            reader = self._open()
            try:
                if self._is_stream:
                    self._check_stream_end()
                    self._counts = [batch.num_rows for batch in self._stream_batches()]
                else:
                    self._counts = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
            except DataSourceError:
                raise
            except Exception as err:
                raise self._fail(err) from err
        return self._counts

    def columns(self) -> list[str]:
        self._open()
        return list(self._schema.names)

    def read(self, part: int, lo: int, hi: int, columns: list[str]) -> Any:
        import pyarrow as pa

        if self._cached is None or self._cached[0] != part:
            reader = self._open()
            try:
                if self._is_stream:
                    batch = next(b for i, b in enumerate(self._stream_batches()) if i == part)
                else:
                    batch = reader.get_batch(part)
            except (DataSourceError, StopIteration) as err:
                raise self._fail(err) from err
            except Exception as err:
                raise self._fail(err) from err
            self._cached = (part, pa.Table.from_batches([batch]))
        return self._cached[1].select(columns).slice(lo, hi - lo)

    def close(self) -> None:
        self._reader = None
        self._cached = None


class _LineSource(_Source):
    """JSONL or CSV/TSV, split into byte ranges of ``rows_per_unit`` rows by the Rust indexer."""

    def __init__(self, path: Path, fmt: str, csv: CsvOptions, rows_per_unit: int) -> None:
        self.path = path
        self.name = str(path)
        self.format = fmt
        self.csv = csv
        self.rows_per_unit = rows_per_unit
        self._index: tuple[list[int], list[int], int] | None = None
        self._columns: list[str] | None = None
        # The last unit parsed: windows smaller than a unit read it several times.
        self._cached: tuple[int, tuple[str, ...], Any] | None = None

    @property
    def _is_json(self) -> bool:
        return self.format == "jsonl"

    @property
    def _delimiter(self) -> str:
        if self.csv.delimiter is not None:
            return self.csv.delimiter
        return "\t" if self.format == "tsv" else ","

    def _row_index(self) -> tuple[list[int], list[int], int]:
        if self._index is None:
            with open(self.path, "rb") as handle:
                head = handle.read(1 << 16)
            if b"\r" in head and b"\n" not in head:
                raise DataSourceError(
                    f"'{self.path}' ends its lines with a carriage return only (CR, old Mac style); rows must end "
                    "with LF or CRLF: convert the file (e.g. `tr '\\r' '\\n' < in > out`)"
                )
            quote = '"' if (not self._is_json and self.csv.quoting) else None
            has_header = (not self._is_json) and self.csv.has_header
            try:
                offsets, rows, header_end = _core.index_line_rows(
                    str(self.path), quote=quote, has_header=has_header, rows_per_unit=self.rows_per_unit
                )
            except ValueError as err:
                raise DataSourceError(str(err)) from err
            self._index = (offsets.tolist(), rows.tolist(), header_end)
        return self._index

    def parts(self) -> list[int]:
        return self._row_index()[1]

    def _bytes(self, start: int, end: int) -> bytes:
        with open(self.path, "rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    def columns(self) -> list[str]:
        if self._columns is not None:
            return self._columns
        offsets, rows, header_end = self._row_index()
        if self._is_json:
            if not rows:
                raise DataSourceError(f"'{self.path}' holds no rows")
            first = self._bytes(offsets[0], offsets[1]).split(b"\n", 1)[0]
            self._check_utf8(first, 0)
            try:
                record = json.loads(first.decode("utf-8"))
            except json.JSONDecodeError as err:
                raise DataSourceError(f"'{self.path}', line {self._line_of(0, 0)}: not valid JSON ({err})") from err
            if not isinstance(record, dict):
                raise DataSourceError(f"'{self.path}', line {self._line_of(0, 0)}: a JSONL row must be an object")
            self._columns = list(record)
        elif self.csv.column_names is not None:
            self._columns = list(self.csv.column_names)
        elif self.csv.has_header:
            import pyarrow.csv as pacsv

            header = self._bytes(0, header_end)
            self._check_utf8(header, None)
            table = pacsv.read_csv(io.BytesIO(header), parse_options=self._parse_options())
            self._columns = list(table.column_names)
        else:
            raise InvalidArgumentError(f"'{self.path}' has no header row: pass csv_column_names")
        return self._columns

    def _parse_options(self) -> Any:
        import pyarrow.csv as pacsv

        return pacsv.ParseOptions(
            delimiter=self._delimiter,
            quote_char='"' if self.csv.quoting else False,
            newlines_in_values=self.csv.quoting,
        )

    def _line_of(self, part: int, row: int) -> int:
        """1-based line number of row ``row`` of unit ``part`` (for error messages only)."""
        offsets = self._row_index()[0]
        with open(self.path, "rb") as handle:
            before = handle.read(offsets[part]).count(b"\n")
        lines = [line for line in self._bytes(offsets[part], offsets[part + 1]).split(b"\n")]
        seen = -1
        for number, line in enumerate(lines):
            if line.strip():
                seen += 1
                if seen == row:
                    return before + number + 1
        return before + 1

    def describe_row(self, part: int, row: int) -> str:
        return f"'{self.path}', line {self._line_of(part, row)}"

    def line_of(self, part: int, row: int) -> int | None:
        return self._line_of(part, row)

    def read(self, part: int, lo: int, hi: int, columns: list[str]) -> Any:
        key = tuple(columns)
        if self._cached is None or self._cached[:2] != (part, key):
            self._cached = (part, key, self._parse(part, columns))
        return self._cached[2].slice(lo, hi - lo)

    def close(self) -> None:
        self._cached = None

    def _parse(self, part: int, columns: list[str]) -> Any:
        import pyarrow as pa

        offsets = self._row_index()[0]
        data = self._bytes(offsets[part], offsets[part + 1])
        block = max(len(data) + 1, 1 << 16)
        if self._is_json:
            import pyarrow.json as pajson

            self._check_utf8(data, part)
            try:
                table = pajson.read_json(io.BytesIO(data), read_options=pajson.ReadOptions(block_size=block))
            except pa.ArrowInvalid as err:
                raise self._json_error(part, data, err) from err
            missing = [c for c in columns if c not in table.column_names]
            for name in missing:  # a key absent from every row of this unit: all null
                table = table.append_column(name, pa.nulls(table.num_rows))
        else:
            import pyarrow.csv as pacsv

            names = self.columns()
            self._check_utf8(data, part)
            try:
                table = pacsv.read_csv(
                    io.BytesIO(data),
                    read_options=pacsv.ReadOptions(column_names=names, block_size=block),
                    parse_options=self._parse_options(),
                    convert_options=pacsv.ConvertOptions(include_columns=columns),
                )
            except pa.ArrowInvalid as err:
                raise self._csv_error(part, data, len(names), err) from err
        if table.num_rows != self.parts()[part]:
            if self._is_json:
                raise self._json_error(part, data, None)
            raise DataSourceError(
                f"'{self.path}': read {table.num_rows} rows where {self.parts()[part]} were indexed "
                f"from line {self._line_of(part, 0)} on (a quoting mismatch? GLUE TSVs need csv_quoting=False)"
            )
        return table.select(columns)

    def _check_utf8(self, data: bytes, part: int | None) -> None:
        """Text must be UTF-8: Arrow's readers would pass other bytes on (as invalid strings or as a
        binary column) to fail later without a line number. ``data`` is unit ``part`` (None: the header);
        its first line number is counted only for the error (it reads the file up to the unit)."""
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            first_line = 1 if part is None else self._line_of(part, 0)
            line = data.count(b"\n", 0, err.start)
            column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
            raise DataSourceError(
                f"'{self.path}', line {first_line + line}, column {column}: byte 0x{data[err.start]:02x} is not "
                "UTF-8; re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)"
            ) from None

    def _json_error(self, part: int, data: bytes, err: Exception | None) -> DataSourceError:
        before = self._line_of(part, 0) - 1
        for number, line in enumerate(data.split(b"\n")):
            if not line.strip():
                continue
            try:
                json.loads(line.decode("utf-8", errors="replace"))
            except json.JSONDecodeError as bad:
                if bad.msg == "Extra data":
                    return DataSourceError(
                        f"'{self.path}', line {before + number + 1}, column {bad.colno}: a second JSON value on "
                        "the line; JSONL holds exactly one object per line"
                    )
                return DataSourceError(f"'{self.path}', line {before + number + 1}: not valid JSON ({bad})")
        return DataSourceError(f"'{self.path}': cannot read the rows from line {before + 1} on: {err}")

    def _csv_error(self, part: int, data: bytes, width: int, err: Exception) -> DataSourceError:
        """Names the row Arrow refused (its message gives the content, not the line)."""
        import csv

        before = self._line_of(part, 0) - 1
        text = io.StringIO(data.decode("utf-8"), newline="")
        quoting = csv.QUOTE_MINIMAL if self.csv.quoting else csv.QUOTE_NONE
        reader = csv.reader(text, delimiter=self._delimiter, quoting=quoting, strict=False)
        line = 0
        for row in reader:
            if row and len(row) != width:
                return DataSourceError(
                    f"'{self.path}', line {before + line + 1}: {len(row)} field(s) where the header has {width}"
                    + ("" if self.csv.quoting else " (csv_quoting=False: quotes are plain characters)")
                )
            line = reader.line_num
        return DataSourceError(f"'{self.path}': cannot parse the rows from line {before + 1} on: {err}")


class _GzipJsonlSource(_Source):
    """A ``.jsonl.gz`` file: one unit (gzip cannot seek), read forward with a cursor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._rows: int | None = None
        self._cursor: tuple[Any, int] | None = None

    def _lines(self) -> Any:
        try:
            with gzip.open(self.path, "rb") as handle:
                for line in handle:
                    if line.strip():
                        yield line
        except (OSError, EOFError, zlib.error) as err:
            raise DataSourceError(f"'{self.path}' is not a readable gzip file (truncated?): {err}") from err

    def parts(self) -> list[int]:
        if self._rows is None:
            self._rows = sum(1 for _ in self._lines())
        return [self._rows] if self._rows else []

    def columns(self) -> list[str]:
        for line in self._lines():
            try:
                record = json.loads(line.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DataSourceError(f"'{self.path}', row 0: not valid UTF-8 JSON ({err})") from err
            return list(record) if isinstance(record, dict) else []
        raise DataSourceError(f"'{self.path}' holds no rows")

    def read(self, part: int, lo: int, hi: int, columns: list[str]) -> Any:
        import pyarrow as pa
        import pyarrow.json as pajson

        if self._cursor is None or self._cursor[1] > lo:
            self._cursor = (iter(self._lines()), 0)
        lines, position = self._cursor
        for _ in range(lo - position):
            next(lines)
        chunk = [next(lines) for _ in range(hi - lo)]
        self._cursor = (lines, hi)
        data = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in chunk)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            row = lo + data.count(b"\n", 0, err.start)
            raise DataSourceError(
                f"'{self.path}', row {row}: byte 0x{data[err.start]:02x} is not UTF-8; re-encode the file as UTF-8"
            ) from None
        try:
            table = pajson.read_json(io.BytesIO(data), read_options=pajson.ReadOptions(block_size=len(data) + 1))
        except pa.ArrowInvalid as err:
            for number, line in enumerate(chunk):
                try:
                    json.loads(line.decode("utf-8", errors="replace"))
                except json.JSONDecodeError as bad:
                    raise DataSourceError(f"'{self.path}', row {lo + number}: not valid JSON ({bad})") from err
            raise DataSourceError(f"'{self.path}': cannot read rows {lo}..{hi}: {err}") from err
        for name in columns:
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(table.num_rows))
        return table.select(columns)

    def describe_row(self, part: int, row: int) -> str:
        return f"'{self.path}', row {row}"

    def line_of(self, part: int, row: int) -> int | None:
        """Reads the file again up to the row: for error messages only."""
        seen = -1
        with gzip.open(self.path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    seen += 1
                    if seen == row:
                        return number
        return None

    def close(self) -> None:
        self._cursor = None


class _ConllSource(_Source):
    """A CoNLL file (CoNLL-2003's ``word POS chunk NER`` and the like): one token per line, its words separated by
    spaces or tabs, the tag in the last column; a blank line ends a sentence; ``-DOCSTART-`` lines are skipped.
    One unit, one row per sentence: ``tokens`` (the first column) and ``ner_tags`` (the last), both lists of text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._parsed: tuple[list[list[str]], list[list[str]], list[int]] | None = None

    def _parse(self) -> tuple[list[list[str]], list[list[str]], list[int]]:
        if self._parsed is not None:
            return self._parsed
        try:
            data = self.path.read_bytes()
        except OSError as err:
            raise DataSourceError(f"cannot read '{self.path}': {err}") from err
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise DataSourceError(
                f"'{self.path}' line {line}: byte 0x{data[err.start]:02x} is not UTF-8; re-encode the file as UTF-8"
            ) from None
        tokens: list[list[str]] = []
        tags: list[list[str]] = []
        first_lines: list[int] = []
        words: list[str] = []
        labels: list[str] = []
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    tokens.append(words)
                    tags.append(labels)
                    words, labels = [], []
                continue
            if len(fields) < 2:
                raise DataSourceError(
                    f"'{self.path}' line {number}: {line.strip()!r} has no tag: a CoNLL line is 'word ... tag' "
                    "(the tag in the last column, separated by a space or a tab)"
                )
            if not words:
                first_lines.append(number)
            words.append(fields[0])
            labels.append(fields[-1])
        if words:
            tokens.append(words)
            tags.append(labels)
        self._parsed = (tokens, tags, first_lines)
        return self._parsed

    def parts(self) -> list[int]:
        rows = len(self._parse()[0])
        return [rows] if rows else []

    def columns(self) -> list[str]:
        return list(CONLL_COLUMNS)

    def read(self, part: int, lo: int, hi: int, columns: list[str]) -> Any:
        import pyarrow as pa

        tokens, tags, _ = self._parse()
        values = {"tokens": tokens[lo:hi], "ner_tags": tags[lo:hi]}
        return pa.table({name: pa.array(values[name], pa.list_(pa.string())) if name in values
                         else pa.nulls(hi - lo) for name in columns})  # fmt: skip

    def describe_row(self, part: int, row: int) -> str:
        return f"'{self.path}' line {self.line_of(part, row)}"

    def line_of(self, part: int, row: int) -> int | None:
        """The line of the sentence's first word."""
        return self._parse()[2][row]

    def close(self) -> None:
        self._parsed = None


class _SquadSource(_Source):
    """A SQuAD JSON file (``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers":
    [{"text", "answer_start"}]}]}]}]}``, v1.1 as the official files): one unit, one row per question, with the
    columns of the Hugging Face ``squad`` dataset: ``id``, ``title``, ``context``, ``question`` and ``answers``
    (``{"text": [...], "answer_start": [...]}``). The structure is checked here (errors name the file, the article
    and the question id); whether each answer is where ``answer_start`` says is the training task's check."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._rows: dict[str, list] | None = None

    def _fail(self, where: str, problem: str) -> DataSourceError:
        return DataSourceError(f"'{self.path}' {where}: {problem} (expected SQuAD's structure: {{\"data\": [{{"
                               "\"title\", \"paragraphs\": [{\"context\", \"qas\": [{\"id\", \"question\", "
                               "\"answers\": [{\"text\", \"answer_start\"}]}]}]}]}})")  # fmt: skip

    def _parse(self) -> dict[str, list]:
        if self._rows is not None:
            return self._rows
        try:
            document = json.loads(self.path.read_bytes())
        except OSError as err:
            raise DataSourceError(f"cannot read '{self.path}': {err}") from err
        except UnicodeDecodeError as err:
            raise DataSourceError(f"'{self.path}' is not UTF-8 text ({err}); re-encode it as UTF-8") from None
        except ValueError as err:
            hint = " (one JSON record per line: pass format 'jsonl')" if "Extra data" in str(err) else ""
            raise DataSourceError(f"'{self.path}' is not a SQuAD JSON file: {err}{hint}") from None
        if not isinstance(document, dict) or not isinstance(document.get("data"), list):
            raise self._fail("top level", 'no "data" list of articles')
        rows: dict[str, list] = {name: [] for name in SQUAD_COLUMNS}
        for a, article in enumerate(document["data"]):
            if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
                raise self._fail(f"article {a}", 'not an object with a "paragraphs" list')
            title = article.get("title")
            for p, paragraph in enumerate(article["paragraphs"]):
                where = f"article {a} ({title!r}) paragraph {p}"
                if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                    raise self._fail(where, 'not an object with a "qas" list')
                context = paragraph.get("context")
                if not isinstance(context, str):
                    raise self._fail(where, f'"context" is {type(context).__name__}, not text')
                for q, qa in enumerate(paragraph["qas"]):
                    if not isinstance(qa, dict):
                        raise self._fail(f"{where} question {q}", "not an object")
                    qid = qa.get("id")
                    name = f"{where} question {q} (id {qid!r})"
                    if not isinstance(qid, str) or not qid:
                        raise self._fail(name, 'no "id"')
                    if not isinstance(qa.get("question"), str):
                        raise self._fail(name, f'"question" is {type(qa.get("question")).__name__}, not text')
                    answers = qa.get("answers")
                    if not isinstance(answers, list) or not all(
                        isinstance(x, dict) and isinstance(x.get("text"), str) and type(x.get("answer_start")) is int
                        for x in answers
                    ):  # fmt: skip
                        raise self._fail(name, '"answers" is not a list of {"text": text, "answer_start": int}')
                    rows["id"].append(qid)
                    rows["title"].append(title if isinstance(title, str) else None)
                    rows["context"].append(context)
                    rows["question"].append(qa["question"])
                    rows["answers"].append({"text": [x["text"] for x in answers],
                                            "answer_start": [x["answer_start"] for x in answers]})  # fmt: skip
        self._rows = rows
        return rows

    def parts(self) -> list[int]:
        rows = len(self._parse()["id"])
        return [rows] if rows else []

    def columns(self) -> list[str]:
        return list(SQUAD_COLUMNS)

    def read(self, part: int, lo: int, hi: int, columns: list[str]) -> Any:
        import pyarrow as pa

        rows = self._parse()
        answers = pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))])
        return pa.table({name: pa.array(rows[name][lo:hi], answers if name == "answers" else pa.string())
                         if name in rows else pa.nulls(hi - lo) for name in columns})  # fmt: skip

    def describe_row(self, part: int, row: int) -> str:
        return f"'{self.path}' question {row + 1} (id {self._parse()['id'][row]!r})"

    def close(self) -> None:
        self._rows = None


def _is_squad_json(path: Path) -> bool:
    """A ``.json`` file that starts as SQuAD files do (``{"data": [`` or ``{"version": "...", "data": [``)."""
    try:
        with open(path, "rb") as file:
            head = file.read(4096)
    except OSError:
        return False
    return re.match(rb'\s*\{\s*(?:"version"\s*:\s*"[^"]*"\s*,\s*)?"data"\s*:\s*\[', head) is not None


def _table_of(source: Any) -> tuple[Any, str] | None:
    """An in-memory ``pyarrow.Table`` for a Table / RecordBatch / ``datasets.Dataset`` without cache files."""
    import pyarrow as pa

    if isinstance(source, pa.Table):
        return source, "pyarrow.Table"
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source]), "pyarrow.RecordBatch"
    return None


def open_sources(source: Any, explicit_format: str | None, csv: CsvOptions, rows_per_unit: int) -> list[_Source]:
    """Resolves what the user passed into sources, in a fixed (sorted) order."""
    if explicit_format is not None and explicit_format not in FORMATS:
        raise InvalidArgumentError(f"format must be one of {list(FORMATS)}, got {explicit_format!r}")
    if type(source).__module__.startswith("datasets") and hasattr(source, "cache_files"):
        if getattr(source, "_indices", None) is not None:
            # A shuffled / selected view: materialize its rows in order (datasets writes a new cache file).
            source = source.flatten_indices()
        files = [entry["filename"] for entry in source.cache_files]
        if files:
            return [_ArrowSource(Path(f)) for f in files]
        source = source.data.table
    table = _table_of(source)
    if table is not None:
        return [_TableSource(table[0], table[1], rows_per_unit)]
    paths = list(source) if isinstance(source, (list, tuple)) else [source]
    if not paths:
        raise DataSourceError("the data source is an empty list of files")
    files: list[tuple[Path, str]] = []
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidArgumentError(
                "source must be a path, a list of paths, a folder, a datasets.Dataset or a pyarrow.Table, "
                f"got {type(path).__name__}"
            )
        files.extend(_files_of(path, explicit_format))
    sources: list[_Source] = []
    for path, fmt in files:
        if fmt == "parquet":
            sources.append(_ParquetSource(path))
        elif fmt == "arrow":
            sources.append(_ArrowSource(path))
        elif fmt == "jsonl.gz":
            sources.append(_GzipJsonlSource(path))
        elif fmt == "conll":
            sources.append(_ConllSource(path))
        elif fmt == "squad":
            sources.append(_SquadSource(path))
        else:
            sources.append(_LineSource(path, fmt, csv, rows_per_unit))
    return sources


def check_columns(sources: list[_Source], wanted: dict[str, str | None]) -> None:
    """Every named column must be in every source; the error lists the columns there are."""
    for source in sources:
        available = source.columns()
        for option, column in wanted.items():
            if column is not None and column not in available:
                raise ColumnNotFoundError(
                    f"{option}={column!r} is not a column of {source.name}; its columns are {available}"
                )


def arrow_column(table: Any, name: str, kind: str) -> Any:
    """Column ``name`` as one Arrow array of text (``kind='text'``) or of token-id lists, ready for Rust."""
    import pyarrow as pa

    array = table.column(name).combine_chunks()
    if kind == "text":
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            return array
        if pa.types.is_string_view(array.type):
            return array.cast(pa.large_string())
        raise InputTypeError(f"column '{name}' must hold text, found Arrow type {array.type}")
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        return array
    if pa.types.is_fixed_size_list(array.type) or pa.types.is_list_view(array.type):
        return array.cast(pa.large_list(array.type.value_type))
    raise InputTypeError(f"column '{name}' must hold a list of token ids per example, found Arrow type {array.type}")


# --------------------------------------------------------------------------------------------------
# Whole files: ``ferrotune train`` reads its data through the same sources, into one table

_WHOLE_FILE = 1 << 62  # rows per unit: a text file is one unit (parsed once, its types inferred from every row)


def _whole_file_format(source: Any, explicit: str | None) -> str | None:
    """A single ``.json`` (``.json.gz``) file named on its own is JSON Lines (``datasets``' ``to_json`` writes
    those), or a SQuAD file when it starts as one (``{"data": [...``); ``format="jsonl"`` covers a gzipped file
    too."""
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_file():
        return explicit
    name = Path(source).name.lower()
    if (explicit == "jsonl" and name.endswith(".gz")) or (explicit is None and name.endswith(".json.gz")):
        return "jsonl.gz"
    if explicit is None and name.endswith(".json"):
        return "squad" if _is_squad_json(Path(source)) else "jsonl"
    return explicit


class DataFiles:
    """A file, a list of files or a folder read whole into one ``pyarrow.Table`` (how ``ferrotune train`` and
    ``ferrotune predict --input`` read their data), through the sources the streaming loader uses: the same
    formats, folder walks, CSV options (GLUE TSVs: ``CsvOptions(quoting=False)``; files without a header:
    ``column_names``) and errors naming the file and line.

    :meth:`columns` gives each file's columns from its schema, header line or first JSONL record, before any row
    is parsed; :meth:`read` parses the rows; :meth:`where` traces a row of that table back to its file and line
    (for error messages about the data)."""

    def __init__(self, source: Any, format: str | None = None, csv: CsvOptions | None = None) -> None:
        self.name = str(source)
        self._sources = open_sources(source, _whole_file_format(source, format), csv or CsvOptions(), _WHOLE_FILE)

    def __str__(self) -> str:
        return self.name

    def columns(self) -> list[tuple[str, list[str]]]:
        """``(file, its columns)`` for every file, in reading order."""
        return [(source.name, source.columns()) for source in self._sources]

    def read(self, columns: list[str] | None = None) -> Any:
        """Every row of every file as one ``pyarrow.Table`` of ``columns`` (default: each file's own; a JSONL
        key missing from a row is null there)."""
        import pyarrow as pa

        tables = []
        for source in self._sources:
            names = list(columns) if columns is not None else source.columns()
            parts = [source.read(part, 0, rows, names) for part, rows in enumerate(source.parts())]
            tables.append(pa.concat_tables(parts) if parts else pa.table({name: pa.nulls(0) for name in names}))
        if len(tables) == 1:
            return tables[0]
        try:
            return pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise DataSourceError(f"the files of '{self.name}' do not share one schema: {err}") from err

    def where(self, row: int) -> str:
        """Where row ``row`` of :meth:`read`'s table comes from: ``"FILE line N"`` for JSONL / CSV / TSV (blank
        lines and the header counted), ``"FILE row N"`` (from 1) for Parquet and Arrow."""
        for source in self._sources:
            in_file = row
            for part, rows in enumerate(source.parts()):
                if row < rows:
                    line = source.line_of(part, row)
                    return f"{source.name} line {line}" if line is not None else f"{source.name} row {in_file + 1}"
                row -= rows
        return f"{self.name} row {row + 1}"  # pragma: no cover - a row beyond the table
