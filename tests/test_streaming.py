"""StreamingLoader on real data (MRPC, SST-2, IMDB written to Parquet / Arrow / JSONL / TSV here).

Examples carry their row number in an ``idx`` column, used as the label column, so every batch says
which examples it holds: coverage across ranks and workers, resume and determinism are checked on
example identities, and batch contents against transformers' tokenizer + collator.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import imdb_texts, load_hf, mrpc_labels, mrpc_pairs, require_data_dir, sst2_sentences

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import ferrotune  # noqa: E402
from ferrotune import StreamingLoader  # noqa: E402

N_MRPC, N_SST2, N_IMDB = 3667, 3000, 1500


@pytest.fixture(scope="module")
def corpora():
    require_data_dir()
    first, second = mrpc_pairs(N_MRPC)
    return {
        "mrpc": pa.table(
            {
                "sentence1": first,
                "sentence2": second,
                "label": mrpc_labels(N_MRPC),
                "idx": list(range(len(first))),
            }
        ),
        "sst2": pa.table({"sentence": sst2_sentences(N_SST2), "idx": list(range(N_SST2))}),
        "imdb": pa.table({"text": imdb_texts(N_IMDB), "idx": list(range(N_IMDB))}),
    }


def _write(table, directory, fmt: str):
    """Writes ``table`` in ``fmt`` as several files / units; returns the path to hand the loader."""
    directory.mkdir(parents=True, exist_ok=True)
    half = table.num_rows // 2
    parts = [table.slice(0, half), table.slice(half)]
    for i, part in enumerate(parts):
        if fmt == "parquet":
            pq.write_table(part, directory / f"part-{i}.parquet", row_group_size=400)
        elif fmt == "arrow":
            with pa.ipc.new_file(directory / f"part-{i}.arrow", part.schema) as writer:
                for batch in part.to_batches(max_chunksize=333):
                    writer.write_batch(batch)
        elif fmt == "jsonl":
            with open(directory / f"part-{i}.jsonl", "w", encoding="utf-8") as fh:
                for row in part.to_pylist():
                    fh.write(json.dumps(row) + "\n")
        elif fmt == "tsv":
            with open(directory / f"part-{i}.tsv", "w", encoding="utf-8") as fh:
                fh.write("\t".join(part.column_names) + "\n")
                for row in part.to_pylist():
                    fh.write("\t".join(str(row[c]) for c in part.column_names) + "\n")
    return directory


@pytest.fixture(scope="module")
def mrpc_files(corpora, tmp_path_factory):
    root = tmp_path_factory.mktemp("mrpc")
    return {fmt: _write(corpora["mrpc"], root / fmt, fmt) for fmt in ("parquet", "arrow", "jsonl", "tsv")}


@pytest.fixture(scope="module")
def minilm_hf(minilm_dir):
    return load_hf(minilm_dir)


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return ferrotune.Tokenizer.from_pretrained(minilm_dir)


def _mrpc_loader(path, tok, **options):
    options.setdefault("csv_quoting", False)
    return StreamingLoader(
        path, tok, text_column="sentence1", text_pair_column="sentence2", label_column="idx", **options
    )


def _ids(batches) -> list[int]:
    return [int(i) for batch in batches for i in batch["labels"]]


# --------------------------------------------------------------------------------------------------
# Coverage and sharding


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "jsonl", "tsv"])
def test_each_example_once_per_epoch_across_two_ranks_and_two_workers(fmt, mrpc_files, minilm):
    seen = []
    batch_counts = []
    for rank in range(2):
        loader = _mrpc_loader(
            mrpc_files[fmt], minilm, batch_size=16, shuffle_buffer=500, rank=rank, world_size=2, even_batches=False
        )
        batches = list(torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2))
        batch_counts.append(len(batches))
        seen += _ids(batches)
    assert sorted(seen) == list(range(N_MRPC)), "every example exactly once across 2 ranks x 2 workers"
    assert abs(batch_counts[0] - batch_counts[1]) <= 1


def test_even_batches_give_every_rank_the_same_number_of_batches(mrpc_files, minilm):
    counts, seen = [], []
    for rank in range(2):
        loader = _mrpc_loader(mrpc_files["parquet"], minilm, batch_size=16, rank=rank, world_size=2)
        batches = list(torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2))
        counts.append(len(batches))
        seen += _ids(batches)
    assert counts[0] == counts[1]
    # 3667 examples for 4 readers: three readers repeat their first example to match the fourth.
    assert len(seen) == 4 * -(-N_MRPC // 4)
    assert set(seen) == set(range(N_MRPC))
    dropped = []
    for rank in range(2):
        loader = _mrpc_loader(mrpc_files["parquet"], minilm, batch_size=16, rank=rank, world_size=2, drop_last=True)
        dropped += _ids(torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2))
    assert len(dropped) == len(set(dropped)) and len(dropped) % 16 == 0


def test_rank_and_world_size_come_from_the_environment(mrpc_files, minilm, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    loader = _mrpc_loader(mrpc_files["parquet"], minilm)
    assert (loader.rank, loader.world_size) == (1, 3)
    ids = _ids(loader)
    assert len(ids) == -(-N_MRPC // 3)


# --------------------------------------------------------------------------------------------------
# Batches equal to transformers' tokenizer + DataCollatorWithPadding on the same examples


@pytest.mark.parametrize(
    "corpus, columns, options",
    [
        ("mrpc", ("sentence1", "sentence2"), {}),
        ("sst2", ("sentence", None), {}),
        ("imdb", ("text", None), {"truncation": True, "max_length": 512}),
    ],
)
@pytest.mark.parametrize("batching", ["fixed", "budget"])
def test_batches_equal_the_transformers_collator(corpus, columns, options, batching, corpora, minilm_hf, tmp_path):
    from transformers import DataCollatorWithPadding

    table = corpora[corpus]
    path = tmp_path / "data.parquet"
    pq.write_table(table, path, row_group_size=1000)
    batch_options = {"batch_size": 8} if batching == "fixed" else {"max_tokens": 4096, "bucketing": "length"}
    loader = StreamingLoader(
        path,
        minilm_hf,
        text_column=columns[0],
        text_pair_column=columns[1],
        label_column="idx",
        shuffle_buffer=700,
        seed=5,
        **options,
        **batch_options,
    )
    collator = DataCollatorWithPadding(minilm_hf)
    texts = table.column(columns[0]).to_pylist()
    pairs = table.column(columns[1]).to_pylist() if columns[1] else None
    count = 0
    for batch in loader:
        rows = batch["labels"].tolist()
        encoded = minilm_hf(
            [texts[r] for r in rows],
            [pairs[r] for r in rows] if pairs else None,
            truncation=options.get("truncation", False),
            max_length=options.get("max_length"),
        )
        expected = collator([{k: encoded[k][i] for k in encoded} for i in range(len(rows))])
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert torch.equal(batch[key], expected[key]), key
        assert batch["input_ids"].dtype == expected["input_ids"].dtype
        count += len(rows)
    assert count == table.num_rows


def test_pre_tokenized_ids_column_gives_the_same_batches(corpora, minilm, tmp_path):
    table = corpora["sst2"]
    encoded = minilm(table.column("sentence").to_pylist())
    tokenized = table.append_column("input_ids", pa.array(encoded["input_ids"], pa.list_(pa.int32())))
    tokenized = tokenized.append_column("token_type_ids", pa.array(encoded["token_type_ids"], pa.list_(pa.int8())))
    path = tmp_path / "tokenized.arrow"
    with pa.ipc.new_stream(path, tokenized.schema) as writer:  # the stream format datasets writes
        writer.write_table(tokenized, max_chunksize=1000)
    # Same units (1000 rows) on both sides, so the same shuffled order.
    from_text = StreamingLoader(
        table, minilm, text_column="sentence", label_column="idx", batch_size=32, seed=3, rows_per_unit=1000
    )
    from_ids = StreamingLoader(path, minilm, input_ids_column="input_ids", label_column="idx", batch_size=32, seed=3)
    for a, b in zip(from_text, from_ids, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_datasets_sources(corpora, minilm, tmp_path):
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset(corpora["sst2"])
    reference = _ids(StreamingLoader(corpora["sst2"], minilm, text_column="sentence", label_column="idx", seed=2))
    in_memory = _ids(StreamingLoader(dataset, minilm, text_column="sentence", label_column="idx", seed=2))
    assert in_memory == reference
    dataset.save_to_disk(tmp_path / "saved")
    on_disk = StreamingLoader(tmp_path / "saved", minilm, text_column="sentence", label_column="idx", shuffle=False)
    assert _ids(on_disk) == list(range(N_SST2))
    loaded = datasets.load_from_disk(tmp_path / "saved")
    shuffled = loaded.shuffle(seed=0)
    from_view = StreamingLoader(shuffled, minilm, text_column="sentence", label_column="idx", shuffle=False)
    assert _ids(from_view) == shuffled["idx"]


def test_gzip_jsonl_and_quoted_csv(corpora, minilm, tmp_path):
    import gzip

    rows = corpora["sst2"].slice(0, 300).to_pylist()
    with gzip.open(tmp_path / "rows.jsonl.gz", "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    gz = StreamingLoader(
        tmp_path / "rows.jsonl.gz", minilm, text_column="sentence", label_column="idx", shuffle=False, batch_size=7
    )
    assert _ids(gz) == list(range(300))
    csv_path = tmp_path / "quoted.csv"
    csv_path.write_text(
        'text,idx\n"a line\nwith a newline, and a comma",0\nplain,1\n"say ""hi""",2\n', encoding="utf-8"
    )
    loader = StreamingLoader(csv_path, minilm, text_column="text", label_column="idx", shuffle=False, rows_per_unit=1)
    batch = next(iter(loader))
    expected = minilm(["a line\nwith a newline, and a comma", "plain", 'say "hi"'], padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected["input_ids"])


