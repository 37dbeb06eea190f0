"""default_data_collator, whole-word masking and ``rng="torch"`` / ``rng="numpy"`` masking.

``default_data_collator`` is compared with transformers' on hand-made batches of every value type; the MLM collator
with ``rng="torch"`` is compared with transformers' ``DataCollatorForLanguageModeling`` under
``transformers.set_seed`` on tokenized IMDB reviews and SST-2 sentences (MiniLM): inputs and labels must be equal bit
for bit, token-level and whole-word. Whole-word masking with the default Rust RNG is checked statistically.
"""

from __future__ import annotations

import dataclasses
import warnings

import ferrotune
import numpy as np
import pytest
import torch
import transformers
from conftest import load_dataset_slice, load_ft, require_gpt2_dir
from ferrotune.errors import EmptyBatchError, InputTypeError, InvalidArgumentError, InvalidInputError


@pytest.fixture(scope="module")
def tokenizers(minilm_pair):
    return minilm_pair


def assert_same(ours, theirs) -> None:
    assert list(ours) == list(theirs), (list(ours), list(theirs))
    for key, b in theirs.items():
        a = ours[key]
        assert type(a) is type(b), (key, type(a), type(b))
        assert a.dtype == b.dtype, (key, a.dtype, b.dtype)
        assert tuple(a.shape) == tuple(b.shape), (key, a.shape, b.shape)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), key
        else:
            assert np.array_equal(a, b), key


# --------------------------------------------------------------------------------------------------
# default_data_collator


@dataclasses.dataclass
class Feature:
    input_ids: list
    attention_mask: list
    label: int


def _default_batches():
    t, n = torch.tensor, np.array
    return {
        "int label, lists": [{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 0], "label": i} for i in range(3)],
        "float label": [{"input_ids": [1, 2], "label": 0.5 * i} for i in range(3)],
        "numpy int label, arrays": [{"input_ids": n([1, 2, i]), "label": np.int64(i)} for i in range(3)],
        "numpy float label": [{"input_ids": n([1, 2]), "label": np.float32(i)} for i in range(2)],
        "torch label, tensors": [{"input_ids": t([1, 2, i]), "label": t(i)} for i in range(3)],
        "torch float label": [{"input_ids": t([1, 2]), "label": t(0.25 * i)} for i in range(2)],
        "label_ids ints": [{"input_ids": [1, 2], "label_ids": [i, -100]} for i in range(3)],
        "label_ids floats": [{"input_ids": [1, 2], "label_ids": [0.5, float(i)]} for i in range(3)],
        "label_ids numpy": [{"input_ids": [1, 2], "label_ids": n([i, 2])} for i in range(3)],
        "label_ids torch": [{"input_ids": [1, 2], "label_ids": t([i, 2])} for i in range(3)],
        "label None, label_ids": [{"input_ids": [1], "label": None, "label_ids": [i]} for i in range(2)],
        "strings and None skipped": [{"input_ids": [1, 2], "text": "a b", "extra": None, "label": 1}] * 2,
        "numbers and floats": [{"input_ids": [1, 2], "score": 0.5, "idx": 7, "flag": True, "emb": [0.1, 0.2]}] * 2,
        "float arrays": [{"input_ids": n([1, 2]), "pixel": n([[0.5, 1.0]], dtype=np.float32)} for _ in range(2)],
        "float64 tensors": [{"values": t([0.5, 1.0], dtype=torch.float64), "label": 0} for _ in range(2)],
        "no labels": [{"input_ids": [4, 5], "token_type_ids": [0, 1]} for _ in range(2)],
        "objects": [Feature([1, 2], [1, 1], i) for i in range(2)],
    }


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize("name", list(_default_batches()))
def test_default_data_collator_equals_transformers(name, return_tensors):
    features = _default_batches()[name]
    theirs = transformers.default_data_collator(features, return_tensors=return_tensors)
    ours = ferrotune.default_data_collator(features, return_tensors=return_tensors)
    assert_same(ours, theirs)
    assert_same(ferrotune.DefaultDataCollator(return_tensors)(features), theirs)
    assert_same(ferrotune.DefaultDataCollator()(features, return_tensors=return_tensors), theirs)


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_default_data_collator_on_tokenized_sst2(tokenizers, return_tensors):
    ft, hf = tokenizers
    texts, _ = load_dataset_slice("sst2", 16)
    enc = hf(texts, padding="max_length", max_length=64, truncation=True)
    features = [{**{k: enc[k][i] for k in enc}, "label": i % 2} for i in range(len(texts))]
    theirs = transformers.default_data_collator(features, return_tensors)
    assert_same(ferrotune.default_data_collator(features, return_tensors), theirs)
    # also a dict of lists (a datasets slice), which transformers does not take
    columns = {k: [f[k] for f in features] for k in features[0]}
    assert_same(ferrotune.default_data_collator(columns, return_tensors), theirs)


