#!/usr/bin/env python3
"""promq.py BASE_URL EXPR: one instant query against a Prometheus API; prints one line per series,
`name=value,… VALUE` with the labels sorted (`-` for none), or `error: …` and exit 1."""
import sys

from promapi import query

base, expr = sys.argv[1], sys.argv[2]
for series in query(base, {"query": expr})["result"]:
    labels = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items())) or "-"
    print(f"{labels} {series['value'][1]}")
