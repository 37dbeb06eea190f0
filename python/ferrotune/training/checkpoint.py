"""Checkpoints: everything a run needs to continue exactly as if it had not stopped.

``checkpoints/step-000123/`` holds ``state.pt`` (trainable weights, optimizer, scheduler, progress, the config) and,
per process, ``rank-N.pt`` (its RNG states and its data loader position). A folder counts once ``COMPLETE`` is
written, so a run killed while saving never resumes from half a checkpoint.

An output folder holds ONE run: a fresh run into a folder that holds another run's outputs is refused (pass
``--resume latest`` to continue it, or ``--overwrite-output-dir`` to delete it first), so checkpoints of two runs
never mix.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError, ResumeMismatchError
from .config import TrainConfig, config_differences

COMPLETE = "COMPLETE"
KEEP_LAST = 2  # complete checkpoints kept: the one just written and the newest one before it
STEP_PREFIX = "step-"
# What a run writes into its output folder (besides the model files, listed in loop.py).
RUN_FOLDERS = ("checkpoints", "best")
# (eval_predictions.jsonl: the texts seq2seq evaluation generated.)
RUN_FILES = ("metrics.jsonl", "metrics.png", "train_config.json", "ferrotune_task.json", "eval_predictions.jsonl")


def capture_rng() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: Any) -> dict[str, Any]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / "checkpoints" / f"{STEP_PREFIX}{step:06d}"


def checkpoint_step(folder: Path) -> int | None:
    """The step of a ``step-NNNNNN`` folder (None for any other name)."""
    digits = folder.name.removeprefix(STEP_PREFIX)
    return int(digits) if folder.name.startswith(STEP_PREFIX) and digits.isdigit() else None


def list_checkpoints(root: Path, *, complete_only: bool = True) -> list[Path]:
    """The checkpoint folders under ``root``, by step (not by name: step 1000000 comes after step 999999)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    if complete_only:
        found = [p for p in found if (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def save_checkpoint(accelerator: Any, folder: Path, *, shared: dict[str, Any], per_rank: dict[str, Any]) -> None:
    """Writes one checkpoint from every process (``shared`` from the main process only)."""
    import torch

    if accelerator.is_main_process:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(per_rank, folder / f"rank-{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        torch.save(shared, folder / "state.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (folder / COMPLETE).write_text("ok\n")
        prune_checkpoints(folder.parent, keep=folder)


def prune_checkpoints(root: Path, keep: Path) -> list[Path]:
    """Deletes the checkpoints under ``root`` but ``keep`` (the one just written, never deleted) and the
    ``KEEP_LAST - 1`` newest complete ones before it. Checkpoints of LATER steps are deleted too: they belong to a
    timeline the run has left (it resumed from an earlier checkpoint), and ``--resume latest`` must pick ``keep``.
    Incomplete folders (a save that was killed) go as well. Returns the deleted folders."""
    step = checkpoint_step(keep)
    if step is None:
        raise CheckpointError(f"{keep} is not a checkpoint folder (step-NNNNNN)")
    earlier = [p for p in list_checkpoints(root) if (checkpoint_step(p) or 0) < step]
    kept = {keep.resolve(), *(p.resolve() for p in earlier[len(earlier) - (KEEP_LAST - 1) :] if KEEP_LAST > 1)}
    deleted = [p for p in list_checkpoints(root, complete_only=False) if p.resolve() not in kept]
    for old in deleted:
        shutil.rmtree(old, ignore_errors=True)
    return deleted


def latest_checkpoint(output_dir: Path) -> Path | None:
    complete = list_checkpoints(output_dir / "checkpoints")
    return complete[-1] if complete else None


def previous_run(output_dir: Path) -> list[str]:
    """What an earlier run left in ``output_dir`` (its checkpoints, metrics, best model, trained model)."""
    if not output_dir.is_dir():
        return []
    found = [name + "/" for name in RUN_FOLDERS if (output_dir / name).is_dir() and any((output_dir / name).iterdir())]
    return found + [name for name in RUN_FILES if (output_dir / name).is_file()]


def clear_previous_run(output_dir: Path, model_files: tuple[str, ...]) -> None:
    """Deletes what an earlier run wrote into ``output_dir`` (``--overwrite-output-dir``); other files are kept.
    The model files (weights, adapter, tokenizer, model card) go only if the folder holds a ferrotune model."""
    if not output_dir.is_dir():
        return
    names = list(RUN_FILES)
    if (output_dir / "ferrotune_task.json").is_file():
        names += model_files
    for name in RUN_FOLDERS:
        shutil.rmtree(output_dir / name, ignore_errors=True)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (output_dir / name).unlink()


def check_output_dir(config: TrainConfig) -> None:
    """A run must not write into another run's output folder: its checkpoints would be mixed with the old ones
    (``--resume latest`` would continue the old run) and its metrics and model files overwritten. Resuming the run
    of ``output_dir`` itself is fine; ``--overwrite-output-dir`` deletes the old run first (in the loop)."""
    output_dir = Path(config.output_dir)
    resumes_here = config.resume == "latest" or (bool(config.resume) and inside(Path(config.resume), output_dir))
    if config.overwrite_output_dir:
        if resumes_here:
            raise ConfigError(
                f"--overwrite-output-dir would delete the checkpoint that --resume {config.resume} continues from "
                f"(in {output_dir}): pass one or the other"
            )
        return
    if resumes_here:
        return
    found = previous_run(output_dir)
    if found:
        if config.resume:
            action = f"pass --overwrite-output-dir to delete it before resuming from {config.resume}"
        else:
            action = "pass --resume latest to continue that run, --overwrite-output-dir to delete it and start over"
        raise ConfigError(
            f"output folder {output_dir} already holds another run ({', '.join(found)}): {action}, "
            "or choose another --output-dir"
        )


def inside(path: Path, folder: Path) -> bool:
    try:
        return os.path.commonpath([path.resolve(), folder.resolve()]) == str(folder.resolve())
    except ValueError:  # different drives
        return False


def resolve_resume(config: TrainConfig) -> Path | None:
    """The checkpoint folder to resume from, checked against the current config (before training starts)."""
    if not config.resume:
        return None
    if config.resume == "latest":
        folder = latest_checkpoint(Path(config.output_dir))
        if folder is None:
            raise CheckpointError(f"--resume latest: no complete checkpoint under {config.output_dir}/checkpoints")
    else:
        folder = Path(config.resume)
        if (folder / "checkpoints").is_dir() and not (folder / COMPLETE).is_file():  # an output folder
            folder = latest_checkpoint(folder) or folder
    if not (folder / COMPLETE).is_file() or not (folder / "state.pt").is_file():
        raise CheckpointError(f"{folder} is not a complete ferrotune checkpoint (no {COMPLETE} / state.pt)")
    state = load_shared(folder)
    differences = config_differences(state["config"], config)
    if differences:
        listed = "; ".join(f"{name}: checkpoint {old!r}, now {new!r}" for name, (old, new) in differences.items())
        raise ResumeMismatchError(f"checkpoint {folder} was written with a different configuration ({listed})")
    if state.get("total_steps") is not None and state["step"] >= state["total_steps"] and model_written(folder):
        raise_finished(folder, state["step"], state["total_steps"])
    return folder


def model_written(folder: Path) -> bool:
    """Whether the run of checkpoint ``folder`` wrote its trained model whole (ferrotune_task.json is written last;
    a run killed while saving it resumes at its last step and writes the model again)."""
    return (folder.parent.parent / "ferrotune_task.json").is_file()


def raise_finished(folder: Path, step: int, total_steps: int) -> None:
    """Resuming the last checkpoint of a finished run would only write its model again: say so instead."""
    raise CheckpointError(
        f"nothing to resume: the run of {folder.parent.parent} already finished (checkpoint {folder} is its last "
        f"step, {step} of {total_steps}) and its model was written to {folder.parent.parent}; to train again from "
        "scratch pass --overwrite-output-dir instead of --resume, or choose another --output-dir"
    )


def load_shared(folder: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: torch raises many classes
        raise CheckpointError(f"cannot read checkpoint {folder}: {error}") from error


def load_rank(folder: Path, rank: int) -> dict[str, Any]:
    import torch

    path = folder / f"rank-{rank}.pt"
    if not path.is_file():
        raise ResumeMismatchError(f"checkpoint {folder} has no state for process {rank} (saved with fewer processes)")
    return torch.load(path, map_location="cpu", weights_only=False)
