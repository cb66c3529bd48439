#!/usr/bin/env bash
# `make mutate`: mutation testing of the security core with mutmut, each file against the tests
# that exercise it. Not part of `make test` (it takes tens of minutes). mutmut mutates files in
# place, so run it in a clean checkout you are not editing (the script refuses a dirty tree).
# Survivors are listed in var/mutation/<file>.txt; each is either killed by a new test or
# written into tests/MUTATION.md as equivalent, with a one-line reason.
set -u
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=var/mutation
mkdir -p "$OUT"
export PY
# No bytecode caches: a mutant of the same size written within the same second as the
# original would otherwise run the original's cached bytecode.
export PYTHONDONTWRITEBYTECODE=1
find api domain -name __pycache__ -type d -prune -exec rm -rf {} +
if [ -n "$(git status --porcelain --untracked-files=no -- api domain 2>/dev/null)" ]; then
  echo "mutate: api/ or domain/ has uncommitted changes; mutmut edits files in place" >&2
  exit 2
fi

TESTS_CLIENT_IP="tests/unit/test_guard_branches.py tests/unit/test_rules.py"
TESTS_SIGNATURES="tests/unit/test_guard_branches.py tests/api/test_approvals.py"
TESTS_CHAIN="tests/unit/test_audit_chain.py tests/unit/test_guard_branches.py tests/integration/test_audit_chain.py"
TESTS_LIMITS="tests/unit/test_cost.py tests/api/test_limits.py tests/api/test_observability.py"
# The whole-table test stands in for its 1,000 parametrised twins, so a surviving mutant costs
# seconds, not a minute.
TESTS_ACCESS="tests/unit/test_rules.py tests/unit/test_policy.py tests/api/test_sensitive_reads.py -k 'not test_compiled_access_matches_the_table'"

run() {
  local file=$1 tests=$2 name
  name=$(basename "$file" .py)
  rm -f .mutmut-cache
  echo "== $file against: $tests"
  "$PY" -m mutmut run --paths-to-mutate "$file" \
    --runner "tests/mutation/runner.sh $tests" >"$OUT/$name.log" 2>&1
  "$PY" -m mutmut results >"$OUT/$name.txt" 2>&1
  # Each survivor's diff, for review against tests/MUTATION.md.
  "$PY" -m mutmut show all >"$OUT/$name.diff" 2>&1 || true
  tail -n 3 "$OUT/$name.txt"
}

case "${1:-all}" in
  client_ip|all) run api/client_ip.py "$TESTS_CLIENT_IP" ;;&
  signatures|all) run domain/approvals/signatures.py "$TESTS_SIGNATURES" ;;&
  chain|all) run domain/audit/chain.py "$TESTS_CHAIN" ;;&
  limits|all) run api/graphql/limits.py "$TESTS_LIMITS" ;;&
  access|all) run domain/access.py "$TESTS_ACCESS" ;;&
  *) ;;
esac
rm -f .mutmut-cache
