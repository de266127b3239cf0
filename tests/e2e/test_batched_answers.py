"""Under concurrent load, however the requests are micro-batched together, every answer is exactly
the pyfunc model's answer for that row: the whole dataset, one row per request, 16 at a time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import mlflow
import pandas as pd

from registry_scripts.dataset import load_frame
from registry_scripts.processes import ServerProcess
from tests.server.metrics_text import sample

ROWS = load_frame()[0]


def test_concurrent_single_rows_equal_pyfunc_predict_on_the_whole_dataset(
    api_server: ServerProcess, champion_uri: str
) -> None:
    expected = mlflow.pyfunc.load_model(champion_uri).predict(ROWS)
    columns = list(ROWS.columns)

    def ask(i: int) -> tuple[dict, dict]:
        row = {k: float(v) for k, v in ROWS.iloc[i].items()}
        split = {"dataframe_split": {"columns": columns, "data": [list(row.values())]}}
        with httpx.Client(base_url=api_server.url, timeout=30) as client:
            predicted = client.post("/predict", json=row)
            invoked = client.post("/invocations", json=split)
        assert predicted.status_code == invoked.status_code == 200
        return predicted.json(), invoked.json()["predictions"][0]

    before = httpx.get(f"{api_server.url}/metrics").text
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, range(len(ROWS))))
    after = httpx.get(f"{api_server.url}/metrics").text

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    # Every row went through exactly one model call. How many calls were merged depends on how
    # the requests happened to arrive, so it is not asserted here: that concurrent requests share a
    # call, each getting exactly its own rows, is proven without timing in
    # tests/server/test_batching.py and tests/e2e/test_documented_behaviour.py.
    requests = 2 * len(ROWS)
    assert delta("batch_size_sum", kind="model_call") == requests

    predicted = pd.DataFrame(
        {
            "prediction": [a["prediction"] for a, _ in answers],
            "label": [a["label"] for a, _ in answers],
            "probability_malignant": [a["probabilities"]["malignant"] for a, _ in answers],
            "probability_benign": [a["probabilities"]["benign"] for a, _ in answers],
        }
    )
    invoked = pd.DataFrame([b for _, b in answers])
    pd.testing.assert_frame_equal(predicted, expected, check_exact=True)
    pd.testing.assert_frame_equal(invoked, expected, check_exact=True)
