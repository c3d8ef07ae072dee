"""gan-sweep's orchestration: the CLI, study files, Optuna, MLflow, reports, the benchmark."""

import os

# MLflow defaults for every command that talks to it (set before mlflow is first imported):
# a tracking server that does not answer must fail in seconds, not after seven retries with
# back-off (minutes): 10 s a request and two retries stay within the store deadline
# (`sweeps.stores.deadline`, 60 s), and downloads must not draw progress bars over the report's output.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
