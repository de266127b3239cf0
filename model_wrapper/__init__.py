"""The pyfunc side of registry-serve: a scikit-learn classifier packaged as an MLflow model.

This package knows MLflow's model format and scikit-learn, and nothing of HTTP or the server.
The server imports it; it never imports the server.
"""

from model_wrapper.classifier import Prediction, SklearnClassifierModel
from model_wrapper.contract import FEATURE_COUNT, FEATURE_NAMES, output_columns
from model_wrapper.description import ModelDescription
from model_wrapper.export import log_classifier, save_classifier

__all__ = [
    "FEATURE_COUNT",
    "FEATURE_NAMES",
    "ModelDescription",
    "Prediction",
    "SklearnClassifierModel",
    "log_classifier",
    "output_columns",
    "save_classifier",
]
