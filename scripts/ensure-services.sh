#!/usr/bin/env bash
# Start what markq needs on this machine when it is not already answering:
# Redis (broker, limiter); with --postgres (the tests) PostgreSQL and Chromium; and the Debian
# fonts the sample papers, bench.offline and the report pages use.
set -euo pipefail
need_pg="${1:-}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }
apt_install() {
  command -v apt-get >/dev/null || { echo "apt-get not found: install $* by hand" >&2; return 1; }
  as_root apt-get install -y -q "$@" >/dev/null 2>&1 || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q "$@" >/dev/null; }
}

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

if [ "$need_pg" = "--postgres" ] && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  echo "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi

if [ "$need_pg" = "--postgres" ] && ! command -v chromium >/dev/null; then
  echo "installing Chromium (the tests render the report pages in it)"
  apt_install chromium
fi

if [ "$need_pg" = "--postgres" ] && ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx (the tests run compose's proxy config in front of the API)"
  apt_install nginx-light || apt_install nginx
fi

# Print and handwriting-style fonts: the demo's sample papers use the first three, bench.offline all.
if command -v fc-list >/dev/null && ! fc-list | grep -qi "KleeOne"; then
  apt_install fonts-wqy-microhei fonts-arphic-ukai fonts-humor-sans fonts-arphic-gkai00mp fonts-klee \
    fonts-comic-neue fonts-dkg-handwriting fonts-femkeklaver fonts-breip \
    || echo "fonts not installed; samples fall back to DejaVu" >&2
fi
