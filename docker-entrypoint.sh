#!/bin/sh
# The images' one entry point. Mode from the first argument, else SERVE_API=true (the seed's
# switch) for api, else MODE, else api:
#   api     the model server (python -m server): MODEL_URI, MLFLOW_TRACKING_URI, API_HOST (0.0.0.0),
#           API_PORT, ...
#   mlflow  the tracking server: MLFLOW_BACKEND_STORE_URI (e.g. PostgreSQL), MLFLOW_ARTIFACTS_DESTINATION,
#           MLFLOW_HOST (0.0.0.0), MLFLOW_PORT (5000), MLFLOW_WORKERS (2), MLFLOW_ALLOWED_HOSTS
#   train   train and promote the default model unless the registry already has @champion
#           (idempotent); with WEBHOOK_URL set, also register the MLflow webhook for it
# Long-running modes `exec`, so signals reach the process itself.
set -eu

mode="${1:-}"
if [ -z "$mode" ]; then
    if [ "${SERVE_API:-}" = "true" ]; then mode=api; else mode="${MODE:-api}"; fi
else
    shift
fi

case "$mode" in
    api)
        # Outside a container the server binds 127.0.0.1 unless told otherwise; in one, loopback
        # would be unreachable from the port mapping and the orchestrator's probes.
        API_HOST="${API_HOST:-0.0.0.0}"
        export API_HOST
        exec python -m server "$@"
        ;;
    mlflow)
        if ! python -c "import mlflow.server" 2>/dev/null; then
            echo "docker-entrypoint.sh: mode 'mlflow' needs the tracking server, which this image lacks (build --target full)" >&2
            exit 78
        fi
        : "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI, e.g. postgresql://user:password@postgres:5432/mlflow}"
        : "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION, e.g. /mlflow/artifacts}"
        set -- --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
            --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
            --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" \
            --workers "${MLFLOW_WORKERS:-2}" "$@"
        if [ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]; then set -- "$@" --allowed-hosts "$MLFLOW_ALLOWED_HOSTS"; fi
        exec mlflow server "$@"
        ;;
    train)
        : "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the tracking server}"
        python -m registry_scripts.train --if-no-champion "$@"
        if [ -n "${WEBHOOK_URL:-}" ]; then
            python -m registry_scripts.webhook --url "$WEBHOOK_URL"
        fi
        ;;
    *)
        echo "docker-entrypoint.sh: unknown mode '$mode': use api, mlflow or train" >&2
        exit 64
        ;;
esac
