#!/bin/bash
# Host preparation, run by cloud-init before bootstrap.sh (rendered by infra through
# userdata/render.ts): the CloudWatch agent shipping the ECS agent's and cloud-init's logs
# plus memory, swap and disk metrics. berth needs nothing from here: its release brings its
# own Node.js (bootstrap.sh). The AL2023 repositories dnf reads are S3 buckets in the region,
# which the VPC's S3 gateway endpoint reaches without the NAT path; still, a host whose
# package repository stays out of reach boots without the CloudWatch agent rather than
# holding berth back (RETRY_BUDGET, below; this part's failure is logged, not fatal).
set -euo pipefail

ROOT="${BERTH_ROOT:-}"
LOG_GROUP='@@LOG_GROUP@@'
CONFIG=/opt/aws/amazon-cloudwatch-agent/etc/berth.json
# berth's /metrics, scraped by the agent and written as EMF log events into the cluster's metrics
# log group (docs/design.md §8; infra/components/cloudWatchAgentConfig renders both files).
PROMETHEUS_CONFIG='@@PROMETHEUS_CONFIG@@'
PROMETHEUS_AGENT_CONFIG=/opt/aws/amazon-cloudwatch-agent/etc/berth-prometheus.json

log() { echo "berth-host-prep: $*" >&2; }
trap 'log "failed at line $LINENO"' ERR

RETRY_BUDGET=120
#@include retry.sh

if ! rpm -q amazon-cloudwatch-agent >/dev/null 2>&1 && ! retry "dnf install amazon-cloudwatch-agent" dnf install -y amazon-cloudwatch-agent; then
  log "the CloudWatch agent is not installed: this host ships no logs or metrics"
  exit 0
fi
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
# A second config file, appended to the first (amazon-cloudwatch-agent-ctl -a append-config; the
# agent keeps a copy of each file in etc/amazon-cloudwatch-agent.d and merges them: CloudWatch
# User Guide, "Manually create or edit the CloudWatch agent configuration file"). Its "agent"
# section repeats the first's interval: conflicting values would stop the merge
# (aws/amazon-cloudwatch-agent#133).
printf '%s' '@@PROMETHEUS_YAML_ENCODED@@' | base64 -d >"$ROOT$PROMETHEUS_CONFIG"
printf '%s' '@@PROMETHEUS_AGENT_JSON_ENCODED@@' | base64 -d >"$ROOT$PROMETHEUS_AGENT_CONFIG"
"$ROOT/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl" -a append-config -m ec2 -s -c "file:$ROOT$PROMETHEUS_AGENT_CONFIG"
log "done: CloudWatch agent shipping to $LOG_GROUP, berth's metrics from $PROMETHEUS_CONFIG"
