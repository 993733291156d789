"""A .tflite file that runs as it is (a ``tflite`` model source): its inputs and outputs, read from the file.

The signature says them when the file has one; many published files have none, and then the
input and output tensors do (in the file's order), as the plan runner reads them too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from configs.errors import UserError


@dataclass(frozen=True)
class TensorIO:
    name: str  # signature key, or the tensor's name when the file has no signature
    shape: list[int]  # as the file has it (NHWC for images)
    dtype: str  # numpy dtype name of the file's tensor (float32, uint8, int8, ...)


@dataclass(frozen=True)
class TfliteIO:
    inputs: list[TensorIO]  # in the order the plan runner feeds them
    outputs: list[TensorIO]  # in the order the plan runner returns them
    signature: str  # the signature key read, "" when the file has none


def tflite_io(path: str | os.PathLike) -> TfliteIO:
    """Inputs and outputs of a .tflite file.

    Raises:
        UserError: not a .tflite file LiteRT can load.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    try:
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
    except (ValueError, RuntimeError, OSError) as e:
        raise UserError(f"{path}: not a .tflite model LiteRT can load ({str(e).splitlines()[0] if str(e) else e})"
                        ) from None

    def spec(name: str, d: dict) -> TensorIO:
        shape = [int(v) for v in (d.get("shape_signature") if d.get("shape_signature") is not None
                                  and len(d["shape_signature"]) else d["shape"])]
        shape = [1 if v < 0 else v for v in shape]  # a dynamic batch runs with batch 1
        return TensorIO(name, shape, np.dtype(d["dtype"]).name)

    sigs = it.get_signature_list()
    if sigs:
        key = next(iter(sigs))
        runner = it.get_signature_runner(key)
        ins, outs = runner.get_input_details(), runner.get_output_details()
        return TfliteIO([spec(n, ins[n]) for n in sigs[key]["inputs"]],
                        [spec(n, outs[n]) for n in sorted(sigs[key]["outputs"], key=_output_pos)], key)
    return TfliteIO([spec(d["name"], d) for d in it.get_input_details()],
                    [spec(d["name"], d) for d in it.get_output_details()], "")


def _output_pos(name: str) -> int:
    """The order the plan runner returns signature outputs in (output_0, output_1, ...; others as listed)."""
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0
