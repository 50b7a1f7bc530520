"""Signs and verifies Standard Webhooks samples with the reference Python library.

Run by the end-to-end test `webhook_verify` (tests/e2e/webhook_verify.rs). Reads
{"verify": [...], "sign": [...]} as JSON on stdin, each item with a `name`, the `secret`
(whsec_...), the `id`, the `timestamp` (Unix seconds, as text) and the `body` (a list of byte
values); items to verify also carry the `signature` header. Writes {"version": ..., "verified": {name:
"ok" or the library's refusal}, "signed": {name: "v1,..."}} as JSON on stdout.

The library checks the timestamp against this machine's clock with its own tolerance of five
minutes, as a receiver would.
"""

import importlib.metadata
import json
import sys
from datetime import datetime, timezone

from standardwebhooks import Webhook


def main():
    cases = json.load(sys.stdin)
    out = {"version": importlib.metadata.version("standardwebhooks"), "verified": {}, "signed": {}}
    for case in cases["verify"]:
        headers = {
            "webhook-id": case["id"],
            "webhook-timestamp": case["timestamp"],
            "webhook-signature": case["signature"],
        }
        try:
            Webhook(case["secret"]).verify(bytes(case["body"]), headers, json_parse=False)
            out["verified"][case["name"]] = "ok"
        except Exception as e:  # the library's refusal, reported back to the test
            out["verified"][case["name"]] = f"{type(e).__name__}: {e}"
    for case in cases["sign"]:
        at = datetime.fromtimestamp(int(case["timestamp"]), tz=timezone.utc)
        body = bytes(case["body"])
        out["signed"][case["name"]] = Webhook(case["secret"]).sign(case["id"], at, body)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
