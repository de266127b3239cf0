"""The FastAPI front end: serves an MLflow pyfunc model pulled from the registry.

`create_app(settings)` in `server.app` builds the application; `python -m server` runs it.
"""
