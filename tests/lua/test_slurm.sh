#!/bin/sh
# `lorasc slurm` for real: starts a one-node Slurm cluster of its own (munged, slurmctld and
# slurmd on localhost, in a temporary directory, on free ports), submits tests/lua/tiny.lua as
# an array of 3 shards plus the merge job that depends on it, and checks that the merged
# database equals a single-process run (run hashes, status, evals, metrics, inputs); then that
# submitting again runs nothing, and after a "preempted" run only that run. Skips (77) where
# the daemons cannot be started (not root, Slurm or munge not installed: .ci/setup installs
# them).
# usage: test_slurm.sh LORASC SOURCE_ROOT
set -u
LORASC=$(realpath "$1")
SRC=$(realpath "$2")
TINY=$SRC/tests/lua/tiny.lua
. "$(dirname "$0")/cli_lib.sh"

# 1. Without a cluster: the scripts are written, bad options refused.
"$LORASC" slurm "$TINY" --array 0 > out.txt 2>&1 && fail "--array 0 accepted"
grep -q -- "--array must be a positive integer" out.txt || fail "--array 0 message: $(cat out.txt)"
"$LORASC" slurm "$TINY" --array 2 --db w/ --partition gpu --time 1:00:00 --cpus-per-task 2 > out.txt 2>&1 || fail "slurm (no submit): $(cat out.txt)"
grep -q "4 to run in 2 array task(s)" out.txt || fail "slurm summary: $(cat out.txt)"
D=$W/w/slurm/tiny
for f in array.sbatch merge.sbatch submit.sh done.txt; do [ -e "$D/$f" ] || fail "slurm did not write $f"; done
grep -q "^#SBATCH --array=1-2$" "$D/array.sbatch" || fail "array line: $(cat "$D/array.sbatch")"
grep -q "^#SBATCH --partition=gpu$" "$D/array.sbatch" && grep -q "^#SBATCH --time=1:00:00$" "$D/array.sbatch" &&
  grep -q "^#SBATCH --cpus-per-task=2$" "$D/array.sbatch" || fail "sbatch options: $(cat "$D/array.sbatch")"
grep -q -- '--shard "${SLURM_ARRAY_TASK_ID}/2"' "$D/array.sbatch" || fail "shard option: $(cat "$D/array.sbatch")"
grep -q -- "--dependency=afterany" "$D/submit.sh" || fail "merge dependency: $(cat "$D/submit.sh")"
[ ! -e w/lorasc.db ] || fail "writing the scripts created the database"
# the shards' inputs hashed once, here, for all of them (w/cache/file_hashes.tsv, --results)
grep -q " $(realpath /usr/share/common-licenses/Apache-2.0)\$" w/cache/file_hashes.tsv ||
  fail "slurm did not hash the shards' inputs into their cache: $(cat w/cache/file_hashes.tsv 2>&1)"

# 2. The cluster.
if [ "$(id -u)" != 0 ]; then echo "not root: cannot start slurmctld, slurmd and munged: skipped"; exit 77; fi
for c in munged slurmctld slurmd sbatch squeue sinfo; do
  command -v "$c" >/dev/null || { echo "$c not found (Debian: slurmctld slurmd slurm-client munge; .ci/setup installs them): skipped"; exit 77; }
done
C=$W/cluster
mkdir -p "$C/munge" "$C/state" "$C/spool" "$C/log"
chmod 700 "$C/munge"
if command -v mungekey >/dev/null; then mungekey --create --keyfile="$C/munge/munge.key" 2>/dev/null
else dd if=/dev/urandom of="$C/munge/munge.key" bs=1024 count=1 2>/dev/null; fi
chmod 400 "$C/munge/munge.key"
stop_cluster() {
  for p in "$C/slurmd.pid" "$C/slurmctld.pid" "$C/munge/munged.pid"; do
    [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null
  done
  sleep 0.3
  rm -rf "$W"
}
trap stop_cluster EXIT
trap 'exit 1' INT TERM
munged --force --socket="$C/munge/sock" --key-file="$C/munge/munge.key" --pid-file="$C/munge/munged.pid" \
  --log-file="$C/munge/munged.log" --seed-file="$C/munge/munged.seed" 2>"$C/munge/start.err" ||
  { echo "cannot start munged ($(cat "$C/munge/start.err")): skipped"; exit 77; }
HOST=$(hostname -s)
export SLURM_CONF=$C/slurm.conf
started=0
for attempt in 1 2 3; do
  PORT=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000 + attempt ))
  cat > "$SLURM_CONF" <<EOF
