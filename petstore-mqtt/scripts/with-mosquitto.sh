#!/usr/bin/env bash
# Runs a command with a throw-away Mosquitto broker on a free loopback port and
# PETSTORE_TEST_MOSQUITTO_URL pointing at it, e.g.
#   petstore-mqtt/scripts/with-mosquitto.sh cargo test -p petstore-mqtt
# Needs Debian's `mosquitto` package (apt-get install -y mosquitto).
set -euo pipefail
bin=${PETSTORE_TEST_MOSQUITTO_BIN:-/usr/sbin/mosquitto}
[ -x "$bin" ] || { echo "no mosquitto at $bin: apt-get install -y mosquitto" >&2; exit 1; }
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
user root
log_dest file $dir/mosquitto.log
CONF
"$bin" -c "$dir/mosquitto.conf" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.1
done
export PETSTORE_TEST_MOSQUITTO_URL=mqtt://127.0.0.1:$port
echo "mosquitto on $PETSTORE_TEST_MOSQUITTO_URL" >&2
"$@"
