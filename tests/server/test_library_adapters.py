"""The private parts of starlette, MLflow and uvicorn the server relies on, each used through one
adapter module: these tests fail, with the adapter's name, when an upgrade moves or changes one.
"""

from __future__ import annotations

import inspect
import signal
from io import BytesIO, StringIO

import numpy as np
import pandas as pd
from mlflow.models import Model
from mlflow.models.signature import ModelSignature

from model_wrapper.contract import input_schema
from server.codecs import mlflow_scoring
from server.edge.route_path import route_path
from server.process import uvicorn_adapter


def test_route_path_drops_the_root_path_a_proxy_mounted_the_app_under() -> None:
    scope = {"type": "http", "path": "/serving/predict", "root_path": "/serving"}
    assert route_path(scope) == "/predict"
    assert route_path({"type": "http", "path": "/predict", "root_path": ""}) == "/predict"


def test_mlflow_parses_a_json_body_into_a_frame_and_params() -> None:
    schema = input_schema(("a", "b"))
    metadata = Model(signature=ModelSignature(inputs=schema))
    document = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}, "params": {"k": 1}}
    parsed = mlflow_scoring.parse_json_data(document, metadata, schema)
    pd.testing.assert_frame_equal(parsed.data, pd.DataFrame({"a": [1.0], "b": [2.0]}))
    assert parsed.params == {"k": 1}


def test_mlflow_parses_csv_and_parquet_bodies() -> None:
    frame = mlflow_scoring.parse_csv_input(StringIO("a,b\n1.5,2\n"), None)
    assert frame.to_dict(orient="records") == [{"a": 1.5, "b": 2}]
    buffer = BytesIO()
    pd.DataFrame({"a": [1.0]}).to_parquet(buffer)
    buffer.seek(0)
    assert mlflow_scoring.parse_parquet_input(buffer).to_dict(orient="records") == [{"a": 1.0}]


def test_mlflow_encodes_outputs_as_its_scoring_server_does() -> None:
    assert mlflow_scoring.jsonable(pd.DataFrame({"x": [1, 2]})) == [{"x": 1}, {"x": 2}]
    out = StringIO()
    mlflow_scoring.write_predictions(np.array([np.float32(0.1), np.nan], dtype=np.float32), out)
    assert out.getvalue() == '{"predictions": [0.10000000149011612, NaN]}'


def test_uvicorn_reports_a_worker_that_could_not_start_with_exit_status_3() -> None:
    assert uvicorn_adapter.STARTUP_FAILURE == 3


def test_uvicorns_supervisor_hands_its_sockets_to_each_worker_and_lists_them() -> None:
    """`WorkerSupervisor` overrides `keep_subprocess_alive` and reads `processes`; worker sockets
    (`ReusePortSockets`) rely on each worker receiving the supervisor's socket list."""
    parameters = list(inspect.signature(uvicorn_adapter.Multiprocess.__init__).parameters)
    assert parameters[:3] == ["self", "config", "sockets"]
    assert callable(uvicorn_adapter.Multiprocess.keep_subprocess_alive)
    assert "Process(self.config, self.sockets)" in inspect.getsource(
        uvicorn_adapter.Multiprocess.init_processes
    )
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:  # the supervisor installs its signal handlers as it is made
        supervisor = uvicorn_adapter.Multiprocess(uvicorn_adapter.Config("server.app:app", workers=2), [])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert supervisor.processes == []
    assert uvicorn_adapter.worker_pids(supervisor) == set()


def test_mlflow_builds_a_pyfunc_model_from_metadata_and_an_implementation(tmp_path) -> None:
    """`server.live.mlflow_models` builds the `PyFuncModel` of an skops-stored scikit-learn model
    itself, as `mlflow.pyfunc.load_model` builds every other."""
    from mlflow.pyfunc import PyFuncModel

    parameters = list(inspect.signature(PyFuncModel.__init__).parameters)
    assert parameters[:4] == ["self", "model_meta", "model_impl", "predict_fn"]
    assert "model_id" in parameters

    class Doubles:
        def predict(self, data, params=None):
            return data * 2

    model = PyFuncModel(model_meta=Model(), model_impl=Doubles(), predict_fn="predict", model_id=None)
    model.input_example = pd.DataFrame({"a": [1.0]})
    assert model.predict(pd.DataFrame({"a": [1.0]}))["a"].tolist() == [2.0]
    assert model.input_example is not None