ClusterName=lorasctest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$C/munge/sock
StateSaveLocation=$C/state
SlurmdSpoolDir=$C/spool
SlurmctldPidFile=$C/slurmctld.pid
SlurmdPidFile=$C/slurmd.pid
SlurmctldLogFile=$C/log/slurmctld.log
SlurmdLogFile=$C/log/slurmd.log
PlugStackConfig=$C/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  : > "$C/plugstack.conf"
  slurmctld -i 2>>"$C/log/start.err" && slurmd -N "$HOST" 2>>"$C/log/start.err"
  i=0
  while [ $i -lt 50 ]; do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then started=1; break; fi
    sleep 0.2; i=$((i + 1))
  done
  [ $started = 1 ] && break
  for p in "$C/slurmd.pid" "$C/slurmctld.pid"; do [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
  sleep 0.5
done
if [ $started = 0 ]; then
  echo "cannot start a one-node Slurm cluster: skipped; its logs:"
  tail -n 5 "$C/log/"*.log "$C/log/start.err" 2>/dev/null
  exit 77
fi

# waits (at most $1 s) until the cluster's queue is empty
drain() {
  i=0
  while [ -n "$(squeue -h -o %i 2>/dev/null)" ]; do
    [ $i -ge $(( $1 * 5 )) ] && { fail "jobs still queued after $1 s: $(squeue 2>&1)"; scancel -u root 2>/dev/null; return 1; }
    sleep 0.2; i=$((i + 1))
  done
}

# 3. A single-process run, then the same sweep as an array of 3 and the merge.
"$LORASC" run "$TINY" --db single/lorasc.db --threads 1 > single.log 2>&1 || fail "single run: $(cat single.log)"
t0=$(date +%s)
"$LORASC" slurm "$TINY" --array 3 --db cl/ --submit > submit.log 2>&1 || fail "submit: $(cat submit.log)"
grep -q "submitted array job [0-9]* and merge job [0-9]*" submit.log || fail "submit output: $(cat submit.log)"
"$LORASC" slurm "$TINY" --array 3 --db cl/ --submit > twice.log 2>&1 && fail "a second submission while the first is queued"
grep -q "jobs of this sweep are still queued or running ([0-9]" twice.log || fail "second submission: $(cat twice.log)"
drain 45
echo "array of 3 and merge: $(( $(date +%s) - t0 )) s"
L=$W/cl/slurm/tiny/logs
grep -q "experiment tiny: 4 runs: 4 done" "$L/merge.log" || fail "merge log status: $(cat "$L/merge.log" "$L"/shard-*.log)"
grep -q "| lorasc | " "$L/merge.log" || fail "merge log report: $(cat "$L/merge.log")"
for i in 1 2 3; do
  [ "$(q cl/slurm/tiny/shard-$i-of-3.db "SELECT count(*) FROM runs WHERE status='done'")" -ge 1 ] || fail "shard $i ran nothing"
done
[ "$(cat "$L"/shard-*.log | grep -c "pretraining the base model")" = 1 ] || fail "the base was not pretrained exactly once: $(grep -h "base model" "$L"/shard-*.log)"
same() { # same NAME SQL: the query gives the same rows on both databases
  a=$(q single/lorasc.db "$2"); b=$(q cl/lorasc.db "$2")
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "$1 differ between the single run and the cluster run:
single: $a
cluster: $b"
}
same "runs" "SELECT config_hash, status, seed, git_commit, inputs_sha256 FROM runs ORDER BY config_hash"
same "evals" "SELECT r.config_hash, v.split, v.metric, v.value FROM evals v JOIN runs r ON r.id = v.run_id ORDER BY 1, 2, 3"
same "metrics" "SELECT r.config_hash, m.step, m.name, m.value FROM metrics m JOIN runs r ON r.id = m.run_id
                WHERE m.name NOT LIKE 'base.%' AND m.name NOT LIKE '%seconds' ORDER BY 1, 2, 3, 4"
same "inputs" "SELECT r.config_hash, i.kind, i.sha256 FROM run_inputs i JOIN runs r ON r.id = i.run_id ORDER BY 1, 2, 3"

# 4. Submitting again: nothing to run, nothing submitted.
"$LORASC" slurm "$TINY" --array 3 --db cl/ --submit > again.log 2>&1 || fail "resubmit: $(cat again.log)"
grep -q "4 done in .*, 0 to run" again.log && grep -q "nothing to run" again.log || fail "resubmit: $(cat again.log)"
grep -q "submitted" again.log && fail "a sweep with every run done was submitted again"

# 5. A run preempted (interrupted in the shard and so in the merged database): only it runs.
h=$(q cl/lorasc.db "SELECT config_hash FROM runs ORDER BY id LIMIT 1")
for db in cl/lorasc.db cl/slurm/tiny/shard-*-of-3.db; do
  q "$db" "UPDATE runs SET status = 'interrupted' WHERE config_hash = '$h'" >/dev/null
done
"$LORASC" slurm "$TINY" --array 3 --db cl/ --submit > third.log 2>&1 || fail "third submit: $(cat third.log)"
grep -q "3 done in .*, 1 to run in 1 array task(s)" third.log || fail "after a preemption: $(cat third.log)"
drain 30
[ "$(q cl/slurm/tiny/shard-1-of-1.db "SELECT group_concat(config_hash || ':' || status) FROM runs")" = "$h:done" ] ||
  fail "the resubmission ran more than the preempted run: $(q cl/slurm/tiny/shard-1-of-1.db 'SELECT config_hash, status FROM runs')"
same "runs after the rerun" "SELECT config_hash, status FROM runs ORDER BY config_hash"
same "evals after the rerun" "SELECT r.config_hash, v.split, v.metric, v.value FROM evals v JOIN runs r ON r.id = v.run_id ORDER BY 1, 2, 3"

cli_done test_slurm
