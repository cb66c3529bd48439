#!/usr/bin/env bash
# `make mutate`: mutation testing of the domain core and the security files with mutmut, each
# file against the tests that target it. Not part of `make test` (hours, all of it).
#   make mutate                    every module below, in turn
#   make mutate FILE=inventory     one module (its files in turn); `make mutate FILE=list` lists
#   MUTATE_BUDGET=900 make mutate FILE=intake   seconds per file (default 1200); a file whose
#                                  budget ran out goes on where it stopped at the next run
# mutmut mutates files in place, so run it in a clean checkout you are not editing (the script
# refuses a dirty tree, and puts a file back if mutmut is stopped mid-mutant). Survivors are
# listed in var/mutation/<file>.txt with their diffs in <file>.diff; each is either killed by a
# new test or written into tests/MUTATION.md as equivalent, with a one-line reason.
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
# The domain core (issue #28): each module against the tests that target it, SQLite only.
TESTS_INVENTORY="tests/api/test_boundaries.py tests/api/test_inventory.py tests/api/test_inventory_orders.py tests/api/test_stock_pools.py tests/api/test_returns.py tests/api/test_stock_counts.py tests/api/test_picking_lists.py"
TESTS_INTAKE="tests/api/test_intake.py tests/api/test_reconciliation.py tests/api/test_escalation.py tests/unit/test_intake_digest.py"
TESTS_EVENTS="tests/integration/test_webhooks.py tests/integration/test_outbox.py tests/api/test_webhooks_api.py tests/api/test_order_events_query.py tests/api/test_event_completeness.py"
TESTS_CUSTOMERS="tests/api/test_customer_master.py tests/api/test_customer_merge.py tests/api/test_customer_cleanse.py tests/unit/test_customer_normalise.py"
TESTS_KPIS="tests/api/test_kpis.py"
TESTS_APPROVALS="tests/api/test_approvals.py tests/api/test_escalation.py tests/api/test_sign_cli.py"
# Issue #30: the walkers and the account service, and the reservation functions of the
# inventory service (its other functions are the `inventory` module's).
TESTS_INPUTS="tests/api/test_input_boundaries.py tests/api/test_hostile_inputs.py tests/api/test_limits.py tests/unit/test_cost.py"
TESTS_USERS="tests/api/test_login_rules.py tests/api/test_auth.py tests/api/test_user_admin.py tests/api/test_account_changes.py tests/api/test_limits.py -k 'login or account or password or lock or admin or user'"
TESTS_RESERVATIONS="tests/api/test_inventory.py tests/api/test_boundaries.py -k 'reserv or hold or expir or release or confirm or stock'"
RESERVATION_FUNCTIONS="_quantity _summed _digest _hold reserve _locked release confirm _movement_reference state_of _end expire_due _audit hold_for_order"
BUDGET=${MUTATE_BUDGET:-1200}

run() {
  local file=$1 tests=$2 name=${3:-} patch=${4:-} status
  [ -n "$name" ] || name=$(echo "${file%.py}" | tr / _)
  # Each file keeps its own mutmut cache, so a run cut short by the budget goes on from there.
  rm -f .mutmut-cache
  [ -f "$OUT/$name.cache" ] && cp "$OUT/$name.cache" .mutmut-cache
  echo "== $file against: $tests (budget ${BUDGET}s)"
  # SIGINT, not SIGTERM: mutmut puts the mutated file back on KeyboardInterrupt (and is killed
  # a minute later if its worker process hangs there, as mutmut 2 does).
  timeout -k 60 -s INT "$BUDGET" "$PY" -m mutmut run --paths-to-mutate "$file" \
    ${patch:+--use-patch-file "$patch"} \
    --runner "tests/mutation/runner.sh $tests" >>"$OUT/$name.log" 2>&1
  status=$?
  git checkout --quiet -- "$file"  # the tree was clean at the start: never leave a mutant
  cp .mutmut-cache "$OUT/$name.cache" 2>/dev/null || true
  [ "$status" = 124 ] && echo "   budget spent: run again to go on"
  "$PY" -m mutmut results >"$OUT/$name.txt" 2>&1
  # Each survivor's diff, for review against tests/MUTATION.md.
  "$PY" -m mutmut show all >"$OUT/$name.diff" 2>&1 || true
  tail -n 3 "$OUT/$name.txt"
}

MODULES="client_ip signatures chain limits access inventory intake events customers kpis approvals inputs users reservations"
case "${1:-all}" in
  client_ip|all) run api/client_ip.py "$TESTS_CLIENT_IP" ;;&
  signatures|all) run domain/approvals/signatures.py "$TESTS_SIGNATURES" ;;&
  chain|all) run domain/audit/chain.py "$TESTS_CHAIN" ;;&
  limits|all) run api/graphql/limits.py "$TESTS_LIMITS" ;;&
  access|all) run domain/access.py "$TESTS_ACCESS" ;;&
  inventory|all) run domain/inventory/service.py "$TESTS_INVENTORY" ;;&
  intake|all)
    for f in domain/intake/service.py domain/intake/reconciliation.py domain/intake/escalation.py; do
      run "$f" "$TESTS_INTAKE"
    done ;;&
  events|all)
    for f in domain/events/webhooks.py domain/events/service.py domain/events/feed.py; do
      run "$f" "$TESTS_EVENTS"
    done ;;&
  customers|all)
    for f in domain/customers/matching.py domain/customers/merging.py \
      domain/customers/cleanse.py domain/customers/service.py domain/customers/normalise.py; do
      run "$f" "$TESTS_CUSTOMERS"
    done ;;&
  kpis|all)
    for f in domain/kpis/service.py domain/kpis/rules.py; do run "$f" "$TESTS_KPIS"; done ;;&
  approvals|all) run domain/approvals/service.py "$TESTS_APPROVALS" ;;&
  inputs|all) run api/graphql/inputs.py "$TESTS_INPUTS" ;;&
  users|all) run domain/users/service.py "$TESTS_USERS" ;;&
  reservations|all)
    # shellcheck disable=SC2086
    "$PY" tests/mutation/only.py domain/inventory/service.py $RESERVATION_FUNCTIONS \
      >"$OUT/reservations.patch"
    run domain/inventory/service.py "$TESTS_RESERVATIONS" domain_inventory_reservations \
      "$OUT/reservations.patch" ;;&
  all) ;;
  list) echo "$MODULES" ;;
  *)
    case " $MODULES " in
      *" $1 "*) ;;
      *) echo "mutate: no module '$1'; one of: $MODULES" >&2; exit 2 ;;
    esac ;;
esac
rm -f .mutmut-cache
