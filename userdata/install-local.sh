#!/usr/bin/env bash
# Installs berth into /opt/berth and starts it: under systemd when systemd runs
# this host, else as a background process (pid and log in the state directory).
# Loop backend unless /etc/berth/berth.env says otherwise. Idempotent: run it
# again to upgrade; running containers keep their mounts. Runs from a release
# (berth-<version>-linux-<arch>.tar.gz, unpacked: it brings its own Node.js in
# bin/node, so the host's node, older or missing, does not matter) or from a
# checkout, which it first builds into such a release (npm run release).
#
#   install-local.sh [--no-build]        install or upgrade (--no-build: use dist/ as it is)
#   install-local.sh --uninstall [--purge]
#
# An upgrade checks the new build with the new configuration before it stops
# the running agent, and rolls back to the previous install (and the
# configuration it ran with) when the new agent does not answer in time.
#
# Installer settings (environment): BERTH_PREFIX (/opt/berth), BERTH_ENV_FILE
# (/etc/berth/berth.env), BERTH_BIN_DIR (/usr/local/bin), BERTH_INIT
# (auto|systemd|background), BERTH_INSTALL_WAIT_SECONDS (60), BERTH_SYSTEMD_UNIT_DIR
# (/etc/systemd/system).
set -euo pipefail

prefix=${BERTH_PREFIX:-/opt/berth}
envfile=${BERTH_ENV_FILE:-/etc/berth/berth.env}
bindir=${BERTH_BIN_DIR:-/usr/local/bin}
init=${BERTH_INIT:-auto}
wait_seconds=${BERTH_INSTALL_WAIT_SECONDS:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
unit=${BERTH_SYSTEMD_UNIT_DIR:-/etc/systemd/system}/berth.service

die() { echo "install-local: $*" >&2; exit 1; }
say() { echo "install-local: $*"; }
usage() { sed -n '10,11s/^#  //p' "$0"; }

mode=install build=1 purge=0
for arg in "$@"; do
  case $arg in
    --uninstall) mode=uninstall ;;
    --purge) purge=1 ;;
    --no-build) build=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $arg" ;;
  esac
done
[ "$purge" -eq 0 ] || [ "$mode" = uninstall ] || die "--purge goes with --uninstall"
[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
# An unpacked release: nothing to build, its own runtime.
[ ! -x "$src/bin/node" ] || build=0
case $init in
  auto) if [ -d /run/systemd/system ]; then init=systemd; else init=background; fi ;;
  systemd | background) ;;
  *) die "BERTH_INIT must be auto, systemd or background (got $init)" ;;
esac

# The agent and its CLI see only the environment file, as under systemd.
clean_env() { env -i PATH="$PATH" BERTH_ENV_FILE="$1" "${@:2}"; }
# The configuration an install ($1) would run with from an env file ($2), as JSON; exit 2 when it is bad.
# The node flags of agent/node-flags.ts (test/node-flags.test.ts keeps every copy equal). The
# config check runs with them too: a node that refuses one (bad option) fails it before the old agent stops.
node_flags=(--max-semi-space-size=1 --max-opt=2 --no-node-snapshot --single-threaded --no-sparkplug --no-short-builtin-calls --optimize-for-size --max-lazy --no-icu-timezone-data)
# Every install ($1) runs on its own bin/node (the release's runtime).
check_config() { clean_env "$2" "$1/bin/node" "${node_flags[@]}" "$1/dist/agent/main.js" --check-config; }
# Set once the runtime is known (a release's bin/node, or a checkout's node); JSON parsing only.
node=
field() { "$node" -e 'process.stdout.write(String(JSON.parse(process.argv[1])[process.argv[2]] ?? ""))' "$1" "$2"; }
# The new build's CLI, also while the previous install is being started again.
cli_root="$prefix"
berth() { clean_env "$envfile" "$cli_root/bin/node" "$cli_root/dist/agent/cli.js" "$@"; }

