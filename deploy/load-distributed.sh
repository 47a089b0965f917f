#!/usr/bin/env bash
# Run a distributed load: the coordinator here, workers on HOSTS over ssh.
#
#   make load-distributed HOSTS="load1 load2" WORKERS_PER_HOST=4 COORDINATOR=10.0.0.5 \
#       ARGS="--ws-url ws://svc:9000/ws -c 20000 -d 60 --header 'Authorization: Bearer x'"
#   HOSTS="load1 load2" COORDINATOR=10.0.0.5 deploy/load-distributed.sh -- --ws-url ...
#
# Settings come from the environment (make passes its command-line variables on):
#   HOSTS             worker hosts as ssh reaches them, [user@]host, space-separated (required)
#   COORDINATOR       this machine's address (name, IPv4 or [IPv6]) as the workers see it (required)
#   WORKERS_PER_HOST  worker processes per host, 1-256 (default: this machine's core count)
#   PORT              the coordinator's port (default 5555); it binds every interface, with keys
#   KEYS              CURVE key directory, generated here when missing (default keys)
#   REMOTE_KEYS       that directory on the hosts (default: KEYS; relative = from the login
#                     directory): copy it there without coordinator.key_secret
#   WSLOAD            wsload here (default wsload; make puts its venv first on PATH)
#   REMOTE_WSLOAD     wsload on the hosts: a name on their PATH or a path (default wsload)
#   HELLO_TIMEOUT     seconds a worker waits for the coordinator, 1-3600 (default 120)
#   SSH_CONFIG        ssh client config file (ssh -F): identity, known hosts, host aliases
#   ARGS              coordinator options, split into words by the shell's quoting rules
#                     ('single', "double", backslash) and never expanded: $ ` ~ * are literal
#                     (through make, write $$ for a $).
# Arguments after -- on this script's command line are appended to ARGS unchanged.
#
# Every value sent to a remote shell is single-quoted; numbers and names are checked
# first (each problem on one line, exit 2, before anything starts). ssh runs in batch
# mode (keys, no password prompts) with a terminal, so a worker whose ssh session ends
# (this script stopped, the coordinator failed) is hung up at once instead of waiting
# for a coordinator. Workers run with --once: they leave when the run ends.
# Ctrl-C, SIGTERM and SIGHUP are handed to the coordinator, which ends the run and
# reports; the exit code is the coordinator's.
set -euo pipefail

case ${1:-} in
  -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  --) shift ;;
esac

problems=()
problem() { problems+=("load-distributed: $*"); }

