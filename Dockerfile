# Likeness Studio for NVIDIA GPUs: docker run --gpus all -p 7860:7860 -v $PWD/models:/app/models -v $PWD/workspace:/app/workspace likeness-studio
FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# Ubuntu's point releases of these move under a pin; the Python packages that matter are pinned in requirements.txt.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-dev.txt ./
COPY scripts/install.sh scripts/install.sh
RUN scripts/install.sh

COPY . .
RUN mkdir -p models workspace
VOLUME ["/app/models", "/app/workspace"]
EXPOSE 7860
CMD [".venv/bin/python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
