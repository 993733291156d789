"""The module store's web app (Flask): search, decompose, compose and deploy, a module's figures.

Pages: ``/search``, ``/module/<id>``, ``/decompose`` (a background job, ``/jobs/<id>`` shows its
live progress), ``/compose`` (writes a module config; its Deploy button runs run_pipeline.py on it
as a background job). ``/api/jobs/<id>`` is the JSON the job page polls.
"""
from __future__ import annotations

import csv
import dataclasses
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from flask import Flask, abort, jsonify, redirect, render_template, request, url_for

from configs.errors import NnspliceError, UserError

from .. import compose
from ..config import write_module_config
from ..decompose import decompose_to_store, parse_targets
from ..deploy import MODES
from ..models import load_source_model
from ..module import CLASS_NAMES
from ..store import Store
from ..train import METHODS, DecomposeSettings
from .jobs import Job, Jobs

ROOT = Path(__file__).resolve().parents[2]


def create_app(store_dir: str | Path, workdir: str | Path = "work", timing_device: str | None = "host") -> Flask:
    """The app over one store folder.

    Args:
        store_dir: the module store.
        workdir: converted artifacts and deployment results.
        timing_device: where decompositions time modules (None: not timed).
    """
    app = Flask(__name__)
    store, work, jobs = Store(store_dir), Path(workdir), Jobs()
    app.config.update(STORE=store, JOBS=jobs)

    @app.context_processor
    def common() -> dict:
        return {"store_dir": str(store.root), "jobs": jobs.all()}

    @app.get("/")
    def index():
        return redirect(url_for("search"))

    @app.get("/search")
    def search():
        q = request.args.get("q", "").strip()
        error, found = "", []
        try:
            found = store.search(q) if q else store.entries()
        except NnspliceError as e:
            error = str(e)
        return render_template("search.html", q=q, found=found, error=error)

    @app.get("/module/<mid>")
    def module(mid: str):
        try:
            e = store.get(mid)
        except NnspliceError:
            abort(404)
        return render_template("module.html", e=e, bars=_bars(e.layer_retention))

    @app.route("/decompose", methods=["GET", "POST"])
    def decompose():
        form = {"model": "zoo:fashion3/fashion10", "dataset": "fashion_mnist", "method": "gradsplitter",
                "target": "sneaker", "mask_epochs": str(DecomposeSettings.mask_epochs),
                "train_limit": str(DecomposeSettings.train_limit)}
        error = ""
        if request.method == "POST":
            form.update({k: request.form.get(k, v).strip() for k, v in form.items()})
            try:
                job = _start_decompose(form)
                return redirect(url_for("job_page", job_id=job.id))
            except (NnspliceError, ValueError) as e:
                error = str(e)
        return render_template("decompose.html", form=form, error=error, methods=METHODS, datasets=list(CLASS_NAMES))

    def _start_decompose(form: dict) -> Job:
        if form["method"] not in METHODS:
            raise UserError(f"method {form['method']!r}: allowed are {', '.join(METHODS)}")
        targets = parse_targets(form["target"], form["dataset"], form["method"])
        s = replace(DecomposeSettings(), mask_epochs=int(form["mask_epochs"]), train_limit=int(form["train_limit"]))

        def run(job: Job):
            sm = load_source_model(form["model"], log=job.log.append)
            if sm.dataset != form["dataset"]:
                raise UserError(f"dataset {form['dataset']!r}: model {form['model']} classifies {sm.dataset}")
            entries = decompose_to_store(sm, form["method"], targets, store, s, timing_device, str(work),
                                         log=job.log.append, progress=job.progress.append)
            return {"modules": [e.id for e in entries]}

        return jobs.start("decompose", f"{form['method']} {form['dataset']}:{form['target'] or 'all classes'}", run)

    @app.get("/jobs/<job_id>")
    def job_page(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            abort(404)
        return render_template("job.html", job=job)

    @app.get("/api/jobs/<job_id>")
    def job_api(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            abort(404)
        return jsonify(job.to_dict())

    @app.route("/compose", methods=["GET", "POST"])
    def compose_page():
        form = {"classes": request.values.get("classes", ""), "mode": request.values.get("mode", "fused"),
                "policy": request.values.get("policy", "binary"), "name": request.values.get("name", "")}
        error, chosen, acc, cfg = "", [], None, ""
        if request.method == "POST":
            try:
                if form["mode"] not in MODES:
                    raise UserError(f"mode {form['mode']!r}: allowed are {', '.join(MODES)}")
                classes = [c.strip() for c in form["classes"].split(",") if c.strip()]
                chosen = compose.select(store, classes, form["policy"])
                comp = compose.load_composition(store, [e.id for e in chosen])
                x, y = compose.test_set(comp.classes, 200)
                acc = compose.accuracy(compose.scores(comp, x).argmax(1), y)
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", form["name"] or "-".join(classes) + f"-{form['mode']}")
                cfg = str(write_module_config(store.root / "configs" / f"{name}.yaml", store.root,
                                              [e.id for e in chosen], form["mode"]))
            except NnspliceError as e:
                error = str(e)
        return render_template("compose.html", form=form, error=error, chosen=chosen, acc=acc, cfg=cfg, modes=MODES,
                               policies=compose.POLICIES)

    @app.post("/deploy")
    def deploy():
        cfg = Path(request.form.get("config", ""))
        if cfg.suffix != ".yaml" or cfg.parent.resolve() != (store.root / "configs").resolve() or not cfg.is_file():
            abort(400)

        def run(job: Job):
            out = work / "ui" / f"{cfg.stem}.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(ROOT / "run_pipeline.py"), "--configs", str(cfg), "--workdir", str(work),
                   "--output_csv", str(out), "--force"]
            job.log.append(" ".join(cmd))
            p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in p.stdout:
                job.log.append(line.rstrip())
            if p.wait() != 0:
                raise UserError(f"run_pipeline.py exited {p.returncode}: {job.log[-1] if job.log else ''}")
            rows = list(csv.DictReader(out.open()))
            keep = ("cfg", "latency", "median_us", "lanes", "fusion_mode", "task_accuracy", "task_acc_orig",
                    "task_latency_us", "max_abs_diff", "params", "flops", "status")
            return {k: rows[-1].get(k, "") for k in keep} if rows else {}

        job = jobs.start("deploy", f"deploy {cfg.name}", run)
        return redirect(url_for("job_page", job_id=job.id))

    @app.get("/api/modules")
    def modules_api():
        try:
            return jsonify([dataclasses.asdict(e) for e in store.entries()])
        except NnspliceError as e:
            return jsonify({"error": str(e)}), 500

    return app


def _bars(layers: dict[str, float]) -> list[dict]:
    """Per-layer retention as SVG bar geometry (width 300)."""
    return [{"name": k, "y": 22 * i, "w": round(300 * v, 1), "v": v} for i, (k, v) in enumerate(layers.items())]
