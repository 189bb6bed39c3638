#!/bin/sh
# The Traefik image's entrypoint: fills this environment into the static configuration's ECS
# constraint (traefik.yml: only containers labelled berth:environment=<environment> are routed),
# then runs Traefik on the result. Traefik reads its static configuration from one source only
# and has no variables in it, so the value is written into a copy before it starts.
# BERTH_TRAEFIK_TEMPLATE / BERTH_TRAEFIK_CONFIG move the two files (tests only).
set -eu
template=${BERTH_TRAEFIK_TEMPLATE:-/etc/traefik/traefik.yml}
config=${BERTH_TRAEFIK_CONFIG:-/tmp/traefik.yml}
env=${BERTH_ENVIRONMENT:-}
# The environment name rule of lib/node-contract.ts (ENVIRONMENT_PATTERN).
# `case` first: grep matches line by line, and a newline must not smuggle a second line in.
case $env in *[!a-z0-9-]*) env_ok=no ;; *) env_ok=yes ;; esac
if [ "$env_ok" != yes ] || ! printf '%s' "$env" | grep -Eq '^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$'; then
  echo "traefik entrypoint: BERTH_ENVIRONMENT must be this environment's name (1-20 of a-z 0-9 -, starting with a letter), not '$env'; refusing to route every environment's tasks" >&2
  exit 64
fi
sed "s/@BERTH_ENVIRONMENT@/$env/g" "$template" >"$config"
exec traefik --configfile="$config" "$@"
