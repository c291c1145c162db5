# Likeness Studio on NVIDIA GPUs: README.md's "With Docker" says how to run it (a login, volumes, --shm-size).
# A plain Debian Python: the torch wheel brings its own CUDA runtime and the NVIDIA Container Toolkit mounts the host's
# driver at run time, so a CUDA base image would add only an unused CUDA and a driver floor of its own.
FROM python:3.11-slim-bookworm

# compute: the CUDA driver library; utility: nvidia-smi. The toolkit mounts only what these ask for.
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1

# The code and its .venv, installed by the script ./start.sh runs (as root here, it adds the Debian libraries OpenCV
# loads), owned by root: the studio runs them as its own user and cannot change them.
WORKDIR /opt/studio
COPY requirements.txt requirements-dev.txt ./
COPY scripts/install.sh scripts/install.sh
RUN scripts/install.sh && rm -rf /var/lib/apt/lists/*
COPY . .

# The user's folders live apart from the code, so a models/ mounted at /app/models never hides the builtins shipped
# in /opt/studio/models/builtin/ (the store reads both: studio/models/builtin.py's SHIPPED_DIR).
RUN groupadd --gid 1000 studio \
    && useradd --create-home --uid 1000 --gid 1000 studio \
    && mkdir -p /app/models /app/workspace /app/huggingface \
    && chown 1000:1000 /app /app/models /app/workspace /app/huggingface
ENV STUDIO_ROOT=/app HF_HOME=/app/huggingface PYTHONPATH=/opt/studio PATH=/opt/studio/.venv/bin:$PATH
VOLUME ["/app/models", "/app/workspace", "/app/huggingface"]
WORKDIR /app
USER 1000:1000

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=8)"]
# It serves on every address, so it starts only with a login (an --auth-file, $STUDIO_AUTH) or --no-auth: arguments
# given to `docker run ... likeness-studio` come after these.
ENTRYPOINT ["python", "/opt/studio/app.py", "--host", "0.0.0.0", "--port", "7860"]
