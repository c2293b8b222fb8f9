#!/usr/bin/env bash
# Install everything the tests need and run them: the README's quick start (scripts/quickstart-smoke.sh),
# lint, types, the whole suite.
# Used as-is by CI (.ci/run) and by the README's quick start.  Run as root on Debian to get the
# system packages (Chromium for the browser tests, PostgreSQL for the scale-out tests) installed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
command -v msmtp >/dev/null 2>&1 || need_apt+=(msmtp)  # the relay tests drive it (issue 22)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)  # the README walkthrough test runs its curl commands
{ [ -x /usr/sbin/dovecot ] && [ -e /usr/lib/dovecot/submission ]; } || need_apt+=(dovecot-core dovecot-submissiond)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "!! missing ${need_apt[*]}: the tests that need them will be skipped (they fail under CI=true)" >&2
  fi
fi

# First the README's quick start, as written, in a copy of the checkout with a venv of its own and no extras:
# the test extras can hide a missing runtime dependency from the suite (greenlet, issue 19).
bash scripts/quickstart-smoke.sh

echo "== python environment"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"

# PostgreSQL: a throw-away cluster of our own under a temporary dir, on a free port, so nothing of the
# machine's own cluster is touched and two runs never share one.
pg_dir=""
stop_pg() { [ -n "$pg_dir" ] && su postgres -c "$pg_bin/pg_ctl -D $pg_dir/data -m fast stop" >/dev/null 2>&1; rm -rf "$pg_dir"; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "${MAILGATE_TEST_POSTGRES_URL:-}" ] && [ -n "$pg_bin" ] && [ "$(id -u)" = 0 ]; then
  pg_dir=$(mktemp -d /tmp/mailgate-pg.XXXXXX)
  chown postgres "$pg_dir"
  trap stop_pg EXIT
  pg_port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "== starting PostgreSQL ($pg_bin) on 127.0.0.1:$pg_port"
  su postgres -c "$pg_bin/initdb -D $pg_dir/data -A trust -U postgres" >/dev/null
  su postgres -c "$pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/log -w -o '-k $pg_dir -h 127.0.0.1 -p $pg_port' start" >/dev/null
  su postgres -c "$pg_bin/psql -q -h 127.0.0.1 -p $pg_port -c \"create user mailgate password 'mailgate' createdb\""
  su postgres -c "$pg_bin/createdb -h 127.0.0.1 -p $pg_port -O mailgate mailgate"
  export MAILGATE_TEST_POSTGRES_URL="postgresql+psycopg://mailgate:mailgate@127.0.0.1:$pg_port/mailgate"
fi

echo "== ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider "$@"
