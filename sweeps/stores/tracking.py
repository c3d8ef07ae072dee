"""MLflow tracking through MlflowClient: one experiment per study, a parent run per invocation,
a nested child run per trial with params, per-epoch metrics (one `log_batch` per epoch:
a `log_metric` per value costs ~17 ms each), sample grids as images, a loss-curve figure,
and the outcome as tags.

Our own logging rather than optuna-integration's MLflowCallback, which is deprecated and
logs only when a trial ends.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from gan_core.files import LinkError
from gan_core.records import EpochEvent, RunResult
from sweeps import urls
from sweeps.paths import can_create_in, check_writable_dir
from sweeps.stores import deadline
from sweeps.stores.beats import beating
from sweeps.stores.locks import check_lock_paths

# MLflow logs a store's failure at ERROR with its whole traceback before raising it; gan-sweep reports
# the raised error in one line (and keeps the traceback for GAN_SWEEP_DEBUG=1).
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
from sweeps.errors import UserError

MAX_PARAM_LEN = 500
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
"""MLflow 3 marks an experiment's kind with this tag (its 3.17 UI still opens on the GenAI overview:
the README says where to click)."""
HEARTBEAT_TAG = "gan_sweep.heartbeat"
"""Tag of an invocation's parent run: the time of its last heartbeat (seconds since the epoch)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def artifact_root(tracking_uri: str) -> str | None:
    """For a local sqlite store, artifacts go beside the database file (./mlartifacts)."""
    folder = urls.artifact_folder(tracking_uri)
    return None if folder is None else folder.as_uri()  # a tracking server decides for itself


def reach_tracking(uri: str) -> None:
    """Fail early, in one line, on a URI that cannot work, and ask a tracking server whether it
    answers (a read, nothing is created)."""
    urls.check_tracking(uri)
    if urls.scheme(uri) in ("http", "https"):
        import base64
        import urllib.error
        import urllib.request

        bare, creds = urls.without_credentials(uri)
        request = urllib.request.Request(bare.rstrip("/") + "/health")
        if creds:  # MLflow's basic auth, sent as a header: never part of a URL an error could quote
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(creds).encode()).decode())
        try:
            urllib.request.urlopen(request, timeout=10)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UserError(f"tracking URI {urls.mask(uri)} is unreachable: "
                            f"{urls.mask(str(getattr(exc, 'reason', exc)), uri)}") from None


def probe_tracking(uri: str, experiment: str | None = None, writing: bool = True) -> bool:
    """Whether the tracking store holds anything, checked read-only before any store is created or
    written: its form, a server's answer, a sqlite file that is a database of MLflow's (not garbage,
    not Optuna's, not read-only where `writing`), and that `experiment` is not deleted.
    False: a sqlite file that does not exist yet (a reader then has nothing to open)."""
    import os
    import sqlite3

    reach_tracking(uri)
    path = urls.sqlite_path(uri)
    if path is None:
        if experiment is not None:
            try:
                from mlflow.tracking import MlflowClient

                with deadline.timed(f"the tracking server {urls.mask(uri)}"):
                    exp = MlflowClient(uri).get_experiment_by_name(experiment)  # a server: a read
            except Exception as exc:  # noqa: BLE001 - any failure: the URI does not work from here
                msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UserError(f"tracking URI {urls.mask(uri)} is unusable: {urls.mask(msg)[:300]}") from None
            _not_deleted(exp, experiment)
        return True
    if writing and not can_create_in(path.resolve().parent):  # sqlite's journal and MLflow's artifacts go there
        raise UserError(f"tracking URI {urls.mask(uri)}: no file can be created in {path.resolve().parent} "
                        f"(sqlite writes its journal beside the database)")
    if writing:  # MLflow copies every image, figure and report into its artifacts folder: never through a link
        check_writable_dir(urls.artifact_folder(uri), "the tracking store's artifacts folder")
        check_lock_paths(uri)
    if not path.exists():
        return False
    try:
        if writing:
            os.close(os.open(path, os.O_RDWR))  # permission bits say yes to root: only opening tells
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            row = (con.execute("SELECT lifecycle_stage FROM experiments WHERE name = ?", (experiment,)).fetchone()
                   if experiment is not None and "experiments" in tables else None)
        finally:
            con.close()
    except (OSError, sqlite3.Error) as exc:
        raise UserError(f"tracking URI {urls.mask(uri)}: {path} cannot be used ({exc})") from None
    if tables & urls.OPTUNA_TABLES == urls.OPTUNA_TABLES:
        raise UserError(f"tracking URI {urls.mask(uri)} is an Optuna database (are --storage and --tracking-uri "
                        f"swapped?)")
    if tables and not urls.MLFLOW_TABLES <= tables:
        raise UserError(f"tracking URI {urls.mask(uri)}: {path} is a database, but not MLflow's (tables: "
                        f"{', '.join(sorted(tables))[:120]})")
    if row is not None and row[0] == "deleted":
        raise UserError(f"MLflow experiment {experiment!r} is deleted; restore it or use another --study-name")
    return True


