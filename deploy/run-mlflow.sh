#!/usr/bin/env bash
# The MLflow tracking server and model registry that `pestid train` logs to, `pestid promote` moves @champion in and
# every `pestid serve --model models:/pestid@champion` replica loads from. Runs, metrics and the registry are rows in
# PostgreSQL; models, plots and reports are objects in an S3-compatible bucket. The server proxies the artefacts
# (--serve-artifacts), so trainers and replicas need only its URL, never the bucket's keys.
#
#   set -a; . /etc/pestid-mlflow.env; set +a          # from deploy/mlflow.env.example
#   deploy/run-mlflow.sh                              # extra arguments go to `mlflow server`
#
# Settings, from the environment (`mlflow server` reads each of these names itself; nothing here is per host):
#   MLFLOW_BACKEND_STORE_URI      postgresql+psycopg://USER:PASSWORD@HOST:5432/mlflow  (required)
#   MLFLOW_ARTIFACTS_DESTINATION  s3://BUCKET/PREFIX                                   (required)
#   MLFLOW_S3_ENDPOINT_URL        the store's S3 address (SeaweedFS, MinIO, Ceph); unset for AWS S3
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION   the bucket's keys (boto3 reads them)
#   MLFLOW_SERVER_ALLOWED_HOSTS   the Host names clients use, e.g. mlflow.internal:5000 (default: localhost and
#                                 private IP addresses only; any other name is refused with 403)
#   MLFLOW_HOST (127.0.0.1), MLFLOW_PORT (5000), MLFLOW_WORKERS (2)
# The database URL and its password stay in the environment: never on the command line, where `ps` shows them.
# Ctrl-C or SIGTERM stops the server and its workers.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ -z "${MLFLOW_BACKEND_STORE_URI:-}" ] || [ -z "${MLFLOW_ARTIFACTS_DESTINATION:-}" ]; then
  echo "set MLFLOW_BACKEND_STORE_URI (postgresql+psycopg://…/mlflow) and MLFLOW_ARTIFACTS_DESTINATION" \
    "(s3://BUCKET/PREFIX): see deploy/mlflow.env.example. Without them MLflow keeps everything on this host." >&2
  exit 2
fi
case "$MLFLOW_ARTIFACTS_DESTINATION" in
  s3://*) [ -n "${AWS_ACCESS_KEY_ID:-}" ] || echo "warning: AWS_ACCESS_KEY_ID is not set; boto3 looks elsewhere" >&2 ;;
esac
mlflow_bin="${MLFLOW_BIN:-$(command -v mlflow || echo "$here/../.venv/bin/mlflow")}"
[ -x "$mlflow_bin" ] || { echo "mlflow is not installed: pip install 'pestid[registry]'" >&2; exit 3; }
export MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACTS_DESTINATION

exec "$mlflow_bin" server --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-2}" --serve-artifacts "$@"
