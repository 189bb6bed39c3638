#!/bin/bash
# Host preparation, run by cloud-init before bootstrap.sh (rendered by infra through
# userdata/render.ts): Node.js 20+ for berth, the AWS CLI the later parts call (the AL2023
# ECS-optimized AMI is built from al2023-minimal, which has none), and the CloudWatch agent
# shipping the ECS agent's and cloud-init's logs plus memory, swap and disk metrics.
set -euo pipefail

ROOT="${BERTH_ROOT:-}"
LOG_GROUP='@@LOG_GROUP@@'
CONFIG=/opt/aws/amazon-cloudwatch-agent/etc/berth.json

log() { echo "berth-host-prep: $*" >&2; }
trap 'log "failed at line $LINENO"' ERR

node_major() { command -v node >/dev/null 2>&1 && node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [[ "$(node_major)" -lt 20 ]]; then
  dnf install -y nodejs20
  ln -sf /usr/bin/node-20 "$ROOT/usr/local/bin/node"
fi
[[ "$(node_major)" -ge 20 ]] || { log "Node.js 20 or later is not on PATH"; exit 1; }

command -v aws >/dev/null 2>&1 || dnf install -y awscli-2
command -v aws >/dev/null 2>&1 || { log "the AWS CLI is not on PATH after installing awscli-2"; exit 1; }
rpm -q amazon-cloudwatch-agent >/dev/null 2>&1 || dnf install -y amazon-cloudwatch-agent
install -d "$ROOT$(dirname "$CONFIG")"
cat >"$ROOT$CONFIG" <<JSON
{
  "agent": { "metrics_collection_interval": 60 },
  "metrics": {
    "namespace": "Berth/Hosts",
    "append_dimensions": { "InstanceId": "\${aws:InstanceId}", "AutoScalingGroupName": "\${aws:AutoScalingGroupName}" },
    "metrics_collected": {
      "mem": { "measurement": ["mem_used_percent"] },
      "swap": { "measurement": ["swap_used_percent"] },
      "disk": { "measurement": ["used_percent"], "resources": ["/"] }
    }
  },
  "logs": {
    "logs_collected": {
      "files": {
        "collect_list": [
          { "file_path": "/var/log/ecs/ecs-agent.log", "log_group_name": "$LOG_GROUP", "log_stream_name": "{instance_id}/ecs-agent" },
          { "file_path": "/var/log/ecs/ecs-init.log", "log_group_name": "$LOG_GROUP", "log_stream_name": "{instance_id}/ecs-init" },
          { "file_path": "/var/log/cloud-init-output.log", "log_group_name": "$LOG_GROUP", "log_stream_name": "{instance_id}/cloud-init" }
        ]
      }
    }
  }
}
JSON
"$ROOT/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl" -a fetch-config -m ec2 -s -c "file:$ROOT$CONFIG"
log "done: node $(node --version), CloudWatch agent shipping to $LOG_GROUP"
