# Power-off on failure, for a userdata part (render.ts puts this file where a part says
# "#@include give-up.sh"; the part defines log() and ROOT first). A host whose part failed serves
# nothing (a berth host without its volume agent, a Traefik host without its address or NAT): it
# powers off (two minutes' grace for the logs to ship) and, terminated by its launch template's
# shutdown behaviour, is replaced by its group. /etc/berth/keep-failed-host keeps it (to debug one).
give_up() {
  local rc=$?
  trap - EXIT
  [[ $rc -ne 0 ]] || exit 0
  if [[ -e "$ROOT/etc/berth/keep-failed-host" ]]; then
    log "failed (exit $rc); $ROOT/etc/berth/keep-failed-host exists: this instance stays"
  else
    log "failed (exit $rc): powering off; the Auto Scaling group replaces this instance"
    shutdown -P +2 "berth userdata failed: the Auto Scaling group replaces this instance" || systemctl poweroff --no-block || true
  fi
  exit "$rc"
}
trap give_up EXIT
