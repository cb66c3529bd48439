// Signing in and calling the API from ordergate's pages. The token lives in this module's
// memory only (never localStorage or a cookie): closing or reloading the tab signs out.
let token = null;

export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

export async function gql(query, variables) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch("/graphql", {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
    credentials: "omit",
    cache: "no-store",
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The server answered ${response.status}.`, "INTERNAL");
  }
  return body;
}

// The first error of a response as plain words (and its contract code).
export function firstError(body) {
  const [error] = body.errors || [];
  if (!error) return null;
  return new ApiError(error.message, (error.extensions || {}).code || "INTERNAL");
}

const LOGIN = `mutation($u: String!, $p: String!) {
  login(username: $u, password: $p) { accessToken expiresAt } }`;

// Wires the page's sign-in form; calls `onSignedIn(username)` once a token is held.
export function signIn(form, onSignedIn) {
  const message = form.querySelector("[role=alert]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    const username = form.elements.username.value;
    const password = form.elements.password.value;
    try {
      const body = await gql(LOGIN, { u: username, p: password });
      const error = firstError(body);
      if (error) throw error;
      token = body.data.login.accessToken;
    } catch (error) {
      message.textContent = error.message;
      return;
    }
    form.elements.password.value = "";
    form.hidden = true;
    await onSignedIn(username);
  });
}

// Small DOM helpers: every value goes in as text, never as markup.
export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

export function setText(id, value) {
  document.getElementById(id).textContent =
    value === undefined || value === null || value === "" ? "—" : String(value);
}
