"""The pipeline: config -> source -> build -> convert -> verify -> run -> record.

``pipeline.stages`` holds the stages and their typed artifacts (Job, Built, Converted,
VerifyReport, RunRecord, ResultRow); ``pipeline.sources`` the model sources (``list_sources()``);
``pipeline.batch`` runs a folder of configs on one device into result.csv; ``pipeline.record``
is result.csv. run_pipeline.py is the command line over these.
"""
from android_runtime.devices import RunRecord
from converter.build import Built, Converted
from converter.verify import VerifyReport

from .options import RunOptions
from .record import ResultRow
from .sources import list_sources, register
from .stages import Job

__all__ = ["Built", "Converted", "Job", "ResultRow", "RunOptions", "RunRecord", "VerifyReport", "list_sources",
           "register"]
