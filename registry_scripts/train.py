"""Train a classifier on the breast-cancer data, log it, and register a new version.

    python -m registry_scripts.train                          # logistic regression
    python -m registry_scripts.train --model-type random_forest --promote
    python -m registry_scripts.train --if-no-champion         # idempotent bootstrap

The alias (`champion`) moves to the new version when `--promote` is given or when no version
holds it yet; otherwise it stays where it is. Prints the new version number on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

import mlflow
from mlflow import MlflowClient
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from model_wrapper import log_classifier
from registry_scripts import cli
from registry_scripts.config import DEFAULT_ALIAS, RegistrySettings
from registry_scripts.dataset import Dataset, load_dataset
from registry_scripts.estimators import BUILDERS, DEFAULT_MODEL_TYPE, build_estimator
from registry_scripts.registry import ModelRegistry

INPUT_EXAMPLE_ROWS = 5


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m registry_scripts.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-type", choices=sorted(BUILDERS), default=DEFAULT_MODEL_TYPE)
    parser.add_argument("--promote", action="store_true", help="point the alias at the new version")
    parser.add_argument("--seed", type=int, default=42, help="split and estimator seed (default: 42)")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help="the serving alias (default: %(default)s)")
    parser.add_argument(
        "--if-no-champion",
        action="store_true",
        help="do nothing (and print the alias's version) when the alias is already set",
    )
    return parser.parse_args(argv)


def evaluate(estimator: ClassifierMixin, data: Dataset) -> dict[str, float]:
    """The five held-out metrics every version carries."""
    features = data.x_test.to_numpy(dtype=float)
    predicted = estimator.predict(features)
    positive = estimator.predict_proba(features)[:, 1]
    return {
        "accuracy": float(accuracy_score(data.y_test, predicted)),
        "f1": float(f1_score(data.y_test, predicted)),
        "precision": float(precision_score(data.y_test, predicted)),
        "recall": float(recall_score(data.y_test, predicted)),
        "roc_auc": float(roc_auc_score(data.y_test, positive)),
    }


def train_and_register(settings: RegistrySettings, model_type: str, seed: int) -> str:
    """Fit, log and register one version; return its version number."""
    data = load_dataset(seed=seed)
    estimator = build_estimator(model_type, seed)
    # Fitted on a bare array: the server's fast path predicts from arrays in feature order, and
    # the feature names travel in the model's description rather than inside the estimator.
    estimator.fit(data.x_train.to_numpy(dtype=float), data.y_train.to_numpy())
    mlflow.set_experiment(settings.experiment_name)
    # MLflow prints run links on stdout; stdout carries only the version number.
    with contextlib.redirect_stdout(sys.stderr), mlflow.start_run(run_name=f"{model_type}-seed{seed}"):
        mlflow.log_params(
            {
                "model_type": model_type,
                "seed": seed,
                "train_rows": len(data.x_train),
                "test_rows": len(data.x_test),
            }
        )
        mlflow.log_metrics(evaluate(estimator, data))
        info = log_classifier(
            estimator,
            class_names=data.class_names,
            input_example=data.x_test.head(INPUT_EXAMPLE_ROWS),
            registered_model_name=settings.model_name,
        )
    if info.registered_model_version is None:
        raise cli.CliError("the model was logged but no registered version was created")
    return str(info.registered_model_version)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = RegistrySettings()
    if settings.mlflow_tracking_uri:
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    registry = ModelRegistry(MlflowClient(settings.mlflow_tracking_uri), settings.model_name)
    if args.if_no_champion:
        existing = registry.alias_version(args.alias)
        if existing is not None:
            print(
                f"{settings.model_name}@{args.alias} is version {existing}; nothing to train", file=sys.stderr
            )
            print(existing)
            return
    version = train_and_register(settings, args.model_type, args.seed)
    if args.promote or registry.alias_version(args.alias) is None:
        registry.promote(version, args.alias)
        print(f"{settings.model_name}@{args.alias} -> version {version}", file=sys.stderr)
    print(version)


if __name__ == "__main__":
    sys.exit(cli.run(main))
