"""Child process of :func:`converter.onnx.to_tflite`: one .onnx file -> ``model.tflite`` in ``--out``.

Run with the output folder as the working directory (onnx2tf reads its sample array from there).
Exit 0 with ``model.tflite`` written, else 1 with a last line ``nnsplice-onnx-error: ...``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converter.onnx_worker")
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="fp32", choices=["fp32"], help="float32 only (fp16/int8: the parent "
                    "quantises the float file)")
    ap.add_argument("--shape", required=True, help="NCHW, comma-separated")
    ap.add_argument("--input", required=True, help="the graph's input name")
    a = ap.parse_args(argv)
    try:
        convert(a)
    except Exception as e:  # reported to the parent as one line; the traceback stays in the log
        traceback.print_exc()
        print(f"nnsplice-onnx-error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
        return 1
    return 0


def convert(a: argparse.Namespace) -> None:
    import onnx
    import onnx2tf
    from onnxsim import simplify

    out = Path(a.out)
    shape = [int(v) for v in a.shape.split(",")]
    m = onnx.load(a.onnx)
    for i in m.graph.input:  # dynamic dimensions become the configured shape
        if i.name == a.input:
            for d, v in zip(i.type.tensor_type.shape.dim, shape):
                if not d.HasField("dim_value") or d.dim_value <= 0:
                    d.dim_value = v
    try:
        m, ok = simplify(m)
    except Exception as e:  # a graph onnxsim cannot run: onnx2tf gets it as it is
        print(f"onnxsim skipped: {type(e).__name__}: {e}", flush=True)
    simplified = out / "simplified.onnx"
    onnx.save(m, str(simplified))
    onnx2tf.convert(input_onnx_file_path=str(simplified), output_folder_path=str(out / "tf"), non_verbose=True,
                    not_use_onnxsim=True, copy_onnx_input_output_names_to_tflite=True)
    produced = out / "tf" / "simplified_float32.tflite"
    if not produced.is_file():
        wrote = sorted(p.name for p in (out / "tf").glob("*.tflite"))
        raise RuntimeError(f"onnx2tf wrote no {produced.name} (it wrote {wrote})")
    shutil.copyfile(produced, out / "model.tflite.part")
    (out / "model.tflite.part").replace(out / "model.tflite")
    shutil.rmtree(out / "tf", ignore_errors=True)  # the SavedModel: as big as the model, not needed again
    simplified.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
