"""The SFT recipe on one GPU: `ferrotune train --task sft` (its Python API, `ferrotune.train`) on LIMA with a causal
LM of Qwen2.5-0.5B's shape, bf16, LoRA, packing. Is the GPU kept busy, and is the loader ever what it waits for?

Model: a Qwen2 built from a config with RANDOM weights (no pretrained model is reachable here): Qwen2.5-0.5B's shape
(hidden 896, 24 layers, 14 heads, 2 key/value heads, intermediate 4864, tied embeddings) with the SmolLM2 tokenizer's
vocabulary (49,152, so about 0.4B parameters rather than 0.49B) and its ChatML template. It is built on the GPU in
bf16 and saved, so `from_pretrained` loads the bf16 weights. Data: all of LIMA
(../shared/data/sft/lima.jsonl, 1,029 conversations). The recipe: ferrotune's SFT defaults (loss on the assistant
tokens, whole conversations packed in rows of --max-length 2048 tokens, LoRA r 8 on every attention and MLP
projection), --batch-size 8 rows, --mixed-precision bf16, --drop-empty, no evaluation, a checkpoint per epoch.

Measured, over the steady steps (after --warmup-steps and the profiled steps):
  tokens/s         real (non-padding) training tokens per second of step time, and per second of wall time
  data wait        the time each step waits for the loader's batches (metrics.jsonl's `data_seconds`: from the step's
                   start until its micro-batches are built), as a fraction of the step time; it must stay under 2%.
                   An upper bound of the GPU's wait for data: the previous step's optimizer kernels may still run then
  GPU busy         the fraction of the wall time of --profile-steps steps during which a GPU kernel, copy or memset
                   runs (torch.profiler, the union of their intervals); and NVML's utilization (nvidia-smi or pynvml,
                   sampled every 0.1 s during the steady steps: coarser, the same idea). The traced steps carry
                   the profiler's own overhead, so their busy fraction is if anything too low
  also             step time percentiles, peak GPU memory, setup time (tokenization, model load) and the loss

Run from the repository root on a machine with a CUDA GPU (not run on one yet: expected to take a few minutes on one
H200; about 129 steps of 8 x 2048 tokens, 679k LIMA tokens per epoch):
    python benches/bench_gpu.py                 # results in benches/results/bench_gpu.json
    python benches/bench_gpu.py --smoke --json /tmp/bench_gpu.json   # CI: a tiny Qwen2 on CPU, seconds
A random-weight model: the loss says nothing about quality; the figures are about speed."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_gpu.json"
TOKENIZER = Path("tokenizers") / "smollm2-135m-instruct"
LIMA = Path("sft") / "lima.jsonl"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")
DATA_WAIT_LIMIT = 0.02  # the loader must never be the bottleneck: under 2% of the step time
# Qwen2.5-0.5B's shape (its config.json), with the tokenizer's vocabulary.
QWEN25_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
              "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1_000_000.0,
              "rms_norm_eps": 1e-6, "tie_word_embeddings": True}  # fmt: skip
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 2048, "tie_word_embeddings": True}  # fmt: skip
FULL = {"limit": None, "epochs": 3, "batch_size": 8, "max_length": 2048, "warmup_steps": 5, "profile_steps": 8}
SMOKE = {"limit": 16, "epochs": 1, "batch_size": 1, "max_length": 128, "warmup_steps": 1, "profile_steps": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="first N LIMA conversations (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {FULL['epochs']}")
    parser.add_argument("--batch-size", type=int, default=None, help=f"rows per batch (default {FULL['batch_size']})")
    parser.add_argument("--max-length", type=int, default=None, help=f"tokens per row (default {FULL['max_length']})")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warmup-steps", type=int, default=None, help="first steps left out of the figures")
    parser.add_argument("--profile-steps", type=int, default=None, help="steps traced by torch.profiler (0: none)")
    parser.add_argument("--json", type=Path, default=None,
                        help=f"raw results (default on a GPU: {DEFAULT_JSON}; none for --smoke)")  # fmt: skip
    parser.add_argument("--smoke", "--quick", dest="smoke", action="store_true",
                        help=f"CI smoke run on CPU (or GPU if any): a tiny Qwen2 ({TINY['num_hidden_layers']} layers, "
                             f"hidden {TINY['hidden_size']}), {SMOKE}")  # fmt: skip
    args = parser.parse_args(argv)
    for name, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# The model


def precision(device: str) -> tuple:
    """(weights dtype, --mixed-precision): the recipe's bf16 on a GPU; float32 and "no" for the CPU smoke run."""
    import torch

    return (torch.bfloat16, "bf16") if device == "cuda" else (torch.float32, "no")


