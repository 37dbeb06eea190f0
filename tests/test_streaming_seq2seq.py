"""StreamingLoader for seq2seq (``target_column``) on Tatoeba English-French pairs with t5-small's tokenizer.

Every batch must equal ``transformers.DataCollatorForSeq2Seq(hf_tokenizer, model=tiny_t5)`` applied to the same
examples, tokenized by transformers (``tokenizer(sources, truncation=..., max_length=...)`` and
``tokenizer(text_target=targets, ...)``). A batch's examples are recognised by their (source ids, target ids): the
loader carries no example numbers (a seq2seq stream has no label column), and identical pairs are counted, so a
stream must hold each pair exactly as many times as the data does.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import require_data_dir

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
transformers = pytest.importorskip("transformers")
stateful = pytest.importorskip("torchdata.stateful_dataloader")

import ferrotune  # noqa: E402
from ferrotune import StreamingLoader  # noqa: E402

N_PAIRS = 320


@pytest.fixture(scope="module")
def t5_dir():
    path = require_data_dir() / "tokenizers" / "t5-small"
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"t5-small tokenizer not found at {path}")
    return path


@pytest.fixture(scope="module")
def tokenizers(t5_dir):
    return ferrotune.Tokenizer.from_pretrained(str(t5_dir)), transformers.AutoTokenizer.from_pretrained(str(t5_dir))


@pytest.fixture(scope="module")
def tiny_t5():
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=32100, d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # fmt: skip
    return transformers.T5ForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def pairs():
    """N_PAIRS (English, French) pairs sampled from the first 5,000 lines of fra.txt (headerless, tab-separated)."""
    path = require_data_dir() / "translation" / "fra-eng" / "fra.txt"
    if not path.is_file():
        pytest.skip(f"Tatoeba English-French pairs not found at {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [
            tuple(row[:2]) for _, row in zip(range(5000), csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
        ]
    return random.Random(0).sample(rows, N_PAIRS)


@pytest.fixture(scope="module")
def files(pairs, tmp_path_factory):
    """The pairs as two JSONL files and as one Parquet file of several row groups."""
    folder = tmp_path_factory.mktemp("fra-eng")
    half = len(pairs) // 2
    for i, part in enumerate((pairs[:half], pairs[half:])):
        with open(folder / f"part-{i}.jsonl", "w", encoding="utf-8") as handle:
            for source, target in part:
                handle.write(json.dumps({"source": source, "target": target}, ensure_ascii=False) + "\n")
    table = pa.table({"source": [s for s, _ in pairs], "target": [t for _, t in pairs]})
    pq.write_table(table, folder / "pairs.parquet", row_group_size=70)
    return {
        "jsonl": [str(folder / "part-0.jsonl"), str(folder / "part-1.jsonl")],
        "parquet": str(folder / "pairs.parquet"),
    }


def _hf_features(hf, pairs, max_length=None, max_target_length=None):
    """transformers' preprocessing: {(source ids, target ids): feature}, and how many times each pair occurs."""
    truncation = max_length is not None
    sources = hf([s for s, _ in pairs], truncation=truncation, max_length=max_length)
    targets = hf(text_target=[t for _, t in pairs], truncation=max_target_length is not None,
                 max_length=max_target_length)  # fmt: skip
    features, counts = {}, Counter()
    for ids, mask, labels in zip(sources["input_ids"], sources["attention_mask"], targets["input_ids"]):
        key = (tuple(ids), tuple(labels))
        features[key] = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        counts[key] += 1
    return features, counts


def _keys(batch):
    """The (source ids, target ids) of each row of a right-padded batch."""
    keys = []
    for ids, mask, labels in zip(
        batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ):
        keys.append((tuple(i for i, m in zip(ids, mask) if m), tuple(t for t in labels if t != -100)))
    return keys


