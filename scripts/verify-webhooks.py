#!/usr/bin/env python3
"""Verifies webhook deliveries with PyPI's `standardwebhooks`, an implementation of the
Standard Webhooks specification that Longshore did not write. Reads one JSON object a line
from stdin, {"secret": "whsec_...", "body": "...", "headers": {...}}, and prints one line
for each: `ok`, or `fail: <why>`."""
import json
import sys

from standardwebhooks.webhooks import Webhook

for line in sys.stdin:
    case = json.loads(line)
    try:
        Webhook(case["secret"]).verify(case["body"], case["headers"])
        print("ok")
    except Exception as error:  # the verifier's refusal is the answer
        print(f"fail: {type(error).__name__}: {error}")
    sys.stdout.flush()
