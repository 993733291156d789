"""Background jobs of the web UI (decompositions, deployments): a thread each, with live progress.

A job keeps its state, its log lines and its progress rows (one per training epoch) in memory;
the UI polls ``/api/jobs/<id>``. Jobs run one at a time (a lock): on a 2-core machine two
trainings at once only slow each other down.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from configs.errors import NnspliceError


@dataclass
class Job:
    id: str
    kind: str  # decompose | deploy
    title: str
    state: str = "queued"  # queued | running | done | failed
    log: list[str] = field(default_factory=list)
    progress: list[dict] = field(default_factory=list)
    result: Any = None
    error: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state, "log": self.log[-200:],
                "progress": self.progress, "result": self.result, "error": self.error,
                "seconds": round((self.finished or time.time()) - self.started, 1)}


class Jobs:
    """The UI's job table."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._run_lock = threading.Lock()
        self._lock = threading.Lock()

    def start(self, kind: str, title: str, fn: Callable[[Job], Any]) -> Job:
        """Runs ``fn(job)`` in a thread; its return value becomes ``job.result``."""
        with self._lock:
            job = Job(id=f"{kind}-{len(self._jobs) + 1}", kind=kind, title=title)
            self._jobs[job.id] = job

        def run() -> None:
            with self._run_lock:
                job.state = "running"
                try:
                    job.result = fn(job)
                    job.state = "done"
                except NnspliceError as e:
                    job.error, job.state = str(e), "failed"
                except Exception as e:  # a bug: the job fails, the UI keeps serving
                    job.error, job.state = f"{type(e).__name__}: {e}", "failed"
                    job.log.append(traceback.format_exc(limit=5))
                finally:
                    job.finished = time.time()

        threading.Thread(target=run, name=job.id, daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        return list(self._jobs.values())
