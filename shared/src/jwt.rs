//! Access tokens: RFC 9068 JWTs signed with Ed25519, and their strict validation.

use crate::api_key::{hex, random_bytes};
use crate::keys::{KeyCache, KeyError, KeySet, KeySource};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;
/// Tokens longer than this are rejected before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// The `typ` header of an access token.
pub const TYP: &str = "at+jwt";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    /// Id of the API key that authenticated: revoking the key revokes its tokens.
    pub key_id: String,
    /// The customer's revocation epoch at issue: `POST /auth/revoke` moves it on, which
    /// revokes every token issued before. Absent in tokens from before revocation existed.
    #[serde(default)]
    pub epoch: u64,
    /// The key a DPoP-bound token is bound to (RFC 9449 §6); absent in Bearer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// RFC 7800 confirmation of a DPoP-bound token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the DPoP proof key.
    pub jkt: String,
}

impl AccessClaims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }

    /// The DPoP key thumbprint the token is bound to, if it is.
    pub fn jkt(&self) -> Option<&str> {
        self.cnf.as_ref().map(|c| c.jkt.as_str())
    }
}

/// What one token grants, and to whom.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    pub customer_code: &'a str,
    pub scope: &'a str,
    /// The key that authenticated.
    pub key_id: &'a str,
    /// The customer's revocation epoch now.
    pub epoch: u64,
    /// The DPoP key thumbprint to bind the token to.
    pub jkt: Option<&'a str>,
}

/// Issuer, audience and lifetime of the tokens this deployment issues and accepts.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl_seconds: u64,
}

impl TokenSettings {
    /// The settings of this deployment.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl_seconds: config.token_ttl_seconds,
        }
    }
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("signing failed: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("random source failed")]
    Random,
}

/// Issues a token for `grant` with the active key of `keys`.
pub fn sign(
    settings: &TokenSettings,
    keys: &KeySet,
    grant: &Grant<'_>,
    now: u64,
) -> Result<String, SignError> {
    let Grant {
        customer_code,
        scope,
        key_id,
        epoch,
        jkt,
    } = *grant;
    let (kid, key) = keys.signer(now)?;
    let mut jti = [0u8; 16];
    random_bytes(&mut jti).map_err(|_| SignError::Random)?;
    let claims = AccessClaims {
        iss: settings.issuer.clone(),
        sub: customer_code.to_owned(),
        aud: settings.audience.clone(),
        client_id: customer_code.to_owned(),
        scope: scope.to_owned(),
        iat: now,
        nbf: now,
        exp: now + settings.ttl_seconds,
        jti: hex(&jti),
        key_id: key_id.to_owned(),
        epoch,
        cnf: jkt.map(|jkt| Confirmation {
            jkt: jkt.to_owned(),
        }),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(TYP.into());
    header.kid = Some(kid.to_owned());
    Ok(jsonwebtoken::encode(&header, &claims, key)?)
}

/// Why a bearer token was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Any defect of the token: always the bearer 401, never more detail to the client.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// Keys could not be loaded: a 500.
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// How an access token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer <token>` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP <token>` with a `DPoP` proof (RFC 9449 §7.1).
    Dpop,
}

/// The scheme and token of `Authorization: Bearer|DPoP <token>` (scheme case-insensitive);
/// `None` for anything else.
pub fn access_token(header: Option<&str>) -> Option<(Scheme, &str)> {
    let (scheme, token) = header?.split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return None;
    };
    (!token.is_empty() && !token.contains(' ')).then_some((scheme, token))
}

/// Extracts the token of `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    access_token(header)
        .filter(|(scheme, _)| *scheme == Scheme::Bearer)
        .map(|(_, token)| token)
}

/// Validates signature, algorithm, `typ`, `kid`, `iss`, `aud`, time claims and presence of
/// every claim. `now` is injectable so tests need no sleeps.
pub async fn verify<S: KeySource>(
    token: &str,
    keys: &KeyCache<S>,
    settings: &TokenSettings,
    now: u64,
) -> Result<AccessClaims, VerifyError> {
    let claims = verify_ignoring_time(token, keys, settings, now).await?;
    if claims.exp.saturating_add(LEEWAY_SECONDS) < now {
        return Err(VerifyError::Invalid("expired"));
    }
    if claims.nbf > now.saturating_add(LEEWAY_SECONDS) {
        return Err(VerifyError::Invalid("not yet valid"));
    }
    Ok(claims)
}

/// Everything [`verify`] checks except `exp` and `nbf`: revocation accepts a token this
/// deployment issued whether or not it has expired.
pub async fn verify_ignoring_time<S: KeySource>(
    token: &str,
    keys: &KeyCache<S>,
    settings: &TokenSettings,
    now: u64,
) -> Result<AccessClaims, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::Invalid("too long"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Invalid("header"))?;
    if header.alg != Algorithm::EdDSA {
        return Err(VerifyError::Invalid("alg"));
    }
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(VerifyError::Invalid("typ"));
    }
    let kid = header.kid.ok_or(VerifyError::Invalid("kid missing"))?;
    let keys = keys
        .with_kid(&kid, now)
        .await?
        .ok_or(VerifyError::Invalid("unknown kid"))?;
    let key = keys
        .verifier(&kid)
        .ok_or(VerifyError::Invalid("unknown kid"))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    // Time claims are checked by `verify` against the injectable `now`.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
        .map_err(|_| VerifyError::Invalid("signature or claims"))?;
    let claims = data.claims;
    if claims.client_id != claims.sub {
        return Err(VerifyError::Invalid("client_id"));
    }
    Ok(claims)
}
