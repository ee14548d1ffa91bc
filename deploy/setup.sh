#!/usr/bin/env bash
# Certificates for the compose deployment and one node file per node, holding the
# coordinator's fingerprint. Run from anywhere; needs `splitmesh` (make venv) on PATH or in
# .venv. Pass --force to replace existing certificates.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sm="${SPLITMESH:-$here/../.venv/bin/splitmesh}"
file="${SPLITMESH_DATA_FILE:-creditcard.csv}"  # its name inside $SPLITMESH_DATA
parties=coordinator,payments,cardholder,security,fraud-labels
"$sm" certs init --out "$here/certs" --parties "$parties" --hosts localhost,127.0.0.1 "$@"
fp="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["coordinator"])' \
      "$here/certs/fingerprints.json")"
node() {  # name role data
  sed -e "s|^name: NAME|name: $1|" -e "s|^role: ROLE|role: $2|" -e "s|^data: DATA|data: $3|" \
      -e "s|\[FINGERPRINT\]|[$fp]|" -e '1d' "$here/nodes/template.yaml" > "$here/nodes/$1.yaml"
}
node payments domain "{path: /data/$file, columns: [Time, V1, V2, V3, V4, V5, V6, V7, V8, V9]}"
node cardholder domain "{path: /data/$file, columns: [V10, V11, V12, V13, V14, V15, V16, V17, V18, V19]}"
node security domain "{path: /data/$file, columns: [V20, V21, V22, V23, V24, V25, V26, V27, V28, Amount]}"
node fraud-labels label-owner "{path: /data/$file, label: Class}"
mkdir -p "$here/out"
echo "wrote $here/certs and $here/nodes/*.yaml"
