"""Command-line tools for data scientists: train, register, promote, roll back, list versions.

Everything goes through MLflow's client API against whatever `MLFLOW_TRACKING_URI` names.
"""
