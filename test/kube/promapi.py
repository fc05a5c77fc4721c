"""One query against a Prometheus HTTP API for test/kube's scripts: returns its `data`, or prints
`error: …` and exits 1 (one readable line for the shell caller)."""
import json
import sys
import urllib.parse
import urllib.request


def query(base, params):
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
    except Exception as err:  # noqa: BLE001 - any failure is one readable line for the caller
        print(f"error: {err}")
        sys.exit(1)
    if body.get("status") != "success":
        print(f"error: {body.get('error')}")
        sys.exit(1)
    return body["data"]
