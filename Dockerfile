# ordergate in production mode: `docker compose up` (compose.yaml) runs it beside PostgreSQL.
# The image holds the installed wheel only (policies and GraphiQL assets are package data).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY domain ./domain
COPY policies ./policies
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/ordergate-*.whl

FROM python:3.11-slim
RUN useradd --uid 10001 --create-home --home-dir /var/lib/ordergate ordergate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels ordergate && rm -rf /wheels
USER ordergate
ENV ORDERGATE_ENV=production \
    ORDERGATE_DATA_DIR=/var/lib/ordergate \
    ORDERGATE_WORKERS=2 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
# Liveness; readiness (database reachable and migrated) is /readyz.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
# Migrations first (idempotent; serve refuses an unmigrated database), then the app processes.
CMD ["sh", "-c", "ordergate migrate && exec ordergate serve --host 0.0.0.0 --port 8000 --workers \"$ORDERGATE_WORKERS\""]
