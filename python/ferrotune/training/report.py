"""What a run reports: metrics.jsonl (one JSON record per step and per evaluation), a progress bar or JSON lines
on stdout, and a PNG plot of the loss and evaluation curves."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 8) if math.isfinite(value) else None
    return value


class RunLog:
    """Appends records to metrics.jsonl (main process only) and shows them as the log mode asks."""

    def __init__(self, output_dir: Path, mode: str, enabled: bool, total_steps: int, resume_step: int = 0):
        self.path = output_dir / METRICS_FILE
        self.mode, self.enabled = mode, enabled
        self.bar = None
        if not enabled:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        # On resume, keep the records up to the checkpoint's step: the rest is about to be recomputed.
        kept = []
        if resume_step:
            kept = [r for r in read_metrics(self.path) if r["type"] != "summary" and r["step"] <= resume_step]
        with self.path.open("w", encoding="utf-8") as handle:
            for record in kept:
                handle.write(json.dumps(record) + "\n")
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=resume_step, unit="step", dynamic_ncols=True)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {key: _clean(value) for key, value in record.items()}
        line = json.dumps(record)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        if self.mode == "json":
            print(line, flush=True)
        elif self.bar is not None and record["type"] == "train":
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
        elif self.bar is not None and record["type"] == "eval":
            shown = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float))
            self.bar.write(f"eval step {record['step']}: {shown}")

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
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_metrics(output_dir: Path) -> Path | None:
    """metrics.png: training (and evaluation) loss by step on the left, evaluation metrics on the right."""
    records = read_metrics(output_dir / METRICS_FILE)
    train = [r for r in records if r["type"] == "train"]
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