stop_agent() { # $1: state dir of the running agent (background mode)
  if [ "$init" = systemd ]; then
    systemctl stop berth.service 2>/dev/null || true
    return
  fi
  local pidfile="$1/agent.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    # The agent drains calls in flight for up to BERTH_SHUTDOWN_GRACE_SECONDS (30): as systemd's TimeoutStopSec.
    for _ in $(seq 1 450); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "the agent (pid $pid) did not stop in 45 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

agent_pid=
start_agent() { # $1: state dir
  agent_pid=
  if [ "$init" = systemd ]; then
    if [ -f "$prefix/berth.service" ]; then
      sed -e "s#/opt/berth#$prefix#g" -e "s#/etc/berth/berth.env#$envfile#g" "$prefix/berth.service" > "$unit.tmp"
      chmod 0644 "$unit.tmp" && mv "$unit.tmp" "$unit"
    fi
    systemctl daemon-reload
    # Quiet: systemd reports each symlink, and docker.service's absence (WantedBy=) on a host without Docker, on stderr.
    systemctl --quiet enable berth.service
    # ExecStartPost (berth wait) makes this fail when the agent does not answer.
    systemctl start berth.service || { why="systemctl start berth.service failed"; return 1; }
    return 0
  fi
  mkdir -p "$1"
  # An install made before releases carried their runtime has no bin/node (a rollback to one).
  local rt="$prefix/bin/node"
  [ -x "$rt" ] || rt=node
  # shellcheck disable=SC2016 # expanded by the inner shell
  nohup env -i PATH="$PATH" bash -c 'set -a; . "$1"; set +a; exec "$3" "${@:4}" "$2"' _ "$envfile" "$prefix/dist/agent/main.js" "$rt" "${node_flags[@]}" >>"$1/agent.log" 2>&1 &
  agent_pid=$!
  echo "$agent_pid" > "$1/agent.pid"
}

wait_serving() {
  if [ -n "$agent_pid" ]; then
    berth wait --timeout "$wait_seconds" --pid "$agent_pid"
  else
    berth wait --timeout "$wait_seconds"
  fi
}

copy_private() { (umask 077 && cp "$1" "$2.tmp" && chmod 0600 "$2.tmp" && mv "$2.tmp" "$2"); }

where_logs() { if [ "$init" = systemd ]; then echo "journalctl -u berth"; else echo "$1/agent.log"; fi; }

berth_mounts() { awk -v d="$1/mounts/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo; }

uninstall() {
  local check statedir socket mounted pending
  local build=
  for b in "$prefix" "$src"; do [ -f "$b/dist/agent/main.js" ] && [ -x "$b/bin/node" ] && { build=$b; break; }; done
  node=${build:+$build/bin/node}
  # Missing tools do not matter here: only where the configuration puts things.
  check=
  [ -z "$build" ] || check=$(check_config "$build" "$envfile") || true
  statedir=$( [ -z "$check" ] || field "$check" stateDir)
  socket=$( [ -z "$check" ] || field "$check" socket)
  [ -n "$statedir" ] || die "cannot read the configuration (no install in $prefix, no release in $src, or a bad $envfile, above): nothing removed"
  # A volume in its unmount grace (no container holds it) is not in use: stopping the agent unmounts it.
  pending=$(berth status --json 2>/dev/null | "$node" -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => { try { for (const v of JSON.parse(s).volumes ?? []) if (v.unmountPending && v.refs === 0) console.log(v.mountpoint); } catch {} })') || true
  mounted=$(berth_mounts "$statedir" | grep -vxF -e "${pending:-/nonexistent}" || true)
  if [ -n "$mounted" ]; then
    die "berth volumes are mounted (stop their containers and docker volume rm them, then run this again); nothing removed:
$mounted"
  fi
  stop_agent "$statedir"
  mounted=$(berth_mounts "$statedir")
  [ -z "$mounted" ] || die "the agent stopped but left volumes mounted (umount them, then run this again); nothing else removed:
$mounted"
  if [ -f "$unit" ]; then
    systemctl disable berth.service >/dev/null 2>&1 || true
    rm -f "$unit"
    systemctl daemon-reload 2>/dev/null || true
  fi
  # The agent removes its socket when it stops; one left by a killed agent is stale.
  rm -f "$socket"
  if [ -L "$bindir/berth" ] && case $(readlink "$bindir/berth") in "$prefix"/*) true ;; *) false ;; esac; then rm -f "$bindir/berth"; fi
  rm -rf "$prefix" "$prefix.new" "$prefix.old" "$prefix.failed"
  say "removed the agent, its unit, socket, $prefix and $bindir/berth"
  if [ "$purge" -eq 1 ]; then
    if grep -qs "^$statedir/images/" /sys/block/loop*/loop/backing_file; then
      die "loop devices still use images under $statedir/images (losetup -a); state dir kept"
    fi
    # Mountpoints are immutable (chattr +i) while no volume is mounted on them.
    if [ -d "$statedir/mounts" ]; then chattr -i "$statedir"/mounts/* 2>/dev/null || true; fi
    rm -rf "$statedir" "$envfile" "$envfile.rejected"
    say "purged $statedir (state file, loop volume images: their data is gone) and $envfile"
    say "EBS volumes are not touched: they stay in EC2, tagged, until you delete them there"
  else
    say "kept: $statedir (state file; loop volumes' images, i.e. their data), $envfile, and every EBS volume in EC2"
    say "run again with --uninstall --purge to delete the state dir and the configuration too"
  fi
  say "dockerd still lists volumes of the berth driver until they are removed (docker volume ls -f driver=berth)"
}

if [ "$mode" = uninstall ]; then
  uninstall
  exit 0
fi

# A checkout is built into a release tree (dist/host: the bundle and the pinned Node.js runtime)
# and installed from there; the node that runs npm only builds.
if [ "$build" -eq 1 ]; then
  command -v npm >/dev/null || die "npm is required to build"
  echo "building berth from $src"
  (cd "$src" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent release -- --stage "$src/dist/host")
  src="$src/dist/host"
elif [ ! -x "$src/bin/node" ] && [ -x "$src/dist/host/bin/node" ]; then
  src="$src/dist/host"
fi
[ -f "$src/dist/agent/main.js" ] || die "no build in $src/dist (run without --no-build)"

mkdir -p "$(dirname "$envfile")"
if [ ! -f "$envfile" ]; then
  (umask 077 && printf '# berth settings (see docs/configuration.md)\nBERTH_BACKEND=loop\n' > "$envfile")
fi

# dist/ is self-contained (scripts/build.mjs bundles the dependencies): no node_modules.
stage="$prefix.new"
rm -rf "$stage"
mkdir -p "$stage"
cp -r "$src/dist" "$src/package.json" "$src/userdata/berth.service" "$stage/"
mkdir -p "$stage/bin"
if [ -x "$src/bin/node" ]; then
  cp -p "$src/bin/node" "$src/bin/berth" "$stage/bin/"
else
  # dist/ without a release's runtime (--no-build in a checkout): this host's node, if new enough.
  host_node=$(command -v node) || die "no Node.js runtime: install from a release (npm run release), or without --no-build, or put Node.js 22 or newer on PATH"
  ln -s "$(readlink -f "$host_node")" "$stage/bin/node"
  # shellcheck disable=SC2016 # the wrapper's own expansions
  printf '#!/bin/sh\nhere=$(dirname "$(readlink -f "$0")")\nexec "$here/node" "$here/../dist/agent/cli.js" "$@"\n' >"$stage/bin/berth"
  chmod 0755 "$stage/bin/berth"
fi
node="$stage/bin/node"
"$node" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 22 ? 0 : 1)' 2>/dev/null \
  || { rm -rf "$stage"; die "Node.js 22 or newer is required (found $("$node" --version 2>&1)); a release brings its own"; }

# Checked with the new build before anything running is touched.
if ! check=$(check_config "$stage" "$envfile"); then
  rm -rf "$stage"
  die "the new build refuses $envfile (above); nothing changed, the running agent was not touched"
fi
clean_env "$envfile" "$stage/bin/berth" --version >/dev/null || { rm -rf "$stage"; die "the new CLI does not run; nothing changed"; }
statedir=$(field "$check" stateDir)
plugin=$(field "$check" pluginName)

previous=0 old_statedir=$statedir
if [ -f "$prefix/dist/agent/main.js" ]; then
  previous=1
  # The running agent's state dir (its pid file) is in the configuration it was started with.
  if [ -f "$prefix/berth.env.installed" ] && old=$(check_config "$stage" "$prefix/berth.env.installed" 2>/dev/null); then
    old_statedir=$(field "$old" stateDir)
  fi
fi

stop_agent "$old_statedir"
rm -rf "$prefix.old"
[ "$previous" -eq 0 ] || mv "$prefix" "$prefix.old"
mv "$stage" "$prefix"
node="$prefix/bin/node"
mkdir -p "$bindir"
ln -sfn "$prefix/bin/berth" "$bindir/berth"

why=
if start_agent "$statedir" && why=$(wait_serving 2>&1); then
  copy_private "$envfile" "$prefix/berth.env.installed"
  rm -rf "$prefix.old"
  say "berth is ready ($init; logs: $(where_logs "$statedir")): docker volume create -d $plugin -o size=1GiB myvolume (berth status, berth doctor)"
  exit 0
fi

echo "install-local: the new agent did not become healthy: ${why#berth: }" >&2
stop_agent "$statedir"
[ "$previous" -eq 1 ] || die "no previous install to roll back to; see $(where_logs "$statedir")"
rm -rf "$prefix.failed"
mv "$prefix" "$prefix.failed"
cli_root="$prefix.failed"
mv "$prefix.old" "$prefix"
restored=
if [ -f "$prefix/berth.env.installed" ] && ! cmp -s "$prefix/berth.env.installed" "$envfile"; then
  copy_private "$envfile" "$envfile.rejected"
  copy_private "$prefix/berth.env.installed" "$envfile"
  restored=" and $envfile (yours is kept as $envfile.rejected)"
fi
why=
if start_agent "$old_statedir" && why=$(wait_serving 2>&1); then
  die "rolled back to the previous install$restored, which is serving again; the failed install is in $prefix.failed (log: $(where_logs "$statedir"))"
fi
die "rolled back to the previous install$restored, but it does not answer either: ${why#berth: }"
