#!/usr/bin/env bash
# Installs berth from this checkout into /opt/berth and starts it: under systemd
# when systemd runs this host, else as a background process (pid and log under
# /var/lib/berth). Loop backend unless /etc/berth/berth.env says otherwise.
# Idempotent: run it again to upgrade; running containers keep their mounts.
set -euo pipefail

prefix=${BERTH_PREFIX:-/opt/berth}
unset BERTH_PREFIX   # an installer setting: the agent refuses BERTH_* names it does not know
envfile=/etc/berth/berth.env
src=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "install-local: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"
command -v node >/dev/null || die "Node.js 20 or newer is required"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || die "Node.js 20 or newer is required (found $(node --version))"
for tool in npm losetup blkid mkfs.ext4 e2fsck mount umount chattr findmnt; do
  command -v "$tool" >/dev/null || die "missing $tool (Debian/Ubuntu: apt-get install util-linux e2fsprogs xfsprogs)"
done

echo "building berth from $src"
(cd "$src" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)

# dist/ is self-contained (scripts/build.mjs bundles the dependencies): no node_modules.
stage="$prefix.new"
rm -rf "$stage"
mkdir -p "$stage"
cp -r "$src/dist" "$src/package.json" "$stage/"
rm -rf "$prefix.old"
[ -d "$prefix" ] && mv "$prefix" "$prefix.old"
mv "$stage" "$prefix"
rm -rf "$prefix.old"

chmod +x "$prefix/dist/agent/cli.js"
ln -sfn "$prefix/dist/agent/cli.js" /usr/local/bin/berth

mkdir -p "$(dirname "$envfile")"
if [ ! -f "$envfile" ]; then
  printf '# berth settings (see README, Configuration)\nBERTH_BACKEND=loop\n' > "$envfile"
  chmod 0600 "$envfile"
fi

plugin=$(sed -n 's/^BERTH_PLUGIN_NAME=//p' "$envfile" | tail -1)
socket="/run/docker/plugins/${plugin:-berth}.sock"

if [ -d /run/systemd/system ]; then
  install -m 0644 "$src/userdata/berth.service" /etc/systemd/system/berth.service
  systemctl daemon-reload
  systemctl enable berth.service >/dev/null
  systemctl restart berth.service
  echo "berth started under systemd (journalctl -u berth)"
else
  statedir=$(sed -n 's/^BERTH_STATE_DIR=//p' "$envfile" | tail -1)
  statedir=${statedir:-/var/lib/berth}
  mkdir -p "$statedir"
  if [ -f "$statedir/agent.pid" ] && kill -0 "$(cat "$statedir/agent.pid")" 2>/dev/null; then
    kill -TERM "$(cat "$statedir/agent.pid")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$statedir/agent.pid")" 2>/dev/null || break; sleep 0.1; done
  fi
  set -a
  # shellcheck source=/dev/null
  . "$envfile"
  set +a
  nohup node --max-semi-space-size=1 --lite-mode "$prefix/dist/agent/main.js" >>"$statedir/agent.log" 2>&1 &
  echo $! > "$statedir/agent.pid"
  echo "systemd is not running here: berth started in the background (pid $(cat "$statedir/agent.pid"), log $statedir/agent.log)"
fi

for _ in $(seq 1 100); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || die "the plugin socket $socket did not appear; see the log"
curl -sf --unix-socket "$socket" -X POST http://berth/Plugin.Activate >/dev/null || die "the plugin socket does not answer"
echo "berth is ready: docker volume create -d ${plugin:-berth} -o size=1GiB myvolume (berth status, berth doctor)"
