"""Descriptions of every type, field, argument and enum value, in the business's words.

Front-end teams read the API in GraphiQL's Docs pane and in generated types, so each entry
says what the value means, its unit and time zone, whether it may come back masked, and who
may read or call it. Descriptions written beside a field in its module win; this table fills
in the rest, once, when the schema is built (`describe`). Connection and edge types are
described from their node type. `tests/unit/test_schema_docs.py` fails on anything left
undescribed, and `make test` runs graphql-schema-linter's description and Relay rules.
"""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
)

TIME = "ISO 8601 with offset, stored in UTC"
MASKED = "May come back masked (e.g. `138****5678`) or null, by your role's field policy."
RESTRICTED = "Restricted business data: finance and purchasing only; every read is audited."
PERSONAL = "Personal data: masked for some roles; every read that returns it is audited."

FIRST = "How many items to return, 0 to 100."
AFTER = "Return items after this cursor (`pageInfo.endCursor` of the previous page)."

DESCRIPTIONS: dict[str, str] = {
    # ---- root types
    "Query": "Everything a signed-in caller may read. Anonymous callers may only log in.",
    "Mutation": (
        "Every change. Each runs in one transaction with its audit event; a refused or "
        "failed mutation changes nothing and is audited too."
    ),
    "Subscription": (
        "Live streams over graphql-transport-ws at /graphql, authenticated by the bearer "
        "token in `connection_init`."
    ),
    "Query.viewer": "The signed-in account: roles, channels, permitted operations and fields.",
    "Query.node(id)": "A global ID from any object's `id`.",
    "Query.orders(first)": FIRST,
    "Query.orders(after)": AFTER,
    "Query.orders(filter)": "Conditions that must all hold.",
    "Query.orders(orderBy)": "Sort order; newest first when omitted.",
    "Query.order": "One order in your row scope; NOT_FOUND when missing or out of scope.",
    "Query.order(id)": "The order's global ID (a bare row number is deprecated).",
    "Query.customers": "Customers in your row scope (sales: customers of your channels).",
    "Query.customers(first)": FIRST,
    "Query.customers(after)": AFTER,
    "Query.customers(filter)": "Conditions that must all hold.",
    "Query.customer": "One customer in your row scope; NOT_FOUND when missing or out of scope.",
    "Query.customer(id)": "The customer's global ID (a bare row number is deprecated).",
    "Query.stockItems": "Stock per SKU and warehouse, by id.",
    "Query.stockItems(first)": FIRST,
    "Query.stockItems(after)": AFTER,
    "Query.stockItems(filter)": "Conditions that must all hold.",
    "Query.stockItem(sku)": "The SKU, exactly as on the order line.",
    "Query.stockItem(warehouse)": "A warehouse code; omitted, the one with most on hand.",
    "Query.approvalRequests(status)": "Only requests in this status.",
    "Query.approvalRequests(first)": FIRST,
    "Query.approvalRequests(after)": AFTER,
    "Query.approvalRequest": "One approval request you may see.",
    "Query.approvalRequest(id)": "The request's global ID (a bare row number is deprecated).",
    "Query.exportRequests(status)": "Only requests in this status.",
    "Query.exportRequests(first)": FIRST,
    "Query.exportRequests(after)": AFTER,
    "Query.exportRequest": "One export request you may see.",
    "Query.exportRequest(id)": "The request's global ID (a bare row number is deprecated).",
    "Query.auditEvents(filter)": "Conditions that must all hold.",
    "Query.auditEvents(first)": FIRST,
    "Query.auditEvents(after)": AFTER,
    "Query.accessReport(quarter)": 'A calendar quarter in the business timezone: "2026-Q3".',
    "Query.accessReport(format)": "JSON, a zip of CSV files, or a printable HTML document.",
    "Query.accessReport(throughSeq)": (
        "Read the audit log up to this sequence number, to reproduce an earlier report "
        "byte for byte; the newest event when omitted."
    ),
    "Query.users(first)": FIRST,
    "Query.users(after)": AFTER,
    # ---- mutations' arguments
    "Mutation.login(username)": "The account's username.",
    "Mutation.login(password)": "Sent in the POST body only; never put it in a URL.",
    "Mutation.transitionOrder(id)": "The order's global ID.",
    "Mutation.transitionOrder(to)": "The next status; see OrderStatus for the allowed moves.",
    "Mutation.transitionOrder(note)": "Kept in the status history (up to 2,000 characters).",
    "Mutation.requestPriceChange(orderLineId)": "The order line's global ID.",
    "Mutation.requestPriceChange(newUnitPrice)": "The new unit price, in the order's currency.",
    "Mutation.requestPriceChange(reason)": "Why; the approver sees it as text.",
    "Mutation.requestRefund(orderId)": "The paid order's global ID.",
    "Mutation.requestRefund(amount)": (
        "In the order's currency; at most what was paid less what was already refunded."
    ),
    "Mutation.requestRefund(reason)": "Why; the approver sees it as text.",
    "Mutation.registerSigningKey(publicKey)": "An Ed25519 public key, PEM (SPKI).",
    "Mutation.revokeSigningKey(id)": "The key's id (its JWS `kid`).",
    "Mutation.approveRequest(id)": "The approval request's global ID.",
    "Mutation.approveRequest(signature)": (
        "Compact JWS over `signingPayload`: alg EdDSA or Ed25519, kid = your key's id."
    ),
    "Mutation.rejectRequest(id)": "The approval request's global ID.",
    "Mutation.rejectRequest(reason)": "Why; recorded with the decision.",
    "Mutation.requestExport(input)": "What to export and why.",
    "Mutation.approveExport(id)": "The export request's global ID.",
    "Mutation.rejectExport(id)": "The export request's global ID.",
    "Mutation.rejectExport(reason)": "Why; recorded with the decision.",
    "Mutation.disableUser(username)": "The account to disable.",
    "Mutation.enableUser(username)": "The account to enable.",
    "Mutation.unlockUser(username)": "The locked account.",
    "Mutation.setUserRoles(username)": "The account whose roles change.",
    "Mutation.setUserRoles(roles)": "Every role it should hold from now on.",
    "Mutation.resetUserPassword(username)": "The account whose password changes.",
    "Mutation.resetUserPassword(password)": "The new password (at least 12 characters).",
    # ---- auth and viewer
    "AuthPayload": "A bearer token for the `Authorization` header.",
    "AuthPayload.accessToken": "Send as `Authorization: Bearer <token>`.",
    "AuthPayload.expiresAt": f"When the token stops working ({TIME}).",
    "Viewer": "The signed-in account and what its roles allow.",
    "Viewer.username": "The account's username.",
    "Viewer.roles": "Roles held (cs, sales, warehouse, purchasing, ops, finance…).",
    "Viewer.channels": "Channels a sales account is bound to; its order rows are limited to them.",
    "Viewer.fieldAccess": "Every governed field with your access to it: FULL, MASKED or NONE.",
    "Viewer.businessTimezone": (
        "The business timezone (IANA name, e.g. Asia/Shanghai): business days, KPIs and "
        "schedules are counted in it."
    ),
    "Viewer.businessToday": (
        "Today in the business timezone: pages compute their periods from it, never from the "
        "browser's own date."
    ),
    "FieldAccessEntry": "Your access to one governed field.",
    "FieldAccessEntry.type": 'The object type, e.g. "Order".',
    "FieldAccessEntry.field": 'The field, e.g. "customerPhone".',
    "FieldAccessEntry.access": "FULL, MASKED or NONE.",
    "Access": "How much of a field a role may read.",
    "Access.FULL": "The value as stored.",
    "Access.MASKED": "A masked form: `138****5678`, `z***@example.com`, `张*`.",
    "Access.NONE": "Null, with a FORBIDDEN error naming the field.",
    # ---- orders
    "Order.number": "The order number shown to customers and staff.",
    "Order.channel": "The sales channel the order came from.",
    "Order.externalId": "The order's id in its channel (e.g. a Taobao order number).",
    "Order.status": "Where the order is in its lifecycle.",
    "Order.currency": 'ISO 4217 code of every amount on the order, e.g. "CNY".',
    "Order.createdAt": f"When the order was placed ({TIME}).",
    "Order.updatedAt": f"When the order last changed ({TIME}).",
    "Order.businessDay": (
        "The day the order was placed in the business timezone (ORDERGATE_TIMEZONE), which "
        "daily queues and reconciliation go by; null for orders from before the intake."
    ),
    "Order.escalatedAt": (
        "When the order was escalated to the manual channel for waiting too long; null if never."
    ),
    "Order.version": "Grows with every change; pass it as `expectedVersion` to avoid lost updates.",
    "Order.subtotal": "Sum of the line totals, in the order's currency.",
    "Order.shippingFee": "Shipping charged to the customer, in the order's currency.",
    "Order.discount": "Discount given, in the order's currency.",
    "Order.total": "What the customer pays: subtotal plus shipping less discount.",
    "Order.grossMargin": f"Total less the cost of goods. {RESTRICTED}",
    "Order.customer": "The customer record. " + MASKED,
    "Order.customerName": f"The buyer's name. {PERSONAL}",
    "Order.customerPhone": f"The buyer's phone. {PERSONAL}",
    "Order.shippingAddress": "Where the parcel goes. Person and street may come back masked.",
    "Order.paymentMethod": "How the customer paid (e.g. alipay, wechat).",
    "Order.paymentTransactionId": f"The payment provider's transaction id. {RESTRICTED}",
    "Order.carrier": "The carrier once shipped.",
    "Order.trackingNumber": "The carrier's tracking number once shipped.",
    "Order.internalNote": "Staff-only note; never shown to the customer.",
    "Order.lines": "What was bought.",
    "Order.statusHistory": "Every status change, oldest first, with who and when.",
    "OrderLine": "One SKU on an order, with its quantity and prices.",
    "OrderLine.sku": "The stock-keeping unit.",
    "OrderLine.name": "The product name at the time of ordering.",
    "OrderLine.quantity": "Units ordered (a positive integer).",
    "OrderLine.unitPrice": "Price per unit, in the order's currency.",
    "OrderLine.lineTotal": "Quantity times unit price, in the order's currency.",
    "OrderLine.costPrice": f"What one unit cost us. {RESTRICTED}",
    "OrderStatusChange.from": "The status before (null for the first entry).",
    "OrderStatusChange.to": "The status after.",
    "OrderStatusChange.actor": "Who made the change (username, or the channel or server).",
    "OrderStatusChange.at": f"When ({TIME}).",
    "OrderStatusChange.note": "The note given with the change.",
    "OrderStatus": (
        "The lifecycle: PENDING_PAYMENT → PAID → PICKING → SHIPPED → COMPLETED; CANCELLED from "
        "any status before SHIPPED."
    ),
    "OrderStatus.PENDING_PAYMENT": "Placed, not yet paid.",
    "OrderStatus.PAID": "Paid; waiting to be picked.",
    "OrderStatus.PICKING": "Being picked and packed in the warehouse.",
    "OrderStatus.SHIPPED": "Handed to the carrier.",
    "OrderStatus.COMPLETED": "Delivered and closed.",
    "OrderStatus.CANCELLED": "Cancelled before shipping.",
    "OrderFilter.status": "Any of these statuses.",
    "OrderFilter.channel": "Any of these channels (within your row scope).",
    "OrderFilter.customerId": "Orders of this customer (global ID); needs Order.customer in full.",
    "OrderFilter.minTotal": "Total at least this amount; needs Order.total in full.",
    "OrderFilter.maxTotal": "Total at most this amount; needs Order.total in full.",
    "OrderOrder": "How to sort orders.",
    "OrderOrder.field": "The sort key.",
    "OrderOrder.direction": "Ascending or descending.",
    "OrderSortField": "Keys orders can be sorted by.",
    "OrderSortField.CREATED_AT": "When the order was placed.",
    "OrderSortField.TOTAL": "The order total (needs Order.total in full).",
    "SortDirection": "Sort direction.",
    "SortDirection.ASC": "Smallest or oldest first.",
    "SortDirection.DESC": "Largest or newest first.",
    "Channel": "A sales channel orders come from.",
    "Channel.TAOBAO": "Taobao / Tmall.",
    "Channel.JD": "JD.com.",
    "Channel.PINDUODUO": "Pinduoduo.",
    "Channel.WEB": "Our own web shop.",
    # ---- customers and addresses
    "Customer.name": f"Full name. {PERSONAL}",
    "Customer.phone": f"Mobile phone. {PERSONAL}",
    "Customer.email": f"Email address. {PERSONAL}",
    "Customer.createdAt": f"When the customer was first recorded ({TIME}).",
    "Customer.addresses": "Known delivery addresses.",
    "Customer.orders(first)": "How many of the latest orders, 0 to 100.",
    "CustomerFilter": "Conditions on customers; all given must hold.",
    "CustomerFilter.nameContains": "Part of the name; needs Customer.name in full.",
    "CustomerFilter.phone": "The exact phone; needs Customer.phone in full.",
    "CustomerFilter.email": "The exact email; needs Customer.email in full.",
    "Address.recipient": f"Who receives the parcel. {PERSONAL}",
    "Address.phone": f"The recipient's phone. {PERSONAL}",
    "Address.province": "Province (readable for regional analysis).",
    "Address.city": "City.",
    "Address.district": "District.",
    "Address.street": f"Street and number. {PERSONAL}",
    "Address.postalCode": "Postal code.",
    # ---- stock
    "StockItem.sku": "The stock-keeping unit.",
    "StockItem.productName": "The product's name.",
    "StockItem.warehouse": "The warehouse code.",
    "StockItem.onHand": "Units physically in the warehouse.",
    "StockItem.reserved": "Units reserved for orders not yet shipped.",
    "StockItem.available": "On hand less reserved: what can still be sold.",
    "StockItem.safetyThreshold": "Below this many available units, stock is low.",
    "StockItem.unitCost": f"What one unit cost us. {RESTRICTED}",
    "StockItem.updatedAt": f"When the levels last changed ({TIME}).",
    "StockFilter": "Conditions on stock; all given must hold.",
    "StockFilter.sku": "Exactly this SKU.",
    "StockFilter.warehouse": "Exactly this warehouse code.",
    "StockFilter.belowSafetyThreshold": "True: only items below their safety threshold.",
    # ---- approvals
    "ApprovalRequest.kind": "Price change or refund.",
    "ApprovalRequest.status": "Where the request stands.",
    "ApprovalRequest.orderId": "The order's global ID.",
    "ApprovalRequest.orderNumber": "The order's number.",
    "ApprovalRequest.orderLineId": "The order line's global ID (price changes only).",
    "ApprovalRequest.currency": "ISO 4217 code of `amount`.",
    "ApprovalRequest.requestedBy": "Who asked (username).",
    "ApprovalRequest.reason": "Why they asked. Show it as text, never as HTML.",
    "ApprovalRequest.summary": "One line saying what signing will do.",
    "ApprovalRequest.createdAt": f"When it was asked ({TIME}).",
    "ApprovalRequest.expiresAt": f"After this, it can no longer be signed ({TIME}).",
    "ApprovalRequest.decidedAt": f"When it was approved, rejected or voided ({TIME}).",
    "ApprovalRequest.decidedBy": "Who decided (username).",
    "ApprovalRequest.decisionReason": "Why it was rejected or voided.",
    "ApprovalRequest.keyFingerprint": "SHA-256 fingerprint of the key that signed it.",
    "ApprovalKind": "What an approval request would change.",
    "ApprovalKind.PRICE_CHANGE": "A new unit price on one order line.",
    "ApprovalKind.REFUND": "Money back to the customer, at most what was paid.",
    "ApprovalStatus": "Where an approval request stands.",
    "ApprovalStatus.PENDING": "Waiting for a signature.",
    "ApprovalStatus.APPROVED": "Signed and applied.",
    "ApprovalStatus.REJECTED": "Rejected by an approver, or withdrawn by the requester.",
    "ApprovalStatus.EXPIRED": "Not signed in time.",
    "ApprovalStatus.VOIDED": "The order changed after the request, so it no longer applies.",
    "SigningKey.id": "The key's id: the `kid` of your JWS signatures.",
    "SigningKey.fingerprint": "SHA-256 of the public key, to compare with your device.",
    "SigningKey.createdAt": f"When it was registered ({TIME}).",
    "SigningKey.revokedAt": f"When it was revoked; null while it works ({TIME}).",
    # ---- exports
    "ExportInput": "An export to ask for.",
    "ExportInput.entity": "What to export.",
    "ExportInput.fields": "Field names of that entity; each must be readable in full by you.",
    "ExportInput.reason": "Why; the approvers see it.",
    "ExportInput.filter": "A filter with the names of that entity's query filter.",
    "ExportRequest.entity": "What is exported.",
    "ExportRequest.filter": "The filter asked for (amounts shown only to readers of totals).",
    "ExportRequest.fields": "The fields exported.",
    "ExportRequest.reason": "Why it was asked for.",
    "ExportRequest.status": "Where the request stands.",
    "ExportRequest.requestedBy": "Who asked (username).",
    "ExportRequest.createdAt": f"When it was asked ({TIME}).",
    "ExportRequest.expiresAt": f"Unapproved after this, it expires ({TIME}).",
    "ExportRequest.approvedL1By": "The first-level approver (username).",
    "ExportRequest.approvedL1At": f"When the first approval was given ({TIME}).",
    "ExportRequest.approvedL2By": "The second-level approver, from compliance (username).",
    "ExportRequest.approvedL2At": f"When the second approval was given ({TIME}).",
    "ExportRequest.rejectedBy": "Who rejected it (username).",
    "ExportRequest.rejectionReason": "Why it was rejected.",
    "ExportRequest.rowCount": "Rows in the file produced.",
    "ExportRequest.sha256": "SHA-256 of the file, to check the download.",
    "ExportRequest.producedAt": f"When the file was produced ({TIME}).",
    "ExportRequest.downloadExpiresAt": f"The download link stops working then ({TIME}).",
    "ExportRequest.downloadedAt": f"When the file was downloaded, once ({TIME}).",
    "ExportEntity": "What can be exported.",
    "ExportEntity.ORDERS": "Orders in the requester's row scope.",
    "ExportEntity.CUSTOMERS": "Customers in the requester's row scope.",
    "ExportEntity.STOCK": "Stock levels.",
    "ExportStatus": "Where an export request stands.",
    "ExportStatus.PENDING_L1": "Waiting for the first approval (an approver).",
    "ExportStatus.PENDING_L2": "Waiting for the second approval (compliance).",
    "ExportStatus.APPROVED": "Approved; the file is being produced.",
    "ExportStatus.READY": "The file can be downloaded once by the requester.",
    "ExportStatus.DOWNLOADED": "Downloaded; the link no longer works.",
    "ExportStatus.REJECTED": "Rejected at either level; final.",
    "ExportStatus.EXPIRED": "Not approved in time, or not downloaded in time.",
    "ExportStatus.FAILED": "The file could not be produced after its retries.",
    # ---- audit
    "AuditEvent.seq": "Position in the log; gapless.",
    "AuditEvent.at": f"When ({TIME}).",
    "AuditEvent.actorId": "The account's row id, or null for the server or an anonymous caller.",
    "AuditEvent.username": "The account's username at the time.",
    "AuditEvent.roles": "The account's roles at the time.",
    "AuditEvent.clientIp": "The client's address, resolved through trusted proxies.",
    "AuditEvent.peerIp": "The address of the TCP peer (a proxy or the client).",
    "AuditEvent.userAgent": "The caller's User-Agent header.",
    "AuditEvent.requestId": "The request id (`X-Request-ID`), to find the log lines.",
    "AuditEvent.operation": "The GraphQL root fields or CLI command.",
    "AuditEvent.action": 'What was done, e.g. "order.transition", "data.read".',
    "AuditEvent.targetType": 'The kind of object, e.g. "Order".',
    "AuditEvent.targetId": "The object's row id (the audit filter also takes a global ID).",
    "AuditEvent.outcome": "success, denied or failure.",
    "AuditEvent.code": "The error code of a denial or failure.",
    "AuditEvent.details": "What changed or was read; fields you may not read are withheld.",
    "AuditEvent.prevHash": "The previous event's hash (the chain).",
    "AuditEvent.hash": "SHA-256 over this event and prevHash.",
    "AuditEventFilter.action": "Exactly this action.",
    "AuditEventFilter.targetType": "Exactly this target type.",
    "AuditEventFilter.from": f"At or after ({TIME}).",
    "AuditEventFilter.to": f"Before ({TIME}).",
    # ---- report
    "AccessReport.quarter": 'The quarter, e.g. "2026-Q3".',
    "AccessReport.periodStart": "First instant of the quarter in the business timezone.",
    "AccessReport.periodEnd": "First instant after the quarter (exclusive).",
    "AccessReport.format": "How `content` is rendered.",
    # ---- accounts
    "UserAccount.username": "The account's username.",
    "UserAccount.roles": "Roles held.",
    "UserAccount.disabled": "True when the account may not log in.",
    "UserAccount.lockedUntil": f"Locked after failed logins until then ({TIME}).",
    "UserAccount.lastLoginAt": f"The last successful login ({TIME}).",
    "UserAccount.createdAt": f"When the account was created ({TIME}).",
    # ---- paging
    "PageInfo": "Where a page stands in its list (Relay cursor connections).",
    "PageInfo.hasNextPage": "More items follow this page.",
    "PageInfo.hasPreviousPage": "This page was asked for with `after`.",
    "PageInfo.startCursor": "The first item's cursor.",
    "PageInfo.endCursor": "The last item's cursor; pass it as `after` for the next page.",
    # ---- error codes
    "ErrorCode.UNAUTHENTICATED": "Log in first, or the token expired or was revoked.",
    "ErrorCode.FORBIDDEN": "Your role may not do this or read this field (`extensions.field`).",
    "ErrorCode.BAD_USER_INPUT": "An argument is malformed or out of range; nothing changed.",
    "ErrorCode.NOT_FOUND": "No such object, or it is outside your row scope.",
    "ErrorCode.CONFLICT": "Someone changed it first (version), or it already exists.",
    "ErrorCode.INVALID_TRANSITION": "The order's lifecycle does not allow this move.",
    "ErrorCode.INSUFFICIENT_STOCK": "Not enough available stock.",
    "ErrorCode.SIGNATURE_INVALID": "The signature does not verify over the signing payload.",
    "ErrorCode.SEPARATION_OF_DUTIES": "The same person may not request and approve.",
    "ErrorCode.QUERY_TOO_COMPLEX": "Over a depth, alias, token or cost limit.",
    "ErrorCode.RATE_LIMITED": "Too many requests; retry after `extensions.retryAfter` seconds.",
    "ErrorCode.UNAVAILABLE": "The database is not answering; retry after Retry-After.",
    "ErrorCode.INTERNAL": "A fault on our side; quote `extensions.requestId`.",
    # ---- webhooks (holders of webhook:manage)
    "Query.webhookDeliveries(status)": "Only deliveries in this state.",
    "Query.webhookDeliveries(first)": FIRST,
    "Query.webhookDeliveries(after)": AFTER,
    "Webhook.id": "Global ID of the webhook.",
    "Webhook.url": "Where events are POSTed (http or https).",
    "Webhook.events": "The event types it receives.",
    "Webhook.createdAt": f"When it was registered ({TIME}).",
    "Webhook.disabledAt": f"When it was disabled, or null while active ({TIME}).",
    "OrderEventType.ORDER_STATUS_CHANGED": "An order moved along its lifecycle.",
    "OrderEventType.ORDER_PRICE_CHANGED": "A signed price change took effect.",
    "OrderEventType.ORDER_REFUNDED": "A signed refund took effect.",
    "WebhookDelivery.id": "Global ID of the delivery (for `redeliverWebhook`).",
    "WebhookDelivery.webhookId": "The webhook it goes to.",
    "WebhookDelivery.eventId": "The event id, sent as `X-Ordergate-Event-Id`: de-duplicate on it.",
    "WebhookDelivery.seq": "The event's place in the global order of committed changes.",
    "WebhookDelivery.status": "Pending, delivered, or failed after 24 hours of retries.",
    "WebhookDelivery.attempts": "How many times it was sent since it was last (re)queued.",
    "WebhookDelivery.nextAttemptAt": f"When it is sent next while pending ({TIME}).",
    "WebhookDelivery.createdAt": f"When it was queued or requeued ({TIME}).",
    "WebhookDelivery.deliveredAt": f"When the receiver answered 2xx ({TIME}).",
    "WebhookDelivery.lastStatus": "The receiver's last HTTP status, or null (no answer).",
    "WebhookDelivery.lastError": "Why the last attempt failed, or null.",
    "WebhookDeliveryStatus.PENDING": "Waiting to be sent, or to be retried.",
    "WebhookDeliveryStatus.DELIVERED": "The receiver answered 2xx.",
    "WebhookDeliveryStatus.FAILED": "Retried for 24 hours without success; `redeliverWebhook`.",
    "Mutation.registerWebhook(input)": "URL, event types and a shared secret (16+ characters).",
    "Mutation.disableWebhook(id)": "The webhook's global ID.",
    "Mutation.redeliverWebhook(id)": "The delivery's global ID.",
    "WebhookInput.url": "http(s) URL; internal addresses are refused in production.",
    "WebhookInput.events": "One or more event types.",
    "WebhookInput.secret": "Key for the HMAC-SHA256 signature header; never shown again.",
    "OrderEventType.ORDER_CREATED": "An order arrived (channel intake).",
    "OrderEventType.PICKING_LIST_CREATED": (
        "A paid order got its picking list; the payload names the list and its warehouse."
    ),
    # ---- customers
    "Query.customerMatchCandidates(first)": FIRST,
    "Query.customerMatchCandidates(after)": AFTER,
    "CustomerMatchCandidate.id": "Global ID of the pair.",
    "Mutation.updateCustomerContact(id)": "The customer's global ID.",
    "Mutation.updateCustomerContact(input)": "The new values; a field left out stays as it is.",
    "Mutation.updateCustomerContact(expectedVersion)": (
        "The `version` you read: a customer changed since then is a CONFLICT."
    ),
    "Mutation.addCustomerAddress(customerId)": "The customer's global ID.",
    "Mutation.addCustomerAddress(address)": "The address to add.",
    "Mutation.addCustomerAddress(makeDefault)": (
        "Make it the default (the first address always is); the previous default stays."
    ),
    "CustomerContactInput.name": "The customer's name.",
    "CustomerContactInput.phone": (
        "A phone number, any common form (`+86 138 0013 8000`, full-width digits); it must be "
        "a valid number."
    ),
    "CustomerContactInput.email": "An email address (stored lower-case).",
    "Query.customerMergePreview(survivorId)": "The customer that stays (global ID).",
    "Query.customerMergePreview(mergedId)": "The customer merged into it (global ID).",
    "Mutation.mergeCustomers(survivorId)": "The customer that stays (global ID).",
    "Mutation.mergeCustomers(mergedId)": "The customer merged into it (global ID).",
    "Mutation.mergeCustomers(reason)": "Why (required): kept with the merge and in the audit log.",
    "Mutation.unmergeCustomers(mergeId)": "The merge's global ID (`CustomerMerge.id`).",
    "CustomerMerge.id": "Global ID of the merge: pass it to `unmergeCustomers`.",
    # ---- KPIs
    "Query.kpis(from)": "The first business day (a Date such as 2026-11-01).",
    "Query.kpis(to)": "The last business day, included.",
    "Query.kpis(channel)": "One channel; all when left out.",
    "Query.kpis(category)": "One product category (see `kpiCategories`); all when left out.",
    "Query.handlingTimes(from)": "The first business day.",
    "Query.handlingTimes(to)": "The last business day, included.",
    "Query.handlingTimes(channel)": "One channel; all when left out.",
    "Query.returnRates(from)": "The first business day.",
    "Query.returnRates(to)": "The last business day, included.",
    "Query.returnRates(region)": "One province as orders name it (上海市); all when left out.",
    "KpiName.ORDER_TIMELINESS": (
        "Orders shipped on their business day / orders of that day (cancelled ones left out)."
    ),
    "KpiName.STOCK_ACCURACY": (
        "Counted SKU lines whose count equals the system quantity / SKU lines counted that day."
    ),
    "KpiName.CUSTOMER_COMPLETENESS": (
        "Customers with a valid phone, a valid email and an address / all customers."
    ),
    "OrderEventType.ORDER_ADDRESS_CHANGED": (
        "An order's shipping address was changed before it shipped (`changeShippingAddress`)."
    ),
    "Mutation.changeShippingAddress(orderId)": "The order's global ID.",
    "Mutation.changeShippingAddress(address)": "Where it ships now.",
    "Mutation.changeShippingAddress(reason)": (
        "Why (required, up to 500 characters): kept in the audit log with both addresses."
    ),
    "OrderEventType.ORDER_ESCALATED": (
        "An order waited longer than the escalation threshold without reaching PICKING."
    ),
    # ---- reconciliation
    "Query.channelReconciliation(channel)": "The channel.",
    "Query.channelReconciliation(businessDay)": "The day, in the business timezone.",
    "Mutation.submitChannelSnapshot(channel)": "The channel whose view this is.",
    "Mutation.submitChannelSnapshot(businessDay)": "The day, in the business timezone.",
    "ChannelSnapshotOrderInput.externalId": "The channel's order id.",
    "ChannelSnapshotOrderInput.status": "The order's status as the channel has it.",
    "ChannelSnapshotOrderInput.total": "The order's total as the channel has it.",
    "ChannelSnapshotOrderInput.updatedAt": f"When the channel last changed it ({TIME}).",
    "ChannelSnapshot.channel": "The channel.",
    "ChannelSnapshot.businessDay": "The day.",
    "ChannelSnapshot.rows": "How many orders the day's snapshot holds now.",
    "ChannelReconciliation.channel": "The channel.",
    "ChannelReconciliation.businessDay": "The day compared.",
    "ChannelReconciliation.generatedAt": f"When this comparison was made ({TIME}).",
    "ChannelReconciliation.snapshotRows": "How many orders the channel's snapshot holds.",
    "ChannelReconciliation.differences": "Every difference, by external id.",
    "ChannelReconciliation.csv": (
        "The differences as CSV (UTF-8 with a BOM; cells that look like formulas neutralised)."
    ),
    "ReconciliationDifference.externalId": "The channel's order id.",
    "ReconciliationDifference.kind": "How they differ.",
    "ReconciliationDifference.internalStatus": "Our status; null if we do not have it.",
    "ReconciliationDifference.channelStatus": "The channel's status; null if it does not.",
    "ReconciliationDifference.internalTotal": "Our total; null if we do not have it.",
    "ReconciliationDifference.channelTotal": "The channel's total; null if it does not.",
    "ReconciliationKind.MISSING_INTERNALLY": "The channel has it; we have no such order.",
    "ReconciliationKind.MISSING_IN_CHANNEL": "We have it on that day; the channel does not.",
    "ReconciliationKind.STATUS_MISMATCH": "The statuses differ (our PICKING is its PAID).",
    "ReconciliationKind.AMOUNT_MISMATCH": "The totals differ.",
    # ---- picking lists
    "Query.pickingLists(warehouse)": "Only this warehouse's lists (e.g. SH-01).",
    "Query.pickingLists(status)": "Only lists in this status.",
    "Query.pickingLists(first)": FIRST,
    "Query.pickingLists(after)": AFTER,
    "Query.pickingList(id)": "The picking list's global ID.",
    "PickingList.id": "Global ID.",
    "PickingList.number": "PK- and the order's number.",
    "PickingList.warehouse": "The warehouse that picks it: the one holding most of the lines.",
    "PickingList.status": "Where it stands.",
    "PickingList.lines": "What to pick.",
    "PickingList.createdAt": f"When the order became PAID ({TIME}).",
    "PickingListStatus.OPEN": "To be picked.",
    "PickingListStatus.PICKED": "Picked.",
    "PickingListStatus.CANCELLED": "The order was cancelled before picking.",
    "PickingLine.sku": "The SKU.",
    "PickingLine.productName": "The product's name when the order was placed.",
    "PickingLine.quantity": "How many.",
    # ---- channel intake
    "Mutation.ingestOrders(channel)": "The channel the orders come from.",
    "IngestResult.results": "One per input order, in input order.",
    "IngestOrderResult.externalId": "The channel's id of the order, as sent.",
    "IngestOrderResult.outcome": "What became of it.",
    "IngestOrderResult.message": "Why it was rejected, in words.",
    "IngestOutcome.CREATED": "A new order was created.",
    "IngestOutcome.REPLAYED": "Same content sent before: the original order, nothing written.",
    "IngestOutcome.UPDATED": "A later channel status moved the order on.",
    "IngestOutcome.REJECTED": "Not taken; `code` says why. The rest of the batch still lands.",
    "ChannelOrderInput.externalId": "The channel's order id; with the channel, the key.",
    "ChannelOrderInput.status": (
        "The channel's status: PENDING_PAYMENT, PAID, SHIPPED (with carrier and tracking), "
        "COMPLETED or CANCELLED."
    ),
    "ChannelOrderInput.currency": "ISO 4217 code; CNY.",
    "ChannelOrderInput.buyer": "Linked to an existing customer by phone or email, or created.",
    "ChannelOrderInput.shippingAddress": "Where the parcel goes.",
    "ChannelOrderInput.lines": "At least one; SKUs must exist in the catalogue.",
    "ChannelOrderInput.paidAt": "When it was paid (ISO 8601 with a UTC offset), if paid.",
    "ChannelOrderInput.shippingFee": "Charged to the buyer.",
    "ChannelOrderInput.discount": "Taken off the total.",
    "ChannelOrderInput.paymentMethod": "e.g. ALIPAY, WECHAT_PAY.",
    "ChannelOrderInput.paymentTransactionId": "The payment provider's transaction id.",
    "ChannelOrderInput.campaign": "The promotion the order came through, if any.",
    "ChannelOrderInput.carrier": "The carrier, once shipped.",
    "ChannelOrderInput.trackingNumber": "The carrier's tracking number, once shipped.",
    "ChannelBuyerInput.name": "As the channel shows it.",
    "ChannelBuyerInput.phone": "Any format; matched normalised (digits, without +86).",
    "ChannelBuyerInput.email": "Matched case-insensitively.",
    "AddressInput.recipient": "Who receives the parcel.",
    "AddressInput.phone": "The recipient's phone.",
    "AddressInput.province": "Province or municipality.",
    "AddressInput.city": "City.",
    "AddressInput.district": "District or county.",
    "AddressInput.street": "Street, building and room.",
    "AddressInput.postalCode": "Postal code, if known.",
    "ChannelOrderLineInput.sku": "A catalogue SKU.",
    "ChannelOrderLineInput.quantity": "1 to 100,000.",
    "ChannelOrderLineInput.unitPrice": "Price per unit the buyer paid, in the order's currency.",
    # ---- inventory
    "Query.stockMovements(filter)": "Only movements matching all the given criteria.",
    "Query.stockMovements(first)": FIRST,
    "Query.stockMovements(after)": AFTER,
    "StockMovement.id": "Opaque ID of the movement.",
    "StockMovement.at": f"When the stock changed ({TIME}).",
    "StockMovement.sku": "The stock-keeping unit.",
    "StockMovement.warehouse": "The warehouse code.",
    "StockMovement.onHandDelta": "Change of the units physically in the warehouse.",
    "StockMovement.reservedDelta": "Change of the units held for checkouts and orders.",
    "StockMovement.reason": "Why the stock changed.",
    "StockMovement.reference": "The reservation, or the reason given for an adjustment.",
    "StockMovement.actor": "The account that made the change (`system` for expiries).",
    "StockMovement.unitCost": (
        "What one unit cost when the stock moved, for cost accounting: finance only; every "
        "read is audited."
    ),
    "StockMovementReason.OPENING": "The stock when the ledger began.",
    "StockMovementReason.RESERVE": "Held for a checkout.",
    "StockMovementReason.RELEASE": "Given back by a released reservation.",
    "StockMovementReason.EXPIRE": "Given back by a reservation whose TTL passed unconfirmed.",
    "StockMovementReason.RECEIPT": "Goods received (`adjustStock` with a positive delta).",
    "StockMovementReason.CORRECTION": "A correction down (`adjustStock` with a negative delta).",
    "StockMovementReason.SHIP": "Reserved units that left the warehouse with their order.",
    "ReservationStatus.SHIPPED": "Its units left the warehouse with the order.",
    "StockMovementFilter.sku": "Only this SKU.",
    "StockMovementFilter.warehouse": "Only this warehouse.",
    "StockMovementFilter.reason": "Only movements of this kind.",
    "OrderEventType.STOCK_CHANGED": (
        "The stock of a SKU in a warehouse changed (webhooks only; the body carries `stock` "
        "with on hand, reserved and available as the change left them)."
    ),
    "Mutation.reserveStock(input)": "Reference, lines and an optional TTL.",
    "Mutation.releaseReservation(id)": "The reservation's ID.",
    "Mutation.confirmReservation(id)": "The reservation's ID.",
    "Mutation.adjustStock(input)": "SKU, warehouse, a non-zero delta and the reason.",
    "Reservation.id": "Opaque ID of the reservation.",
    "Reservation.reference": "The caller's checkout or order number.",
    "Reservation.lines": "What is held, one line per SKU and warehouse (lines of one SKU summed).",
    "ReservationStatus.ACTIVE": "Holding stock until confirmed, released or expired.",
    "ReservationStatus.CONFIRMED": "Paid: holding stock, without expiry, until it ships.",
    "ReservationStatus.RELEASED": "Given back.",
    "ReservationStatus.EXPIRED": "Not confirmed within its TTL; the stock went back.",
    "ReservationLine.sku": "The stock-keeping unit.",
    "ReservationLine.warehouse": "The warehouse the units are held in.",
    "ReservationLine.quantity": "Units held.",
    "ReserveStockInput.lines": "1 to 100 lines; lines of the same SKU and warehouse are summed.",
    "ReservationLineInput.sku": "A catalogue SKU.",
    "ReservationLineInput.warehouse": "The warehouse code.",
    "ReservationLineInput.quantity": "1 to 1,000,000.",
    "AdjustStockInput.sku": "A catalogue SKU.",
    "AdjustStockInput.warehouse": "The warehouse code.",
    "AdjustStockInput.delta": (
        "Units to add (a receipt) or remove (a correction); on hand never drops below reserved."
    ),
    "AdjustStockInput.reason": "Why, in words (1 to 200 characters), kept in the ledger.",
    "Query.stockPools(status)": "Only pools in this state.",
    "StockPool.id": "Opaque ID of the pool.",
    "StockPool.name": "The campaign's name, as reservations give it in `campaign`.",
    "StockPool.sku": "The stock-keeping unit set aside.",
    "StockPool.warehouse": "The warehouse it is set aside in.",
    "StockPool.status": "Scheduled, active, or closed.",
    "StockPool.startsAt": f"When the campaign may start drawing ({TIME}).",
    "StockPool.endsAt": f"When the window ends and the remainder goes back ({TIME}).",
    "StockPoolStatus.SCHEDULED": "Its window has not begun: nothing can be drawn yet.",
    "StockPoolStatus.ACTIVE": "The campaign's reservations draw from it.",
    "StockPoolStatus.CLOSED": "Ended; what was left went back to the available stock.",
    "StockMovementReason.POOL": "Set aside for a promotion pool (reserved rises).",
    "StockMovementReason.POOL_RETURN": "A closed pool's remainder, back to available stock.",
    "Mutation.createStockPool(input)": "Name, SKU, warehouse, quantity and the window.",
    "Mutation.closeStockPool(id)": "The pool's ID.",
    "StockPoolInput.name": "A unique campaign name (1 to 64 characters).",
    "StockPoolInput.sku": "A catalogue SKU.",
    "StockPoolInput.warehouse": "The warehouse code.",
    "StockPoolInput.quantity": "Units to set aside, 1 to 1,000,000, out of the available stock.",
    "StockPoolInput.startsAt": f"When the campaign starts ({TIME}).",
    "StockPoolInput.endsAt": f"When it ends, after startsAt and in the future ({TIME}).",
    "Query.returns(filter)": "Only returns matching all the given criteria.",
    "Query.returns(first)": FIRST,
    "Query.returns(after)": AFTER,
    "Return.id": "Opaque ID of the return.",
    "Return.order": "The order it came from, under the caller's field policy.",
    "Return.inspectedAt": f"When the warehouse inspected the goods ({TIME}).",
    "Return.registeredAt": f"When it was registered ({TIME}).",
    "Return.lines": "What came back, per order line.",
    "ReturnLine.orderLineId": "The order line returned.",
    "ReturnLine.sku": "The stock-keeping unit.",
    "ReturnLine.warehouse": "Where RESTOCK units went back on hand.",
    "ReturnLine.quantity": "Units returned.",
    "ReturnLine.disposition": "Restocked or damaged.",
    "ReturnDisposition.RESTOCK": "Sellable again: back to on hand.",
    "ReturnDisposition.DAMAGED": "Not sellable: recorded, stock unchanged.",
    "ReturnFilter.orderId": "Only this order's returns.",
    "ReturnFilter.slaBreached": "Only returns registered late (true) or on time (false).",
    "StockMovementReason.RETURN": "A customer's return, inspected and sellable again.",
    "Mutation.registerReturn(input)": "The order, the inspection time and the lines.",
    "ReturnInput.orderId": "A shipped (or completed) order.",
    "ReturnInput.inspectedAt": f"When the goods were inspected, not in the future ({TIME}).",
    "ReturnInput.lines": "1 to 100 lines, each order line once.",
    "ReturnLineInput.orderLineId": "A line of the order.",
    "ReturnLineInput.quantity": "Units back, at most what the line sold.",
    "ReturnLineInput.disposition": "RESTOCK or DAMAGED.",
    "Query.tasks(status)": "Only tasks in this state.",
    "Query.tasks(first)": FIRST,
    "Query.tasks(after)": AFTER,
    "Task.id": "Opaque ID of the task.",
    "Task.title": "What to do, in a line.",
    "Task.dueAt": f"When it should be done, if it has a deadline ({TIME}).",
    "Task.status": "Open or done.",
    "Task.createdAt": f"When it was raised ({TIME}).",
    "Task.completedAt": f"When it was completed ({TIME}).",
    "Task.completedBy": "Who completed it.",
    "Task.note": "What the person who completed it wrote.",
    "TaskStatus.OPEN": "Waiting for someone.",
    "TaskStatus.DONE": "Completed.",
    "Mutation.completeTask(id)": "The task's ID.",
    "Mutation.completeTask(note)": "What was done (up to 2,000 characters).",
    "Mutation.submitStockCount(input)": "The warehouse, when it was counted, and the lines.",
    "StockCount.id": "Opaque ID of the count.",
    "StockCount.warehouse": "The warehouse counted.",
    "StockCount.countedAt": f"When the goods were counted ({TIME}).",
    "StockDiscrepancy.sku": "The stock-keeping unit.",
    "StockDiscrepancy.system": "On hand in the system as of the count's time.",
    "StockDiscrepancy.counted": "On hand as counted.",
    "StockCountInput.warehouse": "The warehouse code.",
    "StockCountInput.countedAt": f"When the goods were counted, not in the future ({TIME}).",
    "StockCountInput.lines": "1 to 2,000 lines, each SKU once.",
    "StockCountLineInput.sku": "A SKU stocked in the warehouse.",
    "StockCountLineInput.counted": "Units counted, 0 to 1,000,000.",
    "Query.stockAlerts(first)": FIRST,
    "Query.stockAlerts(after)": AFTER,
    "StockAlert.id": "Opaque ID of the alert.",
    "StockAlert.sku": "The stock-keeping unit.",
    "StockAlert.warehouse": "The warehouse code.",
    "StockAlert.available": "Available units right after the change that crossed the threshold.",
    "StockAlert.threshold": "The SKU's safety threshold in that warehouse.",
    "StockAlert.at": f"When it fell below ({TIME}).",
    "StockAlert.notifiedAt": f"When purchasing and operations were mailed, else null ({TIME}).",
    "Mutation.recordReturnInspection(orderId)": "The shipped (or completed) order.",
    "Mutation.recordReturnInspection(inspectedAt)": f"When it was inspected ({TIME}).",
    "ReturnInspection.id": "Opaque ID of the inspection.",
    "ReturnInspection.orderId": "The order the parcel belongs to.",
    "ReturnInspection.inspectedAt": f"When it was inspected ({TIME}).",
    "ReturnInspection.recordedBy": "Who recorded the inspection.",
}


