from fastapi.testclient import TestClient

def test_probe(client: TestClient) -> None:
    for body in [b'{"percent": 101}', b'{"mode": "sideways-MARK"}', b'{"extra-MARK": 1}', b'not json MARK', b'{"percent": 1e300}', b'{"percent": "MARK"}', b'[]', b'{"percent": NaN}', b'{"percent": Infinity}', b'{"percent": 1e400}', b'']:
        r = client.put("/model/variants", content=body, headers={"content-type": "application/json"})
        print(body, r.status_code, r.text)
    r = client.put("/model/variants", content=b'{"percent": 5}')
    print("no ct", r.status_code, r.text)
    r = client.put("/model/variants", json={"percent": 5})
    print("ok", r.status_code, r.text, dict(r.headers))
    print(client.get("/model/variants").json())
