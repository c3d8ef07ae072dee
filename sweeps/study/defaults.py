"""The default stores every command shares (no imports: the CLI reads these at start-up)."""

DEFAULT_STORAGE = "sqlite:///gan_sweep.db"
"""Optuna's storage on one machine."""
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
"""MLflow's tracking store on one machine (artifacts beside it, in ./mlartifacts)."""
