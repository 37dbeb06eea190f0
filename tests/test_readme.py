"""Every Python snippet of README.md runs, so none can rot.

Snippets are extracted from the README at test time and executed as written, with the few changes listed in
``SETUPS`` beside each one: placeholder paths (``path/to/...``) become the installed all-MiniLM-L6-v2 folder,
``../shared/data`` becomes the shared data folder, names a snippet uses without defining (``raw_datasets``, a
``model`` whose forward pass the snippet only calls) are supplied, and full-length training runs are cut to a
few steps. A README snippet without an entry here fails the test: add its setup when you add a snippet.
The ``bash`` commands are run by CI itself (install, tests) and by the CLI tests (``ferrotune train``/``predict``).
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
from conftest import DATA_DIR, REPO_ROOT, require_data_dir, require_minilm_dir

README = REPO_ROOT / "README.md"


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _mrpc_subset(tmp_path: Path, rows: int) -> Path:
    lines = (DATA_DIR / "glue" / "MRPC" / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "train.tsv"
    path.write_text("".join(lines[: rows + 1]), encoding="utf-8")
    return path


def _raw_datasets():
    datasets = pytest.importorskip("datasets")
    from conftest import mrpc_labels, mrpc_pairs

    first, second = mrpc_pairs(40)
    split = datasets.Dataset.from_dict({"sentence1": first, "sentence2": second, "label": mrpc_labels(40)})
    return datasets.DatasetDict({"train": split, "validation": split.select(range(8))})


class _Model:
    """Stands in for a model whose forward pass a snippet only calls: checks the batch it gets."""

    def __call__(self, **batch):
        import torch

        assert batch["input_ids"].dtype == torch.int64 and batch["input_ids"].ndim == 2
        assert batch["attention_mask"].shape == batch["input_ids"].shape
        return types.SimpleNamespace(loss=torch.zeros(()))


def _course_example(tmp_path, minilm):
    from conftest import mrpc_pairs

    first, second = mrpc_pairs(4)
    return {"path/to/bert-like-model": str(minilm)}, {
        "sentences1": first,
        "sentences2": second,
        "raw_datasets": _raw_datasets(),
    }


def _collator_example(tmp_path, minilm):
    transformers = pytest.importorskip("transformers")
    import ferrotune

    tokenizer = ferrotune.Tokenizer.from_pretrained(minilm)
    raw = _raw_datasets()
    tokenized = raw.map(lambda ex: tokenizer(ex["sentence1"], ex["sentence2"], truncation=True), batched=True)
    tokenized = tokenized.remove_columns(["sentence1", "sentence2"])
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(minilm), num_labels=2)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "trainer"), report_to=[], max_steps=1)
    return {}, {"tokenizer": tokenizer, "tokenized": tokenized, "model": model, "args": args}


def _streaming_example(tmp_path, minilm):
    return {"../shared/data": str(DATA_DIR)}, {"model": _Model()}


def _train_api_example(tmp_path, minilm):
    cut = 'output_dir="runs/mrpc", epochs=1, max_train_examples=48, max_eval_examples=16, log="quiet")'
    return {"../shared/data": str(DATA_DIR), 'output_dir="runs/mrpc")': cut}, {}


def _course_loop_example(tmp_path, minilm):
    subset = _mrpc_subset(tmp_path, 64)
    return {
        "path/to/all-MiniLM-L6-v2": str(minilm),
        "../shared/data/glue/MRPC/train.tsv": str(subset),
        "epochs, steps = 3,": "epochs, steps = 1,",
    }, {}


def _alignment_example(tmp_path, minilm):
    return {}, {}


def _mlm_example(tmp_path, minilm):
    return {"path/to/all-MiniLM-L6-v2": str(minilm)}, {}


def _chat_example(tmp_path, minilm):
    return {"../shared/data": str(DATA_DIR)}, {}


# A distinctive line of each snippet -> its setup (replacements in the text, names in its namespace).
SETUPS = {
    "tokenizer = ferrotune.Tokenizer.from_pretrained(checkpoint)": _course_example,
    "data_collator=DataCollatorWithPadding(tokenizer)": _collator_example,
    "for batch in loader:": _streaming_example,
    "result = ferrotune.train(": _train_api_example,
    "train_loader = ferrotune.StreamingLoader(": _course_loop_example,
    "enc = tok(words, is_split_into_words=True, truncation=True)": _alignment_example,
    'ours = DataCollatorForLanguageModeling(tokenizer, rng="torch"': _mlm_example,
    "out = tokenize_conversations(tok, [chat])": _chat_example,
    "collator = DataCollatorForCompletionOnlyLM(pad_token_id=": _chat_example,
    "sft = ferrotune.tokenize_dataset(lima, tok, messages_column=": _chat_example,
}


def _setup_of(snippet: str):
    found = [setup for marker, setup in SETUPS.items() if marker in snippet]
    assert len(found) == 1, f"README snippet without exactly one setup in tests/test_readme.py:\n{snippet[:300]}"
    return found[0]


def test_every_snippet_has_a_setup():
    snippets = _snippets()
    assert len(snippets) >= len(SETUPS)
    for snippet in snippets:
        _setup_of(snippet)


@pytest.mark.parametrize("index", range(len(_snippets())))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
    require_data_dir()
    minilm = require_minilm_dir()
    snippet = _snippets()[index]
    replacements, namespace = _setup_of(snippet)(tmp_path, minilm)
    for old, new in replacements.items():
        assert old in snippet, f"the README snippet no longer contains {old!r}: update tests/test_readme.py"
        snippet = snippet.replace(old, new)
    monkeypatch.chdir(tmp_path)  # relative outputs (runs/...) land in the test's folder
    exec(compile(snippet, f"README.md snippet {index}", "exec"), {"__name__": "readme_snippet", **namespace})
