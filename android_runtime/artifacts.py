"""Checks a plan's .tflite segments on this machine before anything is pushed to a device.

A segment must hash to the sha256 the plan recorded and parse as a TFLite flatbuffer
(``TFL3`` identifier, schema version 3, a subgraph, every buffer inside the file). A
truncated or corrupted file is refused here with the file, what is wrong and the fix,
instead of failing on the phone with an opaque interpreter error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from android_runtime.plan import PlanError, load_plan
from configs.errors import UserError

TFLITE_IDENTIFIER = b"TFL3"
TFLITE_SCHEMA_VERSION = 3


class ArtifactError(UserError):
    """A model or plan file that cannot be deployed as it is."""


@dataclass(frozen=True)
class ModelFile:
    """A checked .tflite file.

    Attributes:
        path: the file on this machine.
        sha256: its content hash (equal to the plan's).
        size: bytes.
        input_names: tensor names of subgraph 0's inputs, in order (for benchmark_model flags).
        input_shapes: their shapes.
    """

    path: Path
    sha256: str
    size: int
    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]


def read_tflite(path: Path | str, data: bytes | None = None) -> ModelFile:
    """Parse a .tflite flatbuffer far enough to know it is whole.

    Args:
        path: the file (read unless ``data`` is given).
        data: its bytes, if already read.

    Raises:
        ArtifactError: no ``TFL3`` identifier, unknown schema version, no subgraph, or a
            buffer/offset pointing past the end of the file (truncation).
    """
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    buf = path.read_bytes() if data is None else data
    fix = "reconvert it (run_pipeline.py --force) or replace the file"
    if len(buf) < 8 or buf[4:8] != TFLITE_IDENTIFIER:
        raise ArtifactError(f"{path}: not a TFLite model (no {TFLITE_IDENTIFIER.decode()} identifier in bytes 4-8; "
                            f"{len(buf)} bytes); {fix}")
    try:
        model = schema.Model.GetRootAs(buf, 0)
        if model.Version() != TFLITE_SCHEMA_VERSION:
            raise ArtifactError(f"{path}: TFLite schema version {model.Version()}, expected "
                                f"{TFLITE_SCHEMA_VERSION}; {fix}")
        if model.SubgraphsLength() < 1:
            raise ArtifactError(f"{path}: TFLite model without a subgraph; {fix}")
        for i in range(model.BuffersLength()):
            b = model.Buffers(i)
            if b.DataLength():
                b.DataAsNumpy()  # reads the vector: raises if it runs past the end
            if b.Offset() > 1 and b.Offset() + b.Size() > len(buf):
                raise ArtifactError(f"{path}: buffer {i} lies at bytes {b.Offset()}-{b.Offset() + b.Size()} "
                                    f"but the file has {len(buf)} bytes (truncated); {fix}")
        sub = model.Subgraphs(0)
        names, shapes = [], []
        for k in range(sub.InputsLength()):
            t = sub.Tensors(sub.Inputs(k))
            names.append((t.Name() or b"").decode(errors="replace"))
            shapes.append(tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ())
    except ArtifactError:
        raise
    except Exception as err:  # flatbuffers raises struct.error/IndexError/ValueError on garbage offsets
        raise ArtifactError(f"{path}: TFLite flatbuffer does not parse ({type(err).__name__}: {err}); "
                            f"the file is truncated or corrupted; {fix}") from None
    import hashlib

    return ModelFile(path, hashlib.sha256(buf).hexdigest(), len(buf), tuple(names), tuple(shapes))


def check_model(path: Path | str, expected_sha256: str | None = None) -> ModelFile:
    """Read and check one model file, optionally against the hash a plan recorded.

    Raises:
        ArtifactError: missing file, hash mismatch, or not a whole TFLite flatbuffer.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: model file is missing; reconvert (run_pipeline.py --force)")
    data = path.read_bytes()
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 and digest != expected_sha256:
        # Parse first: a truncation is the likelier story and deserves the more precise message.
        read_tflite(path, data)
        raise ArtifactError(f"{path}: sha256 {digest[:16]}... ({len(data)} bytes) differs from the plan's "
                            f"{expected_sha256[:16]}...: the file changed after conversion; reconvert "
                            "(run_pipeline.py --force)")
    return read_tflite(path, data)


def check_plan_files(plan_path: Path | str) -> tuple["object", dict[str, ModelFile]]:
    """Load a plan and check every segment file it names.

    Returns:
        The plan (``android_runtime.plan.Plan``) and ``{segment name: ModelFile}``.

    Raises:
        ArtifactError: the plan does not load, or a segment file fails ``check_model``.
    """

    plan_path = Path(plan_path)
    try:
        plan = load_plan(plan_path)
    except PlanError as err:
        raise ArtifactError(str(err)) from None
    files = {}
    root = plan_path.parent.resolve()
    for seg in plan.segments:
        target = (root / seg.file).resolve()  # follows symlinks: one pointing out of the folder is refused
        if os.path.isabs(seg.file) or ".." in Path(seg.file).parts or root not in target.parents:
            raise ArtifactError(f"{plan_path}: segment {seg.name} file = {seg.file!r}: must be a file inside "
                                f"the plan's folder {root}")
        model = check_model(plan_path.parent / seg.file, seg.sha256)
        want = sorted(tuple(t.shape) for t in seg.inputs)
        if sorted(model.input_shapes) != want:
            raise ArtifactError(f"{plan_path}: segment {seg.name} inputs = {want}: the model {seg.file} takes "
                                f"{sorted(model.input_shapes)}; reconvert (run_pipeline.py --force)")
        files[seg.name] = model
    return plan, files
