# vqa-chat: the web app and HTTP API on port 7860, and the Telegram and Discord bots whose tokens
# are set, in one process (python main.py with PORT set).
#   docker build -t vqa-chat .                                    # CPU-only torch (the default)
#   docker build --build-arg TORCH_INDEX_URL= -t vqa-chat .       # PyPI's torch, with CUDA
#   docker run -p 7860:7860 -v vqa-data:/data --env-file .env vqa-chat
FROM python:3.11-slim

# Where torch and torchvision come from: with the CPU-only wheels the install is 1.5 GB instead of
# 6.3 GB with CUDA's (benchmarks/install_size.py). Empty: PyPI's (CUDA) wheels, for a GPU host.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HOME=/data/huggingface \
    PREDICTION_LOG=/data/predictions.jsonl \
    PORT=7860

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app

COPY requirements.txt ./
# torch and torchvision first (at requirements.txt's versions), so that the full install finds
# them satisfied instead of fetching PyPI's CUDA build
RUN if [ -n "${TORCH_INDEX_URL}" ]; then \
        grep -E '^(torch|torchvision)==' requirements.txt | xargs pip install --index-url "${TORCH_INDEX_URL}"; \
    fi \
    && pip install -r requirements.txt

# the code, owned by root: the service cannot change it
COPY . .

RUN groupadd --gid 1000 vqa \
    && useradd --create-home --uid 1000 --gid 1000 vqa \
    && mkdir -p /data/huggingface \
    && chown -R vqa:vqa /data
USER 1000:1000

# the Hugging Face cache (models from the Hub) and the prediction log survive restarts
VOLUME ["/data"]
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('WEB_PORT') or os.environ.get('PORT') or '7860'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# SIGTERM (docker stop): answers what was received for up to SHUTDOWN_TIMEOUT_S, then exits 0
CMD ["python", "main.py"]
