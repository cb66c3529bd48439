"""The access policy's specification: every role x every governed field.

Reviewers read this table; `tests/api/test_policy_matrix.py` checks it against real GraphQL
requests, and `tests/unit/test_policy.py` against the compiled policy. Change policy.csv and
this table together.

F = FULL (the value), M = MASKED (`138****5678`), - = NONE (null plus a FORBIDDEN error).
"""

from __future__ import annotations

ROLES = (
    "admin",
    "cs",
    "sales",
    "warehouse",
    "purchasing",
    "ops",
    "finance",
    "approver",
    "compliance",
    "integration",
)

TABLE = """
# field                         admin    cs sales wareh purch   ops finan appro compl integ
Order.id                            -     F     F     F     F     F     F     F     F     F
Order.number                        -     F     F     F     F     F     F     F     F     F
Order.channel                       -     F     F     F     F     F     F     F     F     F
Order.externalId                    -     F     F     F     F     F     F     F     F     F
Order.status                        -     F     F     F     F     F     F     F     F     F
Order.currency                      -     F     F     F     F     F     F     F     F     F
Order.createdAt                     -     F     F     F     F     F     F     F     F     F
Order.updatedAt                     -     F     F     F     F     F     F     F     F     F
Order.businessDay                   -     F     F     F     F     F     F     F     F     F
Order.escalatedAt                   -     F     F     F     F     F     F     F     F     F
Order.version                       -     F     F     F     F     F     F     F     F     F
Order.subtotal                      -     F     F     -     -     F     F     F     -     -
Order.shippingFee                   -     F     F     -     -     F     F     F     -     -
Order.discount                      -     F     F     -     -     F     F     F     -     -
Order.total                         -     F     F     -     -     F     F     F     -     -
Order.refundedAmount                -     F     F     -     -     F     F     F     -     -
Order.grossMargin                   -     -     -     -     -     -     F     -     -     -
Order.customer                      -     F     F     -     -     F     F     F     F     -
Order.customerName                  -     F     F     -     -     M     M     M     M     -
Order.customerPhone                 -     F     M     -     -     M     M     M     M     -
Order.shippingAddress               -     F     F     F     -     F     F     F     F     -
Order.paymentMethod                 -     F     -     -     -     F     F     -     -     -
Order.paymentTransactionId          -     -     -     -     -     -     F     -     -     -
Order.carrier                       -     F     F     F     -     F     -     -     -     -
Order.trackingNumber                -     F     F     F     -     F     -     -     -     -
Order.internalNote                  -     F     -     -     -     F     -     -     -     -
Order.lines                         -     F     F     F     F     F     F     F     F     -
Order.statusHistory                 -     F     F     F     F     F     F     F     F     F

OrderLine.id                        -     F     F     F     F     F     F     F     F     -
OrderLine.sku                       -     F     F     F     F     F     F     F     F     -
OrderLine.name                      -     F     F     F     F     F     F     F     F     -
OrderLine.quantity                  -     F     F     F     F     F     F     F     F     -
OrderLine.unitPrice                 -     F     F     -     -     F     F     F     -     -
OrderLine.lineTotal                 -     F     F     -     -     F     F     F     -     -
OrderLine.costPrice                 -     -     -     -     F     -     F     -     -     -

OrderStatusChange.from              -     F     F     F     F     F     F     F     F     F
OrderStatusChange.to                -     F     F     F     F     F     F     F     F     F
OrderStatusChange.actor             -     F     F     F     F     F     F     F     F     F
OrderStatusChange.at                -     F     F     F     F     F     F     F     F     F
OrderStatusChange.note              -     F     F     F     F     F     F     F     F     F

Customer.id                         -     F     F     -     -     F     F     F     F     -
Customer.name                       -     F     F     -     -     M     M     M     M     -
Customer.phone                      -     F     M     -     -     M     M     M     M     -
Customer.email                      -     F     M     -     -     M     M     M     M     -
Customer.createdAt                  -     F     F     -     -     F     F     F     F     -
Customer.addresses                  -     F     F     -     -     F     F     F     F     -
Customer.orders                     -     F     F     -     -     F     F     F     F     -
Customer.version                    -     F     F     -     -     F     F     F     F     -
Customer.phoneValid                 -     F     F     -     -     F     F     F     F     -
Customer.mergedInto                 -     F     F     -     -     F     F     F     F     -
Customer.orderCount                 -     F     F     -     -     F     F     F     F     -
Customer.totalSpent                 -     F     F     -     -     F     F     F     -     -
Customer.totalSpentCurrency         -     F     F     -     -     F     F     F     F     -
Customer.lastOrderAt                -     F     F     -     -     F     F     F     F     -
Customer.channels                   -     F     F     -     -     F     F     F     F     -
Customer.returns                    -     F     F     -     -     F     F     F     F     -
Customer.contactHistory             -     F     -     -     -     -     -     -     -     -

Address.recipient                   -     F     M     F     -     M     M     M     M     -
Address.phone                       -     F     M     F     -     M     M     M     M     -
Address.province                    -     F     F     F     -     F     F     F     F     -
Address.city                        -     F     F     F     -     F     F     F     F     -
Address.district                    -     F     F     F     -     F     F     F     F     -
Address.street                      -     F     M     F     -     M     M     M     M     -
Address.postalCode                  -     F     F     F     -     F     F     F     F     -

ApprovalRequest.id                  -     F     F     -     -     -     F     F     F     -
ApprovalRequest.kind                -     F     F     -     -     -     F     F     F     -
ApprovalRequest.status              -     F     F     -     -     -     F     F     F     -
ApprovalRequest.orderId             -     F     F     -     -     -     F     F     F     -
ApprovalRequest.orderNumber         -     F     F     -     -     -     F     F     F     -
ApprovalRequest.orderLineId         -     F     F     -     -     -     F     F     F     -
ApprovalRequest.amount              -     F     F     -     -     -     F     F     -     -
ApprovalRequest.currency            -     F     F     -     -     -     F     F     F     -
ApprovalRequest.requestedBy         -     F     F     -     -     -     F     F     F     -
ApprovalRequest.reason              -     F     F     -     -     -     F     F     F     -
ApprovalRequest.summary             -     F     F     -     -     -     F     F     -     -
ApprovalRequest.signingPayload      -     F     F     -     -     -     F     F     -     -
ApprovalRequest.createdAt           -     F     F     -     -     -     F     F     F     -
ApprovalRequest.expiresAt           -     F     F     -     -     -     F     F     F     -
ApprovalRequest.decidedAt           -     F     F     -     -     -     F     F     F     -
ApprovalRequest.decidedBy           -     F     F     -     -     -     F     F     F     -
ApprovalRequest.decisionReason      -     F     F     -     -     -     F     F     F     -
ApprovalRequest.keyFingerprint      -     F     F     -     -     -     F     F     F     -

ExportRequest.id                    -     -     F     -     -     F     F     F     F     -
ExportRequest.entity                -     -     F     -     -     F     F     F     F     -
ExportRequest.filter                -     -     F     -     -     F     F     F     F     -
ExportRequest.fields                -     -     F     -     -     F     F     F     F     -
ExportRequest.reason                -     -     F     -     -     F     F     F     F     -
ExportRequest.status                -     -     F     -     -     F     F     F     F     -
ExportRequest.requestedBy           -     -     F     -     -     F     F     F     F     -
ExportRequest.expectedRows          -     -     F     -     -     F     F     F     F     -
ExportRequest.scopeDigest           -     -     F     -     -     F     F     F     F     -
ExportRequest.createdAt             -     -     F     -     -     F     F     F     F     -
ExportRequest.expiresAt             -     -     F     -     -     F     F     F     F     -
ExportRequest.approvedL1By          -     -     F     -     -     F     F     F     F     -
ExportRequest.approvedL1At          -     -     F     -     -     F     F     F     F     -
ExportRequest.approvedL2By          -     -     F     -     -     F     F     F     F     -
ExportRequest.approvedL2At          -     -     F     -     -     F     F     F     F     -
ExportRequest.rejectedBy            -     -     F     -     -     F     F     F     F     -
ExportRequest.rejectionReason       -     -     F     -     -     F     F     F     F     -
ExportRequest.rowCount              -     -     F     -     -     F     F     F     F     -
ExportRequest.sha256                -     -     F     -     -     F     F     F     F     -
ExportRequest.producedAt            -     -     F     -     -     F     F     F     F     -
ExportRequest.failureReason         -     -     F     -     -     F     F     F     F     -
ExportRequest.downloadUrl           -     -     F     -     -     F     F     F     F     -
ExportRequest.downloadExpiresAt     -     -     F     -     -     F     F     F     F     -
ExportRequest.downloadedAt          -     -     F     -     -     F     F     F     F     -

StockItem.id                        -     F     F     F     F     F     F     -     -     F
StockItem.sku                       -     F     F     F     F     F     F     -     -     F
StockItem.productName               -     F     F     F     F     F     F     -     -     F
StockItem.warehouse                 -     F     F     F     F     F     F     -     -     F
StockItem.onHand                    -     F     F     F     F     F     F     -     -     F
StockItem.reserved                  -     F     F     F     F     F     F     -     -     F
StockItem.available                 -     F     F     F     F     F     F     -     -     F
StockItem.safetyThreshold           -     F     F     F     F     F     F     -     -     F
StockItem.unitCost                  -     -     -     -     F     -     F     -     -     -
StockItem.updatedAt                 -     F     F     F     F     F     F     -     -     F
StockMovement.id                    -     -     -     -     F     F     F     -     -     -
StockMovement.at                    -     -     -     -     F     F     F     -     -     -
StockMovement.sku                   -     -     -     -     F     F     F     -     -     -
StockMovement.warehouse             -     -     -     -     F     F     F     -     -     -
StockMovement.onHandDelta           -     -     -     -     F     F     F     -     -     -
StockMovement.reservedDelta         -     -     -     -     F     F     F     -     -     -
StockMovement.reason                -     -     -     -     F     F     F     -     -     -
StockMovement.reference             -     -     -     -     F     F     F     -     -     -
StockMovement.actor                 -     -     -     -     F     F     F     -     -     -
StockMovement.unitCost              -     -     -     -     -     -     F     -     -     -
"""

