"""Collators: every output equal to transformers' collator on the same examples (keys, dtypes, shapes, values).

Examples are tokenized MRPC pairs, SST-2 sentences and IMDB reviews (truncated at 512) from ../shared/data, with
the real MiniLM tokenizer; each is fed in every input kind users pass: lists, NumPy arrays, torch tensors, Arrow
record batches / tables, ``datasets`` objects and dict-of-lists slices.
"""

from __future__ import annotations

import pickle

import ferrotune
import numpy as np
import pyarrow as pa
import pytest
import torch
import transformers
from conftest import load_dataset_slice

BATCH = 16


def assert_same_batch(ours, theirs) -> None:
    assert list(ours.keys()) == list(theirs.keys()) or set(ours.keys()) == set(theirs.keys()), (
        list(ours.keys()),
        list(theirs.keys()),
    )
    for key in theirs:
        a, b = ours[key], theirs[key]
        if b is None or isinstance(b, int):
            assert a == b, key
            continue
        assert type(a) is type(b), (key, type(a), type(b))
        assert a.dtype == b.dtype, (key, a.dtype, b.dtype)
        assert tuple(a.shape) == tuple(b.shape), (key, a.shape, b.shape)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), key
        else:
            assert np.array_equal(a, b), key


def tokenized_examples(hf, dataset: str, n: int = BATCH, *, label: str = "label") -> list[dict]:
    texts, pairs = load_dataset_slice(dataset, n)
    enc = hf(texts, pairs, truncation=True, max_length=512)
    examples = []
    for i in range(len(texts)):
        example = {key: enc[key][i] for key in enc}
        example[label] = i % 2
        examples.append(example)
    return examples


