# Two images from one file:  docker build --target edge -t zhizhi-edge .
#                            docker build --target server -t zhizhi-server .
# Model weights are not baked in: mount a folder of ONNX files and set ZHIZHI_MODEL_DIR.
FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY zhizhi ./zhizhi

FROM base AS edge
COPY edge ./edge
COPY models/registry.yaml models/README.md ./models/
RUN pip install ".[edge]" && useradd --uid 10001 --no-create-home zhizhi
ENV ZHIZHI_MODEL_DIR=/models
VOLUME ["/models", "/data"]
USER 10001
ENTRYPOINT ["zhizhi"]
CMD ["edge", "run", "--config", "/data/site.yaml", "--evidence-dir", "/data/evidence"]

FROM base AS server
COPY server ./server
RUN pip install ".[server]" && useradd --uid 10001 --no-create-home zhizhi
USER 10001
ENTRYPOINT ["zhizhi"]
CMD ["--help"]
