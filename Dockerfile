# syntax=docker/dockerfile:1.7
# Three images from one file, each a target:
#   docker build --target server   -t zhizhi-server .     (the default: the last stage)
#   docker build --target edge     -t zhizhi-edge .
#   docker build --target training -t zhizhi-training .
# Each is built in a builder stage (a virtual environment from the lock file, every package
# checked against its sha256, then the project itself without dependencies) and copied into a
# slim runtime stage that runs as an unprivileged user. Model weights are never baked in: mount
# a folder of ONNX files and set ZHIZHI_MODEL_DIR. tests/integration/test_images.py installs
# exactly what each builder copies, from the same lock, into a clean venv and runs the entry
# point, so a file the image lacks fails CI (there is no Docker daemon there).
#
# The base, pinned by digest: python:3.11-slim-bookworm, the multi-platform index (amd64,
# arm64). Check it before a release (docker buildx imagetools inspect python:3.11-slim-bookworm)
# and move it forward on purpose; it was not pulled on the machine that wrote this file.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:b18992999dbe963a45a8a4da40ac2b1975be1a776d939d098c647482bcad5cba

# --- builders ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder-base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/zhizhi
WORKDIR /src

FROM builder-base AS edge-builder
COPY requirements/edge.lock requirements/edge.lock
RUN /opt/zhizhi/bin/pip install --require-hashes --no-deps -r requirements/edge.lock
COPY pyproject.toml README.md ./
COPY common common
COPY zhizhi zhizhi
COPY edge edge
COPY models/registry.yaml models/README.md models/
RUN /opt/zhizhi/bin/pip install --no-deps . && mkdir -p /opt/zhizhi/models \
    && cp models/registry.yaml /opt/zhizhi/models/

FROM builder-base AS server-builder
COPY requirements/server.lock requirements/server.lock
RUN /opt/zhizhi/bin/pip install --require-hashes --no-deps -r requirements/server.lock
COPY pyproject.toml README.md ./
COPY common common
COPY zhizhi zhizhi
COPY server server
RUN /opt/zhizhi/bin/pip install --no-deps .

FROM builder-base AS training-builder
COPY requirements/training.lock requirements/training.lock
RUN /opt/zhizhi/bin/pip install --require-hashes --no-deps -r requirements/training.lock
COPY pyproject.toml README.md ./
COPY common common
COPY zhizhi zhizhi
COPY edge edge
COPY training training
COPY models/registry.yaml models/README.md models/
RUN /opt/zhizhi/bin/pip install --no-deps . && mkdir -p /opt/zhizhi/models \
    && cp models/registry.yaml /opt/zhizhi/models/

# --- runtimes ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/zhizhi/bin:$PATH
RUN useradd --uid 10001 --user-group --home-dir /data --create-home zhizhi
WORKDIR /data

FROM runtime AS edge
COPY --from=edge-builder /opt/zhizhi /opt/zhizhi
ENV ZHIZHI_MODEL_DIR=/models ZHIZHI_MODEL_REGISTRY=/opt/zhizhi/models/registry.yaml
VOLUME ["/models", "/data"]
USER 10001
# The box's /metrics answers while its supervisor runs (edge run --metrics-listen).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=4)"]
ENTRYPOINT ["zhizhi"]
CMD ["edge", "run", "--config", "/data/site.yaml", "--evidence-dir", "/data/evidence", "--outbox", "/data/outbox.sqlite"]

FROM runtime AS training
COPY --from=training-builder /opt/zhizhi /opt/zhizhi
ENV ZHIZHI_MODEL_DIR=/models ZHIZHI_MODEL_REGISTRY=/opt/zhizhi/models/registry.yaml \
    YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR=/data/.ultralytics
VOLUME ["/models", "/data"]
USER 10001
ENTRYPOINT ["zhizhi"]
CMD ["--help"]

# The server is configured by ZHIZHI_* variables (server/settings.py ENV_NAMES; docs/deploy.md):
# give every replica a stable ZHIZHI_MQTT_CLIENT_ID and point ZHIZHI_DB_URL at PostgreSQL.
FROM runtime AS server
COPY --from=server-builder /opt/zhizhi /opt/zhizhi
ENV ZHIZHI_HOST=0.0.0.0 ZHIZHI_PORT=8080 ZHIZHI_DB_URL=sqlite:////data/zhizhi.db \
    ZHIZHI_MEDIA_DIR=/data/media
VOLUME ["/data"]
EXPOSE 8080
USER 10001
# /healthz: 200 when the database, the broker and MQTT ingestion answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ZHIZHI_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["zhizhi"]
CMD ["server"]
