# Sourced by `make test`: use the machine's PostgreSQL and Redis when they answer, as CI does,
# so a developer's run exercises the same races; say so either way. Variables already set win.
if [ -z "${ORDERGATE_TEST_DATABASE_URL:-}" ]; then
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q -t 2; then
    ORDERGATE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres
    export ORDERGATE_TEST_DATABASE_URL
    echo "make test: PostgreSQL answers at 127.0.0.1:5432; its tests run there"
  else
    echo "make test: no PostgreSQL at 127.0.0.1:5432; its tests are skipped (set ORDERGATE_TEST_DATABASE_URL)"
  fi
else
  echo "make test: PostgreSQL tests use ORDERGATE_TEST_DATABASE_URL"
fi
if [ -z "${ORDERGATE_TEST_REDIS_URL:-}" ]; then
  if command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    ORDERGATE_TEST_REDIS_URL=redis://127.0.0.1:6379/15
    export ORDERGATE_TEST_REDIS_URL
    echo "make test: Redis answers at 127.0.0.1:6379; its tests use databases 15 and below"
  else
    echo "make test: no Redis at 127.0.0.1:6379; its tests are skipped (set ORDERGATE_TEST_REDIS_URL)"
  fi
fi
