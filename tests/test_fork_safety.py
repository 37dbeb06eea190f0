"""A tokenizer used in the parent (so its thread pool is running) must keep working in DataLoader workers.

A process made by ``fork`` inherits no threads: a parallel encoder that waits for its pool there deadlocks.
Every scenario runs in a subprocess with a timeout, so that a deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import ferrotune  # noqa: F401 - the package under test must import
import pytest
from conftest import REPO_ROOT, sst2_sentences

TIMEOUT_S = 120
N_TEXTS = 2000

SCRIPT = textwrap.dedent(
    '''
    import json
    import multiprocessing
    import sys

    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset

    import ferrotune

    KWARGS = dict(padding=True, truncation=True, max_length=64)
    CHUNK = 500


    class ChunkDataset(Dataset):
        """Each item is a chunk of texts tokenized inside the worker (in __getitem__)."""

        def __init__(self, tok, texts):
            self.tok, self.texts = tok, texts

        def __len__(self):
            return (len(self.texts) + CHUNK - 1) // CHUNK

        def __getitem__(self, i):
            enc = self.tok(self.texts[i * CHUNK:(i + 1) * CHUNK], return_tensors="np", **KWARGS)
            return i, {key: enc[key] for key in enc.keys()}


    class TextDataset(Dataset):
        def __init__(self, texts):
            self.texts = texts

        def __len__(self):
            return len(self.texts)

        def __getitem__(self, i):
            return i, self.texts[i]


    class TokenizingCollate:
        """A collate_fn that tokenizes the batch in the worker."""

        def __init__(self, tok):
            self.tok = tok

        def __call__(self, items):
            indices = [i for i, _ in items]
            enc = self.tok([text for _, text in items], return_tensors="pt", **KWARGS)
            return indices, {key: enc[key] for key in enc.keys()}


    def encode_chunk(args):
        tok, texts = args
        enc = tok(texts, return_tensors="np", **KWARGS)
        return {key: enc[key] for key in enc.keys()}


    def check_equal(got, expected, what):
        assert set(got) == set(expected), (what, sorted(got), sorted(expected))
        for key in expected:
            a, b = np.asarray(got[key]), np.asarray(expected[key])
            assert a.shape == b.shape and np.array_equal(a, b), (what, key, a.shape, b.shape)


    def run_getitem(tok, texts, context):
        loader = DataLoader(ChunkDataset(tok, texts), batch_size=None, num_workers=2,
                            multiprocessing_context=context)
        seen = 0
        for i, got in loader:
            expected = tok(texts[i * CHUNK:(i + 1) * CHUNK], return_tensors="np", **KWARGS)
            check_equal(got, expected, f"chunk {i}")
            seen += 1
        return seen


    def run_collate(tok, texts, context):
        loader = DataLoader(TextDataset(texts), batch_size=256, num_workers=2, collate_fn=TokenizingCollate(tok),
                            multiprocessing_context=context)
        seen = 0
        for indices, got in loader:
            expected = tok([texts[i] for i in indices], return_tensors="pt", **KWARGS)
            check_equal({k: v.numpy() for k, v in got.items()}, {k: v.numpy() for k, v in expected.items()},
                        f"batch starting at {indices[0]}")
            seen += 1
        return seen


    def run_pool(tok, texts, context):
        chunks = [texts[i:i + CHUNK] for i in range(0, len(texts), CHUNK)]
        with multiprocessing.get_context(context).Pool(2) as pool:
            results = pool.map(encode_chunk, [(tok, chunk) for chunk in chunks])
        for chunk, got in zip(chunks, results):
            check_equal(got, tok(chunk, return_tensors="np", **KWARGS), "pool chunk")
        return len(results)


    def main():
        tok_dir, texts_path, mode, context = sys.argv[1:5]
        with open(texts_path, encoding="utf-8") as fh:
            texts = json.load(fh)
        tok = ferrotune.Tokenizer.from_pretrained(tok_dir)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        # Use the tokenizer on a large batch first so the parent's parallel machinery is running.
        parent = tok(texts, return_tensors="np", **KWARGS)
        assert parent["input_ids"].shape[0] == len(texts)
        runner = {"getitem": run_getitem, "collate": run_collate, "pool": run_pool}[mode]
        seen = runner(tok, texts, context)
        # The parent still works after its children are gone.
        check_equal(tok(texts, return_tensors="np", **KWARGS), parent, "parent after workers")
        print(f"OK {seen}")


    if __name__ == "__main__":
        main()
    '''
)

EXPECTED_BATCHES = {"getitem": N_TEXTS // 500, "collate": (N_TEXTS + 255) // 256, "pool": N_TEXTS // 500}


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory):
    texts = sst2_sentences(N_TEXTS)
    assert len(texts) == N_TEXTS
    path = tmp_path_factory.mktemp("fork") / "texts.json"
    path.write_text(json.dumps(texts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def script_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fork_script") / "loader_script.py"
    path.write_text(SCRIPT, encoding="utf-8")
    return path


def _run(script_file, tok_dir, texts_file, mode, context):
    cmd = [sys.executable, str(script_file), str(tok_dir), str(texts_file), mode, context]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{mode}/{context} did not finish in {TIMEOUT_S}s (deadlock in a worker?): {exc.stderr!r}"[:4000])
    assert proc.returncode == 0, f"{mode}/{context} exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout


CASES = [
    ("minilm_dir", "fork", "getitem"),
    ("minilm_dir", "fork", "collate"),
    ("minilm_dir", "fork", "pool"),
    ("gpt2_dir", "fork", "getitem"),
    ("gpt2_dir", "fork", "collate"),
    # spawn pickles the tokenizer (inside the dataset / collate_fn) into fresh interpreters
    ("minilm_dir", "spawn", "collate"),
    ("gpt2_dir", "spawn", "getitem"),
]


@pytest.mark.parametrize(("dir_fixture", "context", "mode"), CASES)
def test_workers_match_parent(request, script_file, texts_file, dir_fixture, context, mode):
    if context == "fork" and sys.platform == "win32":
        pytest.skip("fork is not available on Windows")
    tok_dir = request.getfixturevalue(dir_fixture)
    stdout = _run(script_file, tok_dir, texts_file, mode, context)
    assert f"OK {EXPECTED_BATCHES[mode]}" in stdout, stdout
