#!/usr/bin/env bash
# WebSocket endpoint smoke check with standard tools: the original framework's --bash test.
#
#   scripts/ws_smoke.sh [WS_URL]        (default: $WS_URL, else ws://localhost:9000/ws)
#   wsload test --bash [--ws-url URL]   (the same, shipped with wsload)
#
# 1. curl sends the opening handshake and must get "101 Switching Protocols"
#    with the Sec-WebSocket-Accept that RFC 6455 requires for our key;
# 2. a JSON round trip through `wsload test --integration` (wsload on PATH,
#    or WSLOAD=/path/to/wsload).
# Exit code: 0 both passed, 1 a check failed, 2 bad usage or a missing tool.
set -uo pipefail

url=${1:-${WS_URL:-ws://localhost:9000/ws}}
wsload=${WSLOAD:-wsload}
for tool in curl openssl base64 "$wsload"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "ws_smoke: missing tool: $tool" >&2; exit 2; }
done
case "$url" in
  ws://*) http_url="http://${url#ws://}" ;;
  wss://*) http_url="https://${url#wss://}" ;;
  *) echo "ws_smoke: not a ws:// or wss:// URL: $url" >&2; exit 2 ;;
esac

key=$(head -c 16 /dev/urandom | base64)
expected=$(printf '%s' "${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11" | openssl dgst -binary -sha1 | base64)
# --max-time: after a 101 the server keeps the connection open; we only need the head.
head=$(curl -s -i -N --http1.1 --max-time 3 \
  -H "Connection: Upgrade" -H "Upgrade: websocket" \
  -H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: $key" \
  "$http_url" 2>/dev/null | tr -d '\r' | sed '/^$/q')
status=$(printf '%s\n' "$head" | head -n 1)
accept=$(printf '%s\n' "$head" | sed -n 's/^[Ss]ec-[Ww]eb[Ss]ocket-[Aa]ccept: *//p')

if [[ "$status" != *" 101"* ]]; then
  echo "FAIL handshake: expected HTTP 101 from $http_url, got: ${status:-no answer}"
  exit 1
fi
if [[ "$accept" != "$expected" ]]; then
  echo "FAIL handshake: Sec-WebSocket-Accept is '$accept', expected '$expected'"
  exit 1
fi
echo "PASS handshake: 101 Switching Protocols with the right Sec-WebSocket-Accept"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
if "$wsload" test --integration --ws-url "$url" >"$out" 2>&1; then
  echo "PASS round trip: a JSON message came back intact"
  exit 0
fi
echo "FAIL round trip:"
sed 's/^/  /' "$out"
exit 1