def test_default_data_collator_errors():
    with pytest.raises(EmptyBatchError):
        ferrotune.default_data_collator([])
    with pytest.raises(InvalidArgumentError, match="not recognized"):
        ferrotune.default_data_collator([{"input_ids": [1]}], return_tensors="tf")
    with pytest.raises(InputTypeError, match="dict-like"):
        ferrotune.default_data_collator([1, 2])
    for return_tensors in ("pt", "np"):
        ragged = [{"input_ids": [1, 2, 3]}, {"input_ids": [4]}]
        with pytest.raises(InvalidInputError, match=r"'input_ids' has shape \(1,\) in example 1.*DataCollatorWithPad"):
            ferrotune.default_data_collator(ragged, return_tensors)
        missing = [{"input_ids": [1], "label": 0}, {"input_ids": [2]}]
        with pytest.raises(InvalidInputError, match="example 1 has no 'label'"):
            ferrotune.default_data_collator(missing, return_tensors)
        none = [{"input_ids": [1]}, {"input_ids": None}]
        with pytest.raises(InvalidInputError, match="'input_ids' is None in example 1"):
            ferrotune.default_data_collator(none, return_tensors)


# --------------------------------------------------------------------------------------------------
# rng="torch" / rng="numpy": transformers' draws, bit for bit


def _examples(hf, dataset: str, n: int, *, offsets=False, special=False, fixed: int | None = None):
    texts, _ = load_dataset_slice(dataset, n)
    options = {"padding": "max_length", "max_length": fixed} if fixed else {"max_length": 128}
    enc = hf(
        texts,
        truncation=True,
        return_offsets_mapping=offsets,
        return_special_tokens_mask=special,
        **options,
    )
    return [{k: enc[k][i] for k in enc} for i in range(len(texts))]


