"""Bad batches get a clear exception naming the key and the example; nothing is dropped or altered."""

from __future__ import annotations

import ferrotune
import numpy as np
import pyarrow as pa
import pytest
import torch
from ferrotune.errors import EmptyBatchError, InputTypeError, InvalidArgumentError, InvalidInputError


@pytest.fixture(scope="module")
def collator(minilm_pair):
    ft, _ = minilm_pair
    return ferrotune.DataCollatorWithPadding(ft)


def good(n: int = 3) -> list[dict]:
    return [{"input_ids": [101, 2000 + i, 102], "attention_mask": [1, 1, 1], "label": i % 2} for i in range(n)]


def test_missing_input_ids(collator):
    with pytest.raises(InvalidInputError, match="input_ids"):
        collator([{"attention_mask": [1, 1]}])
    with pytest.raises(InvalidInputError, match="input_ids"):
        collator(pa.RecordBatch.from_pylist([{"attention_mask": [1, 1]}]))


def test_examples_with_different_keys(collator):
    batch = good()
    del batch[2]["label"]
    with pytest.raises(InvalidInputError, match=r"example 2 has different keys.*missing \['label'\]"):
        collator(batch)
    batch = good()
    batch[1]["extra"] = 1
    with pytest.raises(InvalidInputError, match=r"example 1 .*extra \['extra'\]"):
        collator(batch)


def test_non_integer_ids(collator):
    batch = good()
    batch[1]["input_ids"] = [101, "hello", 102]
    with pytest.raises(InputTypeError, match=r"example 1: 'input_ids' must hold integer token ids, found str"):
        collator(batch)
    batch = good()
    batch[2]["input_ids"] = np.array([1.5, 2.0])
    with pytest.raises(InputTypeError, match=r"example 2: 'input_ids' .*dtype float64"):
        collator(batch)
    batch = good()
    batch[0]["input_ids"] = None
    with pytest.raises(InputTypeError, match=r"example 0: 'input_ids'"):
        collator(batch)
    with pytest.raises(InputTypeError, match="'input_ids' must hold integer token ids"):
        collator(pa.RecordBatch.from_pylist([{"input_ids": [1.0, 2.0]}]))


def test_wrong_depth(collator):
    batch = good()
    batch[1]["input_ids"] = [[101, 102]]
    with pytest.raises(InputTypeError, match=r"example 1: 'input_ids' .*nested one level too deep"):
        collator(batch)
    batch = good()
    batch[0]["input_ids"] = torch.ones((2, 2), dtype=torch.long)
    with pytest.raises(InputTypeError, match=r"example 0: 'input_ids' must be 1-dimensional"):
        collator(batch)
    with pytest.raises(InputTypeError, match=r"'input_ids' must hold integer token ids, found nested lists"):
        collator(pa.RecordBatch.from_pylist([{"input_ids": [[1, 2]]}]))
    batch = good()
    batch[2]["input_ids"] = 7  # a scalar where a sequence belongs
    with pytest.raises(InputTypeError, match=r"example 2: 'input_ids' must be a list of token ids, got int"):
        collator(batch)


def test_ragged_companion_column(collator):
    batch = good()
    batch[1]["attention_mask"] = [1, 1]
    with pytest.raises(InvalidInputError, match=r"example 1: 'attention_mask' has 2 values but 'input_ids' has 3"):
        collator(batch)


def test_labels_of_mixed_types(collator):
    batch = good()
    batch[2]["label"] = 0.5
    with pytest.raises(InputTypeError, match=r"example 2: 'label' is a float .* example 0's is an int"):
        collator(batch)


def test_empty_batch_and_bad_containers(collator):
    with pytest.raises(EmptyBatchError):
        collator([])
    with pytest.raises(EmptyBatchError):
        collator(pa.RecordBatch.from_pylist(good()).slice(0, 0))
    with pytest.raises(InputTypeError, match="example 1 is a str"):
        collator([good()[0], "not a dict"])


def test_nulls_and_strings_in_arrow(collator):
    table = pa.RecordBatch.from_pylist([{"input_ids": [1, 2]}, {"input_ids": None}])
    with pytest.raises(InvalidInputError, match=r"example 1: 'input_ids' is null"):
        collator(table)
    table = pa.RecordBatch.from_pylist([{"input_ids": [1, None]}])
    with pytest.raises(InvalidInputError, match=r"example 0: 'input_ids' holds a null token id"):
        collator(table)
    table = pa.RecordBatch.from_pylist([{"input_ids": [1, 2], "sentence": "a"}])
    with pytest.raises(InputTypeError, match=r"'sentence' .*remove the column"):
        collator(table)


def test_bad_options(minilm_pair):
    ft, _ = minilm_pair
    with pytest.raises(InvalidArgumentError, match="padding"):
        ferrotune.DataCollatorWithPadding(ft, padding="sideways")(good())
    with pytest.raises(InvalidArgumentError, match="pad_to_multiple_of"):
        ferrotune.DataCollatorWithPadding(ft, pad_to_multiple_of=0)(good())
    with pytest.raises(InvalidArgumentError, match="not recognized"):
        ferrotune.DataCollatorWithPadding(ft, return_tensors="tf")(good())
    with pytest.raises(InvalidArgumentError, match="mlm_probability"):
        ferrotune.DataCollatorForLanguageModeling(ft, mlm_probability=1.5)
    with pytest.raises(InvalidArgumentError, match="should not exceed 1"):
        ferrotune.DataCollatorForLanguageModeling(ft, mask_replace_prob=0.9, random_replace_prob=0.2)
    with pytest.raises(InvalidArgumentError, match="Whole word masking can only be used with mlm=True"):
        ferrotune.DataCollatorForLanguageModeling(ft, mlm=False, whole_word_mask=True)
    with pytest.raises(InvalidArgumentError, match="rng must be one of"):
        ferrotune.DataCollatorForLanguageModeling(ft, rng="cuda")


def test_no_pad_token_fails_like_transformers(gpt2_pair):
    ft, hf = gpt2_pair
    examples = [{"input_ids": [1, 2, 3]}, {"input_ids": [4]}]
    import transformers

    with pytest.raises(ValueError, match="padding token"):
        transformers.DataCollatorWithPadding(hf)(examples)
    with pytest.raises(ValueError, match="padding token"):
        ferrotune.DataCollatorWithPadding(ft)(examples)
    with pytest.raises(ValueError, match="mask token"):
        ferrotune.DataCollatorForLanguageModeling(ft)
    with pytest.raises(ValueError, match="pad token"):
        ferrotune.DataCollatorForLanguageModeling(ft, mlm=False)([[1, 2, 3], [4]])
    # equal lengths need no pad token, as in transformers
    batch = ferrotune.DataCollatorForLanguageModeling(ft, mlm=False)([[1, 2], [3, 4]])
    assert batch["labels"].tolist() == [[1, 2], [3, 4]]
