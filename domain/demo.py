"""Demo data: 4 channels, 50 SKUs, 100 customers, about 200 orders in every status, one user
per role. Loading twice changes nothing."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import POLICY_DIR, ROLES, PolicyDecisionPoint
from domain.actor import SYSTEM_ORIGIN, Actor
from domain.audit.service import Subject
from domain.catalog.models import Product, StockItem
from domain.channels.models import DEFAULT_CHANNELS, Channel
from domain.customers.models import Address, Customer, address_columns, contact_columns
from domain.intake import escalation
from domain.intake import service as intake
from domain.inventory import service as inventory
from domain.orders import service as orders_service
from domain.orders.models import Order, OrderLine, OrderStatusChange
from domain.orders.rules import OrderStatus
from domain.users import service as users_service
from domain.users.models import User

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍鹏辉玲红宇浩然子轩欣怡梓涵"
PLACES = [
    ("上海市", "上海市", ["浦东新区", "徐汇区", "静安区", "闵行区"], "200000"),
    ("北京市", "北京市", ["朝阳区", "海淀区", "东城区", "丰台区"], "100000"),
    ("广东省", "深圳市", ["南山区", "福田区", "宝安区", "龙岗区"], "518000"),
    ("广东省", "广州市", ["天河区", "越秀区", "海珠区", "番禺区"], "510000"),
    ("浙江省", "杭州市", ["西湖区", "滨江区", "余杭区", "拱墅区"], "310000"),
    ("江苏省", "南京市", ["鼓楼区", "玄武区", "建邺区", "江宁区"], "210000"),
    ("四川省", "成都市", ["武侯区", "锦江区", "青羊区", "高新区"], "610000"),
    ("湖北省", "武汉市", ["武昌区", "江汉区", "洪山区", "汉阳区"], "430000"),
]
STREETS = ["人民路", "解放路", "中山路", "建设路", "和平路", "长江路", "科技园路", "滨河大道"]
PRODUCTS = [
    "无线蓝牙耳机",
    "智能手环",
    "保温杯 500ml",
    "纯棉T恤",
    "运动跑鞋",
    "双肩背包",
    "机械键盘",
    "电动牙刷",
    "空气炸锅",
    "护手霜礼盒",
    "绿茶 250g",
    "真丝枕套",
    "移动电源 20000mAh",
    "瑜伽垫",
    "儿童绘本套装",
    "陶瓷餐具套装",
    "羊毛围巾",
    "便携榨汁杯",
    "LED 台灯",
    "坚果礼盒",
    "降噪头戴耳机",
    "充电数据线",
    "茶具套装",
    "冲锋衣",
    "登山杖",
]
# Each product's category, in the order of PRODUCTS (KPIs are sliced by category).
CATEGORIES = [
    "DIGITAL",
    "DIGITAL",
    "HOME",
    "APPAREL",
    "SPORTS",
    "APPAREL",
    "DIGITAL",
    "BEAUTY",
    "HOME",
    "BEAUTY",
    "FOOD",
    "HOME",
    "DIGITAL",
    "SPORTS",
    "BOOKS",
    "HOME",
    "APPAREL",
    "HOME",
    "DIGITAL",
    "FOOD",
    "DIGITAL",
    "DIGITAL",
    "HOME",
    "APPAREL",
    "SPORTS",
]
CARRIERS = ["SF", "ZTO", "YTO", "JD_LOGISTICS", "EMS"]
PAYMENTS = {"TAOBAO": "ALIPAY", "JD": "JD_PAY", "PINDUODUO": "WECHAT_PAY", "WEB": "UNIONPAY"}
WAREHOUSES = ["SH-01", "GZ-01"]
LIFECYCLE = [
    OrderStatus.PENDING_PAYMENT,
    OrderStatus.PAID,
    OrderStatus.PICKING,
    OrderStatus.SHIPPED,
    OrderStatus.COMPLETED,
]
STATUS_MIX = [
    *[OrderStatus.COMPLETED] * 8,
    *[OrderStatus.SHIPPED] * 4,
    *[OrderStatus.PICKING] * 3,
    *[OrderStatus.PAID] * 3,
    *[OrderStatus.PENDING_PAYMENT] * 2,
    *[OrderStatus.CANCELLED] * 2,
]
DEMO_PREFIX = "DEMO-"
DEMO_LOADER = Subject(None, "ordergate-demo", (), SYSTEM_ORIGIN)
# Demo sales staff see two channels, to show row scope.
SALES_CHANNELS = ("TAOBAO", "JD")
# The demo's business timezone (the default of ORDERGATE_TIMEZONE) and escalation threshold.
DEMO_TIMEZONE = ZoneInfo("Asia/Shanghai")
ESCALATE_AFTER = dt.timedelta(hours=2)


@dataclass(frozen=True)
class DemoResult:
    created_orders: int
    created_users: tuple[str, ...]


def demo_username(role: str) -> str:
    return f"demo-{role}"


# Mainland mobile prefixes in service (libphonenumber calls other 1xx numbers invalid).
MOBILE_PREFIXES = [
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "176",
    "177",
    "178",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "199",
]


def _phone(rng: random.Random) -> str:
    return f"{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


async def load_demo(
    *,
    session: AsyncSession,
    password: str,
    now: dt.datetime,
    orders: int = 200,
    policy_dir: Path = POLICY_DIR,
) -> DemoResult:
    rng = random.Random(20261125)
    for code, name in DEFAULT_CHANNELS.items():
        if await session.get(Channel, code) is None:
            session.add(Channel(code=code, name=name))
    await session.flush()

    created_users = []
    for role in ROLES:
        username = demo_username(role)
        if await session.scalar(select(User.id).where(User.username == username)) is None:
            channels = SALES_CHANNELS if role == "sales" else ()
            await users_service.create_user(
                session=session,
                who=DEMO_LOADER,
                username=username,
                password=password,
                roles=[role],
                channels=channels,
                email=f"{username}@example.com" if role in ("purchasing", "ops") else None,
            )
            created_users.append(username)

    existing = await session.scalar(
        select(func.count()).select_from(Order).where(Order.external_id.startswith(DEMO_PREFIX))
    )
    if existing:
        return DemoResult(0, tuple(created_users))

    products = []
    for i in range(50):
        base = PRODUCTS[i % len(PRODUCTS)]
        name = base if i < len(PRODUCTS) else f"{base} 升级款"
        price = rng.randrange(19, 1299) * 100 + rng.choice((0, 50, 90))
        product = Product(
            sku=f"SKU-{i + 1:04d}",
            name=name,
            currency="CNY",
            list_price_minor=price,
            category=CATEGORIES[i % len(PRODUCTS)],
        )
        products.append(product)
        session.add(product)
    await session.flush()
    for product in products:
        for warehouse in WAREHOUSES:
            on_hand = rng.randrange(0, 400)
            item = StockItem(
                sku=product.sku,
                warehouse=warehouse,
                on_hand=on_hand,
                reserved=rng.randrange(0, on_hand + 1) // 4,
                safety_threshold=rng.choice((10, 20, 50)),
                currency="CNY",
                unit_cost_minor=int(product.list_price_minor * rng.uniform(0.35, 0.7)),
                updated_at=now,
            )
            session.add(item)
            await inventory.open_ledger(session=session, item=item, at=now)

    # The demo salesperson looks after the demo customers (told when a key field changes).
    owner = await session.scalar(select(User.id).where(User.username == demo_username("sales")))
    customers = []
    for i in range(100):
        province, city, districts, postal = rng.choice(PLACES)
        name = _name(rng)
        phone = _phone(rng)
        customer = Customer(
            name=name,
            **contact_columns(
                phone=phone, email=f"user{i + 1:03d}@example.com" if rng.random() < 0.8 else None
            ),
            phone=phone,
            owner_id=owner,
            created_at=now - dt.timedelta(days=rng.randrange(90, 700)),
            addresses=[
                Address(
                    recipient=name,
                    phone=phone,
                    province=province,
                    city=city,
                    district=rng.choice(districts),
                    street=(
                        f"{rng.choice(STREETS)}{rng.randrange(1, 999)}号{rng.randrange(1, 30)}栋"
                    ),
                    postal_code=postal,
                    is_default=True,
                )
            ],
        )
        customers.append(customer)
        session.add(customer)
    await session.flush()

    # The orders come in as the channels send them, through the intake (`ingestOrders`):
    # each is linked to its customer by phone, gets its business day, status history, events
    # and (when paid) its picking list exactly as a real channel's order would.
    integration = await _demo_actor(session, "integration", policy_dir)
    warehouse = await _demo_actor(session, "warehouse", policy_dir)
    channels = list(DEFAULT_CHANNELS)
    batches: dict[str, list[intake.ChannelOrder]] = {c: [] for c in channels}
    final: dict[str, OrderStatus] = {}
    notes: dict[str, str] = {}
    for i in range(orders):
        channel = channels[i % len(channels)]
        customer = rng.choice(customers)
        address = customer.addresses[0]
        status = STATUS_MIX[i % len(STATUS_MIX)] if i >= len(LIFECYCLE) else LIFECYCLE[i]
        created = now - dt.timedelta(minutes=rng.randrange(60, 90 * 24 * 60))
        lines = []
        subtotal = 0
        for product in rng.sample(products, rng.randrange(1, 4)):
            qty = rng.randrange(1, 4)
            rng.uniform(0.35, 0.7)  # the line's cost: the intake takes it from the stock rows
            lines.append(intake.Line(product.sku, qty, _amount(product.list_price_minor)))
            subtotal += product.list_price_minor * qty
        shipping = 0 if subtotal >= 9900 else 800
        discount = rng.choice((0, 0, 0, 500, 1000)) if subtotal > 5000 else 0
        paid = status is not OrderStatus.PENDING_PAYMENT
        transaction = f"{PAYMENTS[channel][:2]}{rng.randrange(10**15):015d}" if paid else None
        external_id = f"{DEMO_PREFIX}{channel}-{100000 + i}"
        if rng.random() < 0.1:
            notes[external_id] = "客户要求周末送达"
        _history(status, created, now, rng)  # keeps the generator's sequence (and the data) stable
        carrier = tracking = None
        if status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED):
            carrier = rng.choice(CARRIERS)
            tracking = f"{carrier[:2]}{rng.randrange(10**12):012d}"
        final[external_id] = status
        batches[channel].append(
            intake.ChannelOrder(
                external_id=external_id,
                # PICKING is ours, not a channel's: the channel reports it paid and the
                # warehouse moves it on below.
                status=OrderStatus.PAID if status is OrderStatus.PICKING else status,
                created_at=created,
                paid_at=created + dt.timedelta(minutes=1) if paid else None,
                currency="CNY",
                buyer=intake.Buyer(customer.name, customer.phone, customer.email),
                shipping_address=intake.ShippingAddress(
                    address.recipient,
                    address.phone,
                    address.province,
                    address.city,
                    address.district,
                    address.street,
                    address.postal_code,
                ),
                lines=lines,
                shipping_fee=_amount(shipping),
                discount=_amount(discount),
                payment_method=PAYMENTS[channel] if paid else None,
                payment_transaction_id=transaction,
                carrier=carrier,
                tracking_number=tracking,
            )
        )
    for channel, sent in batches.items():
        for start in range(0, len(sent), intake.MAX_BATCH):
            results = await intake.ingest(
                session=session,
                actor=integration,
                channel=channel,
                orders=sent[start : start + intake.MAX_BATCH],
                timezone=DEMO_TIMEZONE,
                now=now,
            )
            refused = [r for r in results if r.outcome is intake.Outcome.REJECTED]
            if refused:
                raise RuntimeError(f"the demo's own orders were refused: {refused[:3]}")
    landed = {
        o.external_id: o
        for o in await session.scalars(
            select(Order).where(Order.external_id.startswith(DEMO_PREFIX)).order_by(Order.id)
        )
    }
    for external_id, order in landed.items():
        if final[external_id] is OrderStatus.PICKING:  # the warehouse starts picking (audited)
            await orders_service.transition(
                session=session, actor=warehouse, order_id=order.id, to=OrderStatus.PICKING
            )
        if external_id in notes:  # a staff note, not channel data (not a new version)
            await session.execute(
                update(Order)
                .where(Order.id == order.id)
                .values(internal_note=notes[external_id])
                .execution_options(synchronize_session="fetch")
            )
    await session.flush()
    # Orders waiting past the threshold are escalated as the every-minute job would.
    while await escalation.escalate_waiting(session=session, now=now, after=ESCALATE_AFTER):
        pass
    return DemoResult(orders, tuple(created_users))


def _amount(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


async def _demo_actor(session: AsyncSession, role: str, policy_dir: Path) -> Actor:
    user_id = await session.scalar(select(User.id).where(User.username == demo_username(role)))
    roles = frozenset({role})
    return Actor(
        user_id=user_id,
        username=demo_username(role),
        roles=roles,
        channels=frozenset(),
        access=PolicyDecisionPoint(policy_dir).profile(roles),
        origin=SYSTEM_ORIGIN,
    )


def _history(
    final: OrderStatus, created: dt.datetime, now: dt.datetime, rng: random.Random
) -> list[OrderStatusChange]:
    path = [OrderStatus.PENDING_PAYMENT]
    if final is OrderStatus.CANCELLED:
        path += [*LIFECYCLE[1 : rng.randrange(1, 4)], OrderStatus.CANCELLED]
    else:
        path += LIFECYCLE[1 : LIFECYCLE.index(final) + 1]
    changes = []
    at = created
    previous: OrderStatus | None = None
    for status in path:
        changes.append(
            OrderStatusChange(
                from_status=previous, to_status=status, actor_username="system", at=at, note=None
            )
        )
        previous = status
        at = min(at + dt.timedelta(minutes=rng.randrange(5, 600)), now)
    return changes


# ---- a large database, for capacity work ------------------------------------------------------

BULK_PREFIX = "bulk-"
BULK_BATCH = 5_000


async def load_bulk(
    *,
    session: AsyncSession,
    orders: int,
    now: dt.datetime,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add orders until the database holds `orders` in all, with one customer per twenty
    orders, one to three lines and a status history each, spread over two years. On
    PostgreSQL the rows go in with COPY, elsewhere with batched inserts; either way in
    batches of 5,000 orders. Returns how many were added (none when there are enough)."""
    have = await session.scalar(select(func.count()).select_from(Order)) or 0
    wanted = orders - have
    if wanted <= 0:
        return 0
    rng = random.Random(orders)
    products = list((await session.scalars(select(Product).order_by(Product.sku))).all())
    if not products:
        raise ValueError("load the demo data first (ordergate demo)")
    channels = list(DEFAULT_CHANNELS)
    postgres = session.bind.dialect.name == "postgresql"

    async def next_id(table: Any) -> int:
        return int(await session.scalar(select(func.coalesce(func.max(table.c.id), 0)))) + 1

    customer_table, address_table = Customer.__table__, Address.__table__
    order_table, line_table = Order.__table__, OrderLine.__table__
    history_table = OrderStatusChange.__table__
    customer_id = await next_id(customer_table)
    first_customer = customer_id
    customers: list[dict[str, Any]] = []
    addresses: list[dict[str, Any]] = []
    for _ in range(max(1, wanted // 20)):
        name, phone = _name(rng), _phone(rng)
        province, city, districts, postal = rng.choice(PLACES)
        customers.append(
            {
                "id": customer_id,
                "name": name,
                "phone": phone,
                **contact_columns(phone=phone, email=f"c{customer_id}@example.com"),
                "version": 1,
                "created_at": now - dt.timedelta(days=rng.randrange(700, 900)),
            }
        )
        district = rng.choice(districts)
        street = f"{rng.choice(STREETS)}{rng.randrange(1, 999)}号"
        addresses.append(
            {
                "customer_id": customer_id,
                "recipient": name,
                "phone": phone,
                "province": province,
                "city": city,
                "district": district,
                "street": street,
                "postal_code": postal,
                "is_default": True,
                **address_columns(city=city, district=district, street=street),
            }
        )
        customer_id += 1
    await _bulk_insert(session, customer_table, customers, postgres)
    await _bulk_insert(session, address_table, addresses, postgres)
    by_id = {c["id"]: (c, a) for c, a in zip(customers, addresses, strict=True)}

    order_id = await next_id(order_table)
    added = 0
    while added < wanted:
        batch = min(BULK_BATCH, wanted - added)
        order_rows, line_rows, history_rows = [], [], []
        for _ in range(batch):
            channel = channels[order_id % len(channels)]
            customer, address = by_id[rng.randrange(first_customer, customer_id)]
            status = STATUS_MIX[order_id % len(STATUS_MIX)]
            created = now - dt.timedelta(minutes=rng.randrange(60, 730 * 24 * 60))
            subtotal = cost_total = 0
            for product in rng.sample(products, rng.randrange(1, 4)):
                qty = rng.randrange(1, 4)
                cost = int(product.list_price_minor * rng.uniform(0.35, 0.7))
                subtotal += product.list_price_minor * qty
                cost_total += cost * qty
                line_rows.append(
                    {
                        "order_id": order_id,
                        "sku": product.sku,
                        "name": product.name,
                        "quantity": qty,
                        "unit_price_minor": product.list_price_minor,
                        "cost_price_minor": cost,
                    }
                )
            shipping = 0 if subtotal >= 9900 else 800
            total = subtotal + shipping
            history = _history(status, created, now, rng)
            paid = any(change.to_status is OrderStatus.PAID for change in history)
            shipped = status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED)
            carrier = rng.choice(CARRIERS) if shipped else None
            order_rows.append(
                {
                    "id": order_id,
                    "number": f"OB{order_id:010d}",
                    "channel_code": channel,
                    "external_id": f"{BULK_PREFIX}{channel}-{order_id}",
                    "status": status,
                    "currency": "CNY",
                    "subtotal_minor": subtotal,
                    "shipping_fee_minor": shipping,
                    "discount_minor": 0,
                    "total_minor": total,
                    "gross_margin_minor": total - cost_total - shipping,
                    "refunded_minor": 0,
                    "paid_minor": total if paid else 0,
                    "customer_id": customer["id"],
                    "customer_name": customer["name"],
                    "customer_phone": customer["phone"],
                    "ship_recipient": address["recipient"],
                    "ship_phone": address["phone"],
                    "ship_province": address["province"],
                    "ship_city": address["city"],
                    "ship_district": address["district"],
                    "ship_street": address["street"],
                    "ship_postal_code": address["postal_code"],
                    "payment_method": PAYMENTS[channel] if paid else None,
                    "payment_transaction_id": None,
                    "carrier": carrier,
                    "tracking_number": f"{carrier[:2]}{order_id:012d}" if carrier else None,
                    "internal_note": None,
                    "version": len(history),
                    "created_at": created,
                    "updated_at": history[-1].at,
                    "business_day": created.astimezone(DEMO_TIMEZONE).date(),
                    "paid_at": next(
                        (c.at for c in history if c.to_status is OrderStatus.PAID), None
                    ),
                    "shipped_at": next(
                        (c.at for c in history if c.to_status is OrderStatus.SHIPPED), None
                    ),
                }
            )
            history_rows += [
                {
                    "order_id": order_id,
                    "from_status": change.from_status,
                    "to_status": change.to_status,
                    "actor_id": None,
                    "actor_username": change.actor_username,
                    "at": change.at,
                    "note": None,
                }
                for change in history
            ]
            order_id += 1
        await _bulk_insert(session, order_table, order_rows, postgres)
        await _bulk_insert(session, line_table, line_rows, postgres)
        await _bulk_insert(session, history_table, history_rows, postgres)
        added += batch
        if progress is not None:
            progress(added)
    if postgres:
        for table in ("customers", "addresses", "orders", "order_lines", "order_status_changes"):
            await session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - fixed names
                    f"(SELECT max(id) FROM {table}))"
                )
            )
        await session.execute(text("ANALYZE"))
    return added


async def _bulk_insert(
    session: AsyncSession, table: Any, rows: list[dict[str, Any]], postgres: bool
) -> None:
    if not rows:
        return
    if not postgres:
        await session.execute(table.insert(), rows)
        return
    # COPY through asyncpg: an order of magnitude faster than INSERT for a million rows.
    columns = list(rows[0])
    records = [
        tuple(r[c].name if isinstance(r[c], OrderStatus) else r[c] for c in columns) for r in rows
    ]
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(table.name, records=records, columns=columns)
