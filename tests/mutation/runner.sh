#!/usr/bin/env bash
# mutmut 2 counts a mutant as killed only when the test command exits with 1 (failures); a
# mutant that breaks an import makes pytest exit with 2 (collection error), which mutmut would
# count as survived. Any non-zero exit is a kill.
"${PY:-.venv/bin/python}" -m pytest -x -q -p no:cacheprovider "$@" >/dev/null 2>&1
[ $? -eq 0 ] || exit 1
