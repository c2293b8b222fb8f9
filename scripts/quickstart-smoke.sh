#!/usr/bin/env bash
# Run the README's quick start exactly as the README writes it, the way a new user would: in a throw-away
# copy of this checkout (its own fresh .venv and ./mailgate-data), without any extras, on a free port.
# Succeeds once /healthz answers; fails when the install or the server breaks, or nothing answers in time.
#
# Why: the test extras install things the runtime needs but does not declare (Playwright pulled in greenlet,
# which SQLAlchemy's asyncio needs), so a suite run in the test venv cannot see such a defect; this can.
# The command is read from the README so that the two cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."

# The first ```sh block under "## Quick start".
cmd=$(awk '/^## Quick start/ {in_section=1; next}
           in_section && /^## / {exit}
           in_section && /^```sh/ {in_block=1; next}
           in_block && /^```/ {exit}
           in_block {print}' README.md)
if [ -z "$cmd" ] || [ "$(printf '%s\n' "$cmd" | wc -l)" -ne 1 ] || [[ "$cmd" != *"mailgate serve"* ]]; then
  echo "!! quick start: expected one command line ending in 'mailgate serve' in the README's Quick start, got:" >&2
  printf '%s\n' "$cmd" >&2
  exit 1
fi

work=$(mktemp -d /tmp/mailgate-quickstart.XXXXXX)
pgid=""
cleanup() {
  if [ -n "$pgid" ] && kill -0 -- "-$pgid" 2>/dev/null; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The checkout's files as they are now (tracked and new, not ignored: no .venv, no mailgate-data).
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - 2>/dev/null | tar -xf - -C "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log="$work/quickstart.log"
echo "== quick start, as in the README, in $work on port $port:"
echo "   $cmd --port $port"

# A clean environment for it: none of this shell's MAILGATE_* settings or virtual environment.
for name in $(compgen -e | grep -E '^(MAILGATE_|VIRTUAL_ENV$|PYTHONPATH$)' || true); do unset "$name"; done
# setsid: the command and everything it starts form one process group, stopped together at the end.
(cd "$work" && exec setsid bash -c "$cmd --port $port") >"$log" 2>&1 &
pgid=$!

fail() {
  echo "!! quick start failed: $1. Its output (last 40 lines):" >&2
  tail -n 40 "$log" >&2
  exit 1
}

# Installing needs the package registry and may take a while on a fresh machine (bounded: 15 minutes).
for _ in $(seq 1 1800); do
  [ -x "$work/.venv/bin/mailgate" ] && break
  kill -0 "$pgid" 2>/dev/null || fail "it exited before installing mailgate"
  sleep 0.5
done
[ -x "$work/.venv/bin/mailgate" ] || fail "mailgate was not installed within 15 minutes"

# Then the server must answer /healthz within 90 seconds.
healthy=""
for _ in $(seq 1 180); do
  if python3 - "$port" <<'EOF' 2>/dev/null; then healthy=yes; break; fi
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=2) as answer:
    sys.exit(0 if json.load(answer).get("database") == "ok" else 1)
EOF
  kill -0 "$pgid" 2>/dev/null || fail "the server exited"
  sleep 0.5
done
[ -n "$healthy" ] || fail "/healthz did not answer within 90 seconds"
grep -q "password of user 'admin' is" "$log" || fail "the first start did not print the admin password"
echo "== quick start: /healthz answered on port $port"
