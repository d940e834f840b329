#!/bin/sh
# Starts this pod's sentinel watching the primary its peers name (pod 0 on the first start). The
# sentinel rewrites its own file, so it lives in a writable emptyDir.
set -eu
SERVICE=cognito-authz-redis-ha
SET=cognito-authz
ME="$(hostname).$SERVICE"

primary=""
for i in 0 1 2; do
  answer=$(REDISCLI_AUTH="$REDIS_PASSWORD" valkey-cli -h "$SERVICE-$i.$SERVICE" -p 26379 \
    SENTINEL get-master-addr-by-name "$SET" 2>/dev/null | head -n 1 || true)
  if [ -n "$answer" ]; then primary="$answer"; break; fi
done
if [ -z "$primary" ]; then primary="$SERVICE-0.$SERVICE"; fi
# The primary's name resolves once its pod has an address (publishNotReadyAddresses).
until getent hosts "$primary" >/dev/null; do sleep 1; done

umask 077
cat > /sentinel/sentinel.conf <<CONF
port 26379
dir /sentinel
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ME
requirepass "$REDIS_PASSWORD"
sentinel sentinel-pass "$REDIS_PASSWORD"
sentinel monitor $SET $primary 6379 2
sentinel auth-pass $SET "$REDIS_PASSWORD"
sentinel down-after-milliseconds $SET 5000
sentinel failover-timeout $SET 60000
sentinel parallel-syncs $SET 1
CONF
exec valkey-sentinel /sentinel/sentinel.conf
