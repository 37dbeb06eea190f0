"""Resume: a run stopped after k steps (or by Ctrl-C) and resumed must give exactly the uninterrupted run's loss
curve and final weights. Gradient accumulation (2 micro-batches per step) and dropout are on, so the loader
position, the optimizer, the scheduler and the RNG states must all be restored."""

from __future__ import annotations

import json

import pytest
from train_support import records, small_mrpc

pytest.importorskip("peft")

# 64 pairs in batches of 8 with 2-batch accumulation: 4 steps per epoch, 8 in all.
RUN = {
    "max_train_examples": 64, "batch_size": 8, "gradient_accumulation_steps": 2, "lora_dropout": 0.1, "eval_every": 3,
}  # fmt: skip


def adapter_weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def assert_same_run(reference, resumed):
    import torch

    assert [r["loss"] for r in records(resumed, "train")] == [r["loss"] for r in records(reference, "train")]
    assert [r["step"] for r in records(resumed, "train")] == list(range(1, 9))
    assert records(resumed, "eval")[-1]["eval_loss"] == records(reference, "eval")[-1]["eval_loss"]
    expected, actual = adapter_weights(reference), adapter_weights(resumed)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    import ferrotune

    output_dir = tmp_path_factory.mktemp("reference")
    ferrotune.train(**small_mrpc(output_dir, **RUN))
    return output_dir


def test_stop_and_resume_equals_uninterrupted_run(reference_run, tmp_path):
    import ferrotune

    options = small_mrpc(tmp_path / "run", **RUN)
    stopped = ferrotune.train(**options, stop_after_steps=3)  # mid-epoch
    assert stopped.status == "stopped" and stopped.steps == 3
    resumed = ferrotune.train(**options, resume="latest")
    assert resumed.status == "finished" and resumed.steps == 8
    assert_same_run(reference_run, tmp_path / "run")


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(reference_run, tmp_path, monkeypatch):
    import ferrotune
    from ferrotune.training import loop

    calls = {"n": 0}
    forward = loop.summed_loss

    def interrupted_at_the_seventh_micro_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # in the middle of step 4 (micro-batches 7-8), the first epoch's last
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    options = small_mrpc(tmp_path / "run", **RUN)
    monkeypatch.setattr(loop, "summed_loss", interrupted_at_the_seventh_micro_batch)
    interrupted = ferrotune.train(**options)
    assert interrupted.status == "interrupted" and interrupted.steps == 3
    assert interrupted.checkpoint is not None and (interrupted.checkpoint / "COMPLETE").is_file()
    monkeypatch.setattr(loop, "summed_loss", forward)
    resumed = ferrotune.train(**options, resume=str(interrupted.checkpoint))
    assert resumed.status == "finished"
    assert_same_run(reference_run, tmp_path / "run")


def test_resume_with_a_different_config_is_refused_before_training(reference_run, tmp_path):
    import ferrotune
    from ferrotune.errors import ResumeMismatchError

    checkpoint = sorted((reference_run / "checkpoints").iterdir())[-1]
    with pytest.raises(ResumeMismatchError, match="learning_rate"):
        ferrotune.train(**small_mrpc(tmp_path / "other", **RUN, learning_rate=1e-3), resume=str(checkpoint))
    assert not (tmp_path / "other" / "metrics.jsonl").exists()


def test_checkpoint_holds_the_config_it_was_written_with(reference_run):
    import torch

    checkpoint = sorted((reference_run / "checkpoints").iterdir())[-1]
    state = torch.load(checkpoint / "state.pt", weights_only=False)
    assert state["step"] == 8 and state["config"]["gradient_accumulation_steps"] == 2
    assert json.loads((reference_run / "train_config.json").read_text()) == state["config"]
