#!/usr/bin/env bash
# definitions.sh — definitions files both ways between Warren and a reference RabbitMQ.
#
# 1. Warren's export (written by tests/definitions.rs export_then_import_round_trips to
#    target/tmp/warren-export.json) is imported into a throw-away RabbitMQ 3.10 node
#    (`rabbitmqctl import_definitions`); its users log in there with their passwords
#    (hashes made by Warren: SHA-256, SHA-512, MD5) and the queues, exchanges,
#    bindings, policies, operator policy and vhost limits are listed.
# 2. That node's own export (`rabbitmqctl export_definitions`) boots Warren
#    (`warren --definitions FILE`), and the same users log in to Warren.
# Needs: rabbitmq-server (Debian), python3-pika. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --release --test definitions export_then_import_round_trips -q >/dev/null
export_file=target/tmp/warren-export.json
[[ -f $export_file ]] || { echo "no $export_file" >&2; exit 1; }

uri=$(interop/rabbitmq-ref 2>/dev/null)
port=${uri##*:}; port=${port%%/*}
trap 'interop/rabbitmq-ref stop "$port" 2>/dev/null || true; [[ -n ${warren_pid:-} ]] && kill "$warren_pid" 2>/dev/null || true' EXIT
ctl() { interop/rabbitmq-ref ctl "$port" "$@"; }

tmp=$(mktemp -d)
cp "$export_file" "$tmp/warren.json"
ctl import_definitions "$tmp/warren.json"
sleep 2 # the import is asynchronous
for what in "list_users" "list_vhosts name description tags" \
    "list_queues -p shop name durable arguments" "list_exchanges -p shop name type durable" \
    "list_bindings -p shop source_name destination_name routing_key" \
    "list_policies -p shop" "list_operator_policies -p shop" "list_vhost_limits -p shop"; do
  # shellcheck disable=SC2086
  ctl $what
done

login() { # PORT: the three users of the export log in to vhost shop
  python3 - "$1" <<'PY'
import sys, pika
port = sys.argv[1]
bad = 0
for user, pw in [("plain", "plain-pw"), ("sha512", "sha512-pw"), ("old-md5", "md5-pw")]:
    try:
        c = pika.BlockingConnection(pika.URLParameters(f"amqp://{user}:{pw}@127.0.0.1:{port}/shop"))
        c.channel().queue_declare("orders", passive=True)
        c.close()
        print(f"{user}: logs in, queue orders exists")
    except Exception as e:
        bad += 1
        print(f"{user}: FAILED {e!r}")
sys.exit(bad)
PY
}
echo "== Warren's export in RabbitMQ"
login "$port"

echo "== RabbitMQ's export in Warren"
ctl export_definitions "$tmp/rabbitmq.json" >/dev/null
wport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/warren --listen "127.0.0.1:$wport" --data-dir "$tmp/data" \
  --definitions "$tmp/rabbitmq.json" --log-level warn &
warren_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$wport") 2>/dev/null && break; sleep 0.1; done
login "$wport"
echo "definitions.sh: both directions import"
