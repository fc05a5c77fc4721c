#!/usr/bin/env python3
"""scrapes.py BASE_URL JOB FROM TO INTERVAL_S: every `up` sample the Prometheus at BASE_URL holds for JOB
between the unix times FROM and TO, read raw from its API (a range selector, no functions), and what was lost:
prints `samples=N failed=N missed=N lost=N` where failed counts samples with up = 0, missed counts scrape
intervals with no sample at all (a gap of k intervals between two samples misses k - 1, so do the ends),
and lost = failed + missed. `error: …` and exit 1 when the query fails."""
import sys

from promapi import query

base, job, start, end, interval = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
window = max(1, int(end - start + 0.999))
data = query(base, {"query": f'up{{job="{job}"}}[{window}s]', "time": f"{end:.3f}"})
if data["resultType"] != "matrix":
    print("error: not a matrix")
    sys.exit(1)
if len(data["result"]) != 1:
    print(f"error: {len(data['result'])} series for job {job}, expected 1")
    sys.exit(1)
samples = [(float(t), float(v)) for t, v in data["result"][0]["values"]]
failed = sum(1 for _, v in samples if v == 0)
# Scrapes are due every INTERVAL_S at a fixed offset: a sample later than 1.5 intervals after the one
# before (or after FROM, or before TO) means a scrape that never reported at all.
edges = [start] + [t for t, _ in samples] + [end]
missed = 0
for previous, current in zip(edges, edges[1:]):
    gap = current - previous
    if gap > 1.5 * interval:
        missed += round(gap / interval) - 1
print(f"samples={len(samples)} failed={failed} missed={missed} lost={failed + missed}")
