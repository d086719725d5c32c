// panva's oauth4webapi, unmodified, against the local stack: a WebCrypto Ed25519 key
// registered with `customer-admin keys add-jwk`, private_key_jwt at the token endpoint, the
// token on GET /customer, then its introspection and revocation helpers. Prints one JSON
// object of what it saw; tests/test_private_key_jwt.py asserts on it.
//
// Environment: CUSTOMER_API_URL (the issuer), CUSTOMER_ADMIN (the CLI binary), CUSTOMER_CODE,
// OAUTH4WEBAPI (the installed package's entry point), plus the stack's AWS variables.
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const oauth = await import(process.env.OAUTH4WEBAPI);
const issuer = new URL(process.env.CUSTOMER_API_URL);
const code = process.env.CUSTOMER_CODE;

const { privateKey, publicKey } = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
const jwk = await crypto.subtle.exportKey("jwk", publicKey);
const file = join(mkdtempSync(join(tmpdir(), "o4w-")), "key.jwk");
writeFileSync(file, JSON.stringify(jwk));
const registered = JSON.parse(
  execFileSync(process.env.CUSTOMER_ADMIN, ["keys", "add-jwk", "--code", code, "--jwk-file", file, "--json"]).toString(),
);

const insecure = { [oauth.allowInsecureRequests]: true };
const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: "oauth2", ...insecure }));
const client = { client_id: code };
const auth = oauth.PrivateKeyJwt({ key: privateKey, kid: registered.key_id });

const grant = await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams(), insecure);
const token = await oauth.processClientCredentialsResponse(as, client, grant);

const lookup = async () => (await fetch(new URL("/customer", issuer), { headers: { authorization: `Bearer ${token.access_token}` } })).status;
const before = await lookup();

const introspected = await oauth.processIntrospectionResponse(
  as,
  client,
  await oauth.introspectionRequest(as, client, auth, token.access_token, insecure),
);
await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, token.access_token, insecure));
const after = await lookup();

console.log(JSON.stringify({
  exported_jwk: jwk,
  registered,
  token_type: token.token_type,
  scope: token.scope,
  lookup_before: before,
  introspected_active: introspected.active,
  introspected_sub: introspected.sub,
  lookup_after_revocation: after,
}));
