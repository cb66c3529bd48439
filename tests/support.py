"""Helpers shared by tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from domain.access import POLICY_DIR, ROLES, Action

# How long a test's own HTTP calls to a live server may take: a login is an argon2 check,
# which on a loaded machine takes seconds, more than an HTTP client's default 5.
LIVE_TIMEOUT = 60.0


def wait_until_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `base`/healthz until the server answers 200; fail at once, with the end of its
    log, if the process exits first, or after LIVE_TIMEOUT (a server checks its settings,
    database and policy before it listens)."""
    deadline = time.monotonic() + LIVE_TIMEOUT
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:]) if log.exists() else ""
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}: {tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not answer /healthz in {LIVE_TIMEOUT:g} s: {tail}")
        time.sleep(0.1)


# Selects every governed field of every governed type, with __typename so a response can be
# walked generically.
ALL_FIELDS_QUERY = """
fragment AddressFields on Address {
  __typename recipient phone province city district street postalCode
}
fragment CustomerFields on Customer {
  __typename id name phone email createdAt addresses { ...AddressFields }
  orders(first: 1) { __typename }
  version phoneValid mergedInto orderCount totalSpent totalSpentCurrency lastOrderAt channels
  returns contactHistory { field }
}
fragment OrderFields on Order {
  __typename id number channel externalId status currency createdAt updatedAt businessDay
  escalatedAt version
  subtotal shippingFee discount total refundedAmount grossMargin customerName customerPhone
  paymentMethod paymentTransactionId carrier trackingNumber internalNote
  customer { ...CustomerFields }
  shippingAddress { ...AddressFields }
  lines { __typename id sku name quantity unitPrice lineTotal costPrice }
  statusHistory { __typename from to actor at note }
}
query Everything($first: Int!) {
  orders(first: $first, filter: {channel: [TAOBAO]}) { edges { node { ...OrderFields } } }
  stockItems(first: $first) { edges { node {
    __typename id sku productName warehouse onHand reserved available safetyThreshold unitCost
    updatedAt
  } } }
  stockMovements(first: $first) { edges { node {
    __typename id at sku warehouse onHandDelta reservedDelta reason reference actor unitCost
  } } }
}
"""


def write_open_policy(directory: Path) -> Path:
    """A policy granting every role every field in full, all rows and all actions: the
    baseline the real policy is compared against."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(POLICY_DIR / "model.conf", directory / "model.conf")
    lines = []
    for role in ROLES:
        lines.append(f"p, {role}, *, read, allow")
        lines.append(f"p, {role}, Order, rows:all, allow")
        lines.extend(f"p, {role}, operation, {action}, allow" for action in Action)
    (directory / "policy.csv").write_text("\n".join(lines) + "\n")
    return directory
