# Retries for the network steps of a userdata part (render.ts puts this file where a part says
# "#@include retry.sh"). A host may boot while the way out is down (the Traefik/NAT instance is
# replaced, old one first, on every change of its launch template): each network step is tried
# again, 1, 2, 4, … up to 60 s apart, until RETRY_BUDGET seconds since the part started are spent.
# BERTH_RETRY_BUDGET_SECONDS overrides the budget (tests).
RETRY_BUDGET="${BERTH_RETRY_BUDGET_SECONDS:-${RETRY_BUDGET:-900}}"
RETRY_STARTED="$(date +%s)"

# retry WHAT COMMAND...: runs COMMAND until it succeeds; returns 1 once the budget is spent.
retry() {
  local what=$1 delay=1 tries=1 now
  shift
  until "$@"; do
    now="$(date +%s)"
    if (( now + delay - RETRY_STARTED > RETRY_BUDGET )); then
      log "$what: failed $tries times in $(( now - RETRY_STARTED ))s; giving up"
      return 1
    fi
    log "$what: failed (try $tries); again in ${delay}s"
    sleep "$delay"
    tries=$(( tries + 1 ))
    delay=$(( delay * 2 > 60 ? 60 : delay * 2 ))
  done
}
