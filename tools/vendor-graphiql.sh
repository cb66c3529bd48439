#!/usr/bin/env bash
# Refresh the GraphiQL assets served from the package (api/static/graphiql/vendor): npm pack
# the pinned versions, copy the built files and licences, strip source-map comments, print
# the digests to paste into vendor/README.md. Needs npm and the npm registry.
set -euo pipefail
REACT=18.2.0
GRAPHIQL=3.8.3
DEST="$(cd "$(dirname "$0")/.." && pwd)/api/static/graphiql/vendor"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack --silent "react@$REACT" "react-dom@$REACT" "graphiql@$GRAPHIQL" >/dev/null
for f in *.tgz; do mkdir -p "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done
cp "react-$REACT/package/umd/react.production.min.js" "$DEST/"
cp "react-dom-$REACT/package/umd/react-dom.production.min.js" "$DEST/"
cp "graphiql-$GRAPHIQL/package/graphiql.min.js" "graphiql-$GRAPHIQL/package/graphiql.min.css" "$DEST/"
cp "react-$REACT/package/LICENSE" "$DEST/LICENSE.react"
cp "react-dom-$REACT/package/LICENSE" "$DEST/LICENSE.react-dom"
cp "graphiql-$GRAPHIQL/package/LICENSE" "$DEST/LICENSE.graphiql"
sed -i 's|/\*# sourceMappingURL=[^*]*\*/||; s|//# sourceMappingURL=.*$||' \
  "$DEST/graphiql.min.js" "$DEST/graphiql.min.css"
cd "$DEST" && sha256sum ./*.js ./*.css | sed 's|\./||'
