"""Hyperparameter search: Optuna over DVC experiments, on the validation split (see __main__)."""
