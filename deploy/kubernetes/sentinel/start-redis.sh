#!/bin/sh
# Starts this pod's Redis as the primary or as a replica of the primary the sentinels name.
# A pod that restarts after a failover must not come back as a second primary: it asks the
# sentinels first; only when none answers (the first start of the set) is pod 0 the primary.
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

# The password goes into a file only this container reads, never onto the command line.
umask 077
cat > /conf/redis.conf <<CONF
port 6379
dir /data
appendonly yes
appendfsync everysec
maxmemory-policy noeviction
protected-mode no
requirepass "$REDIS_PASSWORD"
masterauth "$REDIS_PASSWORD"
replica-announce-ip $ME
CONF
if [ "$primary" != "$ME" ]; then
  echo "replicaof $primary 6379" >> /conf/redis.conf
fi
exec valkey-server /conf/redis.conf
