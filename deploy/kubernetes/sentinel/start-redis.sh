#!/bin/sh
# Starts this pod's Redis as the primary or as a replica of the primary the sentinels name.
set -eu
. /scripts/find-primary.sh

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
if [ "$PRIMARY" != "$ME" ]; then
  echo "replicaof $PRIMARY 6379" >> /conf/redis.conf
fi
exec valkey-server /conf/redis.conf