def as_kind(examples: list[dict], kind: str):
    """The same examples as each input kind users pass."""
    if kind == "lists":
        return examples
    if kind == "numpy":
        return [{k: np.asarray(v) for k, v in e.items()} for e in examples]
    if kind == "torch":
        return [{k: torch.tensor(v) for k, v in e.items()} for e in examples]
    if kind == "arrow_batch":
        return pa.RecordBatch.from_pylist(examples)
    if kind == "arrow_table":
        table = pa.Table.from_pylist(examples[: len(examples) // 2])
        return pa.concat_tables([table, pa.Table.from_pylist(examples[len(examples) // 2 :])])  # two chunks
    if kind == "dict_of_lists":
        return {k: [e[k] for e in examples] for k in examples[0]}
    if kind == "datasets":
        import datasets

        return datasets.Dataset.from_list(examples)
    if kind == "datasets_arrow_slice":
        import datasets

        return datasets.Dataset.from_list(examples * 2).shuffle(seed=0).with_format("arrow")[:BATCH]
    raise KeyError(kind)


def reference_examples(examples: list[dict], kind: str) -> list[dict]:
    """What transformers' collator is given for the same batch (it takes lists of dicts only)."""
    if kind == "datasets_arrow_slice":
        import datasets

        return datasets.Dataset.from_list(examples * 2).shuffle(seed=0).select(range(BATCH)).to_list()
    if kind in ("numpy", "torch"):
        return as_kind(examples, kind)
    return examples


INPUT_KINDS = ["lists", "numpy", "torch", "arrow_batch", "arrow_table", "dict_of_lists", "datasets"]
PADDINGS = [
    {},
    {"pad_to_multiple_of": 8},
    {"padding": "max_length", "max_length": 512},
    {"padding": "max_length"},  # model_max_length
    {"padding": "longest", "max_length": 16},  # max_length ignored when padding to the longest
]


@pytest.fixture(scope="module")
def tokenizers(minilm_pair):
    ft, hf = minilm_pair
    return ft, hf


@pytest.mark.parametrize("dataset", ["mrpc", "sst2", "imdb"])
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("options", PADDINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_with_padding_equals_transformers(tokenizers, dataset, kind, options, return_tensors):
    ft, hf = tokenizers
    examples = tokenized_examples(hf, dataset)
    ours = ferrotune.DataCollatorWithPadding(ft, return_tensors=return_tensors, **options)(as_kind(examples, kind))
    theirs = transformers.DataCollatorWithPadding(hf, return_tensors=return_tensors, **options)(
        reference_examples(examples, "lists")
    )
    assert_same_batch(ours, theirs)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind", ["lists", "torch", "arrow_batch", "datasets_arrow_slice"])
def test_with_padding_sides_and_transformers_tokenizer(minilm_dir, kind, side):
    from conftest import load_pair

    ft, hf = load_pair(minilm_dir)
    ft.padding_side = hf.padding_side = side
    examples = tokenized_examples(hf, "mrpc")
    theirs = transformers.DataCollatorWithPadding(hf, pad_to_multiple_of=8)(reference_examples(examples, kind))
    for tokenizer in (ft, hf):  # a ferrotune Tokenizer or the transformers one itself
        ours = ferrotune.DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)(as_kind(examples, kind))
        assert_same_batch(ours, theirs)


def test_float_labels_and_label_ids(tokenizers):
    ft, hf = tokenizers
    examples = tokenized_examples(hf, "mrpc")
    for e in examples:
        e["label"] = float(e["label"]) + 0.25  # STS-B style regression targets
    for kind in ("lists", "arrow_batch"):
        assert_same_batch(
            ferrotune.DataCollatorWithPadding(ft)(as_kind(examples, kind)),
            transformers.DataCollatorWithPadding(hf)(examples),
        )
    renamed = [{**{k: v for k, v in e.items() if k != "label"}, "label_ids": int(e["label"])} for e in examples]
    assert_same_batch(ferrotune.DataCollatorWithPadding(ft)(renamed), transformers.DataCollatorWithPadding(hf)(renamed))


def test_unpadded_batches(tokenizers):
    ft, hf = tokenizers
    examples = tokenized_examples(hf, "sst2")
    # ragged rows: NumPy gives object arrays in both, torch refuses in both
    ours = ferrotune.DataCollatorWithPadding(ft, padding=False, return_tensors="np")(examples)
    theirs = transformers.DataCollatorWithPadding(hf, padding=False, return_tensors="np")(examples)
    assert ours["input_ids"].dtype == theirs["input_ids"].dtype == object
    for a, b in zip(ours["input_ids"], theirs["input_ids"]):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        transformers.DataCollatorWithPadding(hf, padding=False)(examples)
    with pytest.raises(ValueError, match="input_ids"):
        ferrotune.DataCollatorWithPadding(ft, padding=False)(examples)
    same_length = [e for e in examples if len(e["input_ids"]) == len(examples[0]["input_ids"])]
    assert_same_batch(
        ferrotune.DataCollatorWithPadding(ft, padding=False)(same_length),
        transformers.DataCollatorWithPadding(hf, padding=False)(same_length),
    )


@pytest.mark.parametrize("dataset", ["mrpc", "imdb"])
@pytest.mark.parametrize("kind", ["lists", "numpy", "torch", "arrow_batch"])
@pytest.mark.parametrize("options", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 512}])
@pytest.mark.parametrize("side", ["left", "right"])
def test_token_classification_equals_transformers(minilm_dir, dataset, kind, options, side):
    from conftest import load_pair

    ft, hf = load_pair(minilm_dir)
    ft.padding_side = hf.padding_side = side
    examples = tokenized_examples(hf, dataset)
    for i, e in enumerate(examples):
        del e["label"]
        e["labels"] = [(i + j) % 9 for j in range(len(e["input_ids"]))]  # one tag per token
    for return_tensors in ("pt", "np"):
        ours = ferrotune.DataCollatorForTokenClassification(ft, return_tensors=return_tensors, **options)(
            as_kind(examples, kind)
        )
        theirs = transformers.DataCollatorForTokenClassification(hf, return_tensors=return_tensors, **options)(
            reference_examples(examples, kind)
        )
        assert_same_batch(ours, theirs)


@pytest.mark.parametrize("kind", ["lists", "numpy", "arrow_batch"])
@pytest.mark.parametrize(
    "options",
    [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 160}, {"label_pad_token_id": 0}],
)
@pytest.mark.parametrize("side", ["left", "right"])
def test_seq2seq_equals_transformers(minilm_dir, kind, options, side):
    from conftest import load_pair

    ft, hf = load_pair(minilm_dir)
    ft.padding_side = hf.padding_side = side
    texts, pairs = load_dataset_slice("mrpc", BATCH)
    sources = hf(texts, truncation=True)["input_ids"]
    targets = hf(pairs, truncation=True)["input_ids"]
    examples = [{"input_ids": s, "attention_mask": [1] * len(s), "labels": t} for s, t in zip(sources, targets)]
    for return_tensors in ("pt", "np"):
        ours = ferrotune.DataCollatorForSeq2Seq(ft, return_tensors=return_tensors, **options)(as_kind(examples, kind))
        theirs = transformers.DataCollatorForSeq2Seq(hf, return_tensors=return_tensors, **options)(
            reference_examples(examples, kind)
        )
        assert_same_batch(ours, theirs)


def test_seq2seq_decoder_input_ids_and_no_labels(tokenizers):
    ft, hf = tokenizers

    class Model:
        def prepare_decoder_input_ids_from_labels(self, labels):
            return torch.where(labels == -100, 0, labels).roll(1, dims=1)

    texts, pairs = load_dataset_slice("mrpc", 8)
    examples = [{"input_ids": s, "labels": t} for s, t in zip(hf(texts)["input_ids"], hf(pairs)["input_ids"])]
    assert_same_batch(
        ferrotune.DataCollatorForSeq2Seq(ft, model=Model())(examples),
        transformers.DataCollatorForSeq2Seq(hf, model=Model())(examples),
    )
    without = [{"input_ids": e["input_ids"], "labels": None} for e in examples]
    ours = ferrotune.DataCollatorForSeq2Seq(ft)(without)
    theirs = transformers.DataCollatorForSeq2Seq(hf)(without)
    assert ours["labels"] is None and theirs["labels"] is None
    assert_same_batch(ours, theirs)


@pytest.mark.parametrize("dataset", ["sst2", "imdb"])
@pytest.mark.parametrize("options", [{}, {"pad_to_multiple_of": 8}])
def test_causal_lm_equals_transformers(tokenizers, dataset, options):
    ft, hf = tokenizers
    examples = tokenized_examples(hf, dataset)
    for e in examples:
        del e["label"]
    plain = [e["input_ids"] for e in examples]  # lists of ids, not dicts
    for inputs in (examples, plain, [np.asarray(p) for p in plain]):
        for return_tensors in ("pt", "np"):
            ours = ferrotune.DataCollatorForLanguageModeling(ft, mlm=False, return_tensors=return_tensors, **options)(
                inputs
            )
            theirs = transformers.DataCollatorForLanguageModeling(
                hf, mlm=False, return_tensors=return_tensors, **options
            )(inputs)
            assert_same_batch(ours, theirs)


def test_mlm_masking_rates_and_invariants(tokenizers):
    """Same distribution as transformers: 15% of maskable tokens selected; 80/10/10 split; special and padding
    tokens never selected; labels -100 outside the selection. Checked on ~100k tokens of IMDB."""
    ft, hf = tokenizers
    examples = tokenized_examples(hf, "imdb", 256)
    for e in examples:
        del e["label"]
    collator = ferrotune.DataCollatorForLanguageModeling(ft, seed=0)
    batch = collator(examples)
    reference = transformers.DataCollatorWithPadding(hf)(examples)["input_ids"]
    ids, labels = batch["input_ids"], batch["labels"]
    assert ids.shape == labels.shape == reference.shape and ids.dtype == labels.dtype == torch.int64
    special = torch.isin(reference, torch.tensor(hf.all_special_ids))
    selected = labels != -100
    assert not (selected & special).any()
    assert torch.equal(labels[selected], reference[selected])
    assert torch.equal(ids[~selected], reference[~selected])
    maskable = int((~special).sum())
    rate = int(selected.sum()) / maskable
    n = int(selected.sum())
    # binomial standard deviations: sqrt(p(1-p)/n) ~ 0.0011 for the rate; 5 sigma bounds
    assert abs(rate - 0.15) < 5 * (0.15 * 0.85 / maskable) ** 0.5, rate
    as_mask = int((ids[selected] == hf.mask_token_id).sum()) / n
    kept = int((ids[selected] == reference[selected]).sum()) / n
    assert abs(as_mask - 0.8) < 5 * (0.8 * 0.2 / n) ** 0.5, as_mask
    # kept: 10% on purpose plus random draws that hit the original id (negligible with 30k ids)
    assert abs(kept - 0.1) < 5 * (0.1 * 0.9 / n) ** 0.5 + 0.001, kept
    randomized = selected & (ids != hf.mask_token_id) & (ids != reference)
    assert int(ids[randomized].max()) < len(hf)


def test_mlm_transformers_rates_agree_with_ours(tokenizers):
    """The same statistic measured on transformers' own collator lands in the same band (the comparison the
    distribution claim rests on)."""
    ft, hf = tokenizers
    examples = tokenized_examples(hf, "imdb", 128)
    for e in examples:
        del e["label"]
    torch.manual_seed(0)
    rates = []
    for collator in (
        transformers.DataCollatorForLanguageModeling(hf),
        ferrotune.DataCollatorForLanguageModeling(ft),
    ):
        batch = collator(examples)
        maskable = ~torch.isin(batch["labels"].clamp(min=0), torch.tensor(hf.all_special_ids))
        rates.append(float((batch["labels"] != -100).sum() / maskable.sum()))
    assert abs(rates[0] - rates[1]) < 0.01, rates


def test_mlm_seed_reproduces_and_global_seed_controls(tokenizers):
    ft, hf = tokenizers
    examples = tokenized_examples(hf, "sst2", 32)
    first = ferrotune.DataCollatorForLanguageModeling(ft, seed=42)
    second = ferrotune.DataCollatorForLanguageModeling(ft, seed=42)
    a1, a2 = first(examples), first(examples)
    b1 = second(examples)
    assert torch.equal(a1["input_ids"], b1["input_ids"]) and torch.equal(a1["labels"], b1["labels"])
    assert not torch.equal(a1["labels"], a2["labels"])  # the next batch draws afresh
    unseeded = ferrotune.DataCollatorForLanguageModeling(ft)
    torch.manual_seed(3)
    c1 = unseeded(examples)
    torch.manual_seed(3)
    c2 = unseeded(examples)
    assert torch.equal(c1["labels"], c2["labels"])


def test_mlm_with_special_tokens_mask_and_options(tokenizers):
    ft, hf = tokenizers
    texts, _ = load_dataset_slice("sst2", 64)
    enc = hf(texts, return_special_tokens_mask=True)
    examples = [{k: enc[k][i] for k in enc} for i in range(len(texts))]
    batch = ferrotune.DataCollatorForLanguageModeling(
        ft, mlm_probability=1.0, mask_replace_prob=1.0, random_replace_prob=0.0, return_tensors="np"
    )(examples)
    assert "special_tokens_mask" not in batch
    reference = transformers.DataCollatorWithPadding(hf, return_tensors="np")(examples)
    special = reference["special_tokens_mask"].astype(bool)
    assert (batch["input_ids"][~special] == hf.mask_token_id).all()
    assert (batch["labels"][special] == -100).all()
    assert (batch["input_ids"][special] == reference["input_ids"][special]).all()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"return_flash_attn_kwargs": True},
        {"return_seq_idx": True, "return_position_ids": False},
        {"separator_id": -1, "position_ids_start": 2, "return_flash_attn_kwargs": True, "return_seq_idx": True},
    ],
)
@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_flattening_equals_transformers(tokenizers, options, with_labels, return_tensors):
    _, hf = tokenizers
    examples = [{"input_ids": e["input_ids"]} for e in tokenized_examples(hf, "imdb")]
    examples.append({"input_ids": []})  # an empty example keeps its separator in the labels
    if with_labels:
        for i, e in enumerate(examples):
            e["labels"] = [(v + i) % 100 for v in e["input_ids"]]
    for inputs in (examples, [{k: torch.tensor(v, dtype=torch.long) for k, v in e.items()} for e in examples]):
        ours = ferrotune.DataCollatorWithFlattening(return_tensors=return_tensors, **options)(inputs)
        theirs = transformers.DataCollatorWithFlattening(return_tensors=return_tensors, **options)(inputs)
        assert_same_batch(ours, theirs)