def _not_deleted(exp, name: str) -> None:
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise UserError(f"MLflow experiment {name!r} is deleted; restore it or use another --study-name")


def for_reading(storage: str, uri: str | None) -> str | None:
    """The tracking URI a reader (report, atlas) may open, or None where opening it would create a store
    (a mistyped sqlite path) or write MLflow's tables into another database."""
    if not uri:
        return None
    urls.check_not_swapped(storage, uri)
    if urls.sqlite_path(uri) is None:  # a server that does not answer leaves the tables standing (a note)
        urls.check_tracking(uri)
        return uri
    return uri if probe_tracking(uri, writing=False) else None


class Tracker:
    """An MLflow experiment and the runs logged into it."""

    def __init__(self, tracking_uri: str, experiment: str, description: str = "") -> None:
        db = urls.check_tracking(tracking_uri)  # the sqlite file, None for a server
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # mlflow sets its own level on import

        from sweeps.stores.locks import sqlite_lock

        self.uri = tracking_uri
        try:
            with sqlite_lock(tracking_uri, "schema"):  # MLflow creates its schema on first use
                if db is not None:
                    from gan_core.data import cache_dir
                    from sweeps.stores import mlflow_schema

                    mlflow_schema.seed(db, cache_dir())
                self.client = MlflowClient(tracking_uri)
                if db is None:  # a server: every call must answer within the stated time
                    self.client = deadline.TimedClient(self.client, f"the tracking server {urls.mask(tracking_uri)}")
                self.experiment_id = self._experiment(experiment, description)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to reach the store is the user's URI
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"tracking URI {urls.mask(tracking_uri)} is unreachable or unusable: "
                            f"{urls.mask(msg, tracking_uri)[:300]}") from None

    def _experiment(self, name: str, description: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            _not_deleted(exp, name)
            if exp.tags.get(KIND_TAG) != KIND:
                self.client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
            return exp.experiment_id
        tags = {KIND_TAG: KIND} | ({"mlflow.note.content": description} if description else {})
        try:
            return self.client.create_experiment(name, artifact_location=artifact_root(self.uri), tags=tags)
        except Exception:  # noqa: BLE001 - another worker created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def log_summary(self, run_id: str, counts: dict[str, int], seconds: float, overhead: float,
                    files: dict[str, Path] | None = None) -> None:
        """An invocation's parent run: the study's outcome counts, success rate, wall time and
        orchestration overhead as metrics; the report's files as artifacts."""
        from mlflow.entities import Metric

        from sweeps.stores.ends import COUNT_KEY

        finished = sum(counts.get(k, 0) for k in ("COMPLETE", "PRUNED"))
        judged = finished - counts.get(COUNT_KEY, 0)  # a run the pruner stopped is neither success nor failure
        values = {"trials_finished": finished, "trials_failed": counts.get("FAIL", 0), "wall_seconds": seconds,
                  "overhead_share": overhead, "trials_pruned_by_pruner": counts.get(COUNT_KEY, 0),
                  "success_share": counts.get("success", 0) / judged if judged else float("nan")}
        values |= {f"outcome_{k}_count": v for k, v in counts.items() if k.islower()}
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), _now_ms(), 0) for k, v in values.items()])
        if files:
            self._artifacts_plain()
        for path in (files or {}).values():
            self.client.log_artifact(run_id, str(path), artifact_path="report")

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, name: str, tags: dict[str, Any] | None = None, parent: str | None = None,
                  params: dict[str, Any] | None = None) -> str:
        from mlflow.entities import Param

        tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        if params:
            self.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in params.items()])
        return run.info.run_id

    def log_epoch(self, run_id: str, event: EpochEvent) -> None:
        """All of an epoch's metrics in one call, at step = epoch; the sample grid on evaluations."""
        from mlflow.entities import Metric

        rec, ts = event.record, _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(k, v, ts, rec.epoch) for k, v in rec.metrics().items()])
        if event.samples is not None:
            self.log_samples(run_id, event.samples, rec.epoch)

    def log_history(self, run_id: str, records) -> None:
        """Epochs a resumed trial restored from its checkpoint (their metrics went to the dead trial's
        run): logged again here, so the retry's run holds the whole curve. MLflow takes at most 1,000
        metrics per call."""
        from mlflow.entities import Metric

        ts = _now_ms()
        metrics = [Metric(k, v, ts, rec.epoch) for rec in records for k, v in rec.metrics().items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i:i + 1000])

    def _artifacts_plain(self) -> None:
        """MLflow copies artifacts with shutil, through links: a link planted at the artifacts folder after
        the run was checked is refused at the moment of writing too."""
        folder = urls.artifact_folder(self.uri)
        if folder is not None and folder.is_symlink():
            raise LinkError(f"{folder} is a symbolic link: gan-sweep does not write through links")

    def log_samples(self, run_id: str, samples, step: int) -> None:
        from sweeps.stores.artifacts import grid_pixels

        self._artifacts_plain()
        self.client.log_image(run_id, grid_pixels(samples), key="samples", step=step)

    def log_result(self, run_id: str, result: RunResult, files: dict[str, Path] | None = None,
                   pruned_epoch: int | None = None) -> None:
        """Outcome tags, final quality metrics and the loss-curve figure of a finished run. A run the study's
        pruner stopped (`pruned_epoch`) has no outcome: tagged ended_by pruner and pruned_epoch instead."""
        import matplotlib.pyplot as plt
        from mlflow.entities import Metric, RunTag

        from sweeps.stores import ends
        from sweeps.stores.artifacts import loss_figure

        v = result.verdict
        tags = {"device": result.device, "dataset": result.dataset_source[:4000]}
        if pruned_epoch is None:
            tags |= {"outcome": v.label, "outcome_epoch": v.epoch, "outcome_sealed": v.sealed,
                     "evidence": v.evidence[:4000], ends.ENDED_BY: ends.JUDGE if v.sealed else ends.BUDGET}
        else:
            tags |= {ends.ENDED_BY: ends.PRUNER, ends.PRUNED_EPOCH: pruned_epoch}
        metrics = [Metric("seconds", result.seconds, _now_ms(), 0)]
        if result.quality is not None:
            metrics += [Metric(f"final_{k}", float(val), _now_ms(), 0) for k, val in result.quality.as_dict().items()]
        self.client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, str(val)) for k, val in tags.items()])
        fig = loss_figure(result.history, f"{v.label} (epoch {v.epoch})" if pruned_epoch is None
                          else f"pruned at epoch {pruned_epoch} (no outcome)")
        self._artifacts_plain()
        self.client.log_figure(run_id, fig, "loss_curves.png")
        plt.close(fig)
        if result.samples is not None and not files:
            import tempfile

            from sweeps.stores.artifacts import save_grid

            with tempfile.TemporaryDirectory() as tmp:  # the last grid, for the report's galleries
                self.client.log_artifact(run_id, str(save_grid(result.samples, Path(tmp) / "samples.png")))
        for path in (files or {}).values():
            self.client.log_artifact(run_id, str(path))

    def end(self, run_id: str, status: str = "FINISHED", **tags: Any) -> None:
        """End a run with its tags. A store that is busy for a moment (sqlite: another process is
        writing; a server restarting) is retried for about 15 s: an interrupt's cleanup must not leave
        the run RUNNING because the database was locked when the signal came."""
        from mlflow.exceptions import MlflowException

        for attempt in range(1, 7):
            try:
                for k, v in tags.items():
                    self.client.set_tag(run_id, k, urls.mask(str(v)))
                self.client.set_terminated(run_id, status=status)
                return
            except MlflowException as exc:
                if attempt == 6 or not _transient(exc):
                    raise
                time.sleep(0.5 * attempt)

    # -- invocations that die --------------------------------------------------------------------
    @contextlib.contextmanager
    def parent_heartbeat(self, run_id: str, interval: float):
        """Stamp the invocation's parent run every `interval` seconds while the block runs, so that a
        later invocation can tell a live parent from one whose process was killed."""
        with beating(lambda: self.client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}"), interval,
                     "gan-sweep-parent-heartbeat"):
            yield

    def recover(self) -> None:
        """As `storage.recover`, for a database-backed tracking store (an http server needs nothing)."""
        engine = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        engine = getattr(engine, "engine", None)  # MLflow's SqlAlchemyStore keeps its engine public
        if engine is not None:
            engine.dispose()

    def end_children(self, parent_id: str, status: str, **tags: Any) -> int:
        """End the parent's child runs still RUNNING; returns how many. An invocation that ends by an
        interrupt or an error calls this before ending its own run: a signal can land between a child
        run's creation and the moment its trial holds it (or between two stores' writes), and such a
        child would otherwise stay RUNNING until another invocation met it."""
        runs = self.client.search_runs(
            [self.experiment_id], max_results=1000,
            filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'")
        for run in runs:
            self.end(run.info.run_id, status, **tags)
        return len(runs)

    def close_dead_parents(self, max_age_s: float) -> int:
        """End as KILLED the parent runs still RUNNING whose heartbeat is older than max_age_s (their
        invocation was killed, e.g. kill -9), and the child runs still RUNNING whose parent is not (a
        live parent's children are its invocation's business); returns how many."""
        runs = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                       max_results=1000)
        closed, dead = 0, set()
        for run in runs:
            tags = run.data.tags
            if tags.get("gan_sweep.kind") not in ("study", "worker"):
                continue
            last = float(tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))
            if time.time() - last > max_age_s:
                self.end(run.info.run_id, "KILLED", fail_reason="the invocation died (its heartbeat went stale)")
                dead.add(run.info.run_id)
                closed += 1
        # A trial's child run outlives its invocation when the store failed as the trial ended (a
        # tracking server killed, a full disk): it is ended with its parent, now or later.
        live = {r.info.run_id for r in runs if r.info.run_id not in dead and "mlflow.parentRunId" not in r.data.tags}
        for run in runs:
            parent = run.data.tags.get("mlflow.parentRunId")
            if parent is not None and parent not in live:
                self.end(run.info.run_id, "KILLED", fail_reason="its invocation ended without closing it")
                closed += 1
        return closed


class SingleRunTracker:
    """`gan-sweep train`'s tracking: one run in a plain experiment."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracker = Tracker(tracking_uri, experiment)
        self.run_id: str | None = None

    def start(self, cfg) -> None:
        self.run_id = self.tracker.start_run(f"train-seed{cfg.seed}", params=cfg.to_flat(),
                                             tags={"gan_sweep.kind": "train"})

    def callback(self, event: EpochEvent) -> None:
        self.tracker.log_epoch(self.run_id, event)

    def finish(self, result: RunResult, files: dict[str, Path]) -> None:
        self.tracker.log_result(self.run_id, result, files)
        self.tracker.end(self.run_id, "FINISHED")

    def end_failed(self, exc: BaseException) -> None:
        if self.run_id:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            self.tracker.end(self.run_id, status, fail_reason=type(exc).__name__)


def _transient(exc: Exception) -> bool:
    """A store error worth retrying: a locked sqlite file or a store that says it is unavailable."""
    text = str(exc).lower()
    return "database is locked" in text or getattr(exc, "error_code", "") == "TEMPORARILY_UNAVAILABLE"
