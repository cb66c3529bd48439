"""The one policy decision point.

Everything that shows data — GraphQL fields, filter and sort arguments, exports, reports — asks
this module; nothing else reads `policies/`. Casbin evaluates the policy once per role set and
policy version into an `AccessProfile`; a request then costs dictionary look-ups.

Format of the names it decides on:
- fields are GraphQL coordinates `Type.field` with actions `read` (full value) and
  `read_masked` (value passed through the field's mask);
- operations are `Action` values `<area>:<verb>`, requested as object `operation`, action the
  `Action` value;
- order row scope is object `Order` with action `rows:all` (every channel) or `rows:channel`
  (only the channels bound to the user).
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import casbin

from domain.errors import Forbidden

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"


class Action(StrEnum):
    """Operations a role may perform. Format: `<area>:<verb>`, as written in `policy.csv`."""

    ORDER_TRANSITION = "order:transition"
    ORDER_INGEST = "order:ingest"
    PICKING_READ = "picking:read"
    CHANNEL_RECONCILE = "channel:reconcile"
    PRICE_REQUEST = "price:request"
    REFUND_REQUEST = "refund:request"
    APPROVAL_SIGN = "approval:sign"
    EXPORT_REQUEST = "export:request"
    EXPORT_APPROVE_L1 = "export:approve_l1"
    EXPORT_APPROVE_L2 = "export:approve_l2"
    AUDIT_READ = "audit:read"
    REPORT_ACCESS = "report:access"
    USER_ADMIN = "user:admin"
    WEBHOOK_MANAGE = "webhook:manage"
    STOCK_RESERVE = "stock:reserve"
    STOCK_ADJUST = "stock:adjust"
    STOCK_LEDGER = "stock:ledger"
    STOCK_POOL = "stock:pool"
    RETURN_REGISTER = "return:register"
    STOCK_COUNT = "stock:count"
    TASK_WORK = "task:work"
    STOCK_ALERTS = "stock:alerts"
    ORDER_CHANGE_ADDRESS = "order:change_address"
    CUSTOMER_UPDATE = "customer:update"
    CUSTOMER_MERGE = "customer:merge"
    KPI_READ = "kpi:read"


class PolicyInvalid(Exception):
    def __init__(self, problems: list[str], version: str | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.version = version  # of the refused files, when known


class FieldAccess(StrEnum):
    FULL = "FULL"
    MASKED = "MASKED"
    NONE = "NONE"


class RowScope(StrEnum):
    ALL = "ALL"
    CHANNELS = "CHANNELS"  # only the channels bound to the user
    NONE = "NONE"


# Every field the policy governs, by GraphQL type. The API's types must match this catalogue
# exactly (a test checks it); a field missing from the policy is `NONE` for everyone.
RESOURCES: Mapping[str, tuple[str, ...]] = {
    "Order": (
        "id",
        "number",
        "channel",
        "externalId",
        "status",
        "currency",
        "createdAt",
        "updatedAt",
        "businessDay",
        "escalatedAt",
        "version",
        "subtotal",
        "shippingFee",
        "discount",
        "total",
        "refundedAmount",
        "grossMargin",
        "customer",
        "customerName",
        "customerPhone",
        "shippingAddress",
        "paymentMethod",
        "paymentTransactionId",
        "carrier",
        "trackingNumber",
        "internalNote",
        "lines",
        "statusHistory",
    ),
    "OrderLine": ("id", "sku", "name", "quantity", "unitPrice", "lineTotal", "costPrice"),
    "OrderStatusChange": ("from", "to", "actor", "at", "note"),
    "Customer": (
        "id",
        "name",
        "phone",
        "email",
        "createdAt",
        "addresses",
        "orders",
        "version",
        "phoneValid",
        "mergedInto",
        "orderCount",
        "totalSpent",
        "totalSpentCurrency",
        "lastOrderAt",
        "channels",
        "returns",
        "contactHistory",
    ),
    "Address": ("recipient", "phone", "province", "city", "district", "street", "postalCode"),
    "ApprovalRequest": (
        "id",
        "kind",
        "status",
        "orderId",
        "orderNumber",
        "orderLineId",
        "amount",
        "currency",
        "requestedBy",
        "reason",
        "summary",
        "signingPayload",
        "createdAt",
        "expiresAt",
        "decidedAt",
        "decidedBy",
        "decisionReason",
        "keyFingerprint",
    ),
    "ExportRequest": (
        "id",
        "entity",
        "filter",
        "fields",
        "reason",
        "status",
        "requestedBy",
        "expectedRows",
        "scopeDigest",
        "createdAt",
        "expiresAt",
        "approvedL1By",
        "approvedL1At",
        "approvedL2By",
        "approvedL2At",
        "rejectedBy",
        "rejectionReason",
        "rowCount",
        "sha256",
        "producedAt",
        "failureReason",
        "downloadUrl",
        "downloadExpiresAt",
        "downloadedAt",
    ),
    "StockItem": (
        "id",
        "sku",
        "productName",
        "warehouse",
        "onHand",
        "reserved",
        "available",
        "safetyThreshold",
        "unitCost",
        "updatedAt",
    ),
    "StockMovement": (
        "id",
        "at",
        "sku",
        "warehouse",
        "onHandDelta",
        "reservedDelta",
        "reason",
        "reference",
        "actor",
        "unitCost",
    ),
}
COORDINATES: tuple[str, ...] = tuple(f"{t}.{f}" for t, fs in RESOURCES.items() for f in fs)

# Figures computed from other governed fields: a role sees one at the strictest access of it
# and of each field it is made of, whatever the policy grants it alone — a sum of order totals
# and refunds, read before and after a refund, gives both away (issue #30, L2: compliance,
# denied Order.total and Order.refundedAmount, read them off Customer.totalSpent).
DERIVED_FROM: Mapping[str, tuple[str, ...]] = {
    "Customer.totalSpent": ("Order.total", "Order.refundedAmount"),
    "Order.grossMargin": ("Order.total", "OrderLine.costPrice"),
}

# Personal information about customers, and business data restricted to a few roles. Reads of
# either are recorded in the audit log (one event per request) and appear in access reports.
PERSONAL_FIELDS = frozenset(
    {
        "Order.customerName",
        "Order.customerPhone",
        "Customer.name",
        "Customer.phone",
        "Customer.email",
        "Address.recipient",
        "Address.phone",
        "Address.street",
    }
)
RESTRICTED_FIELDS = frozenset(
    {
        "OrderLine.costPrice",
        "Order.grossMargin",
        "Order.paymentTransactionId",
        "StockItem.unitCost",
        "StockMovement.unitCost",
    }
)
SENSITIVE_FIELDS = PERSONAL_FIELDS | RESTRICTED_FIELDS
OPERATION_OBJECT = "operation"
ROWS_OBJECT = "Order"
ROW_ACTIONS = ("rows:all", "rows:channel")
FIELD_ACTIONS = ("read", "read_masked")


# ---- masks -------------------------------------------------------------------------------------


def mask_phone(value: str) -> str:
    """`13812345678` → `138****5678`: first 3 and last 4 digits stay."""
    if len(value) <= 7:
        return "*" * len(value)
    return f"{value[:3]}{'*' * (len(value) - 7)}{value[-4:]}"


def mask_email(value: str) -> str:
    """`zhang.wei@example.com` → `z***@example.com`: first character and the domain stay."""
    local, at, domain = value.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_name(value: str) -> str:
    """`张伟` → `张*`: the family name stays, as Chinese courier labels do."""
    if not value:
        return value
    return value[0] + "*" * max(1, len(value) - 1)


def mask_street(value: str) -> str:
    return value[:2] + "****" if value else value


MASKS: Mapping[str, Callable[[str], str]] = {
    "Order.customerName": mask_name,
    "Order.customerPhone": mask_phone,
    "Customer.name": mask_name,
    "Customer.phone": mask_phone,
    "Customer.email": mask_email,
    "Address.recipient": mask_name,
    "Address.phone": mask_phone,
    "Address.street": mask_street,
}


# ---- profiles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessProfile:
    """What one role set may see and do under one policy version."""

    roles: frozenset[str]
    policy_version: str
    fields: Mapping[str, FieldAccess]
    actions: frozenset[Action]
    order_rows: RowScope
    _masks: Mapping[str, Callable[[str], str]] = field(default_factory=lambda: MASKS, repr=False)

    def field_access(self, coordinate: str) -> FieldAccess:
        return self.fields.get(coordinate, FieldAccess.NONE)

    def can(self, action: Action) -> bool:
        return action in self.actions

    def require(self, action: Action) -> None:
        if action not in self.actions:
            raise Forbidden(f"your role may not perform {action}", action=str(action))

    def require_full(self, coordinate: str) -> None:
        """Arguments (filters, sort keys, cursors) may only use fields the caller reads in full."""
        if self.fields.get(coordinate) is not FieldAccess.FULL:
            raise Forbidden(f"your role may not filter or sort on {coordinate}", field=coordinate)

    def present(self, coordinate: str, value: object) -> object:
        """The value the caller may see: itself, masked, or None."""
        access = self.fields.get(coordinate, FieldAccess.NONE)
        if access is FieldAccess.FULL:
            return value
        if access is FieldAccess.MASKED and isinstance(value, str):
            return self._masks[coordinate](value)
        return None


def _subject(roles: frozenset[str]) -> str:
    return "~roles:" + "+".join(sorted(roles))


@dataclass(frozen=True)
class Decision:
    coordinate: str
    role: str
    access: FieldAccess
    lines: tuple[str, ...]


_State = tuple[str, casbin.Enforcer, dict[frozenset[str], AccessProfile]]
_MODEL_TEXT: weakref.WeakKeyDictionary[casbin.Enforcer, str] = weakref.WeakKeyDictionary()
# Compiled profiles by (policy version, role set), shared by the process's decision points;
# bounded (a person's role set is one of a few dozen in practice).
_COMPILED: dict[tuple[str, frozenset[str]], AccessProfile] = {}
_COMPILED_MAX = 512


# The matcher and effect of policies/model.conf that `_decider` knows how to narrow for.
_NARROWABLE = (
    "m = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && r.act == p.act",
    "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))",
)


def _decider(enforcer: casbin.Enforcer, subject: str) -> Callable[[str, str], bool]:
    """`decide(obj, act)` for `subject`, as `enforcer.enforce(subject, obj, act)` decides.

    Compiling a role set asks a few hundred questions, and Casbin evaluates its matcher on
    every policy line for each (a policy reload compiled every role twice in ~10 s). With the
    model in policies/model.conf, only lines of the subject's roles and groups can match
    (`g(r.sub, p.sub)`), and only those of the asked action (`r.act == p.act`); the effect
    reads matching lines only. So each action gets a small enforcer of the same model holding
    just those lines, with the subject written in: every decision is the same, each costs a
    tenth. A model.conf with another matcher or effect is asked in full, as before."""
    text = _MODEL_TEXT.get(enforcer, "")
    lines = {" ".join(line.split()) for line in text.splitlines()}
    if not all(wanted in lines for wanted in _NARROWABLE):
        return lambda obj, act: bool(enforcer.enforce(subject, obj, act))
    relevant = {subject, *enforcer.get_implicit_roles_for_user(subject)}
    by_act: dict[str, list[list[str]]] = {}
    for rule in enforcer.get_policy():
        if len(rule) == 4 and rule[0] in relevant:
            by_act.setdefault(rule[2], []).append([subject, *rule[1:]])
    narrowed: dict[str, casbin.Enforcer] = {}

    def decide(obj: str, act: str) -> bool:
        rules = by_act.get(act)
        if not rules:
            return False  # deny by default: no line of this action can apply
        if act not in narrowed:
            model = casbin.Model()
            model.load_model_from_text(text)
            narrow = casbin.Enforcer(model)
            narrow.enable_auto_save(False)
            narrow.add_policies(rules)
            narrowed[act] = narrow
        return bool(narrowed[act].enforce(subject, obj, act))

    return decide


class PolicyDecisionPoint:
    """Loads `model.conf` and `policy.csv`, compiles profiles, reloads atomically on change."""

    def __init__(self, policy_dir: Path = POLICY_DIR) -> None:
        self.policy_dir = Path(policy_dir)
        self._lock = threading.Lock()
        self._state = self._load()

    # The state is one tuple swapped in a single assignment, so a request sees either the old
    # policy or the new one, never a mixture.
    def _load(self) -> _State:
        model = self.policy_dir / "model.conf"
        policy = self.policy_dir / "policy.csv"
        model_text = model.read_bytes()
        version = hashlib.sha256(model_text + b"\0" + policy.read_bytes()).hexdigest()[:16]
        try:
            enforcer = casbin.Enforcer(str(model), str(policy))
            _MODEL_TEXT[enforcer] = model_text.decode("utf-8")
        except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:
            # Casbin refuses a line of the wrong length (and similar) while loading, and fails
            # with a TypeError on a model.conf that lacks a section.
            raise PolicyInvalid([f"policy cannot be loaded: {exc}"], version=version) from None
        malformed = [rule for rule in enforcer.get_policy() if len(rule) != 4]
        if malformed:
            # Casbin loads such a line, then fails on every decision: refuse it here.
            raise PolicyInvalid(
                [f"malformed line (policy cannot be loaded): p, {', '.join(r)}" for r in malformed],
                version=version,
            )
        enforcer.enable_auto_save(False)
        return version, enforcer, {}

    @property
    def version(self) -> str:
        return self._state[0]

    def reload(self, *, known_roles: Iterable[str] | None = None) -> bool:
        """Re-read the policy files; returns True when the version changed.

        With `known_roles`, a policy that fails `check` is refused (PolicyInvalid) and the
        current one stays in force, so a typo saved in the editor never reaches requests.
        """
        new_state = self._load()
        if new_state[0] == self._state[0]:
            return False
        if known_roles is not None:
            known_roles = tuple(known_roles)
            problems = self._check(new_state, known_roles)
            problems += self._dropped(new_state, known_roles)
            if problems:
                raise PolicyInvalid(problems, version=new_state[0])
        with self._lock:
            changed = new_state[0] != self._state[0]
            if changed:
                self._state = new_state
        return changed

    def _single_role(self, state: _State, role: str) -> AccessProfile:
        """A one-role profile of `state`, compiled once and kept in that state's cache (so a
        checked policy's profiles serve requests once it is in force)."""
        key = frozenset([role])
        cached = state[2].get(key)
        if cached is None:
            cached = state[2][key] = self._compile(state[0], state[1], key)
        return cached

    def _grants(self, state: _State | None, known_roles: Iterable[str]) -> set[str]:
        """Every grant as `role Type.field` or `role action`: what a reload may not lose
        silently. `None` is the policy in force, read through its cached profiles (under the
        lock, as requests read them); a new state is compiled on its own enforcer."""
        found: set[str] = set()
        for role in known_roles:
            profile = self.profile([role]) if state is None else self._single_role(state, role)
            found |= {f"{role} {c}" for c, a in profile.fields.items() if a is not FieldAccess.NONE}
            found |= {f"{role} {a}" for a in profile.actions}
        return found

    def _dropped(self, new: _State, known_roles: Iterable[str]) -> list[str]:
        """A new policy may only take grants away that it names in a `# removes:` line, so
        a truncated or half-saved file cannot silently cut a role off (compliance losing the
        audit log). Format: `# removes: compliance audit:read, cs Order.internalNote`."""
        declared = set()
        policy = (self.policy_dir / "policy.csv").read_text(encoding="utf-8", errors="replace")
        for line in policy.splitlines():
            text = line.strip()
            if text.lower().startswith("# removes:"):
                declared |= {" ".join(item.split()) for item in text[10:].split(",")}
        lost = sorted(self._grants(None, known_roles) - self._grants(new, known_roles) - declared)
        if not lost:
            return []
        by_role: dict[str, list[str]] = {}
        for grant in lost:
            role, what = grant.split(" ", 1)
            by_role.setdefault(role, []).append(what)
        shown = "; ".join(f"{role}: {', '.join(whats)}" for role, whats in by_role.items())
        return [
            f"the new policy takes away {len(lost)} grant(s) it does not name in a "
            f"`# removes:` line — {shown}"
        ]

    def profile(self, roles: Iterable[str]) -> AccessProfile:
        key = frozenset(roles)
        version, enforcer, cache = self._state
        cached = cache.get(key)
        if cached is not None:
            return cached
        with self._lock:
            if (cached := cache.get(key)) is not None:
                return cached
            profile = self._compile(version, enforcer, key)
            cache[key] = profile
            return profile

    @staticmethod
    def _compile(version: str, enforcer: casbin.Enforcer, roles: frozenset[str]) -> AccessProfile:
        # The version names the policy's content (a hash of both files), so a profile compiled
        # for it serves every decision point in the process that loads the same files: every
        # app a test builds, and a reload back to a policy seen before.
        key = (version, roles)
        found = _COMPILED.get(key)
        if found is None:
            found = PolicyDecisionPoint._compile_uncached(version, enforcer, roles)
            if len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.pop(next(iter(_COMPILED)), None)  # the oldest
            _COMPILED[key] = found
        return found

    @staticmethod
    def _compile_uncached(
        version: str, enforcer: casbin.Enforcer, roles: frozenset[str]
    ) -> AccessProfile:
        # A synthetic subject that holds every role of the person: Casbin's deny-override then
        # applies across roles, so an explicit deny on one role is not undone by another.
        subject = _subject(roles)
        for role in roles:
            enforcer.add_grouping_policy(subject, role)
        decide = _decider(enforcer, subject)

        fields: dict[str, FieldAccess] = {}
        for coordinate in COORDINATES:
            if decide(coordinate, "read"):
                fields[coordinate] = FieldAccess.FULL
            elif decide(coordinate, "read_masked") and coordinate in MASKS:
                fields[coordinate] = FieldAccess.MASKED
            else:
                fields[coordinate] = FieldAccess.NONE
        strictness = (FieldAccess.NONE, FieldAccess.MASKED, FieldAccess.FULL)
        for derived, parts in DERIVED_FROM.items():
            fields[derived] = min(
                (fields[derived], *(fields[p] for p in parts)), key=strictness.index
            )
        actions = frozenset(a for a in Action if decide(OPERATION_OBJECT, a))
        if decide(ROWS_OBJECT, "rows:all"):
            rows = RowScope.ALL
        elif decide(ROWS_OBJECT, "rows:channel"):
            rows = RowScope.CHANNELS
        else:
            rows = RowScope.NONE
        return AccessProfile(
            roles=roles, policy_version=version, fields=fields, actions=actions, order_rows=rows
        )

    # ---- tooling ------------------------------------------------------------------------------

    def explain(self, role: str, coordinate: str) -> Decision:
        """The access a single role gets on a field, and the policy lines that decided it."""
        _, enforcer, _ = self._state
        profile = self.profile([role])
        lines = []
        for act in FIELD_ACTIONS:
            _, rule = enforcer.enforce_ex(role, coordinate, act)
            lines.append(f"{act}: " + (", ".join(["p", *rule]) if rule else "no matching line"))
        return Decision(coordinate, role, profile.field_access(coordinate), tuple(lines))

    def check(self, known_roles: Iterable[str]) -> list[str]:
        """Problems in the policy: unknown names, fields no role reads, masks without a mask."""
        return self._check(self._state, known_roles)

    def _check(
        self,
        state: tuple[str, casbin.Enforcer, dict[frozenset[str], AccessProfile]],
        known_roles: Iterable[str],
    ) -> list[str]:
        _, enforcer, _ = state
        problems: list[str] = []
        known_roles = set(known_roles)
        for rule in enforcer.get_policy():
            _sub, obj, act, eft = rule  # lines of another length are refused by _load
            line = "p, " + ", ".join(rule)
            if eft not in ("allow", "deny"):
                problems.append(f"{line}: effect must be allow or deny")
            if obj == OPERATION_OBJECT:
                if act not in set(Action):
                    problems.append(f"{line}: unknown action {act!r}")
            elif obj == ROWS_OBJECT:
                if act not in ROW_ACTIONS:
                    problems.append(f"{line}: unknown row scope {act!r}")
            else:
                if act not in FIELD_ACTIONS:
                    problems.append(f"{line}: unknown field action {act!r}")
                pattern = re.compile("^" + re.escape(obj).replace(r"\*", ".*") + "$")
                matched = [c for c in COORDINATES if pattern.match(c)]
                if not matched:
                    problems.append(f"{line}: names no existing Type.field")
                elif act == "read_masked" and eft == "allow":
                    unmaskable = [c for c in matched if c not in MASKS and "*" not in obj]
                    if unmaskable:
                        problems.append(f"{line}: {unmaskable[0]} has no mask")
        grouping = [g for g in enforcer.get_grouping_policy() if not g[0].startswith("~")]
        grouped = {g[1] for g in grouping}
        # What grants something: a subject with `p` lines, or one that is itself in a group.
        defined = {p[0] for p in enforcer.get_policy()} | {g[0] for g in grouping}
        for g in grouping:
            if g[1] not in defined:
                problems.append(f"g, {g[0]}, {g[1]}: {g[1]} grants nothing")
        for role in defined - grouped - known_roles:
            problems.append(f"subject {role!r} is neither a known role nor a group any role uses")
        readable: set[str] = set()
        for role in known_roles:
            profile = self._single_role(state, role)
            readable |= {c for c, a in profile.fields.items() if a is not FieldAccess.NONE}
        for coordinate in COORDINATES:
            if coordinate not in readable:
                problems.append(f"{coordinate}: no role can read it (a typo in policy.csv?)")
        return problems


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
