"""Exact resume of StreamingLoader, interrupted at every batch of small multi-epoch runs.

A training loop saves ``(loader state, epoch in progress)`` after a batch, stops, and a new process
resumes: ``load_state_dict`` then ``set_epoch(epoch)`` for the remaining epochs. The batches of the
interrupted run followed by those of the resumed run must equal an uninterrupted run, batch for batch,
at every interruption point (epoch ends, window ends, unit ends included), with 0 and 2 DataLoader
workers, and for one ``num_epochs > 1`` iteration as well as a ``set_epoch`` loop.

CI runs a short form; ``FERROTUNE_LONG_TESTS=1`` runs every interruption point with workers and more
hypothesis examples.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pa = pytest.importorskip("pyarrow")
stateful = pytest.importorskip("torchdata.stateful_dataloader")

from ferrotune import StreamingLoader  # noqa: E402

LONG = os.environ.get("FERROTUNE_LONG_TESTS") == "1"
EPOCHS = 3


def _table(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=rows)
    ids = [rng.integers(5, 1000, size=n).tolist() for n in lengths]
    return pa.table({"input_ids": ids, "idx": list(range(rows))})


def _options(mode: str) -> dict:
    if mode == "batch":
        return dict(batch_size=5, label_column="idx")
    if mode == "budget":
        return dict(max_tokens=120, bucketing="length", bucket_window=24, label_column="idx")
    return dict(packing=True, max_tokens=96)


def _make(table, mode, workers, *, rows_per_unit=17, shuffle_buffer=16, num_epochs=1, seed=3):
    loader = StreamingLoader(
        table,
        input_ids_column="input_ids",
        pad_token_id=0,
        rows_per_unit=rows_per_unit,
        shuffle_buffer=shuffle_buffer,
        num_epochs=num_epochs,
        seed=seed,
        **_options(mode),
    )
    return loader, stateful.StatefulDataLoader(loader, batch_size=None, num_workers=workers)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def _assert_same_batches(got: list[dict], want: list[dict], where: str) -> None:
    assert len(got) == len(want), f"{where}: {len(got)} batches, uninterrupted run has {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        assert _same(a, b), f"{where}: batch {i} differs"


def _key(batch: dict) -> tuple:
    return tuple((k, tuple(v.flatten().tolist()) if torch.is_tensor(v) else v) for k, v in sorted(batch.items()))


def _assert_same_batch_set(got: list[dict], want: list[dict], where: str) -> None:
    assert sorted(map(_key, got)) == sorted(map(_key, want)), f"{where}: other batches"


def _epoch_loop(make, stop_after: int | None = None, state=None) -> tuple[list[tuple[int, dict]], tuple | None]:
    """A training loop over EPOCHS epochs with set_epoch; stops after ``stop_after`` batches (returning
    the saved state and the epoch in progress) or resumes from ``state``."""
    loader, dl = make()
    first = 0
    if state is not None:
        dl.load_state_dict(state[0])
        first = state[1]
    out: list[tuple[int, dict]] = []
    for epoch in range(first, EPOCHS):
        loader.set_epoch(epoch)
        for batch in dl:
            out.append((epoch, batch))
            if stop_after is not None and len(out) == stop_after:
                return out, (dl.state_dict(), epoch)
    return out, None


def _one_iteration(make, stop_after: int | None = None, state=None) -> tuple[list[tuple[int, dict]], dict | None]:
    """One iteration of a loader with num_epochs=EPOCHS, no set_epoch."""
    _, dl = make()
    if state is not None:
        dl.load_state_dict(state)
    out: list[tuple[int, dict]] = []
    for batch in dl:
        out.append((0, batch))
        if stop_after is not None and len(out) == stop_after:
            return out, dl.state_dict()
    return out, None


def _check_every_interruption(run, make, stops, where: str, workers: int = 0) -> None:
    full, _ = run(make)
    epochs = [e for e, _ in full]
    for stop in stops(len(full)):
        head, state = run(make, stop_after=stop)
        assert state is not None
        tail, _ = run(make, state=state)
        got, at = head + tail, f"{where}, interrupted after batch {stop}"
        if 0 < stop < len(full) and epochs[stop] != epochs[stop - 1] and workers:
            # Stopped at an epoch end, before the loop saw StopIteration: StatefulDataLoader then
            # continues its worker round-robin after the last worker it used instead of restarting at
            # worker 0, so the next epoch holds the same batches interleaved from another worker first.
            nxt = [i for i, e in enumerate(epochs) if e == epochs[stop]]
            _assert_same_batch_set([got[i][1] for i in nxt], [full[i][1] for i in nxt], at)
            keep = [i for i in range(len(full)) if i not in set(nxt)]
            got, full_kept = [got[i] for i in keep], [full[i] for i in keep]
            _assert_same_batches([b for _, b in got], [b for _, b in full_kept], at)
        else:
            _assert_same_batches([b for _, b in got], [b for _, b in full], at)


def _every(n: int) -> range:
    return range(1, n + 1)


def _sample(n: int) -> list[int]:
    """Epoch-boundary-heavy sample for the slow (worker) runs in CI: first, last, and a stride."""
    return sorted({1, 2, n // 3, n // 3 + 1, n // 2, n - 1, n, *range(1, n + 1, max(n // 6, 1))} - {0})


@settings(max_examples=40 if LONG else 6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(20, 90),
    mode=st.sampled_from(["batch", "budget", "packing"]),
    rows_per_unit=st.integers(5, 40),
    shuffle_buffer=st.integers(4, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_epoch_loop_resumes_exactly_at_every_batch_without_workers(rows, mode, rows_per_unit, shuffle_buffer, seed):
    table = _table(rows, seed)

    def make():
        return _make(table, mode, 0, rows_per_unit=rows_per_unit, shuffle_buffer=shuffle_buffer, seed=seed)

    _check_every_interruption(_epoch_loop, make, _every, f"{mode}, rows={rows}")


@pytest.mark.parametrize("mode", ["batch", "budget", "packing"])
def test_one_multi_epoch_iteration_resumes_exactly_at_every_batch(mode):
    table = _table(60, 11)

    def make():
        return _make(table, mode, 0, num_epochs=EPOCHS)

    _check_every_interruption(_one_iteration, make, _every, mode)


@pytest.mark.parametrize("mode", ["batch", "packing"])
def test_epoch_loop_with_two_workers_resumes_exactly(mode):
    table = _table(48, 5)

    def make():
        return _make(table, mode, 2, rows_per_unit=9, shuffle_buffer=8)

    _check_every_interruption(_epoch_loop, make, _every if LONG else _sample, f"{mode}, 2 workers", workers=2)


def test_state_after_the_last_batch_of_an_epoch_with_workers():
    """The reported case: state_dict() right after epoch 0's last batch, 2 workers. Resuming with
    set_epoch(0) must yield nothing more of epoch 0; set_epoch(1) must yield all of epoch 1."""
    table = _table(80, 2)

    def make():
        return _make(table, "packing", 2, rows_per_unit=20)

    loader, dl = make()
    epoch0 = list(dl)
    loader.set_epoch(1)
    epoch1 = list(dl)
    loader, dl = make()
    for i, _ in enumerate(dl):
        if i == len(epoch0) - 1:
            state = dl.state_dict()
            break
    positions = {
        tuple(w["dataset_state"][k] for k in ("epoch", "window", "batch"))
        for w in state["_snapshot"]["_worker_snapshots"].values()
    }
    assert positions == {(1, 0, 0)}, f"workers disagree on the end of epoch 0: {positions}"
    loader, dl = make()
    dl.load_state_dict(state)
    loader.set_epoch(0)
    assert list(dl) == []
    loader, dl = make()
    dl.load_state_dict(state)
    loader.set_epoch(1)
    # Every batch of epoch 1 exactly once; the worker interleaving is StatefulDataLoader's (see above).
    _assert_same_batch_set(list(dl), epoch1, "set_epoch(1) after the end of epoch 0")