_LETTERS = {"F": "FULL", "M": "MASKED", "-": "NONE"}


def expected() -> dict[tuple[str, str], str]:
    """{(role, "Type.field"): "FULL" | "MASKED" | "NONE"} from the table above."""
    result: dict[tuple[str, str], str] = {}
    for line in TABLE.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        coordinate, *cells = line.split()
        assert len(cells) == len(ROLES), line
        for role, cell in zip(ROLES, cells, strict=True):
            result[(role, coordinate)] = _LETTERS[cell]
    return result


# Who may perform which operation; every role not listed for an action is refused.
OPERATIONS = {
    "order:transition": {"warehouse", "ops"},
    "order:ingest": {"integration"},
    "picking:read": {"warehouse", "ops"},
    "channel:reconcile": {"integration", "ops"},
    "webhook:manage": {"admin", "integration"},
    "price:request": {"sales"},
    "refund:request": {"cs", "sales", "finance"},
    "approval:sign": {"approver"},
    "export:request": {"sales", "ops", "finance"},
    "export:approve_l1": {"approver"},
    "export:approve_l2": {"compliance"},
    "audit:read": {"compliance"},
    "report:access": {"compliance"},
    "user:admin": {"admin"},
    "stock:reserve": {"integration"},
    "stock:adjust": {"warehouse", "purchasing"},
    "stock:ledger": {"finance", "ops", "purchasing"},
    "stock:pool": {"ops"},
    "return:register": {"warehouse"},
    "stock:count": {"warehouse"},
    "stock:alerts": {"purchasing", "ops"},
    "task:work": {"ops", "warehouse", "purchasing", "finance", "cs", "sales"},
    "customer:update": {"cs"},
    "order:change_address": {"cs"},
    "customer:merge": {"ops"},
    "kpi:read": {"ops", "finance", "purchasing", "compliance"},
}
