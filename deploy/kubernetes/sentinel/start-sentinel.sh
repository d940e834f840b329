#!/bin/sh
# Starts this pod's sentinel watching the primary its peers name (pod 0 on the first start). The
# sentinel rewrites its own file, so it lives in a writable emptyDir.
set -eu
. /scripts/find-primary.sh
# The primary's name resolves once its pod has an address (publishNotReadyAddresses).
until getent hosts "$PRIMARY" >/dev/null; do sleep 1; done

umask 077
cat > /sentinel/sentinel.conf <<CONF
port 26379
dir /sentinel
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ME
requirepass "$REDIS_PASSWORD"
sentinel sentinel-pass "$REDIS_PASSWORD"
sentinel monitor $SET $PRIMARY 6379 2
sentinel auth-pass $SET "$REDIS_PASSWORD"
sentinel down-after-milliseconds $SET 5000
sentinel failover-timeout $SET 60000
sentinel parallel-syncs $SET 1
CONF
exec valkey-sentinel /sentinel/sentinel.conf
