"""Optuna's and MLflow's stores: opening, probing, locking, the records and files a run leaves."""