def _both(ft, hf, rng: str, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # whole-word masking's "Setting mask_replace_prob to 1"
        ours = ferrotune.DataCollatorForLanguageModeling(ft, rng=rng, **options)
        theirs = transformers.DataCollatorForLanguageModeling(hf, **options)
    return ours, theirs


def _assert_same_draws(ours, theirs, inputs, *, seed: int | None = 1234, calls: int = 2) -> None:
    """Under set_seed, ``calls`` successive batches are equal (so the RNG is consumed the same way)."""
    if seed is not None:
        transformers.set_seed(seed)
    expected = [theirs(inputs) for _ in range(calls)]
    if seed is not None:
        transformers.set_seed(seed)
    got = [ours(inputs) for _ in range(calls)]
    for a, b in zip(got, expected):
        assert_same(a, b)
        assert (np.asarray(b["labels"]) != -100).any()


MASKING = [
    {},
    {"mask_replace_prob": 0.5, "random_replace_prob": 0.4},
    {"mask_replace_prob": 1.0, "random_replace_prob": 0.0, "mlm_probability": 0.3},
    {"mask_replace_prob": 0.0, "random_replace_prob": 1.0},
]


@pytest.mark.parametrize("masking", MASKING, ids=["default", "50-40", "all-mask", "all-random"])
@pytest.mark.parametrize("special", [False, True], ids=["no-stm", "stm"])
@pytest.mark.parametrize("dataset", ["sst2", "imdb"])
def test_torch_rng_equals_transformers(tokenizers, dataset, special, masking):
    ft, hf = tokenizers
    examples = _examples(hf, dataset, 16, special=special)
    for options in ({}, {"pad_to_multiple_of": 8}):
        ours, theirs = _both(ft, hf, "torch", **options, **masking)
        _assert_same_draws(ours, theirs, examples)
    # plain lists of ids (transformers' _torch_collate_batch path)
    ours, theirs = _both(ft, hf, "torch", pad_to_multiple_of=8, **masking)
    _assert_same_draws(ours, theirs, [e["input_ids"] for e in examples])


@pytest.mark.parametrize("special", [False, True], ids=["no-stm", "stm"])
@pytest.mark.parametrize("dataset", ["sst2", "imdb"])
def test_torch_rng_whole_word_equals_transformers(tokenizers, dataset, special):
    ft, hf = tokenizers
    # transformers' tokenizer.pad does not pad offset_mapping: whole-word batches have one length
    examples = _examples(hf, dataset, 16, offsets=True, special=special, fixed=96)
    for options in (
        {},
        {"pad_to_multiple_of": 32},
        {"mlm_probability": 0.4},
        {"mask_replace_prob": 1.0, "random_replace_prob": 0.0},
    ):
        ours, theirs = _both(ft, hf, "torch", whole_word_mask=True, **options)
        _assert_same_draws(ours, theirs, examples)


def test_torch_rng_with_seed_equals_transformers_generator(tokenizers):
    """With ``seed``, both draw from ``torch.Generator().manual_seed(seed)`` made at the first call: the global
    RNG's state does not matter."""
    ft, hf = tokenizers
    examples = _examples(hf, "imdb", 8, offsets=True, fixed=128)
    for whole_word_mask in (False, True):
        ours, theirs = _both(ft, hf, "torch", seed=7, whole_word_mask=whole_word_mask)
        torch.manual_seed(1)
        expected = [theirs(examples) for _ in range(3)]
        torch.manual_seed(99)
        got = [ours(examples) for _ in range(3)]
        for a, b in zip(got, expected):
            assert_same(a, b)


@pytest.mark.parametrize("whole_word_mask", [False, True])
def test_numpy_rng_equals_transformers_numpy(tokenizers, whole_word_mask):
    ft, hf = tokenizers
    examples = _examples(hf, "sst2", 16, offsets=True, special=True, fixed=64)
    for masking in MASKING[:2]:
        ours, theirs = _both(
            ft, hf, "numpy", whole_word_mask=whole_word_mask, return_tensors="np", pad_to_multiple_of=8, **masking
        )
        _assert_same_draws(ours, theirs, examples)
        ours, theirs = _both(ft, hf, "numpy", whole_word_mask=whole_word_mask, return_tensors="np", seed=3, **masking)
        _assert_same_draws(ours, theirs, examples, seed=None, calls=3)


def test_torch_rng_with_a_transformers_tokenizer_and_arrow_input(tokenizers):
    """The collator reads only the tokenizer's settings: a transformers tokenizer gives the same draws; Arrow
    batches (offset_mapping included) give the same draws as the list of dicts."""
    pa = pytest.importorskip("pyarrow")
    ft, hf = tokenizers
    examples = _examples(hf, "sst2", 8, offsets=True, special=True, fixed=48)
    ours, theirs = _both(hf, hf, "torch", whole_word_mask=True)
    _assert_same_draws(ours, theirs, examples)
    table = pa.Table.from_pylist(
        [{k: (list(map(list, v)) if k == "offset_mapping" else v) for k, v in e.items()} for e in examples]
    )
    ours = ferrotune.DataCollatorForLanguageModeling(
        ft, rng="torch", whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0
    )
    transformers.set_seed(5)
    from_arrow = ours(table)
    transformers.set_seed(5)
    from_lists = ours(examples)
    for key in from_lists:
        assert torch.equal(from_arrow[key], from_lists[key]), key
    for convert in (np.asarray, torch.tensor):  # NumPy / torch rows: offsets converted row by row
        transformers.set_seed(5)
        other = ours([{k: convert(v) for k, v in e.items()} for e in examples])
        for key in from_lists:
            assert torch.equal(other[key], from_lists[key]), (convert, key)


# --------------------------------------------------------------------------------------------------
# Whole-word masking with the Rust RNG: statistics and invariants


def _offset_words(offsets: np.ndarray, special: np.ndarray) -> list[list[list[int]]]:
    """Per row, the token positions of each word, found independently of the collator: a token continues the
    previous one's word when it starts where that one ended (transformers' rule)."""
    rows = []
    for offs, spec in zip(offsets, special):
        words: list[list[int]] = []
        previous_end, previous_special = None, True
        for i, ((start, end), is_special) in enumerate(zip(offs, spec)):
            if is_special:
                previous_special = True
                continue
            if previous_special or start != previous_end:
                words.append([i])
            else:
                words[-1].append(i)
            previous_end, previous_special = end, False
        rows.append(words)
    return rows


def _check_whole_words(batch, reference_ids, words_per_row, special, mask_id, probability):
    ids, labels = batch["input_ids"].numpy(), batch["labels"].numpy()
    masked = labels != -100
    assert not masked[special].any(), "a special or padding token was masked"
    assert np.array_equal(ids[~masked], reference_ids[~masked])
    assert np.array_equal(labels[masked], reference_ids[masked])
    assert (ids[masked] == mask_id).all()  # whole-word masking only uses the mask token
    n_words = n_masked = 0
    for row, words in enumerate(words_per_row):
        for word in words:
            state = masked[row, word]
            assert state.all() or not state.any(), f"word {word} of row {row} is partly masked"
            n_words += 1
            n_masked += bool(state[0])
    rate = n_masked / n_words
    assert abs(rate - probability) < 5 * (probability * (1 - probability) / n_words) ** 0.5, rate
    return n_words


@pytest.mark.parametrize("probability", [0.15, 0.4])
def test_whole_word_statistics_rust_rng(tokenizers, probability):
    ft, hf = tokenizers
    texts, _ = load_dataset_slice("imdb", 128)
    enc = ft(texts, truncation=True, max_length=256, return_offsets_mapping=True, return_special_tokens_mask=True)
    examples = [{k: enc[k][i] for k in enc} for i in range(len(texts))]  # ragged: offsets padded by ferrotune
    with pytest.warns(UserWarning, match="Setting mask_replace_prob to 1"):
        collator = ferrotune.DataCollatorForLanguageModeling(
            ft, whole_word_mask=True, mlm_probability=probability, seed=0
        )
    batch = collator(examples)
    assert list(batch) == ["input_ids", "token_type_ids", "attention_mask", "labels"]
    padded = ft.pad(examples, return_tensors="np")
    reference = padded["input_ids"]
    special = padded["special_tokens_mask"].astype(bool)
    offsets = np.zeros(reference.shape + (2,), dtype=np.int64)
    for i, e in enumerate(examples):
        offsets[i, : len(e["offset_mapping"])] = e["offset_mapping"]
    words = _offset_words(offsets, special)
    n_words = _check_whole_words(batch, reference, words, special, hf.mask_token_id, probability)
    assert n_words > 15000
    assert any(len(w) > 1 for row in words for w in row)  # multi-token words exist and were checked
    again = ferrotune.DataCollatorForLanguageModeling(
        ft, whole_word_mask=True, mlm_probability=probability, mask_replace_prob=1.0, random_replace_prob=0.0, seed=0
    )
    assert torch.equal(again(examples)["labels"], batch["labels"])  # seeded: reproducible


def test_whole_word_by_continuation_prefix_without_offsets(tokenizers):
    """Without offset_mapping (where transformers fails) words are WordPiece words: a token starting with ##
    continues the previous one."""
    ft, hf = tokenizers
    texts, _ = load_dataset_slice("imdb", 64)
    enc = ft(texts, truncation=True, max_length=256)
    examples = [{"input_ids": ids} for ids in enc["input_ids"]]
    collator = ferrotune.DataCollatorForLanguageModeling(
        ft, whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0, seed=1
    )
    for inputs in (examples, [e["input_ids"] for e in examples]):
        batch = collator(inputs)
        reference = ft.pad(examples, return_tensors="np")["input_ids"]
        special = np.isin(reference, hf.all_special_ids)
        rows = []
        for row in reference:
            words: list[list[int]] = []
            for i, token in enumerate(hf.convert_ids_to_tokens(row.tolist())):
                if token in hf.all_special_tokens:
                    continue
                if token.startswith("##") and words and words[-1][-1] == i - 1:
                    words[-1].append(i)
                else:
                    words.append([i])
            rows.append(words)
        _check_whole_words(batch, reference, rows, special, hf.mask_token_id, 0.15)


def test_whole_word_from_word_ids_course_chunks(tokenizers):
    """The course's MLM preprocessing: ``word_ids`` kept beside the ids, documents concatenated and cut into
    chunks of 128 (group_texts). The collator takes words from that column (None: no word)."""
    pa = pytest.importorskip("pyarrow")
    ft, hf = tokenizers
    texts, _ = load_dataset_slice("imdb", 48)
    enc = ft(texts)
    ids = [t for i in range(len(texts)) for t in enc["input_ids"][i]]
    words = [w for i in range(len(texts)) for w in enc.word_ids(i)]
    chunks = [{"input_ids": ids[i : i + 128], "word_ids": words[i : i + 128]} for i in range(0, len(ids) - 127, 128)]
    collator = ferrotune.DataCollatorForLanguageModeling(
        ft, whole_word_mask=True, mlm_probability=0.2, mask_replace_prob=1.0, random_replace_prob=0.0, seed=4
    )
    batch = collator(chunks)
    assert list(batch) == ["input_ids", "attention_mask", "labels"]
    reference = np.array([c["input_ids"] for c in chunks])
    special = np.isin(reference, hf.all_special_ids)
    rows = []
    for chunk in chunks:
        groups: list[list[int]] = []
        for i, w in enumerate(chunk["word_ids"]):
            if w is None:
                continue
            if i and chunk["word_ids"][i - 1] == w:
                groups[-1].append(i)
            else:
                groups.append([i])
        rows.append(groups)
    _check_whole_words(batch, reference, rows, special, hf.mask_token_id, 0.2)
    again = ferrotune.DataCollatorForLanguageModeling(
        ft, whole_word_mask=True, mlm_probability=0.2, mask_replace_prob=1.0, random_replace_prob=0.0, seed=4
    )
    from_arrow = again(pa.Table.from_pylist(chunks))
    for key in batch:
        assert torch.equal(from_arrow[key], batch[key]), key
    bad = [dict(chunks[0], word_ids=["a"] * 128)] + chunks[1:]
    with pytest.raises(InvalidInputError, match="word_ids of example 0 must be a list of word indices"):
        collator(bad)


def test_whole_word_left_padding_pads_offsets_on_the_left(minilm_dir):
    ft = load_ft(minilm_dir)
    ft.padding_side = "left"
    texts, _ = load_dataset_slice("sst2", 32)
    enc = ft(texts, return_offsets_mapping=True)
    examples = [{k: enc[k][i] for k in enc} for i in range(len(texts))]
    batch = ferrotune.DataCollatorForLanguageModeling(
        ft, whole_word_mask=True, mlm_probability=0.5, mask_replace_prob=1.0, random_replace_prob=0.0, seed=2
    )(examples)
    padded = ft.pad(examples, return_tensors="np")
    special = np.isin(padded["input_ids"], ft.all_special_ids)
    offsets = np.zeros(padded["input_ids"].shape + (2,), dtype=np.int64)
    for i, e in enumerate(examples):
        n = len(e["offset_mapping"])
        offsets[i, offsets.shape[1] - n :] = e["offset_mapping"]
    words = _offset_words(offsets, special)
    _check_whole_words(batch, padded["input_ids"], words, special, ft.mask_token_id, 0.5)


# --------------------------------------------------------------------------------------------------
# Errors


def test_mlm_option_and_input_errors(tokenizers):
    ft, hf = tokenizers
    with pytest.raises(InvalidArgumentError, match="rng must be one of 'rust', 'torch', 'numpy'"):
        ferrotune.DataCollatorForLanguageModeling(ft, rng="random")
    with pytest.raises(InvalidArgumentError, match="Whole word masking can only be used with mlm=True"):
        ferrotune.DataCollatorForLanguageModeling(ft, mlm=False, whole_word_mask=True)
    with pytest.raises(InvalidArgumentError, match="mlm_probability"):
        ferrotune.DataCollatorForLanguageModeling(ft, mlm_probability="0.2")
    collator = ferrotune.DataCollatorForLanguageModeling(
        ft, whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0
    )
    enc = ft(["a first sentence", "another"], return_offsets_mapping=True)
    examples = [{k: enc[k][i] for k in enc} for i in range(2)]
    for wrong in ([1, 2, 3], [1, 2, 3, 4], [[1, 2, 3]] * 5):
        bad = [dict(examples[0], offset_mapping=wrong), examples[1]]
        with pytest.raises(InvalidInputError, match="offset_mapping of example 0 is not a list of"):
            collator(bad)
    too_long = [dict(examples[0], offset_mapping=examples[0]["offset_mapping"] * 3), examples[1]]
    with pytest.raises(InvalidInputError, match="offset_mapping of example 0 has 15 pairs"):
        collator(too_long)


def test_whole_word_without_offsets_needs_a_wordpiece_tokenizer():
    gpt2 = transformers.AutoTokenizer.from_pretrained(str(require_gpt2_dir()))
    gpt2.add_special_tokens({"mask_token": "<mask>", "pad_token": "<pad>"})
    collator = ferrotune.DataCollatorForLanguageModeling(
        gpt2, whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0
    )
    with pytest.raises(InvalidInputError, match="return_offsets_mapping=True"):
        collator([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5]}])
    # with offsets it works for any tokenizer
    enc = gpt2(["whole words here", "and there"], return_offsets_mapping=True)
    batch = collator([{k: enc[k][i] for k in enc} for i in range(2)])
    assert batch["input_ids"].shape == batch["labels"].shape


