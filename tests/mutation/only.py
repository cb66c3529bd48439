"""Print a unified diff that marks only the named functions of a file as added, for
`mutmut run --use-patch-file`: mutmut then mutates those lines and no others.

    python tests/mutation/only.py domain/inventory/service.py reserve release confirm … > p
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def main(path: str, names: list[str]) -> None:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    wanted = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names
    ]
    missing = set(names) - {node.name for node in wanted}
    if missing:
        raise SystemExit(f"{path}: no top-level function {', '.join(sorted(missing))}")
    out = [f"--- a/{path}", f"+++ b/{path}"]
    for node in sorted(wanted, key=lambda n: n.lineno):
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = node.end_lineno or node.lineno
        body = lines[start - 1 : end]
        out.append(f"@@ -{start - 1},0 +{start},{len(body)} @@")
        out.extend(f"+{line}" for line in body)
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
