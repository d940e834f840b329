#!/bin/sh
# Sourced by start-redis.sh and start-sentinel.sh: sets PRIMARY to the primary the sentinels name.
# A pod that restarts after a failover must not come back as a second primary, so the sentinels are
# asked first; only when none answers (the first start of the set) is pod 0 the primary.
SERVICE=cognito-authz-redis-ha
SET=cognito-authz
ME="$(hostname).$SERVICE"

PRIMARY=""
for i in 0 1 2; do
  answer=$(REDISCLI_AUTH="$REDIS_PASSWORD" valkey-cli -h "$SERVICE-$i.$SERVICE" -p 26379 \
    SENTINEL get-master-addr-by-name "$SET" 2>/dev/null | head -n 1 || true)
  if [ -n "$answer" ]; then PRIMARY="$answer"; break; fi
done
if [ -z "$PRIMARY" ]; then PRIMARY="$SERVICE-0.$SERVICE"; fi
