"""No Rust panic reaches Python as anything but ``ferrotune.InternalError``.

``_core._panic_in_next_call()`` arms a test hook that makes the next guarded call panic inside its guard.
Each entry point of ``ferrotune._core`` that does work is called once with the hook armed (it must raise
InternalError, so its body runs under the guard) and once more normally (the hook is spent; the call works).
Plain getters (``vocab_size``, ``token_to_id``, ...) do no work that can panic and are not listed.
"""

from __future__ import annotations

import json
import pickle

import ferrotune
import numpy as np
import pytest
from ferrotune import _core

pa = pytest.importorskip("pyarrow")


@pytest.fixture()
def armed():
    def arm():
        _core._panic_in_next_call()

    yield arm
    _core._panic_in_next_call(False)


@pytest.fixture(scope="module")
def tok(minilm_dir):
    return ferrotune.Tokenizer.from_pretrained(minilm_dir)


def _entry_points(tok, minilm_dir, tmp_path):
    rows = _core.TokenRows.from_arrow(pa.array([[1, 2, 3], [4, 5]]))
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    texts = pa.array(["hello world", "a b"])
    flattening = ferrotune.DataCollatorWithFlattening()
    padding = ferrotune.DataCollatorWithPadding(tok)
    mlm = ferrotune.DataCollatorForLanguageModeling(tok, seed=0)
    features = [{"input_ids": [101, 7592, 102]}, {"input_ids": [101, 102]}]
    template = _core.ChatTemplate("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    chat = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}]
    return {
        "Tokenizer.from_file": lambda: _core.Tokenizer.from_file(minilm_dir / "tokenizer.json", "auto"),
        "Tokenizer.from_str": lambda: _core.Tokenizer.from_str(
            (minilm_dir / "tokenizer.json").read_text(encoding="utf-8"), "auto"
        ),
        "Tokenizer.to_str (pickling)": lambda: pickle.dumps(tok),
        "Tokenizer.encode_batch": lambda: tok(["hello world", "a b"], padding=True),
        "Tokenizer.pad": lambda: tok.pad(features),
        "Tokenizer.decode": lambda: tok.decode([7592, 2088]),
        "Tokenizer.decode_batch": lambda: tok.batch_decode([[7592], [2088]]),
        "collate (lists)": lambda: padding(features),
        "collate (Arrow)": lambda: padding(pa.Table.from_pylist(features)),
        "collate_examples": lambda: flattening(features),
        "mask_tokens": lambda: mlm(features),
        "TokenRows.encode": lambda: _core.TokenRows.encode(tok._core, texts),
        "TokenRows.from_arrow": lambda: _core.TokenRows.from_arrow(pa.array([[1, 2]])),
        "TokenRows.plan": lambda: rows.plan(batch_size=1),
        "TokenRows.plan_packs": lambda: rows.plan_packs(8),
        "TokenRows.collate": lambda: rows.collate(np.array([0, 1], dtype=np.int64)),
        "TokenRows.pack": lambda: rows.pack(np.array([[0, 0, 3], [1, 0, 2]], dtype=np.int64)),
        "index_line_rows": lambda: _core.index_line_rows(str(lines)),
        "ChatTemplate": lambda: _core.ChatTemplate("{{ messages[0].content }}"),
        "ChatTemplate.render_batch": lambda: template.render_batch([{"messages": chat}]),
        "TokenRows.encode_conversations": lambda: _core.TokenRows.encode_conversations(
            template, tok._core, [chat], loss_on="all"
        ),
    }


def test_every_entry_point_runs_under_the_panic_guard(tok, minilm_dir, tmp_path, armed):
    unguarded = []
    for name, call in _entry_points(tok, minilm_dir, tmp_path).items():
        call()  # warm: caches (collator plans) built outside the armed call
        armed()
        try:
            call()
        except ferrotune.InternalError as err:
            assert "test hook" in str(err), name
        else:
            unguarded.append(name)
        _core._panic_in_next_call(False)
        call()  # the hook is spent or disarmed: the call works again
    assert not unguarded, f"entry points whose work is not guarded against panics: {unguarded}"


def test_a_panic_is_an_internal_error_not_a_crash(tok, armed):
    armed()
    with pytest.raises(ferrotune.InternalError, match="a bug in ferrotune"):
        tok(["hello"])
    assert tok(["hello"])["input_ids"] == [[101, 7592, 102]]
    assert json.loads(tok._core.to_str())["model"]["type"] == "WordPiece"
