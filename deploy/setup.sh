#!/usr/bin/env bash
# Certificates for the compose deployment, the fraud mesh file as the containers see it
# (fraud.yaml for the nodes; coordinator.yaml adds the network) and one node file per node,
# holding the coordinator's fingerprint. Run from anywhere; needs `splitmesh` (make venv) on
# PATH or in .venv. Pass --force to replace existing certificates.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sm="${SPLITMESH:-$here/../.venv/bin/splitmesh}"
# its name inside $SPLITMESH_DATA: a creditcard.csv with a leading index column (the key),
# as the real subset has and as `splitmesh fraud --data` writes under OUT/data
file="${SPLITMESH_DATA_FILE:-creditcard.csv}"
parties=coordinator,payments,cardholder,security,fraud-labels
"$sm" certs init --out "$here/certs" --parties "$parties" --hosts localhost,127.0.0.1 "$@"
fp="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["coordinator"])' \
      "$here/certs/fingerprints.json")"
sed -e "s|'../../../shared/data/creditcard/creditcard_1722.csv'|'/data/$file'|" \
    -e "s|\[../../../shared/data/creditcard\]|[/data]|" \
    "$here/../examples/fraud/mesh.yaml" > "$here/fraud.yaml"
{ cat "$here/fraud.yaml"; echo "transport:"; sed -e '/^#/d' -e 's/^/  /' "$here/mesh.yaml"; } \
  > "$here/coordinator.yaml"
for name in payments cardholder security fraud-labels; do
  sed -e "s|^name: NAME|name: $name|" -e "s|domain: NAME|domain: $name|" \
      -e "s|\[FINGERPRINT\]|[$fp]|" -e '1d' "$here/nodes/template.yaml" > "$here/nodes/$name.yaml"
done
mkdir -p "$here/out"
echo "wrote $here/certs, fraud.yaml, coordinator.yaml and $here/nodes/*.yaml"
