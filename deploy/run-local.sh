#!/usr/bin/env bash
# pestid in its production shape on one machine: N `pestid serve` replicas on 127.0.0.1 behind Debian's nginx,
# configured from deploy/nginx/pestid.conf.template (the file an operator installs). The database, photo store,
# model registry and limits come from the environment, as each replica reads them (deploy/pestid.env.example);
# the launcher adds only what differs per replica: its port, its data folder and its operations port.
#
#   set -a; . deploy/pestid.env; set +a
#   deploy/run-local.sh --model models:/pestid@champion --replicas 3 --listen 8080
#
# Options:
#   --model M          what `pestid serve --model` takes (default: $PESTID_MODEL)
#   --replicas N       how many replicas (default 3), on ports --first-port, +1, … (default 8001)
#   --ports P1,P2,…    the replicas' ports instead
#   --ops-ports O1,…   each replica's operations port (/metrics); default: none
#   --workers W        uvicorn workers per replica (default 1)
#   --listen PORT      nginx's address (default 8080; 127.0.0.1 only)
#   --upload-rate R    uploads per client address through nginx (default 10r/s: the reasons are in the nginx file)
#   --run DIR          logs, pid files and the rendered nginx files (default: a new folder under /tmp)
# Ready when RUN/ready exists; RUN/replicas lists "index port pid" a line. Ctrl-C or SIGTERM stops everything.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

model="${PESTID_MODEL:-}" replicas=3 first_port=8001 ports="" ops_ports="" workers=1 listen=8080 rate="10r/s" run=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2" ;;
    --replicas) replicas="$2" ;;
    --first-port) first_port="$2" ;;
    --ports) ports="$2" ;;
    --ops-ports) ops_ports="$2" ;;
    --workers) workers="$2" ;;
    --listen) listen="$2" ;;
    --upload-rate) rate="$2" ;;
    --run) run="$2" ;;
    *) echo "unknown option $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift 2
done
[ -n "$model" ] || { echo "--model or PESTID_MODEL is required (a MODEL.onnx or models:/NAME@ALIAS)" >&2; exit 2; }
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx_bin" ] || { echo "nginx is not installed (scripts/setup-services.sh installs Debian's)" >&2; exit 3; }
command -v envsubst >/dev/null || { echo "envsubst is not installed (Debian's gettext-base)" >&2; exit 3; }
pestid_bin="${PESTID_BIN:-$(command -v pestid || echo "$here/../.venv/bin/pestid")}"
[ -n "$ports" ] || ports="$(seq -s, "$first_port" $((first_port + replicas - 1)))"
IFS=, read -r -a port_list <<<"$ports"
IFS=, read -r -a ops_list <<<"$ops_ports"
if [ "${#port_list[@]}" -gt 1 ]; then
  # Replicas share nothing but the database and the photo store. Only the URL's scheme is shown: it holds a password.
  case "${PESTID_DATABASE_URL:-}" in
    postgresql://* | postgresql+*://*) ;;
    "") echo "${#port_list[@]} replicas need one PostgreSQL database: set PESTID_DATABASE_URL=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB" \
          "(deploy/pestid.env.example), or run one replica" >&2; exit 2 ;;
    *) echo "${#port_list[@]} replicas need one PostgreSQL database, but PESTID_DATABASE_URL starts with" \
         "${PESTID_DATABASE_URL%%:*}:, not postgresql:" \
         "set PESTID_DATABASE_URL=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB" \
         "(deploy/pestid.env.example), or run one replica" >&2; exit 2 ;;
  esac
  case "${PESTID_PHOTO_STORE:-}" in
    s3://*) ;;
    *) echo "${#port_list[@]} replicas need one photo bucket: set PESTID_PHOTO_STORE=s3://BUCKET/PREFIX" \
         "(deploy/pestid.env.example), or run one replica" >&2; exit 2 ;;
  esac
fi
run="${run:-$(mktemp -d /tmp/pestid-local-XXXXXX)}"
mkdir -p "$run/nginx/logs" "$run/nginx/tmp"
rm -f "$run/ready" "$run/replicas"

pids=()
stop() {
  trap - EXIT INT TERM
  [ -f "$run/nginx/nginx.pid" ] && kill -QUIT "$(cat "$run/nginx/nginx.pid")" 2>/dev/null
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$run/ready"
}
trap stop EXIT
trap 'exit 0' INT TERM

# The replicas: nginx on 127.0.0.1 is the one proxy whose X-Forwarded-For they believe.
export PESTID_TRUSTED_PROXIES="${PESTID_TRUSTED_PROXIES:-127.0.0.1}"
upstream=""
for i in "${!port_list[@]}"; do
  port="${port_list[$i]}"
  mkdir -p "$run/replica-$i"
  PESTID_DATA_DIR="$run/replica-$i" PESTID_OPS_PORT="${ops_list[$i]:-0}" \
    "$pestid_bin" serve --model "$model" --host 127.0.0.1 --port "$port" --workers "$workers" \
    >"$run/replica-$i.log" 2>&1 &
  pids+=($!)
  echo "$i $port $!" >>"$run/replicas"
  upstream+="server 127.0.0.1:$port max_fails=1 fail_timeout=10s; "
done
for i in "${!port_list[@]}"; do
  until curl -fsS -o /dev/null "http://127.0.0.1:${port_list[$i]}/readyz" 2>/dev/null; do
    kill -0 "${pids[$i]}" 2>/dev/null || { echo "replica $i exited:" >&2; tail -20 "$run/replica-$i.log" >&2; exit 1; }
    sleep 0.5
  done
done

# nginx, from the shipped template.
export PESTID_UPSTREAM_SERVERS="$upstream" PESTID_LISTEN="127.0.0.1:${listen#*:}" PESTID_NGINX_LOGS="$run/nginx/logs" \
  PESTID_NGINX_UPLOAD_RATE="$rate" PESTID_NGINX_USER=""
[ "$(id -u)" -eq 0 ] && PESTID_NGINX_USER="user $(id -un) $(id -gn);"  # workers that can write the run folder
envsubst '${PESTID_UPSTREAM_SERVERS} ${PESTID_LISTEN} ${PESTID_NGINX_LOGS} ${PESTID_NGINX_UPLOAD_RATE}' \
  <"$here/nginx/pestid.conf.template" >"$run/nginx/pestid.conf"
envsubst '${PESTID_NGINX_USER}' <"$here/nginx/local.conf.template" >"$run/nginx/nginx.conf"
"$nginx_bin" -t -q -p "$run/nginx" -c "$run/nginx/nginx.conf" -e "$run/nginx/logs/error.log"
"$nginx_bin" -p "$run/nginx" -c "$run/nginx/nginx.conf" -e "$run/nginx/logs/error.log" -g "daemon off;" &
pids+=($!)
until curl -fsS -o /dev/null "http://$PESTID_LISTEN/readyz" 2>/dev/null; do
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "nginx exited:" >&2; tail -20 "$run/nginx/logs/error.log" >&2; exit 1; }
  sleep 0.2
done
touch "$run/ready"
echo "pestid on http://$PESTID_LISTEN: ${#port_list[@]} replicas behind nginx; logs and pids in $run"
wait
