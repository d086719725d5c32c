//! Parsing of `POST /auth/token` input in the order of `docs/contract.md` ("Token endpoint"),
//! first failure wins.

use crate::api_key::ApiKey;
use crate::assertion::ASSERTION_TYPE;
use crate::error::{OAuthError, text};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

/// Largest accepted body.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// How the client authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `client_secret_basic`.
    Basic,
    /// `client_secret_post`.
    Post,
}

/// A well-formed client-credentials request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TokenRequest {
    pub client: ClientCredentials,
    /// The raw `scope` parameter; judged after authentication (step 9).
    pub scope: Option<String>,
}

/// The parts of the HTTP request the token endpoint looks at.
pub struct RawTokenRequest<'a> {
    pub content_type: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    pub body: &'a [u8],
}

fn invalid(description: &'static str) -> OAuthError {
    OAuthError::InvalidRequest(description)
}

#[derive(PartialEq, Eq)]
enum BodyFormat {
    Form,
    Json,
}

fn body_format(content_type: Option<&[u8]>) -> Option<BodyFormat> {
    let raw = std::str::from_utf8(content_type?).ok()?;
    let essence = raw.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(BodyFormat::Form)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Some(BodyFormat::Json)
    } else {
        None
    }
}

/// Parameters in order of appearance; JSON values must be strings.
fn parameters(format: &BodyFormat, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let malformed = || invalid(text::MALFORMED_BODY);
    let body = std::str::from_utf8(body).map_err(|_| malformed())?;
    match format {
        BodyFormat::Form => Ok(form_urlencoded_pairs(body)),
        BodyFormat::Json => json_pairs(body).ok_or_else(malformed),
    }
}

