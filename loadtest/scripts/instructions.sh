#!/usr/bin/env bash
# The engine's own instructions per forwarded packet in four rooms shaped like the reference
# scenarios, counted by Callgrind on the test bed (sfu/benches/engine_cost.rs); prints one table.
#
#   loadtest/scripts/instructions.sh [ENGINE_COST_BINARY...]
#
# With no binary, builds the current tree's (`cargo bench --no-run`); so does a binary given as
# `.`. With several (say, a copy of the build before a change and `.`), prints a column for each
# and the change against the first. The count leaves out the clients, the bed and the kernel, and moves by a few hundredths
# of a percent between runs where CPU time moves by several percent: a change of one percent
# shows. It is not time: a cache miss counts as one instruction, AES-NI and `rep movsb` steps
# count one each (docs/benchmarks.md, 9.22).
#
# Environment: SCENARIOS (default "cameras single meeting audio"), VIEWERS (the bench's default
# per scenario), WARMUP (seconds of virtual time before the count, default 6), WINDOW (seconds
# counted, default 4), OUT (a new directory under /tmp; Callgrind's files for
# `callgrind_annotate`). Needs valgrind (`apt-get install valgrind`) and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
SCENARIOS=${SCENARIOS:-cameras single meeting audio}
WARMUP=${WARMUP:-6}
WINDOW=${WINDOW:-4}
OUT=${OUT:-$(mktemp -d /tmp/engine-instructions.XXXXXX)}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
mkdir -p "$OUT"

BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(.)
for i in "${!BINS[@]}"; do
  [ "${BINS[$i]}" = . ] || continue
  bin=$(cargo bench -p sfu --bench engine_cost --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("target", {}).get("name") == "engine_cost" and m.get("executable"):
        print(m["executable"])')
  [ -n "$bin" ] || { echo "building the bench failed: cargo bench -p sfu --no-run" >&2; exit 1; }
  BINS[i]=$bin
done
# Each binary runs from a path of the same length, with the same few environment variables: they
# decide where the stack starts, and with it the alignment of the buffers the engine copies,
# which changes the path `memcpy` takes through a copy (a few tenths of a percent of the count).
COPIES=()
for i in "${!BINS[@]}"; do
  [ -x "${BINS[$i]}" ] || { echo "missing ${BINS[$i]}" >&2; exit 2; }
  cp "${BINS[$i]}" "$OUT/engine-cost-$i"
  COPIES+=("$OUT/engine-cost-$i")
done

for scenario in $SCENARIOS; do
  for i in "${!BINS[@]}"; do
    args=("$scenario" --warmup "$WARMUP" --seconds "$WINDOW")
    [ -z "${VIEWERS:-}" ] || args+=(--viewers "$VIEWERS")
    echo "counting $scenario with ${BINS[$i]}" >&2
    env -i PATH=/usr/bin:/bin valgrind --tool=callgrind --collect-atstart=no \
      --callgrind-out-file="$OUT/$scenario-$i.callgrind" \
      "${COPIES[$i]}" "${args[@]}" > "$OUT/$scenario-$i.txt" 2> "$OUT/$scenario-$i.log"
  done
done

python3 - "$OUT" "$SCENARIOS" "${BINS[@]}" <<'PY'
import os, re, sys
out, scenarios, bins = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
print(f"\nCallgrind files in {out}\n")
for i, b in enumerate(bins):
    print(f"{chr(65 + i)}: {b}")
print()
head = "| scenario | RTP sent |" + "".join(f" {chr(65 + i)} instr/pkt |" for i in range(len(bins)))
head += "".join(f" {chr(65 + i)} against A |" for i in range(1, len(bins)))
print(head)
print("|---|---:|" + "---:|" * (2 * len(bins) - 1))
for s in scenarios:
    per, sent = [], None
    for i in range(len(bins)):
        line = open(os.path.join(out, f"{s}-{i}.txt")).read()
        n = int(re.search(r"rtp_sent=(\d+)", line).group(1))
        sent = sent or n
        total = None
        for l in open(os.path.join(out, f"{s}-{i}.callgrind")):
            if l.startswith("totals:") or l.startswith("summary:"):
                total = int(l.split()[1])
        per.append(total / n)
    row = f"| {s} | {sent} |" + "".join(f" {p:,.0f} |" for p in per)
    row += "".join(f" {100 * (p / per[0] - 1):+.2f} % |" for p in per[1:])
    print(row)
PY
