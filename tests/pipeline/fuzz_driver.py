"""The fuzz test's driver (run in its own process so its peak memory is its own): random and
mutated configs through the --dry-run path, and random damage to a result.csv through the reader.

    python tests/pipeline/fuzz_driver.py SEED N_CONFIGS N_CSV WORKDIR [SOURCE.yaml ...]

Prints one JSON line: counts by outcome, the peak RSS in MB and every problem found (a traceback,
an unexpected exception, a lost ok row).
"""
from __future__ import annotations

import json
import random
import re
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from android_runtime.devices import HostDevice  # noqa: E402
from configs.errors import NnspliceError  # noqa: E402
from pipeline import record  # noqa: E402
from pipeline.batch import run_configs  # noqa: E402
from pipeline.options import RunOptions  # noqa: E402

JUNK = ["-1", "0", "1e9", "1000000", "30000", "[]", "{}", "null", "abc", "[[1, 2], [3]]", "&a [1]", "*a", "1.5",
        "[-4]", "'x' * 3", "[1e308]", '"\\u0000"', "[[0]]", "{a: 1}", "true"]


def mutate(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    op = rng.randrange(8)
    i = rng.randrange(len(lines)) if lines else 0
    if op == 0 and lines:
        del lines[i]
    elif op == 1 and lines:
        lines.insert(i, lines[i])
    elif op == 2:  # a number replaced by an extreme or wrong value
        nums = [m for m in re.finditer(r"-?\d+(\.\d+)?", text)]
        if nums:
            m = rng.choice(nums)
            return text[:m.start()] + rng.choice(JUNK) + text[m.end():]
    elif op == 3 and lines and ":" in lines[i]:
        key = lines[i].split(":", 1)[0]
        lines[i] = f"{key}: {rng.choice(JUNK)}"
    elif op == 4:
        lines.insert(i, f"{rng.choice(['  ', ''])}{rng.choice(['FOO', 'ANYNET', 'DEPLOY', 'WIDTHS'])}: "
                        f"{rng.choice(JUNK)}")
    elif op == 5:
        return text[:rng.randrange(len(text) + 1)]
    elif op == 6:
        b = bytearray(text.encode())
        for _ in range(rng.randrange(1, 6)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        return b.decode(errors="replace")
    else:  # lists of the wrong length
        return re.sub(r"\[\[1\]", "[[1], [1]", text, count=1)
    return "\n".join(lines) + "\n"


def damage(rng: random.Random, text: str) -> str:
    op = rng.randrange(6)
    if op == 0:  # the header gone
        return text.split("\n", 1)[1]
    if op == 1:  # a stray quote
        i = rng.randrange(len(text))
        return text[:i] + '"' + text[i:]
    if op == 2:
        return text[:rng.randrange(len(text))]
    if op == 3:
        lines = text.splitlines(keepends=True)
        lines.insert(rng.randrange(1, len(lines) + 1), "garbage,,line\n")
        return "".join(lines)
    if op == 4:
        b = bytearray(text.encode())
        b[rng.randrange(len(b))] = rng.randrange(32, 127)
        return b.decode(errors="replace")
    return text.replace(",ok,", ",maybe,", 1)


def main() -> int:
    seed, n_cfg, n_csv, workdir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    sources = [Path(p) for p in sys.argv[5:]]
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    problems: list[str] = []
    device = HostDevice()
    opt = RunOptions(workdir=workdir)
    cfg_dir = workdir / "cfgs"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    for k in range(n_cfg):
        src = rng.choice(sources)
        text = src.read_text()
        for _ in range(rng.randrange(1, 4)):
            text = mutate(rng, text)
        f = cfg_dir / f"case{k}.yaml"
        f.write_text(text, errors="replace")
        said: list[str] = []
        try:
            code = run_configs([f], opt, device, workdir / "result.csv", dry_run=True, log=said.append,
                               err=said.append)
            counts[f"exit {code}"] = counts.get(f"exit {code}", 0) + 1
            if code not in (0, 2):
                problems.append(f"{src.name} case {k}: exit {code}: {said[-1:]}")
        except (Exception, SystemExit) as e:  # run_configs turns every config's error into a row or a line
            problems.append(f"{src.name} case {k}: {type(e).__name__}: {e}\n{traceback.format_exc()[-600:]}")
    base = [record.ResultRow(cfg=f"c{i}.yaml", latency=100.0 + i, name=f"c{i}", status="ok", runs=5).as_dict()
            for i in range(8)]
    good = workdir / "good.csv"
    record.write_results(good, base)
    clean = good.read_text()
    for k in range(n_csv):
        bad = workdir / "result.csv"
        bad.write_text(damage(rng, clean))
        try:
            rows = record.read_results(bad)
        except NnspliceError:
            counts["csv refused"] = counts.get("csv refused", 0) + 1
            continue
        except Exception as e:
            problems.append(f"csv case {k}: {type(e).__name__}: {e}")
            continue
        counts["csv read"] = counts.get("csv read", 0) + 1
        text = bad.read_text()
        kept = {r["cfg"] for r in rows}
        for line, row in zip(clean.splitlines()[1:], base):  # an intact ok row is never silently dropped
            if line in text.splitlines() and row["cfg"] not in kept:
                problems.append(f"csv case {k}: the intact ok row of {row['cfg']} was dropped from {text!r}")
    # VmHWM is this process's own peak: getrusage's ru_maxrss keeps the parent's peak across fork + exec
    # (pytest's, after hundreds of tests), so it would not measure the fuzzed work.
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    rss_mb = int(hwm.split()[1]) / 1024
    print(json.dumps({"counts": counts, "rss_mb": round(rss_mb), "problems": problems[:20]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
