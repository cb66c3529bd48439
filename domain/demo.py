"""Demo data: 4 channels, 50 SKUs, 100 customers, about 200 orders in every status, one user
per role. Loading twice changes nothing."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import ROLES
from domain.actor import SYSTEM_ORIGIN
from domain.audit.service import Subject
from domain.catalog.models import Product, StockItem
from domain.channels.models import DEFAULT_CHANNELS, Channel
from domain.customers.models import Address, Customer
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


@dataclass(frozen=True)
class DemoResult:
    created_orders: int
    created_users: tuple[str, ...]


def demo_username(role: str) -> str:
    return f"demo-{role}"


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


async def load_demo(
    *, session: AsyncSession, password: str, now: dt.datetime, orders: int = 200
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
        product = Product(sku=f"SKU-{i + 1:04d}", name=name, currency="CNY", list_price_minor=price)
        products.append(product)
        session.add(product)
    await session.flush()
    for product in products:
        for warehouse in WAREHOUSES:
            on_hand = rng.randrange(0, 400)
            session.add(
                StockItem(
                    sku=product.sku,
                    warehouse=warehouse,
                    on_hand=on_hand,
                    reserved=rng.randrange(0, on_hand + 1) // 4,
                    safety_threshold=rng.choice((10, 20, 50)),
                    currency="CNY",
                    unit_cost_minor=int(product.list_price_minor * rng.uniform(0.35, 0.7)),
                    updated_at=now,
                )
            )

    customers = []
    for i in range(100):
        province, city, districts, postal = rng.choice(PLACES)
        name = _name(rng)
        phone = _phone(rng)
        customer = Customer(
            name=name,
            phone=phone,
            email=f"user{i + 1:03d}@example.com" if rng.random() < 0.8 else None,
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

    channels = list(DEFAULT_CHANNELS)
    for i in range(orders):
        channel = channels[i % len(channels)]
        customer = rng.choice(customers)
        address = customer.addresses[0]
        status = STATUS_MIX[i % len(STATUS_MIX)] if i >= len(LIFECYCLE) else LIFECYCLE[i]
        created = now - dt.timedelta(minutes=rng.randrange(60, 90 * 24 * 60))
        lines = []
        for product in rng.sample(products, rng.randrange(1, 4)):
            qty = rng.randrange(1, 4)
            cost = int(product.list_price_minor * rng.uniform(0.35, 0.7))
            lines.append(
                OrderLine(
                    sku=product.sku,
                    name=product.name,
                    quantity=qty,
                    unit_price_minor=product.list_price_minor,
                    cost_price_minor=cost,
                )
            )
        subtotal = sum(line.unit_price_minor * line.quantity for line in lines)
        shipping = 0 if subtotal >= 9900 else 800
        discount = rng.choice((0, 0, 0, 500, 1000)) if subtotal > 5000 else 0
        total = subtotal + shipping - discount
        cost_total = sum(line.cost_price_minor * line.quantity for line in lines)
        order = Order(
            number=f"OG{created:%Y%m%d}{i + 1:05d}",
            channel_code=channel,
            external_id=f"{DEMO_PREFIX}{channel}-{100000 + i}",
            status=status,
            currency="CNY",
            subtotal_minor=subtotal,
            shipping_fee_minor=shipping,
            discount_minor=discount,
            total_minor=total,
            gross_margin_minor=total - cost_total - shipping,
            customer_id=customer.id,
            customer_name=customer.name,
            customer_phone=customer.phone,
            ship_recipient=address.recipient,
            ship_phone=address.phone,
            ship_province=address.province,
            ship_city=address.city,
            ship_district=address.district,
            ship_street=address.street,
            ship_postal_code=address.postal_code,
            payment_method=PAYMENTS[channel] if status is not OrderStatus.PENDING_PAYMENT else None,
            payment_transaction_id=(
                f"{PAYMENTS[channel][:2]}{rng.randrange(10**15):015d}"
                if status is not OrderStatus.PENDING_PAYMENT
                else None
            ),
            internal_note="客户要求周末送达" if rng.random() < 0.1 else None,
            created_at=created,
            updated_at=created,
            lines=lines,
        )
        history = _history(status, created, now, rng)
        order.status_history = history
        if any(change.to_status is OrderStatus.PAID for change in history):
            order.paid_minor = total
        if status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED):
            order.carrier = rng.choice(CARRIERS)
            order.tracking_number = f"{order.carrier[:2]}{rng.randrange(10**12):012d}"
        if history:
            order.updated_at = history[-1].at
        session.add(order)
    await session.flush()
    return DemoResult(orders, tuple(created_users))


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
