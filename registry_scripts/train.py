"""Train a classifier on the breast-cancer data, log it, and register a new version.

    python -m registry_scripts.train                          # the wrapper, logistic regression
    python -m registry_scripts.train --model-type random_forest --promote
    python -m registry_scripts.train --if-no-champion         # idempotent bootstrap
    python -m registry_scripts.train --flavor sklearn --estimator random_forest [--autolog]
    python -m registry_scripts.train --flavor xgboost [--estimator booster]
    python -m registry_scripts.train --flavor lightgbm [--estimator booster]

`--flavor` picks how the model is logged: `wrapper` (this project's pyfunc wrapper, the default),
or MLflow's own `sklearn`, `xgboost` and `lightgbm` flavours, so each runtime of the server can be
tried; the last two need the `xgboost` and `lightgbm` extras. Estimators: logistic_regression,
random_forest, gradient_boosting for `wrapper` and `sklearn` (`--model-type` is the older name of
`--estimator` there); classifier (the scikit-learn API) or booster (a native Booster) for
`xgboost` and `lightgbm`. `--autolog` fits under `mlflow.sklearn.autolog` (sklearn only).

The alias (`champion`) moves to the new version when `--promote` is given or when no version
holds it yet; otherwise it stays where it is. Prints the new version number on stdout.

Every version's run also carries `reference_profile.json`, the profile of its training split
(`model_wrapper.reference_profile`) that drift is measured against.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence

import mlflow
from mlflow import MlflowClient

from model_wrapper.reference_profile import PROFILE_ARTIFACT
from registry_scripts import cli
from registry_scripts.config import DEFAULT_ALIAS, RegistrySettings
from registry_scripts.dataset import Dataset, load_dataset
from registry_scripts.estimators import BUILDERS
from registry_scripts.flavors import DEFAULT_FLAVOR, FLAVORS, MODEL_TYPE_FLAVORS, log_model, require_extra
from registry_scripts.flavors.common import reference_profile
from registry_scripts.registry import ModelRegistry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m registry_scripts.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--flavor",
        choices=list(FLAVORS),
        default=DEFAULT_FLAVOR,
        help="how the model is logged (default: %(default)s)",
    )
    parser.add_argument("--estimator", help="what is fitted; each flavour has its own (default: its first)")
    parser.add_argument(
        "--model-type", choices=sorted(BUILDERS), help="--estimator, for the wrapper and sklearn flavours"
    )
    parser.add_argument(
        "--autolog", action="store_true", help="fit under mlflow.sklearn.autolog (sklearn only)"
    )
    parser.add_argument("--promote", action="store_true", help="point the alias at the new version")
    parser.add_argument("--seed", type=int, default=42, help="split and estimator seed (default: 42)")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help="the serving alias (default: %(default)s)")
    parser.add_argument(
        "--if-no-champion",
        action="store_true",
        help="do nothing (and print the alias's version) when the alias is already set",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, with `estimator` resolved for the chosen flavour (usage errors exit 2)."""
    parser = _parser()
    args = parser.parse_args(argv)
    flavor = FLAVORS[args.flavor]
    if args.model_type is not None:
        if args.flavor not in MODEL_TYPE_FLAVORS:
            parser.error(f"argument --model-type: not for the {args.flavor} flavour; use --estimator")
        if args.estimator not in (None, args.model_type):
            parser.error("argument --model-type: names another estimator than --estimator")
        args.estimator = args.model_type
    if args.estimator is None:
        args.estimator = flavor.default_estimator
    if args.estimator not in flavor.estimators:
        choices = ", ".join(repr(e) for e in flavor.estimators)
        parser.error(f"argument --estimator: invalid choice: {args.estimator!r} (choose from {choices})")
    if args.autolog and flavor.autolog is None:
        parser.error(f"argument --autolog: not for the {args.flavor} flavour")
    return args


def register_version(
    data: Dataset, model_name: str, flavor: str, estimator: str, seed: int, *, autolog: bool = False
) -> str:
    """Fit, log and register one version in the active experiment; return its version number."""
    require_extra(flavor)
    params: dict[str, object] = {
        "flavor": flavor,
        "estimator": estimator,
        "seed": seed,
        "train_rows": len(data.x_train),
        "test_rows": len(data.x_test),
    }
    if flavor in MODEL_TYPE_FLAVORS:
        params["model_type"] = estimator  # the name older runs carry
    # MLflow prints run links on stdout; stdout carries only the version number.
    with contextlib.redirect_stdout(sys.stderr):
        with mlflow.start_run(run_name=f"{flavor}-{estimator}-seed{seed}"):
            mlflow.log_params(params)
            model_uri = log_model(data, flavor, estimator, seed, autolog=autolog)
            # Compact: mlflow.log_dict would indent it, one number per line.
            mlflow.log_text(
                json.dumps(reference_profile(data).to_dict(), separators=(",", ":")), PROFILE_ARTIFACT
            )
        registered = mlflow.register_model(model_uri, model_name)
    return str(registered.version)


def train_and_register(settings: RegistrySettings, args: argparse.Namespace) -> str:
    """Split the data by `args.seed`, then fit, log and register one version; its version number."""
    data = load_dataset(seed=args.seed)
    mlflow.set_experiment(settings.experiment_name)
    return register_version(
        data, settings.model_name, args.flavor, args.estimator, args.seed, autolog=args.autolog
    )


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
    version = train_and_register(settings, args)
    if args.promote or registry.alias_version(args.alias) is None:
        registry.promote(version, args.alias)
        print(f"{settings.model_name}@{args.alias} -> version {version}", file=sys.stderr)
    print(version)


if __name__ == "__main__":
    sys.exit(cli.run(main))