# --------------------------------------------------------------------------------------------------
# Token budgets, buckets and packing


def test_token_budget_is_never_exceeded_and_buckets_cut_padding(corpora, minilm):
    options = dict(text_column="text", label_column="idx", truncation=True, max_length=512, shuffle_buffer=1000)
    bucketed = StreamingLoader(corpora["imdb"], minilm, max_tokens=8192, bucketing="length", **options)
    ids = []
    for batch in bucketed:
        assert batch["input_ids"].numel() <= 8192
        ids += batch["labels"].tolist()
    assert sorted(ids) == list(range(N_IMDB))
    pad = 1 - bucketed.stats["tokens"] / bucketed.stats["padded_tokens"]
    random = StreamingLoader(corpora["imdb"], minilm, batch_size=16, **options)
    list(random)
    random_pad = 1 - random.stats["tokens"] / random.stats["padded_tokens"]
    assert pad < 0.05 < random_pad, (pad, random_pad)


def test_an_example_over_the_budget_is_an_error_not_a_silent_cut(corpora, minilm):
    loader = StreamingLoader(corpora["imdb"], minilm, text_column="text", max_tokens=256, shuffle=False)
    with pytest.raises(ferrotune.InvalidInputError, match="does not fit in max_tokens=256"):
        list(loader)


