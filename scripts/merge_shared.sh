#!/usr/bin/env bash
# Import the four shared photo datasets (read from ../shared at run time, never copied), group and split
# each, then merge them into one dataset version: data/manifests/merged.csv. About a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PESTID=.venv/bin/pestid
OUT=${PESTID_DATA_DIR:-data}/manifests
for name in ricepest6 ricedisease4 ricepest-extra nonrice; do
  $PESTID data import "datasets/$name.yaml" --out "$OUT/$name-source.csv" >/dev/null
  $PESTID data split "$OUT/$name-source.csv" --out "$OUT/$name.csv" >/dev/null
done
# --collapse: IP102's striped/yellow stem borers and rice water weevils join ricepest6's stem_borers and
# weevils groups, whose photos mix those species.
$PESTID data merge "$OUT"/{ricepest6,ricedisease4,ricepest-extra,nonrice}.csv --collapse --out "$OUT/merged.csv"
$PESTID data check "$OUT/merged.csv"
