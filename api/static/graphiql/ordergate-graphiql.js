// GraphiQL for ordergate, served from the package (no CDN): log in through a POST of the
// `login` mutation, keep the token in this tab (sessionStorage), send it as a Bearer header.
(function () {
  "use strict";
  var endpoint = window.location.pathname;
  var TOKEN = "ordergate.token";
  var WHO = "ordergate.username";
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));

  function post(body, token) {
    var headers = { "content-type": "application/json", accept: "application/json" };
    if (token) headers.authorization = "Bearer " + token;
    return fetch(endpoint, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(body),
      credentials: "omit",
    }).then(function (response) {
      return response.json();
    });
  }

  function fetcher(params, options) {
    var token = sessionStorage.getItem(TOKEN);
    var headers = Object.assign(
      { "content-type": "application/json", accept: "application/json" },
      token ? { authorization: "Bearer " + token } : {},
      (options && options.headers) || {}
    );
    return fetch(endpoint, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(params),
      credentials: "omit",
    }).then(function (response) {
      return response.json();
    });
  }

  var DEFAULT_QUERY =
    "# Log in above, then run this with Ctrl-Enter.\n" +
    "# The Docs pane lists every type and field; fields your role may not read\n" +
    "# come back null with a FORBIDDEN error that has its path.\n" +
    "{\n  viewer { username roles }\n" +
    "  orders(first: 5) { totalCount edges { node { id number status total } } }\n}\n";

  function render() {
    var token = sessionStorage.getItem(TOKEN) || "anonymous";
    root.render(
      React.createElement(GraphiQL, {
        key: token, // a new session fetches the schema again (anonymous callers may not)
        fetcher: fetcher,
        defaultQuery: DEFAULT_QUERY,
        shouldPersistHeaders: false,
      })
    );
    var who = sessionStorage.getItem(WHO);
    document.getElementById("og-login").hidden = Boolean(who);
    document.getElementById("og-session").hidden = !who;
    document.getElementById("og-who").textContent = who || "";
  }

  document.getElementById("og-login").addEventListener("submit", function (event) {
    event.preventDefault();
    var username = document.getElementById("og-username").value;
    var password = document.getElementById("og-password");
    var message = document.getElementById("og-message");
    message.textContent = "";
    post({
      query:
        "mutation Login($u: String!, $p: String!) { login(username: $u, password: $p) " +
        "{ accessToken expiresAt } }",
      variables: { u: username, p: password.value },
      operationName: "Login",
    })
      .then(function (result) {
        password.value = "";
        var login = result.data && result.data.login;
        if (!login) {
          message.textContent = (result.errors && result.errors[0].message) || "login failed";
          return;
        }
        sessionStorage.setItem(TOKEN, login.accessToken);
        sessionStorage.setItem(WHO, username);
        render();
      })
      .catch(function (error) {
        message.textContent = "the server did not answer: " + error;
      });
  });

  document.getElementById("og-logout").addEventListener("click", function () {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(WHO);
    render();
  });

  render();
})();
