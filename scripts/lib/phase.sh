# Sourced by scripts/lib/image-env.sh and test/kube/lib.sh: `phase`, the timed sections of their scripts' output.
# shellcheck shell=bash

phase_started=$SECONDS
phase_name=
# `phase NAME` ends the previous phase (printing its time) and starts NAME; `phase` alone ends the last one.
phase() {
  if [ -n "$phase_name" ]; then printf '    (%s: %d s)\n' "$phase_name" "$((SECONDS - phase_started))"; fi
  phase_name="${1:-}"
  phase_started=$SECONDS
  if [ -n "$phase_name" ]; then printf '\n==> %s\n' "$phase_name"; fi
}
