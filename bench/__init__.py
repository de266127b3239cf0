"""Benchmarks: this server against `mlflow models serve` on the same model, in one run (`make bench`)."""
