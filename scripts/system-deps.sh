#!/usr/bin/env bash
# Install the system packages broadcaster needs, with apt-get, when they are missing.
# `--with-browser` adds headless Chromium (UI tests).
# As root it installs them; otherwise it prints the exact command to run.
set -euo pipefail

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_ctrl >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
# the load balancer in front of API replicas (replicated-service tests, deploy/haproxy)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v icecast2 >/dev/null 2>&1 || need+=(icecast2)  # live paging (broadcaster.live)
# the clustered broker (NATS Server: MQTT gateway + JetStream) of tests/broadcaster/test_broker_nats.py
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
if [ "${1:-}" = "--with-browser" ]; then
  { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || need+=(chromium chromium-driver)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# de-duplicate
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
else
  echo "Missing system packages: ${need[*]}"
  echo "Install them with:"
  echo "    sudo apt-get install -y ${need[*]}"
  exit 1
fi
