#!/bin/bash
# Host bootstrap: installs berth and starts it before the ECS agent, so the agent sees the
# berth volume plugin at its own start and advertises ecs.capability.docker-plugin.berth.
# Rendered by infra (userdata/render.ts); BERTH_ROOT prefixes every path (tests only).
set -euo pipefail

ROOT="${BERTH_ROOT:-}"
ENVIRONMENT='@@ENVIRONMENT@@'
CLUSTER='@@CLUSTER@@'
HOST_ID='@@HOST_ID@@'
REGION='@@REGION@@'
ARTIFACT='@@ARTIFACT_URI@@'
SWAP_MIB='@@SWAP_MIB@@'
ECS_CLUSTER_NAME='@@ECS_CLUSTER@@'

log() { echo "berth-bootstrap: $*" >&2; }
trap 'log "failed at line $LINENO"' ERR

# Writes stdin to $1 with mode $2 only when the content differs.
put() {
  local dest="$ROOT$1" tmp
  tmp="$(mktemp)"
  cat >"$tmp"
  # sha256sum (coreutils), not cmp: diffutils is not assumed on the AMI.
  if [[ -f "$dest" && "$(sha256sum <"$tmp")" == "$(sha256sum <"$dest")" ]]; then rm -f "$tmp"; return 0; fi
  install -D -m "$2" "$tmp" "$dest"
  rm -f "$tmp"
  log "wrote $1"
}

if [[ "$SWAP_MIB" -gt 0 && ! -f "$ROOT/swapfile" ]]; then
  fallocate -l "${SWAP_MIB}M" "$ROOT/swapfile"
  chmod 600 "$ROOT/swapfile"
  mkswap -- "$ROOT/swapfile"
  swapon -- "$ROOT/swapfile"
  echo "/swapfile none swap defaults 0 0" >>"$ROOT/etc/fstab"
fi

work="$(mktemp -d)"
aws s3 cp --region "$REGION" --only-show-errors -- "$ARTIFACT" "$work/berth.tar.gz"
new_sum="$(sha256sum "$work/berth.tar.gz" | cut -d' ' -f1)"
if [[ "$(cat "$ROOT/opt/berth/.artifact-sha256" 2>/dev/null || true)" != "$new_sum" ]]; then
  rm -rf "$ROOT/opt/berth.new"
  mkdir -p "$ROOT/opt/berth.new"
  tar -xzf "$work/berth.tar.gz" -C "$ROOT/opt/berth.new"
  echo "$new_sum" >"$ROOT/opt/berth.new/.artifact-sha256"
  rm -rf "$ROOT/opt/berth"
  mv "$ROOT/opt/berth.new" "$ROOT/opt/berth"
  log "installed berth $new_sum"
fi
rm -rf "$work"

put /etc/berth/berth.env 0600 <<ENV
BERTH_BACKEND=ebs
BERTH_HOST_ID=$HOST_ID
BERTH_CLUSTER=$CLUSTER
BERTH_ENVIRONMENT=$ENVIRONMENT
BERTH_DOCKER_HOST=unix:///var/run/docker.sock
AWS_REGION=$REGION
ENV
put /etc/systemd/system/berth.service 0644 <"$ROOT/opt/berth/userdata/berth.service"

systemctl daemon-reload
systemctl enable --now berth.service
for _ in $(seq 1 60); do
  [[ -S "$ROOT/run/docker/plugins/berth.sock" ]] && break
  sleep 1
done
[[ -S "$ROOT/run/docker/plugins/berth.sock" ]] || { log "berth plugin socket did not appear within 60s"; exit 1; }

put /etc/ecs/ecs.config 0644 <<ECS
ECS_CLUSTER=$ECS_CLUSTER_NAME
ECS_INSTANCE_ATTRIBUTES={"berth.host":"$HOST_ID"}
ECS_ENABLE_CONTAINER_METADATA=true
ECS
systemctl enable --now --no-block ecs.service
log "done: berth running, ECS agent started in $ECS_CLUSTER_NAME for cluster $CLUSTER as host $HOST_ID"
