#!/usr/bin/env bash
# Supervisor of one workload's processes (bash >= 5.1: `wait -n -p`). Started detached, in its own
# session, by LocalRuntime.launch:  bash supervisor.sh RUN_DIR
#
# Written by the control plane before launch:
#   argv          the command, NUL-separated
#   workdir       the folder to run in
#   env-N         worker N's whole environment, NUL-separated KEY=VALUE (mode 0600; deleted here
#                 once every worker has started: it may hold secrets)
#   grace         seconds between SIGTERM and SIGKILL when stopping
# Written here (the control plane reads them; they outlive both processes):
#   supervisor.json  created exclusively: {"pid", "start"}, or {"abandoned": true} if the control
#                    plane gave up on this launch first (then nothing starts)
#   workers.json     [{"rank", "pid", "start"}] once every worker is started
#   rank-N.log       stdout and stderr of worker N
#   exit.json        {"exit_codes": [...], "exit_code", "finished"}, written atomically at the end;
#                    exit_code is the first failing worker's (the others were stopped because of it)
#
# Each worker runs in its own session and process group. If one fails the others are stopped: a
# job's workers live and die together. SIGTERM stops every worker: SIGTERM to its group, SIGKILL
# after the grace. Start times (field 22 of /proc/PID/stat) identify processes with their pids.
set -u
dir=$1
cd "$dir" || exit 1

start_time() {  # clock ticks since boot at which process $1 started
  local s
  s=$(<"/proc/$1/stat") || return 1
  s=${s##*) }
  set -- $s
  printf '%s' "${20}"
}

set -o noclobber
{ printf '{"pid": %d, "start": %s}' $$ "$(start_time $$)" > supervisor.json; } 2>/dev/null || exit 0
set +o noclobber

mapfile -d '' -t argv < argv
workdir=$(<workdir)
grace=$(<grace)
n=0
while [ -e "env-$n" ]; do n=$((n + 1)); done

declare -A rank_of=()   # running worker pid -> rank
declare -a codes=()
first_failure=
stopping=
killer=

stop_all() {
  [ -n "$stopping" ] && return
  stopping=1
  local pid
  for pid in "${!rank_of[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
  # escalate after the grace period, unless everything has ended by then
  ( sleep "$grace"; for pid in "${!rank_of[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done ) &
  killer=$!
}
trap stop_all TERM INT HUP

workers="["
for ((r = 0; r < n; r++)); do
  mapfile -d '' -t envs < "env-$r"
  (cd "$workdir" && exec setsid env -i "${envs[@]}" "${argv[@]}") >> "rank-$r.log" 2>&1 < /dev/null &
  pid=$!
  rank_of[$pid]=$r
  [ "$r" -gt 0 ] && workers+=", "
  workers+="{\"rank\": $r, \"pid\": $pid, \"start\": $(start_time "$pid" || echo null)}"
done
rm -f env-[0-9]*
printf '%s]' "$workers" > workers.json.tmp && mv -f workers.json.tmp workers.json

while [ "${#rank_of[@]}" -gt 0 ]; do
  done_pid=
  wait -n -p done_pid
  status=$?
  [ -z "${done_pid-}" ] && continue           # interrupted by a signal; its trap has run
  r=${rank_of[$done_pid]-}
  [ -z "$r" ] && continue                      # the killer, not a worker
  unset "rank_of[$done_pid]"
  codes[$r]=$status
  kill -KILL -- "-$done_pid" 2>/dev/null       # leftovers of that worker's group
  if [ "$status" -ne 0 ]; then
    [ -z "$stopping" ] && [ -z "$first_failure" ] && first_failure=$status
    stop_all
  fi
done
[ -n "$killer" ] && kill "$killer" 2>/dev/null

list=""
max=0
for ((r = 0; r < n; r++)); do
  c=${codes[$r]-null}
  [ "$r" -gt 0 ] && list+=", "
  list+=$c
  [ "$c" != null ] && [ "$c" -gt "$max" ] && max=$c
done
printf '{"exit_codes": [%s], "exit_code": %s, "finished": %s}' "$list" "${first_failure:-$max}" "$EPOCHSECONDS" \
  > exit.json.tmp && mv -f exit.json.tmp exit.json
