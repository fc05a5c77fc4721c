#!/usr/bin/env python3
"""promq.py BASE_URL EXPR: one instant query against a Prometheus API; prints one line per series,
`name=value,… VALUE` with the labels sorted (`-` for none), or `error: …` and exit 1."""
import json
import sys
import urllib.parse
import urllib.request

base, expr = sys.argv[1], sys.argv[2]
url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
try:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
except Exception as err:  # noqa: BLE001 - any failure is one readable line for the caller
    print(f"error: {err}")
    sys.exit(1)
if body.get("status") != "success":
    print(f"error: {body.get('error')}")
    sys.exit(1)
for series in body["data"]["result"]:
    labels = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items())) or "-"
    print(f"{labels} {series['value'][1]}")