@pytest.mark.parametrize("split", [False, True])
def test_packing_matches_data_collator_with_flattening(split, corpora, gpt2_dir):
    from transformers import DataCollatorWithFlattening

    tok = ferrotune.Tokenizer.from_pretrained(gpt2_dir)
    texts = corpora["sst2"].column("sentence").to_pylist()
    loader = StreamingLoader(
        corpora["sst2"], tok, text_column="sentence", packing=True, pack_split=split, max_tokens=1024, seed=1
    )
    collator = DataCollatorWithFlattening(return_flash_attn_kwargs=True)
    expected_sequences = sorted(tuple(ids) for ids in tok(texts)["input_ids"])
    sequences, total, pack_sizes = [], 0, []
    for batch in loader:
        ids = batch["input_ids"][0]
        assert batch["input_ids"].shape[0] == 1 and ids.numel() <= 1024
        bounds = batch["cu_seq_lens_q"].tolist()
        pieces = [ids[a:b].tolist() for a, b in zip(bounds, bounds[1:])]
        positions = batch["position_ids"][0].tolist()
        for a, b in zip(bounds, bounds[1:]):
            assert positions[a:b] == list(range(b - a)), "position ids restart at each sequence"
        assert batch["max_length_q"] == max(len(p) for p in pieces)
        expected = collator([{"input_ids": piece} for piece in pieces])
        for key in ("input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k"):
            assert torch.equal(batch[key], expected[key]), key
        assert batch["max_length_q"] == expected["max_length_q"]
        sequences += pieces
        total += ids.numel()
        pack_sizes.append(ids.numel())
    assert total == sum(len(s) for s in expected_sequences)
    if not split:
        assert sorted(tuple(s) for s in sequences) == expected_sequences, "whole examples, none split"
        assert loader.stats["batches"] <= -(-total // 1024) + 1, "at most one pack more than the tokens need"
    else:
        assert sum(size < 1024 for size in pack_sizes) <= 1, "split packs are full but the last (one window here)"


def test_packing_refuses_long_examples_unless_truncating(corpora, gpt2_dir):
    tok = ferrotune.Tokenizer.from_pretrained(gpt2_dir)
    too_long = StreamingLoader(corpora["imdb"], tok, text_column="text", packing=True, max_tokens=256)
    with pytest.raises(ferrotune.InvalidInputError, match="pack_split=True"):
        list(too_long)
    truncating = StreamingLoader(
        corpora["imdb"], tok, text_column="text", packing=True, max_tokens=256, truncation=True
    )
    assert all(batch["input_ids"].numel() <= 256 for batch in truncating)


# --------------------------------------------------------------------------------------------------
# Determinism and resume


def test_a_seed_fixes_the_order_and_epochs_change_it(mrpc_files, minilm):
    def order(seed, epoch=0):
        loader = _mrpc_loader(mrpc_files["parquet"], minilm, batch_size=32, seed=seed, shuffle_buffer=1000)
        loader.set_epoch(epoch)
        return _ids(loader)

    first = order(0)
    assert first == order(0)
    assert first != order(1)
    assert first != order(0, epoch=1) and sorted(order(0, epoch=1)) == sorted(first)
    unshuffled = _ids(_mrpc_loader(mrpc_files["tsv"], minilm, shuffle=False))
    assert unshuffled == list(range(N_MRPC))


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("mode", ["budget", "packing"])
def test_resume_mid_epoch_yields_exactly_the_remaining_batches(num_workers, mode, mrpc_files, minilm):
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def make():
        if mode == "budget":
            options = dict(max_tokens=2048, bucketing="length", shuffle_buffer=300, num_epochs=2)
            loader = _mrpc_loader(mrpc_files["parquet"], minilm, **options)
        else:
            options = dict(packing=True, max_tokens=512, shuffle_buffer=300, num_epochs=2)
            loader = StreamingLoader(
                mrpc_files["parquet"], minilm, text_column="sentence1", text_pair_column="sentence2", **options
            )
        return stateful.StatefulDataLoader(loader, batch_size=None, num_workers=num_workers)

    full = list(make())
    assert len(full) > 40
    resumed, state = [], None
    for stop in (13, 29, None):  # interrupted twice, then run to the end
        dl = make()
        if state is not None:
            dl.load_state_dict(state)
        for batch in dl:
            resumed.append(batch)
            if stop is not None and len(resumed) == stop:
                state = dl.state_dict()
                break
    assert len(resumed) == len(full)
    for a, b in zip(resumed, full):
        assert a.keys() == b.keys()
        for key in a:
            assert (a[key] == b[key]) if not torch.is_tensor(a[key]) else torch.equal(a[key], b[key]), key


def test_state_from_another_configuration_is_refused(mrpc_files, minilm):
    loader = _mrpc_loader(mrpc_files["parquet"], minilm, batch_size=32)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    other = _mrpc_loader(mrpc_files["parquet"], minilm, batch_size=16)
    with pytest.raises(ferrotune.StateDictError, match="other"):
        other.load_state_dict(state)
    same = _mrpc_loader(mrpc_files["parquet"], minilm, batch_size=32)
    same.load_state_dict(state)
    assert torch.equal(next(iter(same))["labels"], next(iterator)["labels"])


# --------------------------------------------------------------------------------------------------
# Bad input: clear errors, never a hang or a silent skip


def test_missing_column_lists_the_available_ones(mrpc_files, minilm):
    with pytest.raises(
        ferrotune.ColumnNotFoundError, match=r"'sentence3'.*\['sentence1', 'sentence2', 'label', 'idx'\]"
    ):
        StreamingLoader(mrpc_files["parquet"], minilm, text_column="sentence3")


def test_wrong_column_types(mrpc_files, minilm):
    with pytest.raises(ferrotune.InputTypeError, match="'idx' must hold text"):
        list(StreamingLoader(mrpc_files["parquet"], minilm, text_column="idx"))
    with pytest.raises(ferrotune.InputTypeError, match="'sentence1' must hold a list of token ids"):
        list(StreamingLoader(mrpc_files["parquet"], minilm, input_ids_column="sentence1"))
    with pytest.raises(ferrotune.InputTypeError, match="label column 'sentence2'"):
        list(StreamingLoader(mrpc_files["parquet"], minilm, text_column="sentence1", label_column="sentence2"))


def test_damaged_files(mrpc_files, minilm, tmp_path):
    data = (mrpc_files["parquet"] / "part-0.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ferrotune.DataSourceError, match="cut.parquet"):
        StreamingLoader(tmp_path / "cut.parquet", minilm, text_column="sentence1")
    arrow = (mrpc_files["arrow"] / "part-0.arrow").read_bytes()
    (tmp_path / "cut.arrow").write_bytes(arrow[: len(arrow) // 2])
    with pytest.raises(ferrotune.DataSourceError, match="cut.arrow"):
        list(StreamingLoader(tmp_path / "cut.arrow", minilm, text_column="sentence1"))
    lines = (mrpc_files["jsonl"] / "part-0.jsonl").read_text(encoding="utf-8").splitlines()
    lines[41] = lines[41][:-5]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ferrotune.DataSourceError, match=r"bad.jsonl', line 42: not valid JSON"):
        list(StreamingLoader(tmp_path / "bad.jsonl", minilm, text_column="sentence1", shuffle=False))
    lines = (mrpc_files["jsonl"] / "part-0.jsonl").read_text(encoding="utf-8").splitlines()
    lines[7] = json.dumps({"sentence2": "no first sentence", "idx": 7})
    (tmp_path / "missing.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ferrotune.InvalidInputError, match=r"missing.jsonl', line 8: no value for column 'sentence1'"):
        list(StreamingLoader(tmp_path / "missing.jsonl", minilm, text_column="sentence1", shuffle=False))


def test_empty_and_missing_sources(minilm, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ferrotune.DataSourceError, match="no rows|no examples"):
        StreamingLoader(tmp_path / "empty.jsonl", minilm, text_column="text")
    with pytest.raises(ferrotune.DataSourceNotFoundError):
        StreamingLoader(tmp_path / "nothing.parquet", minilm, text_column="text")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ferrotune.DataSourceError, match="holds no data file"):
        StreamingLoader(tmp_path / "folder", minilm, text_column="text")


def test_bad_options(mrpc_files, minilm):
    path = mrpc_files["parquet"]
    with pytest.raises(ferrotune.InvalidArgumentError, match="bucketing"):
        StreamingLoader(path, minilm, text_column="sentence1", bucketing="sorted")
    with pytest.raises(ferrotune.InvalidArgumentError, match="packing=True needs max_tokens"):
        StreamingLoader(path, minilm, text_column="sentence1", packing=True)
    with pytest.raises(ferrotune.InvalidArgumentError, match="exactly one"):
        StreamingLoader(path, minilm)
    with pytest.raises(ferrotune.InvalidArgumentError, match="batch_size"):
        StreamingLoader(path, minilm, text_column="sentence1", batch_size=0)
    with pytest.raises(ferrotune.InvalidArgumentError, match="format"):
        StreamingLoader(path, minilm, text_column="sentence1", format="xml")


# --------------------------------------------------------------------------------------------------
# tokenize_dataset == dataset.map(tokenizer)


@pytest.mark.parametrize(
    "corpus, columns, options",
    [
        ("mrpc", ("sentence1", "sentence2"), {"truncation": True, "max_length": 64}),
        ("imdb", ("text", None), {"truncation": True}),
        ("sst2", ("sentence", None), {"truncation": False}),
    ],
)
def test_tokenize_dataset_equals_datasets_map(corpus, columns, options, corpora, minilm_hf, tmp_path):
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset(corpora[corpus])
    text, pair = columns

    def tokenize(examples):
        return minilm_hf(examples[text], examples[pair] if pair else None, **options)

    expected = dataset.map(tokenize, batched=True)
    ours = ferrotune.tokenize_dataset(dataset, minilm_hf, text, pair, batch_size=1000, progress=False, **options)
    assert ours.features == expected.features
    assert ours.column_names == expected.column_names
    for name in expected.column_names:
        assert ours.data.table.column(name).equals(expected.data.table.column(name)), name
    # On disk: written beside the dataset's cache files, read back memory-mapped.
    dataset.save_to_disk(tmp_path / "saved")
    on_disk = datasets.load_from_disk(tmp_path / "saved")
    cached = ferrotune.tokenize_dataset(on_disk, minilm_hf, text, pair, batch_size=700, progress=False, **options)
    assert cached.cache_files and cached.data.table.equals(ours.data.table)


def test_tokenize_dataset_keep_columns_and_errors(corpora, minilm):
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset(corpora["sst2"])
    kept = ferrotune.tokenize_dataset(dataset, minilm, "sentence", keep_columns=["idx"], progress=False)
    assert kept.column_names == ["idx", "input_ids", "token_type_ids", "attention_mask"]
    with pytest.raises(ferrotune.ColumnNotFoundError, match="'text'.*'sentence', 'idx'"):
        ferrotune.tokenize_dataset(dataset, minilm, "text")
    lengths = np.array([len(ids) for ids in kept["input_ids"]])
    assert lengths.min() >= 2


def test_count_batches_predicts_each_ranks_batches(mrpc_files, minilm):
    for rank in range(2):
        loader = _mrpc_loader(
            mrpc_files["jsonl"],
            minilm,
            max_tokens=2048,
            bucketing="length",
            rank=rank,
            world_size=2,
            shuffle_buffer=600,
        )
        loader.set_epoch(3)
        predicted = loader.count_batches(num_workers=2)
        actual = len(list(torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2)))
        assert predicted == actual