def test_collators_pickle(tokenizers):
    ft, hf = tokenizers
    examples = tokenized_examples(hf, "mrpc", 8)
    for collator in (
        ferrotune.DataCollatorWithPadding(ft),
        ferrotune.DataCollatorWithPadding(hf),
        ferrotune.DataCollatorForTokenClassification(ft),
        ferrotune.DataCollatorForSeq2Seq(ft),
        ferrotune.DataCollatorForLanguageModeling(ft, mlm=False),
        ferrotune.DataCollatorWithFlattening(),
    ):
        clone = pickle.loads(pickle.dumps(collator))
        if isinstance(collator, ferrotune.DataCollatorWithFlattening):
            inputs = [{"input_ids": e["input_ids"]} for e in examples]
        elif isinstance(collator, (ferrotune.DataCollatorForTokenClassification, ferrotune.DataCollatorForSeq2Seq)):
            inputs = [{"input_ids": e["input_ids"], "labels": e["input_ids"]} for e in examples]
        else:
            inputs = examples
        assert_same_batch(clone(inputs), collator(inputs))
    seeded = ferrotune.DataCollatorForLanguageModeling(ft, seed=5)
    clone = pickle.loads(pickle.dumps(seeded))
    assert torch.equal(clone(examples)["labels"], seeded(examples)["labels"])


