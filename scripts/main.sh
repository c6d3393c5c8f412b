#!/usr/bin/env bash
# The main job on a fresh machine, on embedded defaults (local files, SQLite,
# a local MLflow store): set up, make sample data, import, group and split,
# check for leaks, then train, evaluate, export and serve.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PESTID=.venv/bin/pestid
DATA=${PESTID_DATA_DIR:-data}

echo "== 1. sample data, made by pestid itself"
$PESTID data sample --out "$DATA/sample"
echo "== 2. import, group near-duplicates, split, check, stats"
$PESTID data import datasets/sample.yaml --root "$DATA/sample" --out "$DATA/manifests/sample-source.csv"
$PESTID data split "$DATA/manifests/sample-source.csv" --out "$DATA/manifests/sample.csv"
$PESTID data check "$DATA/manifests/sample.csv"
$PESTID data stats "$DATA/manifests/sample.csv"
echo "== 3. train the smoke config (tracked in the local MLflow store: sqlite:///mlflow.db, mlruns/)"
$PESTID train --config training/configs/smoke.yaml --data "$DATA/manifests/sample.csv" --out runs/smoke resume=false
if [ -f ../shared/datasets/ricepest6/manifest.csv ]; then
  echo "== 3b. the default model on the real photos in ../shared: merge the four sources, partial fine-tune and two held-out-source trainings (~20 min)"
  bash scripts/merge_shared.sh
  $PESTID train --config training/configs/default.yaml --data "$DATA/manifests/merged.csv" --out runs/default
fi
echo "== 4. export again by hand (train already exported runs/smoke/model.onnx) with its INT8 offline copy, evaluate, predict"
$PESTID export runs/smoke --out artifacts/model.onnx --int8
$PESTID evaluate --model artifacts/model.onnx --data "$DATA/manifests/sample.csv" --split test --out artifacts/evaluation
$PESTID predict --model artifacts/model.onnx "$DATA"/sample/golden_apple_snail/golden_apple_snail-000-0.jpg
echo "== 5. serve: the API and the farmer's page (photos and the SQLite database under \$PESTID_DATA_DIR)"
export PESTID_DATA_DIR="$DATA/serving"
PORT=${PESTID_PORT:-8000}
MODEL=artifacts/model.onnx
[ -f runs/default/model.onnx ] && MODEL=runs/default/model.onnx
$PESTID serve --model "$MODEL" --port "$PORT" --workers 2 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fsS -X POST "http://127.0.0.1:$PORT/v1/identify" -H "Accept-Language: vi" \
  -F "photos=@$DATA/sample/brown_planthopper/brown_planthopper-000-0.jpg" -F commune="Phú Tân"
echo
curl -fsS "http://127.0.0.1:$PORT/v1/offline/manifest" -o /dev/null && echo "offline model: $(basename "${MODEL%.onnx}").int8.onnx"
echo "Serving at http://127.0.0.1:$PORT/ (farmer page) — Ctrl-C to stop."
if [ "${PESTID_MAIN_KEEP_SERVING:-1}" = "1" ] && [ -t 0 ]; then wait $SERVER; fi