def _assert_equal_to_collator(batches, collator, features, counts):
    seen = Counter()
    for n, batch in enumerate(batches):
        keys = _keys(batch)
        assert all(key in features for key in keys), f"batch {n}: an example transformers does not tokenize so"
        want = collator([features[key] for key in keys])
        assert list(batch) == list(want), f"batch {n}: keys {list(batch)} != {list(want)}"
        for name in want:
            assert torch.equal(batch[name], want[name]), f"batch {n}: {name} differs"
        seen.update(keys)
    assert seen == counts, "the stream does not hold each example exactly once"


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------------
# Batches equal transformers' collator


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("jsonl", dict(batch_size=16)),
        (
            "parquet",
            dict(
                batch_size=12,
                bucketing="length",
                pad_to_multiple_of=8,
                truncation=True,
                max_length=12,
                max_target_length=9,
            ),
        ),  # fmt: skip
        ("jsonl", dict(max_tokens=700, bucketing="length", shuffle_buffer=100, rows_per_unit=50)),
        ("parquet", dict(max_tokens=400, batch_size=20, pad_to_multiple_of=4, truncation=True, max_length=16)),
    ],
)
def test_batches_equal_transformers_collator(tokenizers, tiny_t5, pairs, files, fmt, options):
    ft, hf = tokenizers
    loader = StreamingLoader(files[fmt], ft, text_column="source", target_column="target", model=tiny_t5, seed=1,
                             **options)  # fmt: skip
    batches = list(loader)
    max_length = options.get("max_length")
    features, counts = _hf_features(hf, pairs, max_length, options.get("max_target_length", max_length))
    collator = transformers.DataCollatorForSeq2Seq(
        hf, model=tiny_t5, pad_to_multiple_of=options.get("pad_to_multiple_of")
    )
    _assert_equal_to_collator(batches, collator, features, counts)
    assert all(b["decoder_input_ids"].dtype == torch.int64 for b in batches)
    if "max_target_length" in options:
        assert max(b["labels"].shape[1] for b in batches) <= 16  # 9 rounded up to a multiple of 8
    # decoder_start_token_id= gives what the model's prepare_decoder_input_ids_from_labels gives
    by_start = StreamingLoader(files[fmt], ft, text_column="source", target_column="target", decoder_start_token_id=0,
                               seed=1, **options)  # fmt: skip
    assert all(_same(a, b) for a, b in zip(batches, by_start, strict=True))
    # without model or start token: no decoder_input_ids, as transformers' collator without a model
    plain = next(iter(StreamingLoader(files[fmt], ft, text_column="source", target_column="target", seed=1, **options)))
    assert list(plain) == ["input_ids", "attention_mask", "labels"]
    assert torch.equal(plain["labels"], batches[0]["labels"])


def test_numpy_batches_and_left_padding(t5_dir, pairs, files, tiny_t5):
    ft, hf = ferrotune.Tokenizer.from_pretrained(str(t5_dir)), transformers.AutoTokenizer.from_pretrained(str(t5_dir))
    ft.padding_side = hf.padding_side = "left"
    loader = StreamingLoader(files["parquet"], ft, text_column="source", target_column="target", batch_size=10,
                             shuffle=False, return_tensors="np", model=tiny_t5)  # fmt: skip
    collator = transformers.DataCollatorForSeq2Seq(hf, model=tiny_t5)
    features, _ = _hf_features(hf, pairs)
    for n, batch in enumerate(loader):
        assert isinstance(batch["labels"], np.ndarray) and isinstance(batch["decoder_input_ids"], np.ndarray)
        chunk = pairs[n * 10 : (n + 1) * 10]
        want = collator([features[key] for key in _hf_keys(hf, chunk)])
        for name in want:
            np.testing.assert_array_equal(batch[name], want[name].numpy(), err_msg=f"batch {n}: {name}")


def _hf_keys(hf, chunk):
    sources = hf([s for s, _ in chunk])["input_ids"]
    targets = hf(text_target=[t for _, t in chunk])["input_ids"]
    return [(tuple(s), tuple(t)) for s, t in zip(sources, targets)]


# --------------------------------------------------------------------------------------------------
# Bucketing and budgets


def test_length_buckets_sort_by_the_longer_side(tokenizers, pairs, files):
    ft, hf = tokenizers
    loader = StreamingLoader(files["parquet"], ft, text_column="source", target_column="target", batch_size=8,
                             bucketing="length", shuffle=False, rows_per_unit=N_PAIRS)  # fmt: skip
    sides = [(len(s), len(t)) for batch in loader for s, t in _keys(batch)]
    longer = [max(s, t) for s, t in sides]
    assert longer == sorted(longer)
    assert [s for s, _ in sides] != sorted(s for s, _ in sides), "the order is not the sources' alone"
    assert any(t > s for s, t in sides), "some targets are longer than their sources"
    # bucketing cuts the padding of both sides
    padding = {}
    for bucketing in ("none", "length"):
        stream = StreamingLoader(files["parquet"], ft, text_column="source", target_column="target", batch_size=8,
                                 bucketing=bucketing, seed=2)  # fmt: skip
        for _ in stream:
            pass
        padding[bucketing] = 1 - stream.stats["tokens"] / stream.stats["padded_tokens"]
    assert padding["length"] < padding["none"] / 2, padding