def test_collators_pickle_after_use(tokenizers):
    """A collator that has cached its padding plan still pickles and copies (the plan is rebuilt)."""
    import copy

    ft, hf = tokenizers
    examples = tokenized_examples(hf, "mrpc", 8)
    collator = ferrotune.DataCollatorWithPadding(ft)
    first = collator(pa.RecordBatch.from_pylist(examples))
    for clone in (pickle.loads(pickle.dumps(collator)), copy.deepcopy(collator)):
        assert_same_batch(clone(pa.RecordBatch.from_pylist(examples)), first)


@pytest.mark.parametrize("kind", ["lists", "arrow_batch"])
def test_settings_changed_between_calls(minilm_dir, kind):
    """Tokenizer and collator settings are read at every call, as transformers does, despite the cached plan."""
    from conftest import load_pair

    ft, hf = load_pair(minilm_dir)
    examples = tokenized_examples(hf, "mrpc", 8)
    ours = ferrotune.DataCollatorWithPadding(ft)
    theirs = transformers.DataCollatorWithPadding(hf)
    assert_same_batch(ours(as_kind(examples, kind)), theirs(examples))
    ft.padding_side = hf.padding_side = "left"
    assert_same_batch(ours(as_kind(examples, kind)), theirs(examples))
    ft.model_input_names = hf.model_input_names = ["input_ids", "token_type_ids"]  # no attention mask created
    no_mask = [{k: v for k, v in e.items() if k != "attention_mask"} for e in examples]
    assert_same_batch(ours(as_kind(no_mask, kind)), theirs(no_mask))
    ft.model_input_names = hf.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    ours.pad_to_multiple_of = theirs.pad_to_multiple_of = 16
    ours.return_tensors = theirs.return_tensors = "np"
    assert_same_batch(ours(as_kind(examples, kind)), theirs(examples))


def test_arrow_batches_of_changing_schemas(tokenizers):
    """One collator fed Arrow batches whose schemas differ from call to call (the exported schema is cached)."""
    ft, hf = tokenizers
    examples = tokenized_examples(hf, "mrpc", 8)
    collator = ferrotune.DataCollatorWithPadding(ft)
    reference = transformers.DataCollatorWithPadding(hf)
    int32 = pa.list_(pa.int32())
    variants = [
        pa.RecordBatch.from_pylist(examples),
        pa.RecordBatch.from_pylist(
            examples,
            schema=pa.schema(
                [("input_ids", int32), ("token_type_ids", int32), ("attention_mask", int32), ("label", pa.int8())]
            ),
        ),
        pa.RecordBatch.from_pylist([{"input_ids": e["input_ids"], "label": e["label"]} for e in examples]),
        pa.Table.from_pylist(examples).slice(3, 4).to_batches()[0],
    ]
    for batch in variants + variants[::-1]:
        rows = batch.to_pylist()
        ours = collator(batch)
        assert_same_batch(ours, reference(rows))
        assert all(t.is_contiguous() for t in ours.values())
