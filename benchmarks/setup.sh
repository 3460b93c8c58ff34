#!/usr/bin/env bash
# Install the runtimes benchmarks/compare.py drives, next to (never into) the main venv:
#   benchmarks/.venv-peers       bullmq (py), SAQ, RQ, streaq, chasquimq   requirements-peers.txt
#   benchmarks/.venv-peers-arq   arq (its redis<6 pin clashes with the rest) requirements-peers-arq.txt
#   benchmarks/node/node_modules BullMQ for Node                          node/package-lock.json
# The harness itself runs from the main venv (.venv) and needs matplotlib there for the chart.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
for pair in ".venv-peers:requirements-peers.txt" ".venv-peers-arq:requirements-peers-arq.txt"; do
  venv=${pair%%:*}; req=${pair##*:}
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$req"
done
(cd node && npm ci --no-audit --no-fund)
if [ -x ../.venv/bin/pip ]; then ../.venv/bin/pip install -q matplotlib; fi
echo "ok: peers installed; now: python -m benchmarks.compare --quick"
