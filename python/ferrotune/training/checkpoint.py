"""Checkpoints: everything a run needs to continue exactly as if it had not stopped.

``checkpoints/step-000123/`` holds ``state.pt`` (trainable weights, optimizer, scheduler, progress, the config) and,
per process, ``rank-N.pt`` (its RNG states and its data loader position). A folder counts once ``COMPLETE`` is
written, so a run killed while saving never resumes from half a checkpoint.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ResumeMismatchError
from .config import TrainConfig, config_differences

COMPLETE = "COMPLETE"
KEEP_LAST = 2  # checkpoints kept besides the newest ones (older ones are deleted)


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
    return output_dir / "checkpoints" / f"step-{step:06d}"


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
        prune_checkpoints(folder.parent)


def prune_checkpoints(root: Path) -> None:
    complete = sorted(p for p in root.iterdir() if (p / COMPLETE).is_file())
    for old in complete[:-KEEP_LAST]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(output_dir: Path) -> Path | None:
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return None
    complete = sorted(p for p in root.iterdir() if (p / COMPLETE).is_file())
    return complete[-1] if complete else None


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
    saved = load_shared(folder)["config"]
    differences = config_differences(saved, config)
    if differences:
        listed = "; ".join(f"{name}: checkpoint {old!r}, now {new!r}" for name, (old, new) in differences.items())
        raise ResumeMismatchError(f"checkpoint {folder} was written with a different configuration ({listed})")
    return folder


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
