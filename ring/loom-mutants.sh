#!/usr/bin/env bash
# Shows that each loom model of the ring's protocols can fail: runs every
# model with each deliberately broken variant of the code it checks
# (FRAMERING_LOOM_MUTANT, see ring/src/protocol/sync.rs) and requires the model to
# fail. Prints one line per pair; exits 1 if a broken variant passed.
#
# Usage (from the repository root): ring/loom-mutants.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
cargo test --release -p framering-ring --lib models --no-run -q 2>&1 | grep -v '^$' || true
# model                                                  mutant
pairs="
event_wakes_a_sleeping_waiter                            wait-unannounced
event_wakes_two_waiters_after_two_notifications          wait-unannounced
producer_and_consumer_round_trip_with_events             wait-unannounced
producer_and_consumer_round_trip_with_events             notify-unfenced
producer_and_consumer_round_trip_with_events             wait-no-recheck
a_producer_waiting_for_room_is_woken_by_a_take           notify-unfenced
a_producer_waiting_for_room_is_woken_by_a_take           wait-no-recheck
two_consumers_take_each_frame_exactly_once               claim-store
a_consumer_dead_after_its_claim_does_not_block_others    claim-store
recovery_after_a_consumer_dies_at_any_step_loses_no_slot recover-wrong-reader
the_ready_queue_wraps_without_losing_or_doubling_a_frame publish-tail-relaxed
recovery_runs_beside_a_live_consumer                     recover-any-reader
drop_oldest_withdrawal_and_a_claim_never_both_win        revoke-store
two_consumers_join_two_groups_through_the_roster         admit-relaxed
a_frame_given_back_unconsumed_is_delivered_again         give-back-consumed
a_returned_slot_is_written_again_only_after_its_reader_is_done return-cell-relaxed
"
bad=0
while read -r model mutant; do
  [ -z "$model" ] && continue
  start=$(date +%s)
  out=$(FRAMERING_LOOM_MUTANT="$mutant" timeout 900 \
    cargo test --release -p framering-ring --lib "protocol::models::$model" -q -- --exact 2>&1)
  code=$?
  secs=$(( $(date +%s) - start ))
  why=$(printf '%s\n' "$out" | grep -m1 -E "deadlock;|Corrupt|left:|assertion" | sed 's/^ *//' | cut -c1-120)
  # A model fails with "test result: FAILED", or, when loom's deadlock
  # report panics again while unwinding, with an abort: both are caught.
  if [ "$code" -ne 0 ] && [ "$code" -ne 124 ] &&
     printf '%s\n' "$out" | grep -qE "test result: FAILED|deadlock; threads"; then
    echo "caught   $model with $mutant (${secs}s): $why"
  else
    echo "MISSED   $model with $mutant (exit $code, ${secs}s)"
    bad=1
  fi
done <<< "$pairs"
exit $bad
