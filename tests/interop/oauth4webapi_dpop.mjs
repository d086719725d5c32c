// panva's oauth4webapi, unmodified, against the local stack with DPoP (RFC 9449): its DPoP
// handle with a WebCrypto ES256 key pair on client-credentials grants (client_secret_post and
// client_secret_basic) and on GET /customer and GET /customers/{code}; the same with a WebCrypto
// Ed25519 key (alg `Ed25519`, and `EdDSA` through its documented modifyAssertion hook); its
// RFC 9728 resource discovery; its parsing of our DPoP 401 challenges; its introspection of the
// bound token. Prints one JSON object of what it saw; tests/test_dpop.py asserts on it.
//
// Environment: CUSTOMER_API_URL (the issuer), CUSTOMER_CODE, CUSTOMER_SECRET (its API key),
// OAUTH4WEBAPI (the installed package's entry point).
const oauth = await import(process.env.OAUTH4WEBAPI);
const issuer = new URL(process.env.CUSTOMER_API_URL);
const code = process.env.CUSTOMER_CODE;
const secret = process.env.CUSTOMER_SECRET;

// Every request goes through fetch unchanged; the DPoP proofs it carried are noted on the way.
const proofs = [];
const recordingFetch = (url, init) => {
  const proof = init?.headers?.dpop;
  if (proof) {
    const [header, claims] = proof.split(".").slice(0, 2).map((part) => JSON.parse(Buffer.from(part, "base64url").toString()));
    proofs.push({ url, alg: header.alg, typ: header.typ, kty: header.jwk.kty, htm: claims.htm, htu: claims.htu, ath: "ath" in claims });
  }
  return fetch(url, init);
};
const insecure = { [oauth.allowInsecureRequests]: true, [oauth.customFetch]: recordingFetch };
const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: "oauth2", ...insecure }));
const rs = await oauth.processResourceDiscoveryResponse(issuer, await oauth.resourceDiscoveryRequest(issuer, insecure));
const client = { client_id: code };

const payload = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());

// A grant with DPoP, then both customer routes with the bound token.
async function boundFlow(auth, keyPair, options) {
  const DPoP = oauth.DPoP(client, keyPair, options);
  const first = proofs.length;
  const grant = await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams(), { DPoP, ...insecure });
  const token = await oauth.processClientCredentialsResponse(as, client, grant);
  const read = async (path) => {
    const resp = await oauth.protectedResourceRequest(token.access_token, "GET", new URL(path, issuer), new Headers(), null, { DPoP, ...insecure });
    return { status: resp.status, body: await resp.json() };
  };
  const customer = await read("/customer");
  const customerByCode = await read(`/customers/${code}`);
  return {
    token_type: token.token_type,
    scope: token.scope,
    cnf: payload(token.access_token).cnf,
    thumbprint: await DPoP.calculateThumbprint(),
    customer,
    customer_by_code: customerByCode,
    proofs: proofs.slice(first),
    access_token: token.access_token,
  };
}

// oauth4webapi rejects a 401 with a WWW-Authenticate challenge; what it parsed out of ours.
async function challenge(promise) {
  try {
    const resp = await promise;
    return { status: resp.status };
  } catch (err) {
    if (!(err instanceof oauth.WWWAuthenticateChallengeError)) throw err;
    return { status: err.response.status, challenges: err.cause };
  }
}

const es256 = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
const post = await boundFlow(oauth.ClientSecretPost(secret), es256);
const basic = await boundFlow(oauth.ClientSecretBasic(secret), es256);

const ed25519 = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
const remapEd25519 = {
  [oauth.modifyAssertion]: (header) => {
    if (header.alg === "Ed25519") header.alg = "EdDSA";
  },
};
const ed = await boundFlow(oauth.ClientSecretPost(secret), ed25519);
const edEdDSA = await boundFlow(oauth.ClientSecretPost(secret), ed25519, remapEd25519);

// The ES256-bound token with proofs of another key, and as a plain Bearer token.
const otherKey = oauth.DPoP(client, await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]));
const wrongKey = await challenge(
  oauth.protectedResourceRequest(post.access_token, "GET", new URL("/customer", issuer), new Headers(), null, { DPoP: otherKey, ...insecure }),
);
const asBearer = await challenge(
  oauth.protectedResourceRequest(post.access_token, "GET", new URL("/customer", issuer), new Headers(), null, insecure),
);

const introspected = await oauth.processIntrospectionResponse(
  as,
  client,
  await oauth.introspectionRequest(as, client, oauth.ClientSecretPost(secret), post.access_token, insecure),
);

const summary = ({ access_token, ...rest }) => rest;
console.log(JSON.stringify({
  as_dpop_signing_alg_values_supported: as.dpop_signing_alg_values_supported,
  resource_metadata: rs,
  es256_post: summary(post),
  es256_basic: summary(basic),
  ed25519: summary(ed),
  ed25519_as_eddsa: summary(edEdDSA),
  wrong_key: wrongKey,
  bound_token_as_bearer: asBearer,
  introspected: { active: introspected.active, token_type: introspected.token_type, cnf: introspected.cnf, sub: introspected.sub },
}));
