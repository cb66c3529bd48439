// The printable picking list: /picking-lists/<global id>. Read through the GraphQL API with
// the signed-in account's field policy and row scope, like every other read.
import { el, firstError, gql, setText, signIn } from "./session.js";

const QUERY = `query($id: ID!) {
  pickingList(id: $id) {
    id number warehouse status createdAt
    lines { sku productName quantity }
    order {
      number channel externalId businessDay
      shippingAddress { recipient phone province city district street postalCode }
    }
  }
}`;

const STATUS = { OPEN: "To pick", PICKED: "Picked", CANCELLED: "Cancelled — do not pick" };

function listId() {
  const parts = window.location.pathname.split("/").filter(Boolean);
  return decodeURIComponent(parts[parts.length - 1] || "");
}

function showProblem(message) {
  const box = document.getElementById("og-error");
  box.textContent = message;
  box.hidden = false;
}

function render(list, deniedFields) {
  document.title = `${list.number} — picking list`;
  setText("pk-number", list.number);
  setText("pk-warehouse", list.warehouse);
  setText("pk-status", STATUS[list.status] || list.status);
  document.getElementById("og-sheet").dataset.status = list.status;
  setText("pk-created", new Date(list.createdAt).toLocaleString());
  const order = list.order || {};
  setText("pk-order", order.number);
  setText("pk-channel", order.channel && `${order.channel} ${order.externalId || ""}`.trim());
  setText("pk-day", order.businessDay);
  const a = order.shippingAddress;
  setText("pk-recipient", a && `${a.recipient}  ${a.phone}`);
  setText(
    "pk-address",
    a && [a.province, a.city, a.district, a.street, a.postalCode].filter(Boolean).join(" "),
  );
  const body = document.querySelector("#pk-lines tbody");
  body.replaceChildren();
  let items = 0;
  list.lines.forEach((line, n) => {
    const row = el("tr");
    row.append(
      el("td", n + 1, "num"),
      el("td", line.sku, "sku"),
      el("td", line.productName),
      el("td", line.quantity, "num"),
      el("td", "", "tick"),
    );
    body.append(row);
    items += line.quantity;
  });
  setText("pk-items", items);
  setText("pk-printed", new Date().toLocaleString());
  const hidden = document.getElementById("pk-denied");
  hidden.textContent = deniedFields.length
    ? `Not shown to your role: ${deniedFields.join(", ")}.`
    : "";
  document.getElementById("og-sheet").hidden = false;
}

async function load(username) {
  setText("og-who", username);
  const body = await gql(QUERY, { id: listId() });
  const list = body.data && body.data.pickingList;
  if (!list) {
    const error = firstError(body);
    showProblem(error ? error.message : "No such picking list.");
    return;
  }
  const denied = (body.errors || [])
    .map((e) => (e.extensions || {}).field)
    .filter(Boolean);
  render(list, denied);
}

document.getElementById("pk-print").addEventListener("click", () => window.print());
signIn(document.getElementById("og-login"), (username) =>
  load(username).catch((error) => showProblem(error.message)),
);