def build_model(args: argparse.Namespace, folder: Path, device: str) -> dict:
    """A Qwen2 with random weights (seeded), built on ``device`` and saved with the SmolLM2 tokenizer files: in bf16
    on a GPU, in float32 on CPU (bf16 matmuls are slow on CPUs without bf16 units: the smoke run would take minutes)."""
    import ferrotune
    import torch
    import transformers

    tokenizer_dir = args.data_dir / TOKENIZER
    tokenizer = ferrotune.Tokenizer.from_pretrained(tokenizer_dir)
    shape = TINY if args.smoke else QWEN25_05B
    special = {"bos_token_id": tokenizer.convert_tokens_to_ids("<|im_start|>"),
               "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
               "pad_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>")}  # fmt: skip
    config = transformers.Qwen2Config(vocab_size=len(tokenizer), **shape, **special)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=precision(device)[0])
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, folder / name)
    return {"shape": {**shape, "vocab_size": len(tokenizer)}, "parameters": parameters,
            "dtype": str(precision(device)[0]).removeprefix("torch."), "mixed_precision": precision(device)[1],
            "build_seconds": time.perf_counter() - start}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# What the run prints, as it happens


class StepClock(io.TextIOBase):
    """ferrotune's ``log="json"`` lines, read as they are printed: each step's record with the moment it arrived
    (just after the step ended), the run's messages; ``on_step`` is called once per step record."""

    def __init__(self, on_step) -> None:
        self.records: list[dict] = []
        self.messages: list[str] = []
        self.on_step = on_step
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        now = time.perf_counter()
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("type") == "train":
                self.records.append({**record, "arrived": now})
                if record["step"] % 10 == 0:
                    progress(f"step {record['step']}: loss {record['loss']:.3f}, {record['tokens_per_s']:,.0f} tok/s")
                self.on_step()
            elif record.get("type") == "message":
                self.messages.append(record["text"])
        return len(text)


class UtilizationSampler:
    """NVML's GPU utilization (percent of the last sample period with a kernel running), every ``period`` seconds
    in a thread: pynvml when installed, else ``nvidia-smi -lms``. Samples are (perf_counter time, percent)."""

    def __init__(self, period: float = 0.1) -> None:
        self.period, self.samples, self.source = period, [], None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None

    def start(self) -> UtilizationSampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]))
            self.source = "pynvml"
            self._thread = threading.Thread(target=self._poll, args=(pynvml, handle), daemon=True)
        except Exception:
            if shutil.which("nvidia-smi") is None:
                return self
            command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                       f"--loop-ms={int(self.period * 1000)}"]  # fmt: skip
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible:
                command.append(f"--id={visible.split(',')[0]}")
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.source = "nvidia-smi"
            self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _poll(self, pynvml, handle) -> None:
        while not self._stop.wait(self.period):
            self.samples.append((time.perf_counter(), float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)))

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            with contextlib.suppress(ValueError):
                self.samples.append((time.perf_counter(), float(line.strip().split(",")[0])))

    def stop(self) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)


