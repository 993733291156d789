"""Lists (and with --delete removes) what no result row uses any more: converted artifact folders,
runner outputs and resolved configs in the work folder, and plan/run folders on a device.

    python -m pipeline.clean [--workdir work] [--output_csv CSV] [--delete]
    python -m pipeline.clean --serial SERIAL [--adb_host HOST:PORT] [--delete]   # also the device's folders

A dry run (the default) only lists. In use: the artifact folder of every plan result.csv names
(and, on a device, the folder of that plan's key); everything else was left by earlier conversions
(changed configs, other dtypes) or by configs no longer in result.csv.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from android_runtime.devices import get_device
from android_runtime.remote import REMOTE_ROOT, plan_key
from configs.errors import NnspliceError, exit_code

from .record import read_results


@dataclass(frozen=True)
class Unused:
    where: str  # "work" or "device"
    path: str
    size: int  # bytes (0 when unknown)


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def unused_local(workdir: Path, out_csv: Path) -> tuple[list[Unused], list[Path]]:
    """Unused artifact folders, run files and resolved configs; and the plans in use."""
    rows = read_results(out_csv)
    plans = [Path(r["plan"]) for r in rows if r.get("plan")]
    used_dirs = {p.parent.resolve() for p in plans}
    names = {r.get("name", "") for r in rows}
    out = []
    for d in sorted((workdir / "artifacts").glob("*")):
        if d.is_dir() and d.resolve() not in used_dirs:
            out.append(Unused("work", str(d), _size(d)))
    for f in sorted((workdir / "runs").glob("*.json")):
        if not any(f.stem.startswith(f"{n}_") for n in names if n):
            out.append(Unused("work", str(f), _size(f)))
    for f in sorted((workdir / "resolved").glob("*.yaml")):
        if f.stem not in names:
            out.append(Unused("work", str(f), _size(f)))
    return out, [p for p in plans if p.is_file()]


def unused_on_device(device, plans: list[Path]) -> list[Unused]:
    """Plan and run folders on the device whose key is no plan in use."""
    keep = {plan_key(p) for p in plans}
    out = []
    for kind in ("plans", "runs"):
        listing = device.dev.shell(f"ls {shlex.quote(f'{REMOTE_ROOT}/{kind}')} 2>/dev/null", check=False).stdout
        out += [Unused("device", f"{REMOTE_ROOT}/{kind}/{k}", 0) for k in listing.split() if k not in keep]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.clean", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="work", help="the run's work folder (default ./work)")
    ap.add_argument("--output_csv", default="", help="result CSV (default <workdir>/result.csv)")
    ap.add_argument("--serial", default="", help="also list the plan folders on this adb device")
    ap.add_argument("--adb_host", default="", help="adb server HOST[:PORT] (default 127.0.0.1:5037)")
    ap.add_argument("--delete", action="store_true", help="remove what is listed (default: only list)")
    a = ap.parse_args(argv)
    workdir = Path(a.workdir)
    try:
        found, plans = unused_local(workdir, Path(a.output_csv or workdir / "result.csv"))
        device = get_device("adb", serial=a.serial, adb_host=a.adb_host) if a.serial else None
        if device is not None:
            found += unused_on_device(device, plans)
        for u in found:
            print(f"{'removing' if a.delete else 'unused'}: {u.where} {u.path}" + (f" ({u.size / 1e6:.1f} MB)"
                                                                                   if u.size else ""))
            if a.delete and u.where == "work":
                p = Path(u.path)
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            elif a.delete:
                device.dev.shell(f"rm -rf {shlex.quote(u.path)}")
    except NnspliceError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    total = sum(u.size for u in found)
    print(f"{len(found)} unused ({total / 1e6:.1f} MB in {workdir})" + ("" if a.delete else "; --delete removes them"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
