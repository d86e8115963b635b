"""The shared part of every backend: request validation, timing and provenance.
A backend implements `_convert` (and `host_runner` for the parity check)."""
from __future__ import annotations

import dataclasses
import pathlib
import time

from ..errors import BadInput
from ..progress import SILENT


@dataclasses.dataclass(frozen=True)
class PackageRequest:
    precision: str                 # fp32 | fp16 | bf16
    quantize: str                  # none | dynamic | int8
    calibration: dict | None       # {input name: array}, required for int8
    int8_scheme: str = ""


@dataclasses.dataclass
class Conversion:
    model_path: pathlib.Path       # the primary artifact
    extra_artifacts: list          # further files the runtime needs next to it
    runtime: dict                  # agent adapter name, threads, options
    compression: dict              # what was applied, with its parameters
    tools: dict                    # versions of the tools that produced it
    notes: list
    seconds: float = 0.0


class Backend:
    name = ""
    runtime = ""                   # the device_agent adapter that runs this backend's artifacts
    precisions = ("fp32",)
    quantizations = ("none",)

    def convert(self, source, request: PackageRequest, workdir: pathlib.Path, progress=SILENT) -> Conversion:
        self._validate(request)
        start = time.perf_counter()
        result = self._convert(source, request, workdir, progress)
        result.seconds = time.perf_counter() - start
        return result

    def _validate(self, request: PackageRequest) -> None:
        if request.precision not in self.precisions:
            raise BadInput(f"backend {self.name} supports --precision {', '.join(self.precisions)}, not {request.precision}")
        if request.quantize not in self.quantizations:
            raise BadInput(f"backend {self.name} supports --quantize {', '.join(self.quantizations)}, not {request.quantize}")
        if request.quantize == "int8" and request.calibration is None:
            raise BadInput("--quantize int8 needs calibration data: --calib samples.npz "
                           "(an array per model input, shape [N, ...], N >= 100 recommended)")

    def _convert(self, source, request, workdir, progress) -> Conversion:
        raise NotImplementedError

    def host_runner(self, model_path: pathlib.Path):
        """A callable {input: array} -> [outputs] running the artifact on this host, for parity."""
        raise NotImplementedError
