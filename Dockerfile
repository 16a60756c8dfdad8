# A small image that runs the web process as a non-root user; the data directory is a volume.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md wsgi.py ./
COPY common ./common
COPY functions ./functions
COPY jobs ./jobs
RUN pip install --no-cache-dir --prefix=/install ".[postgres]"

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    DATA_DIR=/data \
    PORT=8001 \
    APP_ENV=production
COPY --from=build /install /usr/local
WORKDIR /app
COPY wsgi.py ./
COPY common ./common
COPY functions ./functions
COPY jobs ./jobs
RUN useradd --system --uid 10001 --home-dir /app parley \
    && mkdir -p /data && chown parley:parley /data
USER parley
VOLUME ["/data"]
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/api/settings/health', timeout=4)"
# Same command as the Procfile's web entry; run `python -m jobs` in a second container for the clock.
CMD ["sh", "-c", "exec gunicorn --config python:common.gunicorn_config --worker-class gevent --bind 0.0.0.0:${PORT} wsgi:app"]