# A number in [low, high], checked as text first: never evaluated by the shell.
number() { # name value low high
  if [[ ! $2 =~ ^[0-9]{1,6}$ ]] || ((10#$2 < $3 || 10#$2 > $4)); then
    problem "$1 must be a whole number from $3 to $4 (got '$2')"
    return 1
  fi
}

HOSTS=${HOSTS:-}
COORDINATOR=${COORDINATOR:-}
WORKERS_PER_HOST=${WORKERS_PER_HOST:-$(nproc)}
PORT=${PORT:-5555}
KEYS=${KEYS:-keys}
REMOTE_KEYS=${REMOTE_KEYS:-$KEYS}
WSLOAD=${WSLOAD:-wsload}
REMOTE_WSLOAD=${REMOTE_WSLOAD:-wsload}
HELLO_TIMEOUT=${HELLO_TIMEOUT:-120}
SSH_CONFIG=${SSH_CONFIG:-}

# host names, IPv4 and IPv6 literals; never a leading "-" (ssh would take it as an option)
name_re='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$'
ipv6_re='^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$'
user_re='^[A-Za-z0-9_][A-Za-z0-9._-]*$'

read -r -d "" -a hosts <<<"$HOSTS" || true  # every line, not the first
if [ ${#hosts[@]} -eq 0 ]; then
  problem 'HOSTS is not set: the worker hosts, e.g. HOSTS="load1 load2"'
fi
for host in "${hosts[@]}"; do
  name=$host valid=1
  if [[ $host == *@* ]]; then
    name=${host#*@}
    [[ ${host%%@*} =~ $user_re ]] || valid=0
  fi
  [[ $name =~ $name_re || $name =~ $ipv6_re ]] || valid=0
  [ "$valid" = 1 ] || problem "HOSTS: '$host' is not [user@]host"
done
if [ -z "$COORDINATOR" ]; then
  problem 'COORDINATOR is not set: this machine'"'"'s address as the workers see it'
elif [[ ! $COORDINATOR =~ $name_re ]] && [[ ! $COORDINATOR =~ ^\[[0-9A-Fa-f:.]+\]$ ]]; then
  problem "COORDINATOR: '$COORDINATOR' is not a host name, an IPv4 address or an [IPv6] address"
fi
if number WORKERS_PER_HOST "$WORKERS_PER_HOST" 1 256 &&
  ((${#hosts[@]} * 10#$WORKERS_PER_HOST > 10000)); then
  problem "at most 10000 workers in all (${#hosts[@]} hosts x $WORKERS_PER_HOST)"
fi
number PORT "$PORT" 1 65535 || true
number HELLO_TIMEOUT "$HELLO_TIMEOUT" 1 3600 || true
for setting in KEYS REMOTE_KEYS WSLOAD REMOTE_WSLOAD; do
  value=${!setting}
  if [ -z "$value" ] || [[ $value == -* ]] || [[ $value =~ [[:cntrl:]] ]]; then
    problem "$setting: '$value' is not a usable path (empty, leading '-' or a control character)"
  fi
done
if [ -n "$SSH_CONFIG" ] && [ ! -r "$SSH_CONFIG" ]; then
  problem "SSH_CONFIG: cannot read '$SSH_CONFIG'"
fi

# ARGS: words split as by the shell (POSIX quoting rules); $ and ` are plain characters.
split_words() { # text -> the array "words"; fails naming an unterminated quote
  local text=$1 word='' quote='' c next i=0 have=0
  words=()
  while ((i < ${#text})); do
    c=${text:i:1} next=${text:i+1:1}
    if [ "$quote" = "'" ]; then
      if [ "$c" = "'" ]; then quote=''; else word+=$c; fi
    elif [ "$quote" = '"' ]; then
      if [ "$c" = '"' ]; then
        quote=''
      elif [ "$c" = "\\" ] && [[ $next == [\"\\\$\`] ]]; then
        word+=$next i=$((i + 1))
      elif [ "$c" = "\\" ] && [ "$next" = $'\n' ]; then
        i=$((i + 1))
      else
        word+=$c
      fi
    else
      case $c in
        "'" | '"') quote=$c have=1 ;;
        "\\") if [ "$next" != $'\n' ]; then word+=$next have=1; fi; i=$((i + 1)) ;;
        ' ' | $'\t' | $'\n') if ((have)); then words+=("$word"); fi; word='' have=0 ;;
        *) word+=$c have=1 ;;
      esac
    fi
    i=$((i + 1))
  done
  if [ "$quote" = "'" ]; then echo "unmatched single quote"; return 1; fi
  if [ -n "$quote" ]; then echo "unmatched double quote"; return 1; fi
  if ((have)); then words+=("$word"); fi
}
args=()
if ! split_error=$(split_words "${ARGS:-}"); then
  problem "ARGS: $split_error"
else
  split_words "${ARGS:-}"
  args=("${words[@]}")
fi
args+=("$@")
for arg in "${args[@]}"; do
  case $arg in
    --bind | --bind=* | --keys | --keys=* | --expect-workers | --expect-workers=* | --insecure)
      problem "ARGS: $arg is set by this script (PORT, KEYS, HOSTS x WORKERS_PER_HOST)" ;;
  esac
done

if [ ${#problems[@]} -gt 0 ]; then
  printf '%s\n' "${problems[@]}" >&2
  exit 2
fi

# POSIX single quotes: safe in any remote login shell (sh, bash, zsh; printf %q is bash-only).
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
remote="exec"
for word in "$REMOTE_WSLOAD" worker --connect "tcp://$COORDINATOR:$PORT" --keys "$REMOTE_KEYS" \
  --processes "$WORKERS_PER_HOST" --once --hello-timeout "$HELLO_TIMEOUT"; do
  remote+=" $(quote "$word")"
done
ssh_options=(-tt -o BatchMode=yes -o ConnectTimeout=10)
if [ -n "$SSH_CONFIG" ]; then ssh_options=(-F "$SSH_CONFIG" "${ssh_options[@]}"); fi

[ -f "$KEYS/coordinator.key_secret" ] || "$WSLOAD" keys generate "$KEYS"

pids=()
coordinator=
# shellcheck disable=SC2317  # called by the traps
cleanup() {
  local pid
  for pid in "${pids[@]}" $coordinator; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" $coordinator; do wait "$pid" 2>/dev/null || true; done
}
# shellcheck disable=SC2317
forward() { # signal, exit code when there is no coordinator yet
  if [ -n "$coordinator" ]; then kill -s "$1" "$coordinator" 2>/dev/null || true; else exit "$2"; fi
}
trap cleanup EXIT
trap 'forward INT 130' INT
trap 'forward TERM 143' TERM
trap 'forward TERM 129' HUP

# Job control while starting: each ssh session and the coordinator get a process group of
# their own, so Ctrl-C or a `timeout` signal reaches this script alone, which hands it to
# the coordinator: it stops the run, collects the workers' last counters and reports,
# and the workers leave; only then are the sessions closed.
set -m
for host in "${hosts[@]}"; do
  ssh "${ssh_options[@]}" -- "$host" "$remote" </dev/null &
  pids+=($!)
done
"$WSLOAD" coordinator --bind "tcp://0.0.0.0:$PORT" --keys "$KEYS" \
  --expect-workers $((${#hosts[@]} * 10#$WORKERS_PER_HOST)) "${args[@]}" </dev/null &
coordinator=$!
set +m

# `wait` returns early when a trap runs; the last wait on an ended process gives its status.
while true; do
  status=0
  wait "$coordinator" || status=$?
  if ! kill -0 "$coordinator" 2>/dev/null; then
    status=0
    wait "$coordinator" || status=$?
    break
  fi
done
coordinator=

# The workers leave after the coordinator's goodbye; give their sessions 15 s to end
# (none when the coordinator refused its options: no worker was ever told anything).
[ "$status" = 2 ] && exit 2
for _ in $(seq 150); do
  running=0
  for pid in "${pids[@]}"; do if kill -0 "$pid" 2>/dev/null; then running=1; fi; done
  [ "$running" = 0 ] && break
  sleep 0.1
done
exit "$status"
