#!/usr/bin/env bash
# A real Spark standalone cluster on 127.0.0.1 from the pip pyspark install: 1 master, N workers.
#
#   scripts/standalone-cluster.sh start DIR [WORKERS]   # prints the master URL when all registered
#   scripts/standalone-cluster.sh stop DIR              # stops exactly the daemons started in DIR
#
# DIR holds the pid files, logs, worker dirs and `master-url`. Needs Java 17+ and python with pyspark.
# Each worker offers 1 core and WORKER_MEMORY (default 2g) to executors.
set -euo pipefail
cmd=${1:?usage: $0 start|stop DIR [WORKERS]}
dir=${2:?usage: $0 start|stop DIR [WORKERS]}
workers=${3:-2}
python=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
SPARK_HOME=$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1
export SPARK_LOG_DIR="$dir/logs" SPARK_PID_DIR="$dir/pids" SPARK_IDENT_STRING=recsys
daemon="$SPARK_HOME/sbin/spark-daemon.sh"
MASTER=org.apache.spark.deploy.master.Master
WORKER=org.apache.spark.deploy.worker.Worker

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

case "$cmd" in
start)
  mkdir -p "$SPARK_LOG_DIR" "$SPARK_PID_DIR"
  port=$(free_port); ui=$(free_port)
  bash "$daemon" start $MASTER 1 --host 127.0.0.1 --port "$port" --webui-port "$ui" >/dev/null
  url="spark://127.0.0.1:$port"
  for n in $(seq 1 "$workers"); do
    mkdir -p "$dir/worker-$n"
    SPARK_WORKER_DIR="$dir/worker-$n" bash "$daemon" start $WORKER "$n" --host 127.0.0.1 --cores 1 --memory "${WORKER_MEMORY:-2g}" \
      --webui-port "$(free_port)" --work-dir "$dir/worker-$n" "$url" >/dev/null
  done
  for _ in $(seq 1 120); do  # wait until every worker has registered with the master
    alive=$("$python" - "$ui" <<'PY' 2>/dev/null || echo 0
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2)).get("aliveworkers", 0))
PY
)
    if [ "$alive" -ge "$workers" ]; then
      echo "$url" > "$dir/master-url"; echo "$ui" > "$dir/master-webui-port"; echo "$url"; exit 0
    fi
    sleep 1
  done
  echo "error: only $alive of $workers workers registered with $url within 120 s; logs in $SPARK_LOG_DIR" >&2
  exit 1 ;;
stop)
  for f in "$SPARK_PID_DIR"/spark-recsys-${WORKER}-*.pid; do
    [ -e "$f" ] || continue
    n=${f##*-}; n=${n%.pid}
    bash "$daemon" stop $WORKER "$n" >/dev/null || true
  done
  bash "$daemon" stop $MASTER 1 >/dev/null || true ;;
*) echo "usage: $0 start|stop DIR [WORKERS]" >&2; exit 2 ;;
esac
