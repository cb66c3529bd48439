// The approver's inbox: /approvals. What you see is exactly what you sign.
//
// - Each request is shown from its `signingPayload` alone, parsed here; the page signs those
//   very bytes (UTF-8), unchanged. No other field of the request is displayed, so nothing
//   shown can differ from what is signed ("dynamic linking").
// - The signing key is made on this device by WebCrypto as a non-extractable Ed25519 key and
//   kept as a CryptoKey in IndexedDB; only its public half (SPKI, as PEM) leaves the browser.
// - Every value goes into the page as text (textContent), never as markup.
import { el, firstError, gql, setText, signIn } from "./session.js";

const VIEWER = `{ viewer { username actions } }`;
const KEYS = `{ signingKeys { id fingerprint createdAt revokedAt } }`;
const REGISTER = `mutation($pem: String!) {
  registerSigningKey(publicKey: $pem) { id fingerprint createdAt revokedAt } }`;
const REVOKE = `mutation($id: ID!) { revokeSigningKey(id: $id) { id revokedAt } }`;
const PENDING = `query($after: String) {
  approvalRequests(status: PENDING, first: 100, after: $after) {
    pageInfo { hasNextPage endCursor } edges { node { id signingPayload } } } }`;
const APPROVE = `mutation($id: ID!, $jws: String!) {
  approveRequest(id: $id, signature: $jws) { id status decidedAt } }`;
const REJECT = `mutation($id: ID!, $reason: String!) {
  rejectRequest(id: $id, reason: $reason) { id status } }`;
const EXPORTS = `query($status: ExportStatus!, $after: String) {
  exportRequests(status: $status, first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { id entity fields filter reason requestedBy expectedRows createdAt expiresAt
                   approvedL1By } } } }`;
const APPROVE_EXPORT = `mutation($id: ID!) { approveExport(id: $id) { id status } }`;
const REJECT_EXPORT = `mutation($id: ID!, $reason: String!) {
  rejectExport(id: $id, reason: $reason) { id status } }`;

// The payload versions and actions this page knows how to show in full. It signs nothing else.
const PAYLOAD_VERSION = 1;
const KINDS = { REFUND: "Refund", PRICE_CHANGE: "Price change" };

// Refusals in plain words; the server's own sentence follows in brackets.
const PLAIN = {
  SIGNATURE_INVALID:
    "The signature was refused: it does not match this request and key (a revoked key, a " +
    "request that expired, or bytes that differ from the request). Nothing was changed.",
  SEPARATION_OF_DUTIES:
    "You may not decide this: you asked for it yourself, or you already approved it. " +
    "Nothing was changed.",
  CONFLICT:
    "This request can no longer be approved as shown: it was already decided, or its order " +
    "changed after it was asked for (the request is then void and must be asked for again). " +
    "Nothing was changed.",
  FORBIDDEN: "Your role may not do this. Nothing was changed.",
  NOT_FOUND: "This request no longer exists, or is not yours to see.",
  UNAUTHENTICATED: "Your session has ended: reload the page and sign in again.",
  BAD_USER_INPUT: "The server refused the input. Nothing was changed.",
  RATE_LIMITED: "Too many requests: wait a moment and try again.",
  QUERY_TOO_COMPLEX: "The server refused the request as too large.",
  UNAVAILABLE: "The server cannot answer just now: try again shortly. Nothing was changed.",
};

const state = {
  username: null,
  actions: new Set(),
  device: null, // { account, keyId, fingerprint, privateKey } from IndexedDB
  requests: [], // [{ id, payload (string), parsed }]
  selected: null,
};

// ---- plain helpers ----------------------------------------------------------------------------

function say(message) {
  const box = document.getElementById("ap-status");
  box.textContent = message;
  box.hidden = !message;
}

function complain(message) {
  const box = document.getElementById("ap-error");
  box.textContent = message;
  box.hidden = !message;
}

function plainWords(error) {
  const lead = PLAIN[error.code] || "Something went wrong. Nothing was changed.";
  return error.message ? `${lead} (${error.message})` : lead;
}

