#!/usr/bin/env bash
# Installs the outside tools `cargo bench --bench compare` measures against, from Debian's
# packages: wrk (HTTP), fio (file reads), nutcracker (twemproxy), redis-server and
# redis-benchmark (redis-tools). Rows whose tool is missing are skipped with a message.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y wrk fio nutcracker redis-server redis-tools