def _connection_docs(schema: GraphQLSchema) -> dict[str, str]:
    """Connection and edge types, described from their node type."""
    found: dict[str, str] = {}
    for name in schema.type_map:
        if name.endswith("Connection") and name != "Connection":
            node = name.removesuffix("Connection")
            found[name] = f"A page of {node} items (Relay cursor connection)."
            found[f"{name}.edges"] = "The items of this page, each with its cursor."
            found[f"{name}.pageInfo"] = "Cursors and whether more pages follow."
            found[f"{name}.totalCount"] = "How many items match in all, across every page."
        elif name.endswith("Edge"):
            node = name.removesuffix("Edge")
            found[name] = f"One {node} in a page, with its cursor."
            found[f"{name}.cursor"] = "Opaque position of this item; pass it as `after`."
            found[f"{name}.node"] = f"The {node}."
    return found


def describe(schema: GraphQLSchema) -> None:
    """Fill in every missing description from the table above (in place)."""
    table = {**_connection_docs(schema), **DESCRIPTIONS}
    for name, named in schema.type_map.items():
        if name.startswith("__"):
            continue
        if not named.description and name in table:
            named.description = table[name]
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in named.fields.items():
                coordinate = f"{name}.{field_name}"
                if not field.description and coordinate in table:
                    field.description = table[coordinate]
                for arg_name, arg in getattr(field, "args", {}).items():
                    key = f"{coordinate}({arg_name})"
                    if not arg.description and key in table:
                        arg.description = table[key]
        elif isinstance(named, GraphQLEnumType):
            for value_name, value in named.values.items():
                key = f"{name}.{value_name}"
                if not value.description and key in table:
                    value.description = table[key]
