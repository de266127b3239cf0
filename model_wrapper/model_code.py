"""Models-from-code entry point: MLflow runs this file to build the pyfunc model on load.

Why models-from-code rather than a pickled `python_model` or `code_paths`:
- no pickle anywhere in the logged model: MLflow 3 refuses to unpickle a `python_model` unless
  `MLFLOW_ALLOW_PICKLE_DESERIALIZATION` is set, and a pickle runs arbitrary code on load;
- the class comes from the installed `model_wrapper` package, so a loading process needs this
  package installed (the server and our images always have it);
- `code_paths` would prepend an old copy of `model_wrapper` to `sys.path` of a long-running
  server that hot-swaps versions, shadowing the installed one; this file imports it instead.
"""

from mlflow.models import set_model

from model_wrapper.classifier import SklearnClassifierModel

set_model(SklearnClassifierModel())
