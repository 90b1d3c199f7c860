# Shell functions that scripts/kafka.sh and scripts/kube.sh share: both run
# local daemons on free loopback ports under a state dir, detached, with a
# watchdog, and stop them the same way. Sourced, never run; the sourcing script
# sets SELF (its own path), STATE and STOP_TIMEOUT first.

log() { printf '%s: %s\n' "${SELF##*/}" "$*" >&2; }
die() { printf '%s: error: %s\n' "${SELF##*/}" "$*" >&2; exit 1; }

# The comment block after the shebang of the sourcing script, as its help.
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF" >&2
}

# pid_running PID: alive and not a zombie. Our daemons are orphans; their
# reaper (PID 1) may take seconds, and a zombie still answers kill -0.
pid_running() {
  kill -0 "$1" 2>/dev/null || return 1
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null)" || return 0
  [[ "${st%% *}" != Z ]]
}

# stop_pid PID WHAT: SIGTERM, up to STOP_TIMEOUT seconds for it to exit, then
# SIGKILL; returns once it is gone. WHAT names it in the message.
stop_pid() {
  local pid="$1" what="$2" waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while pid_running "$pid" && (( waited < STOP_TIMEOUT * 20 )); do sleep 0.05; waited=$((waited + 1)); done
  if pid_running "$pid"; then
    log "$what still running after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while pid_running "$pid"; do sleep 0.05; done
  fi
}

# Ends the watchdog that `start` left for an owner pid, unless it is this
# shell (the watchdog runs `stop` itself once the owner has exited).
stop_watchdog() {
  local wd
  wd="$(cat "$STATE/watchdog.pid" 2>/dev/null || true)"
  if [[ "$wd" =~ ^[0-9]+$ && "$wd" != "$$" ]] && kill -0 "$wd" 2>/dev/null; then
    kill "$wd" 2>/dev/null || true
  fi
}

# free_ports N: prints N TCP ports on 127.0.0.1 that no socket uses now, from
# 20000 up to 31999 or the start of the kernel's ephemeral range
# (/proc/sys/net/ipv4/ip_local_port_range, usually 32768), whichever is lower,
# so outgoing connections cannot take them, and above the test helpers'
# (10000-19999, test/helpers/processes.ts). Racy by nature; `start` retries
# with new ports on a bind failure.
free_ports() {
  local n="$1" lo=20000 hi=32000 eph
  eph="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true)"
  # An ephemeral range that starts too low to leave room keeps the usual stretch: nothing better is free of it.
  if [[ "$eph" =~ ^[0-9]+$ ]] && (( eph >= lo + 1000 && eph < hi )); then hi=$eph; fi
  if [[ -r /proc/net/tcp ]]; then
    local used p hex picked=" "
    used="$(awk 'FNR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null || true)"
    while (( $(wc -w <<<"$picked") < n )); do
      p=$(( lo + (RANDOM * 32768 + RANDOM) % (hi - lo) ))
      printf -v hex '%04X' "$p"
      grep -qx "$hex" <<<"$used" && continue
      [[ "$picked" == *" $p "* ]] && continue
      picked+="$p "
    done
    echo $picked
    return 0
  fi
  command -v node >/dev/null 2>&1 || die "cannot pick free ports: /proc/net/tcp is unreadable and node is not installed"
  node -e '
    const net = require("node:net");
    const grab = () => new Promise((res, rej) => {
      const s = net.createServer(); s.unref(); s.on("error", rej);
      s.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => res(s));
    });
    (async () => {
      const ss = [];
      for (let i = 0; i < Number(process.argv[1]); i++) ss.push(await grab());
      console.log(ss.map((s) => s.address().port).join(" "));
      ss.forEach((s) => s.close());
    })().catch((e) => { console.error(e.message); process.exit(1); });' "$n"
}
