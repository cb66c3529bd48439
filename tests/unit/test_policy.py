"""The compiled policy against the specification table, and the policy tooling."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest

from domain.access import (
    COORDINATES,
    POLICY_DIR,
    RESOURCES,
    ROLES,
    Action,
    FieldAccess,
    PolicyDecisionPoint,
    PolicyInvalid,
    RowScope,
)
from domain.errors import Forbidden
from tests import policy_matrix

PDP = PolicyDecisionPoint()
EXPECTED = policy_matrix.expected()


def test_the_table_covers_every_role_and_every_governed_field() -> None:
    assert set(policy_matrix.ROLES) == set(ROLES)
    assert {c for _, c in EXPECTED} == set(COORDINATES)


def test_the_whole_table_at_once() -> None:
    """The same check as below in one test (the mutation run uses this one: it is quick)."""
    wrong = [
        (role, coordinate, PDP.profile([role]).field_access(coordinate), expected)
        for (role, coordinate), expected in EXPECTED.items()
        if PDP.profile([role]).field_access(coordinate) != expected
    ]

    assert wrong == []


@pytest.mark.parametrize(("role", "coordinate"), sorted(EXPECTED))
def test_compiled_access_matches_the_table(role: str, coordinate: str) -> None:
    assert PDP.profile([role]).field_access(coordinate) == EXPECTED[(role, coordinate)]


@pytest.mark.parametrize("action", sorted(policy_matrix.OPERATIONS))
def test_each_operation_is_granted_to_exactly_the_listed_roles(action: str) -> None:
    granted = {r for r in ROLES if PDP.profile([r]).can(Action(action))}

    assert granted == policy_matrix.OPERATIONS[action]


def test_the_operations_table_names_every_action() -> None:
    assert set(policy_matrix.OPERATIONS) == {str(a) for a in Action}


@pytest.mark.parametrize(
    "coordinate",
    [
        "OrderLine.costPrice",
        "Order.grossMargin",
        "Order.paymentTransactionId",
        "StockItem.unitCost",
    ],
)
def test_customer_service_never_sees_cost_margin_or_payment_details(coordinate: str) -> None:
    assert PDP.profile(["cs"]).field_access(coordinate) is FieldAccess.NONE


def test_a_deny_on_one_role_is_not_undone_by_another_role_of_the_same_person() -> None:
    person = PDP.profile(["cs", "finance"])

    assert person.field_access("OrderLine.costPrice") is FieldAccess.NONE
    assert person.field_access("Order.paymentMethod") is FieldAccess.FULL


def test_grants_of_several_roles_add_up() -> None:
    person = PDP.profile(["warehouse", "approver"])

    assert person.field_access("Order.total") is FieldAccess.FULL  # from approver
    assert person.can(Action.ORDER_TRANSITION)
    assert person.can(Action.APPROVAL_SIGN)


def test_sales_rows_are_scoped_to_its_channels_and_other_roles_see_all() -> None:
    assert PDP.profile(["sales"]).order_rows is RowScope.CHANNELS
    assert PDP.profile(["sales", "ops"]).order_rows is RowScope.ALL
    assert PDP.profile(["admin"]).order_rows is RowScope.NONE


def test_an_unknown_role_gets_nothing() -> None:
    profile = PDP.profile(["intern"])

    assert set(profile.fields.values()) == {FieldAccess.NONE}
    assert not profile.actions


def test_the_shipped_policy_passes_its_own_check() -> None:
    assert PDP.check(ROLES) == []


def _policy_copy(tmp_path: Path, extra: str) -> PolicyDecisionPoint:
    shutil.copy(POLICY_DIR / "model.conf", tmp_path / "model.conf")
    (tmp_path / "policy.csv").write_text((POLICY_DIR / "policy.csv").read_text() + extra)
    return PolicyDecisionPoint(tmp_path)


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("p, cs, Order.grossMargn, read, allow", "{line}: names no existing Type.field"),
        ("p, cs, Ordr.*, read, allow", "{line}: names no existing Type.field"),
        ("p, cs, operation, order:delete, allow", "{line}: unknown action 'order:delete'"),
        ("p, cs, Order.total, write, allow", "{line}: unknown field action 'write'"),
        ("p, cs, Order.total, read_masked, allow", "{line}: Order.total has no mask"),
        (
            "p, salse, Order.total, read, allow",
            "subject 'salse' is neither a known role nor a group any role uses",
        ),
        ("p, cs, Order.total, read, maybe", "{line}: effect must be allow or deny"),
        ("p, cs, Order, rows:some, allow", "{line}: unknown row scope 'rows:some'"),
        ("g, cs, no_such_group", "{line}: no_such_group grants nothing"),
    ],
)
def test_check_names_lines_with_typos(tmp_path: Path, line: str, complaint: str) -> None:
    """Each problem names the line as written in policy.csv, so an editor can find it."""
    pdp = _policy_copy(tmp_path, line + "\n")

    problems = pdp.check(ROLES)

    assert problems == [complaint.format(line=line)]


def test_a_line_of_the_wrong_length_is_refused_when_loading(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid, match="cannot be loaded"):
        _policy_copy(tmp_path, "p, cs, Order.total, read\n")


def test_check_reports_a_field_no_role_can_read(tmp_path: Path) -> None:
    shutil.copy(POLICY_DIR / "model.conf", tmp_path / "model.conf")
    lines = (POLICY_DIR / "policy.csv").read_text().splitlines()
    (tmp_path / "policy.csv").write_text(
        "\n".join(line for line in lines if "Order.internalNote" not in line) + "\n"
    )

    problems = PolicyDecisionPoint(tmp_path).check(ROLES)

    assert "Order.internalNote: no role can read it (a typo in policy.csv?)" in problems


def test_explain_names_the_deciding_line() -> None:
    decision = PDP.explain("cs", "Order.grossMargin")

    assert decision.access is FieldAccess.NONE
    assert decision.lines == (
        "read: p, cs, Order.grossMargin, read, deny",
        "read_masked: p, cs, Order.grossMargin, read_masked, deny",
    )


def test_explain_says_when_no_line_decides() -> None:
    masked = PDP.explain("sales", "Customer.phone")
    nothing = PDP.explain("warehouse", "Order.grossMargin")

    assert masked.access is FieldAccess.MASKED
    assert masked.lines == (
        "read: no matching line",
        "read_masked: p, customer_masked, Customer.phone, read_masked, allow",
    )
    assert nothing.lines == ("read: no matching line", "read_masked: no matching line")


def test_reload_swaps_in_a_changed_policy_and_keeps_an_unchanged_one(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "")
    before = pdp.version
    assert pdp.profile(["warehouse"]).field_access("Order.total") is FieldAccess.NONE

    assert pdp.reload() is False
    policy = tmp_path / "policy.csv"
    policy.write_text(policy.read_text() + "p, warehouse, Order.total, read, allow\n")
    changed = pdp.reload()

    assert changed is True
    assert pdp.version != before
    assert pdp.profile(["warehouse"]).field_access("Order.total") is FieldAccess.FULL


def test_resources_have_unique_fields() -> None:
    for type_name, fields in RESOURCES.items():
        assert len(fields) == len(set(fields)), type_name


def test_reload_refuses_a_policy_that_fails_its_check_and_keeps_the_old_one(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "")
    before = pdp.version
    policy = tmp_path / "policy.csv"
    policy.write_text(policy.read_text() + "p, cs, Order.grossMargn, read, allow\n")

    with pytest.raises(PolicyInvalid):
        pdp.reload(known_roles=ROLES)

    assert pdp.version == before


def _truncated_before_compliance(tmp_path: Path) -> str:
    text = (POLICY_DIR / "policy.csv").read_text()
    return text[: text.index("# compliance:")]


def test_a_truncated_policy_that_still_parses_is_refused(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "")
    before = pdp.version
    (tmp_path / "policy.csv").write_text(_truncated_before_compliance(tmp_path))

    with pytest.raises(PolicyInvalid) as refused:
        pdp.reload(known_roles=ROLES)

    assert pdp.version == before
    assert "compliance: " in refused.value.problems[-1]
    assert "audit:read" in refused.value.problems[-1]
    assert "# removes:" in refused.value.problems[-1]


def test_grants_removed_on_purpose_are_named_in_a_removes_line(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "")
    text = (POLICY_DIR / "policy.csv").read_text()
    text = text.replace("p, cs, Order.internalNote, read, allow\n", "")
    (tmp_path / "policy.csv").write_text(text)
    with pytest.raises(PolicyInvalid):
        pdp.reload(known_roles=ROLES)

    (tmp_path / "policy.csv").write_text("# removes: cs Order.internalNote\n" + text)
    changed = pdp.reload(known_roles=ROLES)

    assert changed is True
    assert pdp.profile(["cs"]).field_access("Order.internalNote") is FieldAccess.NONE


NODE_TYPES = ("Order", "OrderLine", "Customer", "StockItem", "ApprovalRequest", "ExportRequest")


@pytest.mark.parametrize("role", ROLES)
def test_whoever_reads_a_node_type_reads_its_id(role: str) -> None:
    """`id` is non-null on every Node type: a role that may read any field of one must read
    its id in full, or the object would come back as an error instead of a row."""
    profile = PDP.profile([role])
    for type_name in NODE_TYPES:
        readable = [
            f
            for f in RESOURCES[type_name]
            if profile.field_access(f"{type_name}.{f}") is not FieldAccess.NONE
        ]
        if readable:
            assert profile.field_access(f"{type_name}.id") is FieldAccess.FULL, (
                role,
                type_name,
                readable,
            )


# ---- the profile's own checks (what every service calls) ------------------------------------


def test_require_lets_a_granted_action_through_and_names_a_refused_one() -> None:
    finance = PDP.profile(["finance"])
    warehouse = PDP.profile(["warehouse"])

    finance.require(Action.REFUND_REQUEST)
    with pytest.raises(Forbidden) as refused:
        warehouse.require(Action.REFUND_REQUEST)

    assert refused.value.message == "your role may not perform refund:request"
    assert refused.value.details == {"action": "refund:request"}


def test_require_full_refuses_a_masked_field_by_name() -> None:
    sales = PDP.profile(["sales"])

    sales.require_full("Order.total")
    with pytest.raises(Forbidden) as refused:
        sales.require_full("Customer.phone")  # masked for sales

    assert refused.value.message == "your role may not filter or sort on Customer.phone"
    assert refused.value.details == {"field": "Customer.phone"}


def test_present_shows_full_masks_masked_and_hides_the_rest() -> None:
    sales = PDP.profile(["sales"])

    assert sales.present("Order.number", "OG1") == "OG1"
    assert sales.present("Customer.phone", "13812345678") == "138****5678"
    assert sales.present("Customer.phone", None) is None
    assert sales.present("Order.grossMargin", "12.00") is None
    assert PDP.profile(["cs"]).present("Customer.phone", "13812345678") == "13812345678"


def test_profiles_and_decisions_cannot_be_changed_once_made() -> None:
    """One profile serves every request of its roles: nothing may alter it in place."""
    profile = PDP.profile(["cs"])
    decision = PDP.explain("cs", "Order.total")

    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.roles = frozenset(["admin"])  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.access = FieldAccess.FULL  # type: ignore[misc]


# ---- the policy files: version, loading, reloading -------------------------------------------


def _version_of(directory: Path) -> str:
    """As documented (README: Access control): the first 16 hex digits of SHA-256 over
    model.conf, a NUL byte and policy.csv."""
    data = (directory / "model.conf").read_bytes() + b"\0" + (directory / "policy.csv").read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def test_the_version_is_the_documented_digest_of_both_files(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "")

    assert pdp.version == _version_of(tmp_path)
    assert PDP.profile(["cs"]).policy_version == PDP.version == _version_of(POLICY_DIR)


def test_compiling_profiles_never_writes_the_policy_file(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "")
    before = (tmp_path / "policy.csv").read_bytes()

    for role in ROLES:
        pdp.profile([role])
    pdp.profile(["cs", "sales"])

    assert (tmp_path / "policy.csv").read_bytes() == before


def test_problems_that_stop_loading_are_reported_exactly(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(PolicyInvalid) as short:
        _policy_copy(tmp_path / "a", "g, cs\n")
    (tmp_path / "b").mkdir()
    shutil.copy(POLICY_DIR / "model.conf", tmp_path / "b" / "model.conf")
    (tmp_path / "b" / "policy.csv").write_text("p, cs, Order.total, read, allow, extra\n")
    with pytest.raises(PolicyInvalid) as long:
        PolicyDecisionPoint(tmp_path / "b")

    assert short.value.problems == [
        "policy cannot be loaded: grouping policy elements do not meet role definition"
    ]
    assert long.value.problems == [
        "malformed line (policy cannot be loaded): p, cs, Order.total, read, allow, extra"
    ]


def test_a_refused_reload_names_the_version_it_refused(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "")
    policy = tmp_path / "policy.csv"
    policy.write_text(policy.read_text() + "p, cs, Order.grossMargn, read, allow\n")

    with pytest.raises(PolicyInvalid) as refused:
        pdp.reload(known_roles=ROLES)

    assert refused.value.version == _version_of(tmp_path)


def test_profiles_compiled_while_checking_a_reload_carry_the_new_version(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "")
    policy = tmp_path / "policy.csv"
    policy.write_text(policy.read_text() + "p, warehouse, Order.carrier, read, allow\n")

    assert pdp.reload(known_roles=ROLES) is True

    assert pdp.version == _version_of(tmp_path)
    assert {pdp.profile([role]).policy_version for role in ROLES} == {pdp.version}


def test_a_model_without_its_sections_is_refused_not_a_traceback(tmp_path: Path) -> None:
    shutil.copy(POLICY_DIR / "policy.csv", tmp_path / "policy.csv")
    (tmp_path / "model.conf").write_text("[request_definition]\nr = sub, obj\n")

    with pytest.raises(PolicyInvalid) as refused:
        PolicyDecisionPoint(tmp_path)

    assert refused.value.problems[0].startswith("policy cannot be loaded: ")


def _without(*lines: str) -> str:
    text = (POLICY_DIR / "policy.csv").read_text()
    for line in lines:
        assert line + "\n" in text, line
        text = text.replace(line + "\n", "")
    return text


LOST = (
    "p, cs, operation, refund:request, allow",
    "p, cs, Order.paymentMethod, read, allow",
    "p, sales, operation, refund:request, allow",
    "p, sales, operation, price:request, allow",
)


def test_a_reload_that_loses_grants_names_each_by_role(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "")
    (tmp_path / "policy.csv").write_text(_without(*LOST))

    with pytest.raises(PolicyInvalid) as refused:
        pdp.reload(known_roles=ROLES)

    assert refused.value.problems == [
        "the new policy takes away 4 grant(s) it does not name in a `# removes:` line — "
        "cs: Order.paymentMethod, refund:request; sales: price:request, refund:request"
    ]


@pytest.mark.parametrize(
    "declared",
    [
        # one line, several grants, operations as well as fields
        "# removes: cs refund:request, cs Order.paymentMethod, sales refund:request, "
        "sales price:request\n",
        # several lines add up; no space after the colon is read the same
        "# removes:cs refund:request\n# removes: cs Order.paymentMethod\n"
        "# Removes: sales refund:request,sales   price:request\n",
    ],
)
def test_removes_lines_name_operations_and_fields_on_one_or_several_lines(
    tmp_path: Path, declared: str
) -> None:
    pdp = _policy_copy(tmp_path, "")
    (tmp_path / "policy.csv").write_text(declared + _without(*LOST))

    assert pdp.reload(known_roles=ROLES) is True

    assert not pdp.profile(["cs"]).can(Action.REFUND_REQUEST)
    assert not pdp.profile(["sales"]).can(Action.PRICE_REQUEST)
    assert pdp.profile(["cs"]).field_access("Order.paymentMethod") is FieldAccess.NONE


def test_a_role_set_is_compiled_once_per_policy_version(tmp_path: Path) -> None:
    """Requests read one compiled profile; compiling per request would cost a Casbin
    enforcement per field."""
    pdp = _policy_copy(tmp_path, "")
    first = pdp.profile(["sales", "cs"])

    assert pdp.profile(["cs", "sales"]) is first
    policy = tmp_path / "policy.csv"
    policy.write_text(policy.read_text() + "p, warehouse, Order.carrier, read, allow\n")
    pdp.reload(known_roles=ROLES)
    assert pdp.profile(["cs", "sales"]) is not first  # a new version compiles afresh


def test_a_masked_wildcard_grant_masks_what_has_a_mask_and_is_no_problem(tmp_path: Path) -> None:
    pdp = _policy_copy(tmp_path, "p, warehouse, Customer.*, read_masked, allow\n")

    assert pdp.check(ROLES) == []
    assert pdp.profile(["warehouse"]).field_access("Customer.phone") is FieldAccess.MASKED
    assert pdp.profile(["warehouse"]).field_access("Customer.createdAt") is FieldAccess.NONE


def test_compiled_profiles_decide_exactly_as_casbin_asked_about_the_whole_policy() -> None:
    """Profiles are compiled against small per-action enforcers (a tenth of the time); the
    oracle is Casbin itself, asked every question against every line of the policy."""
    from domain.access import MASKS, OPERATION_OBJECT, ROWS_OBJECT, _subject

    pdp = PolicyDecisionPoint()
    version, enforcer, _cache = pdp._state
    role_sets = [[role] for role in ROLES] + [["cs", "finance"], ["sales", "ops", "approver"]]
    for roles in role_sets:
        key = frozenset(roles)
        compiled = PolicyDecisionPoint._compile_uncached(version, enforcer, key)
        subject = _subject(key)

        def asked(obj: str, act: str, subject: str = subject) -> bool:
            return bool(enforcer.enforce(subject, obj, act))

        said: dict[str, FieldAccess] = {}
        for coordinate in COORDINATES:
            if asked(coordinate, "read"):
                said[coordinate] = FieldAccess.FULL
            elif asked(coordinate, "read_masked") and coordinate in MASKS:
                said[coordinate] = FieldAccess.MASKED
            else:
                said[coordinate] = FieldAccess.NONE
        # A figure made of other fields is seen no better than the least visible of them
        # (issue #30, L2); written out here, not taken from the code under test.
        made_of = {
            "Customer.totalSpent": ("Order.total", "Order.refundedAmount"),
            "Order.grossMargin": ("Order.total", "OrderLine.costPrice"),
        }
        for coordinate in COORDINATES:
            levels = [said[c] for c in (coordinate, *made_of.get(coordinate, ()))]
            if FieldAccess.NONE in levels:
                expected = FieldAccess.NONE
            elif FieldAccess.MASKED in levels:
                expected = FieldAccess.MASKED
            else:
                expected = FieldAccess.FULL
            assert compiled.fields[coordinate] is expected, (roles, coordinate)
        assert compiled.actions == {a for a in Action if asked(OPERATION_OBJECT, a)}, roles
        assert (compiled.order_rows is RowScope.ALL) == asked(ROWS_OBJECT, "rows:all"), roles
