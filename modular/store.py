"""The module store: a folder with a JSON index and one weights file per module.

    STORE/index.json          {"version": 1, "modules": [entry, ...]}
    STORE/modules/<id>.pt     the source model's weights, the kept channels and the head

Every write (a module file, the index) goes to a temporary file in the same folder and is renamed
over the old one, under an exclusive lock (``STORE/.lock``), so readers never see half a file and
two writers never lose each other's entries. A corrupt index or entry raises ``StoreError``
naming the file, the module and the key; nothing is silently dropped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from configs.errors import UserError

INDEX_VERSION = 1


class StoreError(UserError):
    """A store that cannot be read or written as it is (names the file, module and key)."""


@dataclass(frozen=True)
class ModuleEntry:
    """One module of the store (a row of index.json)."""

    id: str  # unique in the store, e.g. "gs-fashion_mnist-sneaker-1a2b3c4d"
    source_model: str  # modular.models.SourceModel.name it was cut from
    arch: str  # fusion.archs name of that model
    dataset: str  # dataset of its classes
    classes: list[str]  # class names it answers for (one: binary module; several: group module)
    method: str  # gradsplitter | seam
    kind: str  # binary | group
    retention: float  # conv weights kept / conv weights of the full model (after pruning)
    accuracy: float  # test accuracy of the pruned module on its task (one-vs-rest, or within the group)
    accuracy_orig: float  # the full model's accuracy on the same task and images
    params: int  # parameters of the pruned module (head included)
    params_full: int  # of the full model
    flops: int  # multiply-accumulates of the pruned module
    flops_full: int
    file: str  # weights file, relative to the store
    latency_us: dict[str, float] = field(default_factory=dict)  # device label -> min latency of the module
    latency_full_us: dict[str, float] = field(default_factory=dict)  # device label -> of the full model
    layer_retention: dict[str, float] = field(default_factory=dict)  # site -> channels kept
    history: list[dict] = field(default_factory=list)  # decomposition epochs
    created: str = ""  # UTC time it was stored

    def matches(self, query: str) -> bool:
        """Whether a search term names this module (part of a class name, dataset:class, or its id)."""
        q = query.strip().lower()
        return any(q in c.lower() or q == f"{self.dataset}:{c}".lower() for c in self.classes) or \
            q == self.id.lower()


_FIELDS = {f.name: f for f in dataclasses.fields(ModuleEntry)}
_TYPES = {"str": str, "float": (int, float), "int": int, "list[str]": list, "dict[str, float]": dict,
          "list[dict]": list}


def entry_from_dict(raw: Any, where: str) -> ModuleEntry:
    """Validates one index entry.

    Raises:
        StoreError: not a mapping, a key missing or unknown, or a value of the wrong type.
    """
    if not isinstance(raw, dict):
        raise StoreError(f"{where}: entry = {str(raw)[:60]!r}: must be a mapping of module fields")
    mid = raw.get("id", "?")
    for k in raw:
        if k not in _FIELDS:
            raise StoreError(f"{where}: module {mid!r}: key {k!r} unknown; allowed: {', '.join(_FIELDS)}")
    for name, f in _FIELDS.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in raw:
            if required:
                raise StoreError(f"{where}: module {mid!r}: key {name!r} missing (the entry is corrupt; "
                                 f"remove it with `python -m modular.search --store STORE --remove {mid}`)")
            continue
        want = _TYPES[str(f.type)]
        v = raw[name]
        if not isinstance(v, want) or isinstance(v, bool):
            raise StoreError(f"{where}: module {mid!r}: {name} = {str(v)[:60]!r}: must be {f.type}")
    return ModuleEntry(**raw)


class Store:
    """A module store folder (created on the first write)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.index = self.root / "index.json"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def entries(self) -> list[ModuleEntry]:
        """Every module of the store (an empty list when the folder has no index yet).

        Raises:
            StoreError: the index or one of its entries is corrupt.
        """
        if not self.index.exists():
            if self.root.exists() and not self.root.is_dir():
                raise StoreError(f"{self.root}: not a folder (a module store is a folder with index.json)")
            return []
        try:
            raw = json.loads(self.index.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StoreError(f"{self.index}: cannot be read as JSON ({e}); the index is corrupt") from None
        if not isinstance(raw, dict) or raw.get("version") != INDEX_VERSION or not isinstance(raw.get("modules"), list):
            raise StoreError(f"{self.index}: version = {raw.get('version') if isinstance(raw, dict) else None!r}: "
                             f"must be {INDEX_VERSION} with a list of modules")
        out = [entry_from_dict(e, f"{self.index} (entry {i})") for i, e in enumerate(raw["modules"])]
        ids = [e.id for e in out]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise StoreError(f"{self.index}: module id {dup[0]!r} appears twice; the index is corrupt")
        return out

    def get(self, module_id: str) -> ModuleEntry:
        for e in self.entries():
            if e.id == module_id:
                return e
        raise StoreError(f"{self.index}: module {module_id!r} not in the store")

    def add(self, entry: ModuleEntry, payload: dict) -> ModuleEntry:
        """Writes a module's weights file, then its index entry (replacing one with the same id)."""
        import io

        import torch

        buf = io.BytesIO()
        torch.save(payload, buf)
        entry = dataclasses.replace(entry, file=f"modules/{entry.id}.pt",
                                    created=entry.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with self._lock():
            self._write_atomic(self.root / entry.file, buf.getvalue())
            self._save([e for e in self.entries() if e.id != entry.id] + [entry])
        return entry

    def update(self, module_id: str, **changes: Any) -> ModuleEntry:
        """Changes fields of one entry (e.g. a latency measured on another device)."""
        with self._lock():
            entries = self.entries()
            new = [dataclasses.replace(e, **changes) if e.id == module_id else e for e in entries]
            if new == entries and module_id not in {e.id for e in entries}:
                raise StoreError(f"{self.index}: module {module_id!r} not in the store")
            self._save(new)
        return next(e for e in new if e.id == module_id)

    def remove(self, module_id: str) -> None:
        """Removes an entry (read raw, so a corrupt entry can be removed) and its weights file."""
        with self._lock():
            raw = json.loads(self.index.read_text()) if self.index.exists() else {"modules": []}
            mods = raw.get("modules") or []
            keep = [m for m in mods if not (isinstance(m, dict) and m.get("id") == module_id)]
            if len(keep) == len(mods):
                raise StoreError(f"{self.index}: module {module_id!r} not in the store")
            self._write_atomic(self.index, json.dumps({"version": INDEX_VERSION, "modules": keep}, indent=1).encode())
            with contextlib.suppress(OSError):
                (self.root / "modules" / f"{module_id}.pt").unlink()

    def _save(self, entries: list[ModuleEntry]) -> None:
        data = {"version": INDEX_VERSION, "modules": [dataclasses.asdict(e) for e in entries]}
        self._write_atomic(self.index, (json.dumps(data, indent=1) + "\n").encode())

    def payload(self, entry: ModuleEntry) -> dict:
        """A module's weights file.

        Raises:
            StoreError: missing or unreadable.
        """
        import torch

        p = self.root / entry.file
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # missing, truncated or foreign
            raise StoreError(f"{p}: module {entry.id!r}: weights file cannot be read "
                             f"({str(e).splitlines()[0][:100]}); decompose it again") from None

    def search(self, query: str) -> list[ModuleEntry]:
        """Modules whose class names contain ``query`` (or ``dataset:class``, or the id).

        Raises:
            StoreError: the store is empty (names the command that fills it).
        """
        entries = self.entries()
        if not entries:
            raise StoreError(f"{self.root}: the module store is empty; add modules with `python -m modular.decompose "
                             f"--model zoo:fashion3/fashion10 --dataset fashion_mnist --method gradsplitter "
                             f"--out {self.root}`")
        return [e for e in entries if e.matches(query)]
