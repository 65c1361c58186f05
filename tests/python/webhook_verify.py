"""Verifies webhook signatures with the Standard Webhooks reference library.

Reads JSON lines {"secret", "id", "timestamp", "payload", "signature"} on stdin and prints
one line per input: "ok" when `Webhook(secret).verify` accepts it, else "fail: <reason>".
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

for line in sys.stdin:
    m = json.loads(line)
    headers = {
        "webhook-id": m["id"],
        "webhook-timestamp": str(m["timestamp"]),
        "webhook-signature": m["signature"],
    }
    try:
        Webhook(m["secret"]).verify(m["payload"], headers)
        print("ok", flush=True)
    except Exception as e:  # the library's own verification errors
        print(f"fail: {e}", flush=True)
