# syntax=docker/dockerfile:1
# Two images from one file, both running docker-entrypoint.sh:
#   --target api   the model server: MLflow's client only (mlflow-skinny), no tracking server
#   --target full  adds the MLflow tracking server and the PostgreSQL driver: modes mlflow and train
# Dependencies install from constraints.txt, the same pins CI tests with. No compiler reaches
# either final image: everything is built in the `build` stages and copied as a virtualenv.

FROM python:3.11.11-slim-bookworm AS build-base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# The records reader (server/codecs/_records_reader.c) is compiled here; the compiler stays in
# this stage. Debian's stable gcc is the toolchain wanted, so its version is left to the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY constraints.txt setup.cfg setup.py pyproject.toml README.md ./
COPY model_wrapper ./model_wrapper
COPY server ./server
COPY registry_scripts ./registry_scripts

FROM build-base AS build-api
# Runtimes that need a library of their own (XGBoost, LightGBM) come as extras: name them to serve
# such models, e.g. --build-arg SERVE_EXTRAS=xgboost,lightgbm. Without them the image stays lean.
ARG SERVE_EXTRAS=""
RUN pip install --no-compile -c constraints.txt ".${SERVE_EXTRAS:+[$SERVE_EXTRAS]}"

FROM build-base AS build-full
# The trainer logs every flavour `registry_scripts.train --flavor` offers.
RUN pip install --no-compile -c constraints.txt ".[tracking,xgboost,lightgbm]"

FROM python:3.11.11-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app
COPY --chmod=0755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /home/app
EXPOSE 8000 5000
ENTRYPOINT ["docker-entrypoint.sh"]

FROM runtime AS full
COPY --from=build-full /opt/venv /opt/venv
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"MLFLOW_PORT\", \"5000\")}/health', timeout=2)"]
CMD ["mlflow"]

FROM runtime AS api
COPY --from=build-api /opt/venv /opt/venv
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"API_PORT\", \"8000\")}/health', timeout=2)"]
CMD ["api"]