def test_token_budgets_count_both_sides(tokenizers, pairs, files):
    ft, hf = tokenizers
    for budget, multiple in ((256, None), (500, 8)):
        loader = StreamingLoader(files["jsonl"], ft, text_column="source", target_column="target", max_tokens=budget,
                                 bucketing="length", pad_to_multiple_of=multiple, seed=4)  # fmt: skip
        batches = list(loader)
        real = padded = 0
        for batch in batches:
            rows, source_width = batch["input_ids"].shape
            target_width = batch["labels"].shape[1]
            assert rows * (source_width + target_width) <= budget
            real += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
            padded += rows * (source_width + target_width)
        assert loader.stats["tokens"] == real and loader.stats["padded_tokens"] == padded
        assert sum(b["input_ids"].shape[0] for b in batches) == N_PAIRS
        # the budget is well used: most batches hold more than half of it
        assert (
            np.mean([b["input_ids"].shape[0] * (b["input_ids"].shape[1] + b["labels"].shape[1]) for b in batches])
            > budget / 2
        )
        assert loader.count_batches() == len(batches)
    with pytest.raises(ferrotune.InvalidInputError, match=r"source \+ \d+ target tokens does not fit in max_tokens=12"):
        list(StreamingLoader(files["jsonl"], ft, text_column="source", target_column="target", max_tokens=12))


# --------------------------------------------------------------------------------------------------
# Resume, sharding, workers


def _loader(files, ft, **extra):
    options = dict(text_column="source", target_column="target", max_tokens=300, bucketing="length", shuffle_buffer=64,
                   rows_per_unit=40, seed=5, num_epochs=2, decoder_start_token_id=0)  # fmt: skip
    options.update(extra)
    return StreamingLoader(files["parquet"], ft, **options)


def _make(files, ft, workers, **extra):
    return stateful.StatefulDataLoader(_loader(files, ft, **extra), batch_size=None, num_workers=workers)


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_and_resumed_equals_uninterrupted(tokenizers, files, workers):
    ft, _ = tokenizers
    whole = list(_make(files, ft, workers))
    assert len(whole) > 10
    for stop in (1, len(whole) // 2 - 1, len(whole) - 2):
        first = _make(files, ft, workers)
        got = []
        for batch in first:
            got.append(batch)
            if len(got) == stop:
                break
        state = first.state_dict()
        resumed = _make(files, ft, workers)
        resumed.load_state_dict(state)
        got.extend(resumed)
        if workers:  # the workers' batches interleave the same way after a resume
            assert len(got) == len(whole)
        assert all(_same(a, b) for a, b in zip(got, whole, strict=True)), f"stopped after {stop}"


def test_other_target_settings_cannot_resume(tokenizers, files):
    ft, _ = tokenizers
    loader = _loader(files, ft)
    next(iter(loader))
    state = loader.state_dict()
    _loader(files, ft).load_state_dict(state)
    for other in (dict(max_target_length=5), dict(target_column="source")):
        with pytest.raises(ferrotune.StateDictError, match="fingerprints differ"):
            _loader(files, ft, **other).load_state_dict(state)


def test_ranks_and_workers_hold_each_example_once(tokenizers, pairs, files):
    ft, hf = tokenizers
    _, counts = _hf_features(hf, pairs)
    seen = Counter()
    for rank in range(2):
        loader = _make(files, ft, 2, rank=rank, world_size=2, num_epochs=1)
        for batch in loader:
            seen.update(_keys(batch))
    assert seen == counts


# --------------------------------------------------------------------------------------------------
# Errors


def test_errors(tokenizers, tiny_t5, files, tmp_path):
    ft, _ = tokenizers

    def make(source=files["jsonl"], **options):
        return StreamingLoader(source, ft, **{"text_column": "source", "target_column": "target", **options})

    with pytest.raises(
        ferrotune.ColumnNotFoundError, match=r"target_column='french' is not a column of .*part-0.jsonl"
    ):
        make(target_column="french")
    with pytest.raises(ferrotune.InvalidArgumentError, match="packing cannot be used with target_column"):
        make(packing=True, max_tokens=512)
    with pytest.raises(ferrotune.InvalidArgumentError, match="do not pass label_column"):
        make(label_column="target")
    with pytest.raises(ferrotune.InvalidArgumentError, match="or decoder_start_token_id, not both"):
        make(model=tiny_t5, decoder_start_token_id=0)
    with pytest.raises(ferrotune.InvalidArgumentError, match="model is for seq2seq targets: it needs target_column"):
        StreamingLoader(files["jsonl"], ft, text_column="source", model=tiny_t5)
    with pytest.raises(ferrotune.InvalidArgumentError, match="max_target_length must be a positive integer"):
        make(max_target_length=0)
    with pytest.raises(ferrotune.InvalidArgumentError, match="a tokenizer is needed to tokenize target_column"):
        StreamingLoader(files["jsonl"], input_ids_column="source", target_column="target", pad_token_id=0)
    rows = [{"source": f"Hello {i}.", "target": f"Bonjour {i}."} for i in range(30)]
    rows[17]["target"] = None
    null = tmp_path / "null.jsonl"
    null.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(ferrotune.InvalidInputError, match=r"null.jsonl', line 18: no value for column 'target'"):
        list(make(null, shuffle=False))
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text("".join(json.dumps({"source": "a", "target": i}) + "\n" for i in range(5)), encoding="utf-8")
    with pytest.raises(ferrotune.InputTypeError, match="column 'target' must hold text"):
        list(make(numbers))