def kernel_busy(trace_path: Path) -> dict:
    """From a torch.profiler Chrome trace: the wall time of the traced steps (the union of the ProfilerStep ranges)
    and the part of it during which a GPU kernel, memcpy or memset ran (the union of their intervals)."""

    def union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
        merged: list[list[float]] = []
        for start, end in sorted(intervals):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return [(a, b) for a, b in merged]

    events = json.loads(trace_path.read_text(encoding="utf-8")).get("traceEvents", [])
    # The CPU-side step ranges ("user_annotation"; their GPU-side copies are "gpu_user_annotation").
    spans = [e for e in events if e.get("ph") == "X" and e.get("cat") == "user_annotation"
             and str(e.get("name", "")).startswith("ProfilerStep#")]  # fmt: skip
    device = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    steps = union([(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in spans])
    wall = sum(b - a for a, b in steps)
    busy = 0.0
    for start, end in union([(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in device]):
        busy += sum(max(0.0, min(end, b) - max(start, a)) for a, b in steps)
    return {"traced_steps": len(spans), "wall_seconds": wall / 1e6, "device_events": len(device),
            "busy_seconds": busy / 1e6, "busy_fraction": busy / wall if wall and device else None}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The run


def run(args: argparse.Namespace, model_dir: Path, train_file: Path, output_dir: Path, device: str) -> dict:
    import ferrotune
    import torch

    profiling = args.profile_steps > 0
    trace = output_dir.parent / "trace.json"
    profiler = contextlib.nullcontext()
    if profiling:
        from torch.profiler import ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        # Profiler steps are counted at each step record: interval k (k >= 1) is the loop iteration of step k + 1.
        steps = schedule(wait=args.warmup_steps, warmup=2, active=args.profile_steps, repeat=1)
        profiler = profile(activities=activities, schedule=steps,
                           on_trace_ready=lambda p: p.export_chrome_trace(str(trace)))  # fmt: skip
    sampler = UtilizationSampler() if device == "cuda" else None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with profiler as active:
        clock = StepClock(active.step if profiling else lambda: None)
        if sampler is not None:
            sampler.start()
        try:
            with contextlib.redirect_stdout(clock):
                result = ferrotune.train(
                    task="sft", model=str(model_dir), train=str(train_file), output_dir=str(output_dir),
                    max_length=args.max_length, batch_size=args.batch_size, epochs=args.epochs, drop_empty=True,
                    lora_r=args.lora_r, learning_rate=args.learning_rate, seed=args.seed, log="json",
                    mixed_precision=precision(device)[1],
                )  # fmt: skip
        finally:
            if sampler is not None:
                sampler.stop()
    wall = time.perf_counter() - start
    records = clock.records
    # Steady steps: after the warm-up and after the profiler's warm-up and active steps (and the step that wrote the
    # trace), so that neither start-up nor tracing overhead is in the figures.
    first_steady = args.warmup_steps + (args.profile_steps + 4 if profiling else 1)
    steady = [r for r in records if r["step"] >= first_steady] or records[len(records) // 2 :]
    step_seconds = sorted(r["seconds"] for r in steady)
    seconds, data_seconds = sum(step_seconds), sum(r["data_seconds"] for r in steady)
    tokens = sum(r["real_tokens"] for r in steady)
    window = steady[-1]["arrived"] - (steady[0]["arrived"] - steady[0]["seconds"])
    utilization = None
    if sampler is not None and sampler.samples:
        spans = [(r["arrived"] - r["seconds"], r["arrived"]) for r in steady]
        inside = [u for t, u in sampler.samples if any(start <= t <= end for start, end in spans)]
        utilization = {"source": sampler.source, "samples": len(inside),
                       "mean_percent": sum(inside) / len(inside) if inside else None}  # fmt: skip
    busy = None
    if profiling:
        busy = kernel_busy(trace) if trace.is_file() else {"error": "no trace was written (too few steps?)"}
    counts = next((m for m in clock.messages if "parameters trainable" in m), "")
    trainable = re.search(r"([\d,]+) of ([\d,]+) parameters trainable", counts)

    def percentile(q: float) -> float:
        return step_seconds[min(len(step_seconds) - 1, int(q * len(step_seconds)))]

    return {
        "status": result.status, "steps": result.steps, "wall_seconds": wall, "train_seconds": result.train_seconds,
        "setup_seconds": wall - result.train_seconds, "dropped": result.dropped,
        "trainable_parameters": int(trainable.group(1).replace(",", "")) if trainable else None,
        "steady_steps": [steady[0]["step"], steady[-1]["step"]] if steady else None,
        "tokens_per_step": tokens / max(len(steady), 1),
        "tokens_per_s": tokens / seconds, "tokens_per_wall_s": tokens / window,
        "step_seconds": {"mean": seconds / len(steady), "p50": percentile(0.5), "p90": percentile(0.9),
                         "max": step_seconds[-1]},
        "data_wait_fraction": data_seconds / seconds,
        "data_wait_max_step_fraction": max(r["data_seconds"] / r["seconds"] for r in steady),
        "data_wait_ok": data_seconds / seconds < DATA_WAIT_LIMIT,
        "pad_fraction": 1 - tokens / sum(r["real_tokens"] / (1 - r["pad_fraction"]) for r in steady),
        "gpu_kernel_busy": busy, "gpu_utilization_nvml": utilization,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "first_loss": records[0]["loss"], "last_loss": records[-1]["loss"],
        "records": [{k: v for k, v in r.items() if k != "type"} for r in records],
    }  # fmt: skip


def library_versions() -> dict[str, str | None]:
    versions = {}
    for package in ("ferrotune", "torch", "transformers", "accelerate", "peft"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def table(model: dict, result: dict, device_name: str) -> str:
    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    busy, nvml = result["gpu_kernel_busy"] or {}, result["gpu_utilization_nvml"] or {}
    nvml_text = "n/a" if nvml.get("mean_percent") is None else f"{nvml['mean_percent']:.0f}% ({nvml['source']})"
    step = result["step_seconds"]
    verdict = "ok" if result["data_wait_ok"] else "THE LOADER IS A BOTTLENECK"
    memory = result["peak_gpu_memory_gib"]
    rows = [
        ("device", device_name),
        ("model", f"Qwen2, {model['parameters'] / 1e6:,.1f}M parameters (random, {model['dtype']}), "
                  f"{result['trainable_parameters'] or 0:,} trainable (LoRA)"),
        ("steps (steady)", f"{result['steps']} ({result['steady_steps'][0]}-{result['steady_steps'][1]})"),
        ("real tokens / step", f"{result['tokens_per_step']:,.0f} (padding {result['pad_fraction']:.1%})"),
        ("tokens/s (step time)", f"{result['tokens_per_s']:,.0f}"),
        ("tokens/s (wall, with checkpoints)", f"{result['tokens_per_wall_s']:,.0f}"),
        ("step s mean / p50 / p90 / max", f"{step['mean']:.4f} / {step['p50']:.4f} / {step['p90']:.4f} / "
                                          f"{step['max']:.4f}"),
        ("data wait (of step time)", f"{share(result['data_wait_fraction'])} (worst step "
                                     f"{share(result['data_wait_max_step_fraction'])}; limit 2%: {verdict})"),
        ("GPU busy (profiler, kernels)", f"{share(busy.get('busy_fraction'))} of {busy.get('traced_steps', 0)} steps"),
        ("GPU utilization (NVML)", nvml_text),
        ("peak GPU memory", "n/a" if memory is None else f"{memory:.1f} GiB"),
        ("setup s (tokenize, load) / train s", f"{result['setup_seconds']:.1f} / {result['train_seconds']:.1f}"),
        ("loss first / last step", f"{result['first_loss']:.3f} / {result['last_loss']:.3f}"),
    ]  # fmt: skip
    lines = ["| figure | value |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in rows])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        progress("no CUDA GPU: this benchmark measures a GPU (use --smoke for the CPU smoke run)")
        return 1
    if args.json is None and not args.smoke:
        args.json = DEFAULT_JSON
    if not (args.data_dir / TOKENIZER / "tokenizer.json").is_file() or not (args.data_dir / LIMA).is_file():
        progress(f"the SmolLM2 tokenizer or LIMA is missing under {args.data_dir}: nothing to benchmark")
        return 1
    device_name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "model").mkdir()
        lines = (args.data_dir / LIMA).read_text(encoding="utf-8").splitlines()[: args.limit]
        train_file = scratch / "lima.jsonl"
        train_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        model = build_model(args, scratch / "model", device)
        progress(f"{device_name}: Qwen2 {model['parameters'] / 1e6:.1f}M parameters built in "
                 f"{model['build_seconds']:.1f} s; {len(lines)} LIMA conversations, rows of {args.max_length} tokens, "
                 f"{args.batch_size} rows a batch, {args.epochs} epoch(s)")  # fmt: skip
        result = run(args, scratch / "model", train_file, scratch / "run", device)
    report = {
        "benchmark": "gpu-sft",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name,
        "versions": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "settings": {key: value for key, value in vars(args).items() if key not in ("json", "data_dir")},
        "recipe": "ferrotune.train(task='sft', drop_empty=True, mixed_precision='bf16', packing (default), LoRA on "
                  "every attention/MLP projection (sft default)), no evaluation",
        "model": model,
        "data_wait_limit": DATA_WAIT_LIMIT,
        "result": result,
    }  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    versions = report["versions"]
    print(f"SFT recipe on {device_name}: {len(lines)} LIMA conversations, max length {args.max_length}, batch "
          f"{args.batch_size} row(s), {args.epochs} epoch(s), LoRA r {args.lora_r}, {model['dtype']} weights, mixed "
          f"precision {model['mixed_precision']}; ferrotune "
          f"{versions['ferrotune']}, torch {versions['torch']}, transformers {versions['transformers']}\n")  # fmt: skip
    print(table(model, result, device_name))
    if args.json is not None:
        print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
