#!/bin/bash
# Host bootstrap: installs berth and starts it before the ECS agent, so the agent sees the
# berth volume plugin at its own start and advertises ecs.capability.docker-plugin.berth.
# Rendered by infra (userdata/render.ts); BERTH_ROOT prefixes every path (tests only).
#
# Nothing comes from a package repository: the release (scripts/release.mjs) brings its own
# Node.js, and it is read from S3 with curl, signed (--aws-sigv4) with the instance profile's
# credentials from IMDS (AL2023 minimal has no AWS CLI). The regional VPC's S3 gateway endpoint
# carries that request without the NAT path (docs/deploy.md, "How a host boots"). Every network
# step is retried (retry.sh); a bootstrap that fails for good powers the instance off, and the
# launch template's shutdown behaviour (terminate) lets its Auto Scaling group replace it.
set -euo pipefail

ROOT="${BERTH_ROOT:-}"
ENVIRONMENT='@@ENVIRONMENT@@'
CLUSTER='@@CLUSTER@@'
HOST_ID='@@HOST_ID@@'
REGION='@@REGION@@'
ARTIFACT='@@ARTIFACT_URI@@'
SWAP_MIB='@@SWAP_MIB@@'
ECS_CLUSTER_NAME='@@ECS_CLUSTER@@'
# The account's EC2 schedule (docs/design.md §6, "Sharing the account"): the environment bucket and its Region; empty: berth paces alone.
SCHEDULE_BUCKET='@@SCHEDULE_BUCKET@@'
SCHEDULE_REGION='@@SCHEDULE_REGION@@'
IMDS="${BERTH_IMDS_ENDPOINT:-http://169.254.169.254}"
# Tests only: path-style S3 at this base URL instead of https://<bucket>.s3.<region>.amazonaws.com.
S3_ENDPOINT="${BERTH_S3_ENDPOINT:-}"

log() { echo "berth-bootstrap: $*" >&2; }

#@include retry.sh

#@include give-up.sh
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

# IMDSv2 (the launch template requires tokens): a session token, then the instance profile's credentials.
imds_token() { token="$(curl -sSf --connect-timeout 2 --max-time 5 -X PUT "$IMDS/latest/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600')"; }
imds_get() { curl -sSf --connect-timeout 2 --max-time 5 -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/$1"; }
# The value of "$1" in the credentials document (one field a line; no jq on the AMI).
cred() { sed -n "s/^ *\"$1\" *: *\"\\([^\"]*\\)\".*/\\1/p" <<<"$creds" | head -1; }
credentials() {
  local role
  role="$(imds_get meta-data/iam/security-credentials/ | head -1)" && [[ -n "$role" ]] \
    && creds="$(imds_get "meta-data/iam/security-credentials/$role")" && [[ -n "$(cred AccessKeyId)" ]]
}
# GET s3://bucket/key into $2, signed with SigV4 for S3 in $REGION.
s3_get() {
  local path="${1#s3://}" url
  if [[ -n "$S3_ENDPOINT" ]]; then url="$S3_ENDPOINT/$path"; else url="https://${path%%/*}.s3.$REGION.amazonaws.com/${path#*/}"; fi
  # The payload hash S3 wants in x-amz-content-sha256 is the empty body's for a GET.
  curl -sSf --connect-timeout 5 --max-time 600 -o "$2" \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$(cred AccessKeyId):$(cred SecretAccessKey)" \
    -H "x-amz-security-token: $(cred Token)" \
    -H 'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' \
    -- "$url"
}

# Fresh credentials after a failed try: a long outage may outlast them.
fetch_artifact() { s3_get "$ARTIFACT" "$work/berth.tar.gz" && return 0; imds_token && credentials; return 1; }

token='' creds=''
retry "IMDS session token" imds_token
retry "instance profile credentials from IMDS" credentials
work="$(mktemp -d)"
retry "GET $ARTIFACT" fetch_artifact
new_sum="$(sha256sum "$work/berth.tar.gz" | cut -d' ' -f1)"
if [[ "$(cat "$ROOT/opt/berth/.artifact-sha256" 2>/dev/null || true)" != "$new_sum" ]]; then
  rm -rf "$ROOT/opt/berth.new"
  mkdir -p "$ROOT/opt/berth.new"
  tar -xzf "$work/berth.tar.gz" -C "$ROOT/opt/berth.new"
  # A release lists every file it holds (scripts/release.mjs): a damaged or foreign tarball stops here.
  [[ -x "$ROOT/opt/berth.new/bin/node" && -f "$ROOT/opt/berth.new/SHA256SUMS" ]] || { log "$ARTIFACT is not a berth release (no bin/node or SHA256SUMS)"; exit 1; }
  (cd "$ROOT/opt/berth.new" && sha256sum --quiet -c SHA256SUMS) || { log "$ARTIFACT: files differ from its SHA256SUMS"; exit 1; }
  echo "$new_sum" >"$ROOT/opt/berth.new/.artifact-sha256"
  rm -rf "$ROOT/opt/berth"
  mv "$ROOT/opt/berth.new" "$ROOT/opt/berth"
  log "installed berth $new_sum (node $("$ROOT/opt/berth/bin/node" --version))"
fi
rm -rf "$work"

{
  cat <<ENV
BERTH_BACKEND=ebs
BERTH_HOST_ID=$HOST_ID
BERTH_CLUSTER=$CLUSTER
BERTH_ENVIRONMENT=$ENVIRONMENT
BERTH_DOCKER_HOST=unix:///var/run/docker.sock
AWS_REGION=$REGION
ENV
  # The S3 client's Region is the bucket's (the global stack's), which need not be the host's.
  [[ -z "$SCHEDULE_BUCKET" ]] || printf 'BERTH_EC2_SCHEDULE_BUCKET=%s\nBERTH_AWS_REGION=%s\n' "$SCHEDULE_BUCKET" "$SCHEDULE_REGION"
} | put /etc/berth/berth.env 0600
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