def test_collators_with_rng_pickle(tokenizers):
    import pickle

    ft, _ = tokenizers
    collator = ferrotune.DataCollatorForLanguageModeling(ft, rng="torch", seed=3)
    examples = [{"input_ids": [101, 2000, 2001, 2002, 102]}] * 4
    first = collator(examples)
    clone = pickle.loads(pickle.dumps(collator))
    assert clone.rng == "torch"
    assert torch.equal(clone(examples)["labels"], first["labels"])  # the generator is remade from the seed


WORKERS_SCRIPT = """
import sys, warnings
import torch, transformers, ferrotune
from torch.utils.data import DataLoader

warnings.simplefilter("ignore")
tok_dir = sys.argv[1]
hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
ft = ferrotune.Tokenizer.from_pretrained(tok_dir)
texts = [f"sentence number {i} with some unusualish wordpieces" for i in range(64)]
enc = ft(texts, padding="max_length", max_length=24, return_offsets_mapping=True)
examples = [{k: enc[k][i] for k in enc} for i in range(len(texts))]
for whole_word_mask in (False, True):
    ours = ferrotune.DataCollatorForLanguageModeling(ft, rng="torch", seed=7, whole_word_mask=whole_word_mask)
    theirs = transformers.DataCollatorForLanguageModeling(hf, seed=7, whole_word_mask=whole_word_mask)
    batches = []
    for collator in (ours, theirs):
        loader = DataLoader(examples, batch_size=8, num_workers=2, collate_fn=collator, multiprocessing_context="fork")
        batches.append(list(loader))
    for a, b in zip(*batches):
        for key in b:
            assert torch.equal(a[key], b[key]), key
print("OK")
"""


def test_torch_rng_seed_in_dataloader_workers_equals_transformers(minilm_dir):
    """With ``seed`` in DataLoader workers both use ``seed + worker id``: the same batches as transformers'."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", WORKERS_SCRIPT, str(minilm_dir)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]
