"""The one collation plan behind ``tokenizer.pad`` and the collators (``padding.collation_plan``).

A new kind of column is one entry in ``padding.pad_values`` (and a rule in the core when its width is not the
main input's): these tests add one and show that ``tokenizer.pad`` and the collators, list and Arrow inputs alike,
pad it, with no other change. The Rust rules themselves are tested in ``rust/core/src/collate.rs``.
"""

from __future__ import annotations

import ferrotune
import numpy as np
import pyarrow as pa
import pytest
from ferrotune import _core
from ferrotune import padding as _padding

EXAMPLES = [
    {"input_ids": [101, 7, 8, 102], "loss_mask": [0, 1, 1, 0], "label": 1},
    {"input_ids": [101, 9, 102], "loss_mask": [0, 1, 0], "label": 0},
]


@pytest.fixture
def loss_mask_column(monkeypatch):
    """Declares a new padded key, ``loss_mask``, padded with 0 alongside the inputs."""
    original = _padding.pad_values

    def with_loss_mask(tokenizer):
        return {**original(tokenizer), "loss_mask": 0}

    monkeypatch.setattr(_padding, "pad_values", with_loss_mask)
    _padding.collation_plan.cache_clear()
    yield
    _padding.collation_plan.cache_clear()


def test_a_new_column_kind_is_padded_everywhere_from_one_entry(minilm_dir, loss_mask_column):
    tok = ferrotune.Tokenizer.from_pretrained(minilm_dir)
    for side in ("right", "left"):
        tok.padding_side = side
        want_ids = [[101, 7, 8, 102], [101, 9, 102, 0] if side == "right" else [0, 101, 9, 102]]
        want_mask = [[0, 1, 1, 0], [0, 1, 0, 0] if side == "right" else [0, 0, 1, 0]]
        padded = tok.pad([{k: v for k, v in e.items() if k != "label"} for e in EXAMPLES], return_tensors="np")
        assert padded["input_ids"].tolist() == want_ids
        assert padded["loss_mask"].tolist() == want_mask
        for features in (EXAMPLES, pa.RecordBatch.from_pylist(EXAMPLES)):
            batch = ferrotune.DataCollatorWithPadding(tok, return_tensors="np")(features)
            assert batch["input_ids"].tolist() == want_ids
            assert batch["loss_mask"].tolist() == want_mask
            assert batch["attention_mask"].tolist() == [[1 if v else 0 for v in row] for row in want_ids]
            assert batch["labels"].tolist() == [1, 0]


def test_an_aligned_column_must_line_up_with_the_main_input(minilm_dir, loss_mask_column):
    tok = ferrotune.Tokenizer.from_pretrained(minilm_dir)
    bad = [dict(EXAMPLES[0]), {**EXAMPLES[1], "loss_mask": [0, 1]}]
    with pytest.raises(ferrotune.InvalidInputError, match="example 1: 'loss_mask' has 2 values but 'input_ids' has 3"):
        ferrotune.DataCollatorWithPadding(tok)(bad)


def test_plans_are_built_once_per_setting_and_validated_in_rust():
    first = _padding.collation_plan((("input_ids", 0),), False, "longest", None, 8, "right")
    assert _padding.collation_plan((("input_ids", 0),), False, "longest", None, 8, "right") is first
    with pytest.raises(ferrotune.InvalidArgumentError, match="padding='max_length' needs max_length"):
        _core.CollatePlan([("input_ids", 0)], False, "max_length", None, None, "right")
    with pytest.raises(ferrotune.InvalidArgumentError, match="padding_side must be 'left' or 'right'"):
        _core.CollatePlan([("input_ids", 0)], False, "longest", None, None, "middle")
    with pytest.raises(ferrotune.InvalidArgumentError, match="at least the model's main input"):
        _core.CollatePlan([], False, "longest", None, None, "right")
    with pytest.raises(ferrotune.InvalidArgumentError, match="padding must be 'longest', 'max_length' or 'do_not_pad'"):
        _core.CollatePlan([("input_ids", 0)], False, "longest", None, None, "right", [("labels", -100, "wide", None)])


def test_label_rules_reference_width_or_their_own():
    examples = [{"input_ids": [1, 2, 3], "labels": [5]}, {"input_ids": [4], "labels": [6, 6, 6, 6, 6]}]
    for mode, want in [
        ("main", [[5, -100, -100, -100], [6, 6, 6, 6, 6]]),  # the inputs' width (4); longer rows stay whole
        ("longest", [[5, -100, -100, -100, -100, -100], [6, 6, 6, 6, 6, -100]]),  # their own, to a multiple of 2
    ]:
        plan = _core.CollatePlan([("input_ids", 0)], False, "longest", None, 2, "right", [("labels", -100, mode, None)])
        columns = {name: (kind, data, starts) for name, kind, data, starts in plan.examples(examples)}
        kind, data, starts = columns["labels"]
        rows = data.tolist() if kind == "padded" else np.split(data, starts[1:-1])
        assert [list(map(int, row)) for row in rows] == want, mode
