"""Imports every model so `Base.metadata` is complete (Alembic and tests rely on it)."""

from domain.approvals.models import ApprovalRequest, ConsumedNonce, SigningKey
from domain.audit.models import AuditCheckpoint, AuditEvent, AuditHead, AuditPending
from domain.catalog.models import Product, StockItem
from domain.channels.models import Channel
from domain.customers.models import (
    Address,
    Customer,
    CustomerChange,
    CustomerMerge,
    MatchCandidate,
)
from domain.db import Base
from domain.events.models import OutboxEvent, OutboxHead
from domain.events.webhooks import OutboxCursor, Webhook, WebhookDelivery
from domain.exports.models import ExportRequest
from domain.intake.reconciliation import SnapshotRow
from domain.inventory.models import (
    ReturnInspection,
    StockAlert,
    StockCount,
    StockCountLine,
    StockMovement,
    StockPool,
    StockReservation,
    StockReservationLine,
    StockReturn,
    StockReturnLine,
)
from domain.jobs.scheduler import JobRun
from domain.kpis.models import KpiFact
from domain.orders.models import Order, OrderLine, OrderStatusChange
from domain.orders.picking import PickingLine, PickingList
from domain.ratelimit import RateCounter
from domain.tasks.models import Task
from domain.users.models import User, UserChannel, UserRole

__all__ = [
    "Address",
    "ApprovalRequest",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditHead",
    "AuditPending",
    "Base",
    "Channel",
    "ConsumedNonce",
    "Customer",
    "CustomerChange",
    "CustomerMerge",
    "ExportRequest",
    "JobRun",
    "KpiFact",
    "MatchCandidate",
    "Order",
    "OrderLine",
    "OrderStatusChange",
    "OutboxCursor",
    "OutboxEvent",
    "OutboxHead",
    "PickingLine",
    "PickingList",
    "Product",
    "RateCounter",
    "ReturnInspection",
    "SigningKey",
    "SnapshotRow",
    "StockAlert",
    "StockCount",
    "StockCountLine",
    "StockItem",
    "StockMovement",
    "StockPool",
    "StockReservation",
    "StockReservationLine",
    "StockReturn",
    "StockReturnLine",
    "Task",
    "User",
    "UserChannel",
    "UserRole",
    "Webhook",
    "WebhookDelivery",
]
