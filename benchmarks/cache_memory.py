"""Peak memory of ``avssl cache`` as the collection grows: building a cache must stream.

The synthetic world's train clips (built or reused under ``$AVSSL_CACHE``) are listed again and
again under new ids in a temporary manifest, so collections of each ``--clips`` size decode the
same media; each cache is built by ``avssl cache`` in a fresh process whose peak resident
memory is read back. A streaming builder has the same peak for every size.

usage: python benchmarks/cache_memory.py [--clips 256,2048] [--workers 2]

The last stdout line is one JSON object, e.g.
``{"clips": [256, 2048], "peak_rss_mb": [420.1, 423.5], "bytes": [...], "seconds": [...]}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import dataclasses
import json
import subprocess
import tempfile
from pathlib import Path

from avssl.cli import ArgumentParser, int_at_least, positive_int
from avssl.config import SynthConfig
from avssl.data.manifest import read_manifest, resolve, write_manifest
from avssl.data.synthetic import ensure_world
from avssl.errors import AvsslError

# the child's own peak, VmHWM (as avssl.tools.bench_train.peak_rss_mb, not imported: it would
# load the models too): its ru_maxrss would start at this process's peak when it was started
CHILD = """
import json, sys
from avssl.cli import run_guarded
from avssl.data.shards_cli import main
code = run_guarded(main, sys.argv[1:])
with open("/proc/self/status") as fh:
    kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "peak_rss_mb": kb / 1024}))
"""


MAX_CLIPS = 100_000  # a cache of the world's clips holds about 2 MB of decoded media per clip


def repeated_manifest(source: Path, out: Path, n: int) -> Path:
    """A manifest of ``n`` rows cycling through ``source``'s train rows (absolute media paths)."""
    rows = read_manifest(source, "train")
    picked = []
    for i in range(n):
        row = rows[i % len(rows)]
        media = {
            k: str(resolve(source, getattr(row, k)))
            for k in ("video", "image", "audio")
            if getattr(row, k) is not None
        }
        picked.append(dataclasses.replace(row, id=f"{row.id}-{i}", **media))
    write_manifest(out, picked)
    return out


def build(manifest: Path, out: Path, workers: int) -> dict:
    """Run ``avssl cache`` in a fresh process; its summary plus its peak RSS."""
    argv = ["--data", str(manifest), "--out", str(out), "--workers", str(workers), "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or len(lines) < 2:  # its own error line, else the end of its stderr
        why = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise AvsslError(f"{out}: avssl cache failed: {why[-1].removeprefix('error: ')}")
    summary = json.loads(lines[-2])
    return {**summary, **json.loads(lines[-1])}


def _sizes(text: str) -> list[int]:
    """An argparse ``type``: comma-separated collection sizes, each a positive integer of at
    most :data:`MAX_CLIPS`."""
    return [int_at_least(1, MAX_CLIPS)(item) for item in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/cache_memory.py", description=__doc__.splitlines()[0])
    p.add_argument(
        "--clips", type=_sizes, default="256,2048", help="collection sizes, comma-separated"
    )
    p.add_argument("--workers", type=positive_int, default=2)
    args = p.parse_args(argv)
    source = ensure_world(SynthConfig(n_train=256, n_val=4, n_test=0), progress=False)
    res = {"clips": args.clips, "peak_rss_mb": [], "bytes": [], "seconds": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.clips:
            manifest = repeated_manifest(source, Path(tmp) / f"m{n}.jsonl", n)
            run = build(manifest, Path(tmp) / f"cache{n}", args.workers)
            if run["written"] != n:  # a damaged clip of the world was skipped
                skipped = (run.get("skipped") or [{}])[0].get("reason", "?")
                raise AvsslError(
                    f"{manifest}: avssl cache wrote {run['written']} of {n} clips ({skipped})"
                )
            res["peak_rss_mb"].append(round(run["peak_rss_mb"], 1))
            res["bytes"].append(run["bytes"])
            res["seconds"].append(run["seconds"])
            print(f"{n} clips: peak RSS {run['peak_rss_mb']:.0f} MB, {run['bytes'] / 2**20:.0f} MB "
                  f"of shards, {run['seconds']:.0f} s", file=sys.stderr)  # fmt: skip
    print(json.dumps(res))
    return 0
