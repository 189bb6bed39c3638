#!/bin/bash
# Traefik/NAT host preparation (one per region, ASG 1-1-1), run by cloud-init before
# bootstrap.sh: takes over the region's Elastic IP, turns the source/destination check off,
# NATs the private subnets through this instance (also after a reboot) and points their
# default route here, and prepares Traefik's directories and berth's certificate settings.
# Rendered by infra (userdata/render.ts); BERTH_ROOT prefixes every path (tests only).
set -euo pipefail

ROOT="${BERTH_ROOT:-}"
REGION='@@REGION@@'
ALLOCATION_ID='@@ALLOCATION_ID@@'
ROUTE_TABLES='@@ROUTE_TABLE_IDS@@'
VPC_CIDR='@@VPC_CIDR@@'
CERT_BUCKET='@@CERT_BUCKET@@'
CERT_REGION='@@CERT_REGION@@'
CERT_DOMAINS='@@CERT_DOMAINS@@'
IMDS="${BERTH_IMDS_ENDPOINT:-http://169.254.169.254}"

log() { echo "berth-traefik-host: $*" >&2; }
trap 'log "failed at line $LINENO"' ERR

#@include retry.sh

# The AWS CLI for the EC2 calls below (AL2023 minimal has none); berth hosts do without it.
command -v aws >/dev/null 2>&1 || retry "dnf install awscli-2" dnf install -y awscli-2
command -v aws >/dev/null 2>&1 || { log "the AWS CLI is not on PATH after installing awscli-2"; exit 1; }

imds_token() { token="$(curl -sSf --connect-timeout 2 --max-time 5 -X PUT "$IMDS/latest/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')"; }
imds_instance() { instance="$(curl -sSf --connect-timeout 2 --max-time 5 -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/meta-data/instance-id")"; }
token='' instance=''
retry "IMDS session token" imds_token
retry "instance id from IMDS" imds_instance

retry "associate $ALLOCATION_ID" aws ec2 associate-address --region "$REGION" --allocation-id "$ALLOCATION_ID" --instance-id "$instance" --allow-reassociation >/dev/null
retry "source/destination check off" aws ec2 modify-instance-attribute --region "$REGION" --instance-id "$instance" --no-source-dest-check
log "Elastic IP $ALLOCATION_ID on $instance, source/destination check off"

# NAT rules live in a oneshot unit so that they come back after a reboot.
install -d "$ROOT/usr/local/sbin" "$ROOT/etc/systemd/system" "$ROOT/etc/sysctl.d"
cat >"$ROOT/usr/local/sbin/berth-nat" <<NAT
#!/bin/bash
set -euo pipefail
sysctl -q -w net.ipv4.ip_forward=1
# "default via <gw> dev <iface> ...": the fifth field (bash only: awk is not assumed on the AMI).
read -r _ _ _ _ iface _ < <(ip -o route show default)
iptables -t nat -C POSTROUTING -s '$VPC_CIDR' -o "\$iface" -j MASQUERADE 2>/dev/null || iptables -t nat -A POSTROUTING -s '$VPC_CIDR' -o "\$iface" -j MASQUERADE
# Docker sets the FORWARD policy to DROP: accept the private subnets' traffic explicitly.
iptables -C FORWARD -s '$VPC_CIDR' -j ACCEPT 2>/dev/null || iptables -A FORWARD -s '$VPC_CIDR' -j ACCEPT
iptables -C FORWARD -d '$VPC_CIDR' -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT 2>/dev/null || iptables -A FORWARD -d '$VPC_CIDR' -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
NAT
chmod 0755 "$ROOT/usr/local/sbin/berth-nat"
echo 'net.ipv4.ip_forward = 1' >"$ROOT/etc/sysctl.d/90-berth-nat.conf"
cat >"$ROOT/etc/systemd/system/berth-nat.service" <<'UNIT'
[Unit]
Description=berth: NAT for the region's private subnets
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/berth-nat

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now berth-nat.service

default_route() {
  aws ec2 replace-route --region "$REGION" --route-table-id "$1" --destination-cidr-block 0.0.0.0/0 --instance-id "$instance" 2>/dev/null \
    || aws ec2 create-route --region "$REGION" --route-table-id "$1" --destination-cidr-block 0.0.0.0/0 --instance-id "$instance" >/dev/null
}
for rt in ${ROUTE_TABLES//,/ }; do
  retry "default route of $rt" default_route "$rt"
  log "default route of $rt through $instance"
done

# Traefik (uid 65532 in its image) reads certs/ and watches dynamic/; berth writes both.
install -d -m 0750 -o 65532 -g 65532 "$ROOT/etc/traefik/certs" "$ROOT/etc/traefik/dynamic"
install -d -m 0700 "$ROOT/etc/berth" "$ROOT/etc/systemd/system/berth.service.d"
cat >"$ROOT/etc/berth/certificates.env" <<ENV
BERTH_CERT_BUCKET=$CERT_BUCKET
BERTH_AWS_REGION=$CERT_REGION
BERTH_CERT_DOMAINS=$CERT_DOMAINS
BERTH_CERT_FILE_OWNER=65532:65532
ENV
chmod 0600 "$ROOT/etc/berth/certificates.env"
# The bind-mounted dynamic/ hides the image's tls-options.yml: berth's release carries it.
cat >"$ROOT/etc/systemd/system/berth.service.d/certificates.conf" <<'DROPIN'
[Service]
EnvironmentFile=/etc/berth/certificates.env
ExecStartPre=-/usr/bin/install -m 0644 /opt/berth/traefik/dynamic/tls-options.yml /etc/traefik/dynamic/tls-options.yml
DROPIN
log "done: NAT for $VPC_CIDR through $instance; berth will refresh certificates from $CERT_BUCKET"