async function call(query, variables) {
  const body = await gql(query, variables);
  const error = firstError(body);
  if (error) throw error;
  return body.data;
}

async function allPages(query, field, variables) {
  const nodes = [];
  let after = null;
  for (;;) {
    const page = (await call(query, { ...variables, after }))[field];
    nodes.push(...page.edges.map((edge) => edge.node));
    if (!page.pageInfo.hasNextPage) return nodes;
    after = page.pageInfo.endCursor;
  }
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function fromNow(iso) {
  const minutes = Math.round((Date.parse(iso) - Date.now()) / 60000);
  if (!Number.isFinite(minutes)) return "unknown";
  if (minutes <= 0) return "expired";
  const hours = Math.floor(minutes / 60);
  return hours ? `in ${hours} h ${minutes % 60} min` : `in ${minutes} min`;
}

function base64(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text);
}

function base64url(bytes) {
  return base64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function hex(bytes) {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- the device key (WebCrypto + IndexedDB) -----------------------------------------------

function openStore() {
  return new Promise((resolve, reject) => {
    const opening = indexedDB.open("ordergate-approvals", 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore("keys", { keyPath: "account" });
    opening.onsuccess = () => resolve(opening.result);
    opening.onerror = () => reject(opening.error);
  });
}

async function inStore(mode, work) {
  const db = await openStore();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction("keys", mode);
      const request = work(tx.objectStore("keys"));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

const storedKey = (account) => inStore("readonly", (keys) => keys.get(account));
const keepKey = (record) => inStore("readwrite", (keys) => keys.put(record));
const forgetKey = (account) => inStore("readwrite", (keys) => keys.delete(account));

function pem(spki) {
  const lines = base64(spki).match(/.{1,64}/g).join("\n");
  return `-----BEGIN PUBLIC KEY-----\n${lines}\n-----END PUBLIC KEY-----\n`;
}

async function enrol() {
  complain("");
  say("");
  let pair;
  try {
    // extractable=false: the private key can sign here and never be exported.
    pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  } catch {
    document.getElementById("ap-device-unsupported").hidden = false;
    return;
  }
  const spki = await crypto.subtle.exportKey("spki", pair.publicKey);
  const raw = await crypto.subtle.exportKey("raw", pair.publicKey);
  const fingerprint = hex(await crypto.subtle.digest("SHA-256", raw));
  let key;
  try {
    key = (await call(REGISTER, { pem: pem(spki) })).registerSigningKey;
  } catch (error) {
    complain(plainWords(error));
    return;
  }
  if (key.fingerprint !== fingerprint) {
    complain("The server recorded a different key than this device made. Do not sign here.");
    return;
  }
  state.device = { account: state.username, keyId: key.id, fingerprint, privateKey: pair.privateKey };
  await keepKey(state.device);
  say(`This device is enrolled. Its key fingerprint is ${fingerprint}.`);
  await loadKeys();
}

async function revoke(keyId) {
  complain("");
  say("");
  try {
    await call(REVOKE, { id: keyId });
  } catch (error) {
    complain(plainWords(error));
    return;
  }
  if (state.device && state.device.keyId === keyId) {
    await forgetKey(state.username);
    state.device = null;
  }
  say(`Key ${keyId} is revoked: it can no longer sign. Signatures it made stay verifiable.`);
  await loadKeys();
}

function showDevice() {
  const device = state.device;
  document.getElementById("ap-device-none").hidden = Boolean(device);
  document.getElementById("ap-enrol").hidden = Boolean(device);
  document.getElementById("ap-device-key").hidden = !device;
  setText("ap-device-kid", device && device.keyId);
  setText("ap-device-fingerprint", device && device.fingerprint);
  if (state.selected) showDetail(state.selected);
}

async function loadKeys() {
  const keys = (await call(KEYS)).signingKeys;
  const active = new Set(keys.filter((k) => !k.revokedAt).map((k) => k.id));
  if (state.device && !active.has(state.device.keyId)) {
    // Revoked elsewhere (another device, an administrator): this device can no longer sign.
    await forgetKey(state.username);
    state.device = null;
  }
  const body = document.querySelector("#ap-keys tbody");
  body.replaceChildren();
  for (const key of keys) {
    const row = el("tr");
    row.dataset.keyId = key.id;
    const here = state.device && state.device.keyId === key.id ? " (this device)" : "";
    const cell = el("td");
    if (!key.revokedAt) {
      const button = el("button", "Revoke");
      button.type = "button";
      button.className = "revoke";
      button.addEventListener("click", () => revoke(key.id));
      cell.append(button);
    }
    row.append(
      el("td", key.id),
      el("td", key.fingerprint, "mono"),
      el("td", when(key.createdAt)),
      el("td", key.revokedAt ? `revoked ${when(key.revokedAt)}` : `active${here}`),
      cell,
    );
    body.append(row);
  }
  showDevice();
}

// ---- approval requests: shown from the payload, signed as the payload ---------------------

function parse(payload) {
  try {
    const parsed = JSON.parse(payload);
    return parsed && typeof parsed === "object" ? parsed : null;
  } catch {
    return null;
  }
}

// Why the page cannot show (and so will not sign) this payload, or null when it can.
function unshowable(request) {
  const p = request.parsed;
  if (!p) return "its signing payload is not JSON";
  if (p.v !== PAYLOAD_VERSION) return `its payload version ${p.v} is unknown to this page`;
  if (!(p.action in KINDS)) return `its action ${p.action} is unknown to this page`;
  let named = null;
  try {
    named = atob(request.id);
  } catch {
    named = null;
  }
  if (named !== `ApprovalRequest:${p.requestId}`) return "its payload names another request";
  return null;
}

function amountOf(p) {
  if (p.action === "REFUND") return `${p.after.refund} ${p.currency}`;
  return `${p.after.unitPrice} ${p.currency} per unit`;
}

async function loadRequests() {
  const nodes = await allPages(PENDING, "approvalRequests", {});
  state.requests = nodes
    .map((node) => ({ id: node.id, payload: node.signingPayload, parsed: parse(node.signingPayload) }))
    // What this approver may act on: not the requests they asked for themselves.
    .filter((r) => !(r.parsed && r.parsed.requester === state.username))
    .sort((a, b) => expiry(a) - expiry(b));
  const list = document.getElementById("ap-inbox");
  list.replaceChildren();
  for (const request of state.requests) {
    const p = request.parsed || {};
    const item = el("li");
    const button = el("button");
    button.type = "button";
    button.dataset.requestId = request.id;
    button.append(
      el("strong", `${KINDS[p.action] || "Unknown request"} · ${(p.order || {}).number || "?"}`),
      el("span", unshowable(request) ? "cannot be shown here" : amountOf(p), "amount"),
      el("span", `by ${p.requester || "?"} · expires ${when(p.exp)} (${fromNow(p.exp)})`, "note"),
    );
    button.addEventListener("click", () => showDetail(request));
    item.append(button);
    list.append(item);
  }
  setText("ap-count", `(${state.requests.length})`);
  document.getElementById("ap-inbox-empty").hidden = state.requests.length > 0;
  document.getElementById("ap-requests").hidden = false;
  if (state.selected && !state.requests.some((r) => r.id === state.selected.id)) {
    state.selected = null;
    document.getElementById("ap-detail").hidden = true;
  }
}

function expiry(request) {
  const at = request.parsed && Date.parse(request.parsed.exp);
  return Number.isFinite(at) ? at : Number.MAX_SAFE_INTEGER;
}

function changeRows(p) {
  const c = p.currency;
  if (p.action === "REFUND") {
    return [
      ["Paid", `${p.before.amountPaid} ${c}`, `${p.before.amountPaid} ${c}`],
      ["Refunded in all", `${p.before.alreadyRefunded} ${c}`, `${p.after.refundedTotal} ${c}`],
      ["This refund", "—", `${p.after.refund} ${c}`],
    ];
  }
  return [[`Unit price of ${p.line.sku}`, `${p.before.unitPrice} ${c}`, `${p.after.unitPrice} ${c}`]];
}

function showDetail(request) {
  state.selected = request;
  complain("");
  const p = request.parsed || {};
  const why = unshowable(request);
  document.querySelectorAll("#ap-inbox button").forEach((b) => {
    b.setAttribute("aria-current", String(b.dataset.requestId === request.id));
  });
  setText("ap-detail-title", `${KINDS[p.action] || "Request"} on order ${(p.order || {}).number || "?"}`);
  setText("ap-payload", request.payload);
  const body = document.querySelector("#ap-change tbody");
  body.replaceChildren();
  if (why) {
    setText("ap-summary", `This page will not sign this request: ${why}. Use ordergate sign.`);
    for (const id of ["ap-order", "ap-line", "ap-amount", "ap-refunded", "ap-requester",
      "ap-reason", "ap-requested-at", "ap-expires"]) setText(id, "");
  } else {
    setText("ap-summary", p.summary);
    for (const [what, before, after] of changeRows(p)) {
      const row = el("tr");
      row.append(el("th", what), el("td", before, "num"), el("td", after, "num"));
      body.append(row);
    }
    setText("ap-order", `${p.order.number} (version ${p.order.version})`);
    setText("ap-line", p.line ? `${p.line.sku} · ${p.line.name} · ×${p.line.quantity}` : "");
    document.getElementById("ap-line-row").hidden = !p.line;
    document.getElementById("ap-refunded-row").hidden = p.action !== "REFUND";
    setText("ap-amount", amountOf(p));
    setText("ap-refunded", p.action === "REFUND" ? `${p.before.alreadyRefunded} ${p.currency}` : "");
    setText("ap-requester", p.requester);
    setText("ap-reason", p.reason);
    setText("ap-requested-at", when(p.iat));
    setText("ap-expires", `${when(p.exp)} (${fromNow(p.exp)})`);
  }
  const sign = document.getElementById("ap-sign");
  sign.disabled = Boolean(why) || !state.device;
  sign.title = state.device ? "" : "Enrol this device first";
  document.getElementById("ap-detail").hidden = false;
}

async function jws(payload, device) {
  const header = base64url(new TextEncoder().encode(JSON.stringify({ alg: "EdDSA", kid: device.keyId })));
  // The payload exactly as the server sent it, as UTF-8 bytes: nothing re-serialised.
  const body = base64url(new TextEncoder().encode(payload));
  const input = `${header}.${body}`;
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, device.privateKey, new TextEncoder().encode(input));
  return `${input}.${base64url(signature)}`;
}

async function approveSelected() {
  const request = state.selected;
  if (!request || !state.device || unshowable(request)) return;
  complain("");
  say("");
  const p = request.parsed;
  try {
    await call(APPROVE, { id: request.id, jws: await jws(request.payload, state.device) });
    say(`Approved and applied: ${KINDS[p.action].toLowerCase()} of ${amountOf(p)} on order ${p.order.number}.`);
  } catch (error) {
    complain(plainWords(error));
  }
  await loadRequests();
}

async function rejectSelected() {
  const request = state.selected;
  if (!request) return;
  complain("");
  say("");
  const reason = document.getElementById("ap-reject-reason").value;
  if (!reason.trim()) {
    complain("Say why you reject it: the requester reads your reason.");
    return;
  }
  try {
    await call(REJECT, { id: request.id, reason });
    say(`Rejected: ${KINDS[request.parsed.action] || "request"} on order ${request.parsed.order.number}.`);
    document.getElementById("ap-reject-reason").value = "";
  } catch (error) {
    complain(plainWords(error));
  }
  await loadRequests();
}

// ---- exports: approve or reject at your level --------------------------------------------

function exportLevel() {
  if (state.actions.has("export:approve_l1")) return "PENDING_L1";
  if (state.actions.has("export:approve_l2")) return "PENDING_L2";
  return null;
}

async function loadExports() {
  const levels = [];
  if (state.actions.has("export:approve_l1")) levels.push("PENDING_L1");
  if (state.actions.has("export:approve_l2")) levels.push("PENDING_L2");
  if (!levels.length) return;
  let nodes = [];
  for (const status of levels) nodes = nodes.concat(await allPages(EXPORTS, "exportRequests", { status }));
  // What this person may act on: not their own request, not a second approval of their own.
  nodes = nodes
    .filter((x) => x.requestedBy !== state.username && x.approvedL1By !== state.username)
    .sort((a, b) => Date.parse(a.expiresAt) - Date.parse(b.expiresAt));
  const body = document.querySelector("#ap-export-list tbody");
  body.replaceChildren();
  for (const request of nodes) {
    const row = el("tr");
    row.dataset.exportId = request.id;
    const what = el("td");
    what.append(
      el("strong", `${request.entity}: ${(request.fields || []).join(", ")}`),
      el("div", `filter ${JSON.stringify(request.filter)} · ${request.expectedRows} rows`, "note"),
      el("div", request.approvedL1By ? `first approval: ${request.approvedL1By}` : "", "note"),
    );
    const actions = el("td");
    const approve = el("button", request.approvedL1By ? "Approve (L2)" : "Approve (L1)");
    approve.type = "button";
    approve.className = "approve-export";
    approve.addEventListener("click", () => decideExport(request.id, null));
    const reason = el("input");
    reason.placeholder = "Reason for rejecting";
    reason.maxLength = 500;
    reason.className = "reject-export-reason";
    const reject = el("button", "Reject");
    reject.type = "button";
    reject.className = "reject-export";
    reject.addEventListener("click", () => decideExport(request.id, reason.value));
    actions.append(approve, reason, reject);
    row.append(what, el("td", request.requestedBy), el("td", request.reason, "reason"),
      el("td", when(request.expiresAt)), actions);
    body.append(row);
  }
  document.getElementById("ap-exports-empty").hidden = nodes.length > 0;
  document.getElementById("ap-exports").hidden = false;
}

async function decideExport(id, reason) {
  complain("");
  say("");
  try {
    if (reason === null) {
      const { approveExport } = await call(APPROVE_EXPORT, { id });
      say(`Export approved; it is now ${approveExport.status.toLowerCase().replace(/_/g, " ")}.`);
    } else {
      if (!reason.trim()) {
        complain("Say why you reject it: the requester reads your reason.");
        return;
      }
      await call(REJECT_EXPORT, { id, reason });
      say("Export rejected.");
    }
  } catch (error) {
    complain(plainWords(error));
  }
  await loadExports();
}

// ---- start ------------------------------------------------------------------------------------

async function start() {
  try {
    const viewer = (await call(VIEWER)).viewer;
    state.username = viewer.username;
    state.actions = new Set(viewer.actions);
    setText("og-who", viewer.username);
    document.getElementById("ap-main").hidden = false;
    if (!state.actions.has("approval:sign") && !exportLevel()) {
      complain("Your role approves nothing: there is nothing for you here.");
      return;
    }
    if (state.actions.has("approval:sign")) {
      state.device = (await storedKey(viewer.username)) || null;
      await loadKeys();
      await loadRequests();
    } else {
      document.getElementById("ap-device").hidden = true;
      document.getElementById("ap-keys").closest("section").hidden = true;
    }
    await loadExports();
  } catch (error) {
    complain(plainWords(error));
  }
  document.body.dataset.ready = "true";
}

async function refresh() {
  complain("");
  say("");
  try {
    if (state.actions.has("approval:sign")) {
      await loadKeys();
      await loadRequests();
    }
    await loadExports();
  } catch (error) {
    complain(plainWords(error));
  }
}

document.getElementById("ap-refresh").addEventListener("click", refresh);
document.getElementById("ap-enrol").addEventListener("click", enrol);
document.getElementById("ap-sign").addEventListener("click", approveSelected);
document.getElementById("ap-reject").addEventListener("click", rejectSelected);
signIn(document.getElementById("og-login"), start);
