// Runs graphql-http's GraphQL-over-HTTP audits against a live server and prints each result.
// Usage: node audit.mjs URL TOKEN   (exit 1 when any MUST audit fails)
import { auditServer } from 'graphql-http';

const [url, token] = process.argv.slice(2);

// Every call carries the caller's token: anonymous callers get nothing but `login`.
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
};

const results = await auditServer({ url, fetchFn });
let mustFailures = 0;
for (const result of results) {
  const required = result.name.startsWith('MUST');
  if (required && result.status !== 'ok') mustFailures += 1;
  const reason = result.status === 'ok' ? '' : ` -- ${result.reason}`;
  console.log(`${result.status.toUpperCase().padEnd(5)} ${result.id} ${result.name}${reason}`);
}
const count = (status) => results.filter((r) => r.status === status).length;
console.log(`audits: ${results.length}, ok ${count('ok')}, warn ${count('warn')}, error ${count('error')}; MUST failures: ${mustFailures}`);
process.exit(mustFailures ? 1 : 0);