fn form_urlencoded_pairs(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

/// A JSON object's string members, keeping duplicates so they can be refused.
fn json_pairs(body: &str) -> Option<Vec<(String, String)>> {
    struct Pairs(Vec<(String, String)>);
    impl<'de> serde::Deserialize<'de> for Pairs {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Pairs;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object of strings")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Pairs, A::Error> {
                    let mut pairs = Vec::new();
                    while let Some((key, value)) = map.next_entry::<String, String>()? {
                        pairs.push((key, value));
                    }
                    Ok(Pairs(pairs))
                }
            }
            d.deserialize_map(Visitor)
        }
    }
    serde_json::from_str::<Pairs>(body).ok().map(|p| p.0)
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
/// `Ok(None)` when the header is absent or of another scheme.
fn basic_credentials(header: Option<&[u8]>) -> Result<Option<(String, String)>, OAuthError> {
    let Some(raw) = header else { return Ok(None) };
    let malformed = || invalid(text::MALFORMED_BASIC);
    let raw = std::str::from_utf8(raw).map_err(|_| malformed())?.trim();
    let Some((scheme, encoded)) = raw.split_once(' ') else {
        return if raw.eq_ignore_ascii_case("basic") {
            Err(malformed())
        } else {
            Ok(None)
        };
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |part: &str| -> Result<String, OAuthError> {
        // `+` means space in form-urlencoding; a bare `%` that is not an escape is malformed.
        let part = part.replace('+', " ");
        let bytes = percent_decode(&part).ok_or_else(malformed)?;
        String::from_utf8(bytes).map_err(|_| malformed())
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

fn percent_decode(input: &str) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Splits a scope parameter: space-separated tokens of RFC 6749 §3.3 characters.
pub fn parse_scope(raw: &str) -> Result<Vec<String>, OAuthError> {
    let valid = |c: char| matches!(c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e');
    let mut scopes = Vec::new();
    for scope in raw.split(' ').filter(|s| !s.is_empty()) {
        if !scope.chars().all(valid) {
            return Err(OAuthError::InvalidScope);
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    Ok(scopes)
}

/// A body's parameters after the checks every OAuth endpoint shares: size, content type,
/// syntax, no repeated parameter.
struct Params(Vec<(String, String)>);

impl Params {
    fn read(raw: &RawTokenRequest<'_>) -> Result<Self, OAuthError> {
        if raw.body.len() > MAX_BODY_BYTES {
            return Err(invalid(text::BODY_TOO_LARGE));
        }
        let format =
            body_format(raw.content_type).ok_or_else(|| invalid(text::BAD_CONTENT_TYPE))?;
        let pairs = parameters(&format, raw.body)?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(seen, _)| seen == name) {
                return Err(invalid(text::REPEATED_PARAMETER));
            }
        }
        Ok(Self(pairs))
    }

    /// A parameter's value; RFC 6749 §3.1: a parameter sent without a value is omitted.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// Client authentication of any OAuth endpoint: exactly one of Basic, a secret in the body
/// or a client assertion.
fn client_credentials(
    raw: &RawTokenRequest<'_>,
    params: &Params,
) -> Result<ClientCredentials, OAuthError> {
    let basic = basic_credentials(raw.authorization)?;
    let (body_id, body_secret) = (params.get("client_id"), params.get("client_secret"));
    let assertion = (
        params.get("client_assertion_type"),
        params.get("client_assertion"),
    );
    if assertion != (None, None) {
        if basic.is_some() || body_secret.is_some() {
            return Err(invalid(text::TWO_AUTH_METHODS));
        }
        return match assertion {
            (Some(ASSERTION_TYPE), Some(assertion)) => Ok(ClientCredentials::Assertion {
                client_id: body_id.map(str::to_owned),
                assertion: assertion.to_owned(),
            }),
            (Some(_), Some(_)) => Err(invalid(text::ASSERTION_TYPE_UNSUPPORTED)),
            _ => Err(invalid(text::ASSERTION_INCOMPLETE)),
        };
    }
    let (client_id, client_secret, method) = match basic {
        Some((id, secret)) => {
            // client_id may repeat the Basic id (some libraries send it); a secret may not.
            if body_secret.is_some() || body_id.is_some_and(|b| b != id) {
                return Err(invalid(text::TWO_AUTH_METHODS));
            }
            (id, secret, AuthMethod::Basic)
        }
        None => (
            body_id.unwrap_or_default().to_owned(),
            body_secret.unwrap_or_default().to_owned(),
            AuthMethod::Post,
        ),
    };
    if client_id.is_empty() || client_secret.is_empty() {
        return Err(invalid(text::CREDENTIALS_REQUIRED));
    }
    Ok(ClientCredentials::Secret {
        client_id,
        client_secret: ApiKey::presented(&client_secret),
        method,
    })
}

/// Checks 2–6 of the token endpoint (the method is routed before). Credentials are not
/// verified here.
pub fn parse(raw: &RawTokenRequest<'_>) -> Result<TokenRequest, OAuthError> {
    let params = Params::read(raw)?;
    match params.get("grant_type") {
        None => return Err(invalid(text::GRANT_TYPE_REQUIRED)),
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
    }
    Ok(TokenRequest {
        client: client_credentials(raw, &params)?,
        scope: params.get("scope").map(str::to_owned),
    })
}

/// The client's credentials as presented (not yet verified).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `client_secret_basic` or `client_secret_post`.
    Secret {
        client_id: String,
        client_secret: ApiKey,
        method: AuthMethod,
    },
    /// `private_key_jwt`: the assertion and the `client_id` sent beside it, if any.
    Assertion {
        client_id: Option<String>,
        assertion: String,
    },
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret {
                client_id,
                client_secret,
                method,
            } => f
                .debug_struct("Secret")
                .field("client_id", client_id)
                .field("client_secret", client_secret)
                .field("method", method)
                .finish(),
            Self::Assertion { client_id, .. } => f
                .debug_struct("Assertion")
                .field("client_id", client_id)
                .field("assertion", &"***")
                .finish(),
        }
    }
}

impl ClientCredentials {
    /// The client the request says it is (for an assertion: its `client_id` or `iss`),
    /// before anything is verified.
    pub fn claimed_id(&self) -> Option<String> {
        match self {
            Self::Secret { client_id, .. } => Some(client_id.clone()),
            Self::Assertion {
                client_id: Some(id),
                ..
            } => Some(id.clone()),
            Self::Assertion { assertion, .. } => crate::jwk::Jws::parse(assertion)
                .as_ref()
                .and_then(crate::assertion::claimed_client)
                .map(str::to_owned),
        }
    }

    /// Whether HTTP Basic was used (a failure then carries the Basic challenge).
    pub fn is_basic(&self) -> bool {
        matches!(
            self,
            Self::Secret {
                method: AuthMethod::Basic,
                ..
            }
        )
    }
}

/// A well-formed revocation (RFC 7009) or introspection (RFC 7662) request.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenOperation {
    pub client: ClientCredentials,
    /// The `token` parameter: never logged.
    pub token: String,
}

impl fmt::Debug for TokenOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenOperation")
            .field("client", &self.client)
            .field("token", &"***")
            .finish()
    }
}

/// Checks of `POST /auth/revoke` and `POST /auth/introspect`: the shared body checks, one
/// client authentication method, then `token` (`token_type_hint` is optional and ignored).
pub fn parse_token_operation(raw: &RawTokenRequest<'_>) -> Result<TokenOperation, OAuthError> {
    let params = Params::read(raw)?;
    let client = client_credentials(raw, &params)?;
    let token = params
        .get("token")
        .ok_or_else(|| invalid(text::TOKEN_REQUIRED))?;
    Ok(TokenOperation {
        client,
        token: token.to_owned(),
    })
}
