"""What a run reports: metrics.jsonl (one JSON record per step and per evaluation), a progress bar or JSON lines
on stdout, and a PNG plot of the loss and evaluation curves."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 8) if math.isfinite(value) else None
    return value


class RunLog:
    """Appends records to metrics.jsonl (main process only) and shows them as the log mode asks.

    ``history``: the records of the run so far (when resuming); those up to ``resume_step`` are written back, the
    rest (about to be recomputed) and the stopped run's summary are dropped, so no record is duplicated."""

    def __init__(self, output_dir: Path, mode: str, enabled: bool, total_steps: int, resume_step: int = 0,
                 history: list[dict[str, Any]] | None = None):  # fmt: skip
        self.path = output_dir / METRICS_FILE
        self.mode, self.enabled = mode, enabled
        self.bar = None
        if not enabled:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in history or [] if r.get("type") != "summary" and r.get("step", 0) <= resume_step]
        with self.path.open("w", encoding="utf-8") as handle:
            for record in kept:
                handle.write(json.dumps(record) + "\n")
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=resume_step, unit="step", dynamic_ncols=True)

    def write(self, record: dict[str, Any], last: bool = False) -> None:
        """Records one step or evaluation; ``last``: the run stops after this step (the bar is closed)."""
        if not self.enabled:
            return
        record = {key: _clean(value) for key, value in record.items()}
        line = json.dumps(record)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        if self.mode == "json":
            print(line, flush=True)
        elif self.bar is not None and record["type"] == "train":
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
            if last or (self.bar.total is not None and self.bar.n + 1 >= self.bar.total):
                # The last step: close() draws the full bar, once (update() would draw it first, then close again).
                self.bar.n += 1
                self.close()
            else:
                self.bar.update(1)
        elif self.mode == "bar" and record["type"] == "eval":
            shown = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float))
            self.message(f"eval step {record['step']}: {shown}")

    def message(self, text: str) -> None:
        if not self.enabled or self.mode == "quiet":
            return
        if self.mode == "json":
            print(json.dumps({"type": "message", "text": text}), flush=True)
        elif self.bar is not None:
            self.bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl. A torn last line (the run was killed while writing it) is dropped with a
    warning; any other line that is not a JSON record raises CheckpointError naming the file and the line."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if index == last:
                warnings.warn(
                    f"{path} line {index + 1}: dropped an incomplete record (the run was stopped while writing it)",
                    RuntimeWarning, stacklevel=2,
                )  # fmt: skip
                break
            raise CheckpointError(
                f"{path} line {index + 1} is not a JSON record ({error.msg}): the metrics file is damaged; "
                "delete that line (or the file, losing the run's earlier records) and resume again"
            ) from error
        if not isinstance(record, dict) or not isinstance(record.get("type"), str):
            raise CheckpointError(
                f"{path} line {index + 1} is not a ferrotune metrics record (a JSON object with a 'type'): "
                "delete that line and resume again"
            )
        records.append(record)
    return records


def plot_metrics(output_dir: Path) -> Path | None:
    """metrics.png: training (and evaluation) loss by step on the left, evaluation metrics on the right."""
    records = read_metrics(output_dir / METRICS_FILE)
    train = [r for r in records if r["type"] == "train" and isinstance(r.get("loss"), float)]
    evals = [r for r in records if r["type"] == "eval"]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", linewidth=0.8)
    if evals:
        left.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
        names = [k for k in evals[-1] if k.startswith("eval_") and k != "eval_loss" and isinstance(evals[-1][k], float)]
        for name in names:
            right.plot([r["step"] for r in evals], [r.get(name) for r in evals], "o-", label=name.removeprefix("eval_"))
        right.legend()
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.legend()
    right.set_xlabel("step")
    right.set_title("evaluation")
    figure.tight_layout()
    path = output_dir / PLOT_FILE
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
