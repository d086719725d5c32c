//! Client authentication at the OAuth endpoints (`/auth/token`, `/auth/revoke`,
//! `/auth/introspect`): one method per client, the same on all three.

use crate::error::Error;
use crate::private_key_jwt::{ASSERTION_TYPE, PrivateKeyJwt};
use crate::secret::SecretHeader;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::body::Bytes;
use std::fmt;

const FORM: &str = "application/x-www-form-urlencoded";

/// How this client proves who it is.
#[derive(Clone)]
pub(crate) enum ClientAuth {
    /// `client_secret_basic`: the API key in a Basic header, never in a body or URL.
    SecretBasic(SecretHeader),
    /// `private_key_jwt`: a fresh signed assertion in the body of every request.
    PrivateKeyJwt {
        key: PrivateKeyJwt,
        /// The assertions' `aud`.
        audience: String,
    },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SecretBasic(_) => f.write_str("ClientSecretBasic(***)"),
            Self::PrivateKeyJwt { key, .. } => key.fmt(f),
        }
    }
}

impl ClientAuth {
    /// `client_secret_basic` with the Customer Code and API key.
    pub(crate) fn secret_basic(customer_code: &str, api_key: &str) -> Result<Self, Error> {
        SecretHeader::new(&basic_authorization(customer_code, api_key))
            .map(Self::SecretBasic)
            .ok_or_else(|| Error::config("the credentials cannot be sent in a header"))
    }

    /// `private_key_jwt` with assertions for the token endpoint `token_uri`.
    pub(crate) fn private_key_jwt(key: PrivateKeyJwt, token_uri: &Uri) -> Self {
        let audience = key.audience(&token_uri.to_string()).to_owned();
        Self::PrivateKeyJwt { key, audience }
    }

    /// A form POST of `params` to `uri`, authenticated. Called once per attempt, so each
    /// attempt carries a new assertion: a `jti` the server has seen is refused.
    pub(crate) fn request(
        &self,
        uri: &Uri,
        customer_code: &str,
        params: &[(&str, &str)],
    ) -> Result<Request<Full<Bytes>>, Error> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(params);
        let basic = match self {
            Self::SecretBasic(header) => Some(header.header()),
            Self::PrivateKeyJwt { key, audience } => {
                // client_id is optional with an assertion; sent so the server can name
                // the client before it reads the JWT (it must equal `iss`).
                form.append_pair("client_id", customer_code)
                    .append_pair("client_assertion_type", ASSERTION_TYPE)
                    .append_pair("client_assertion", &key.assertion(customer_code, audience)?);
                None
            }
        };
        let mut request = crate::client::request(Method::POST, uri, Bytes::from(form.finish()));
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(FORM));
        if let Some(basic) = basic {
            headers.insert(AUTHORIZATION, basic);
        }
        Ok(request)
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, per RFC 6749 §2.3.1.
fn basic_authorization(customer_code: &str, api_key: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(customer_code), encode(api_key));
    format!("Basic {}", STANDARD.encode(pair))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        // "a b:c" -> "a+b%3Ac"; "k+/=" -> "k%2B%2F%3D"
        let expected = format!("Basic {}", STANDARD.encode("a+b%3Ac:k%2B%2F%3D"));
        assert_eq!(basic_authorization("a b:c", "k+/="), expected);
    }

    #[test]
    fn debug_shows_the_method_never_the_secret() {
        let basic = ClientAuth::secret_basic("ACME-1", "kiss_sk_secret");
        assert_eq!(format!("{basic:?}"), "Ok(ClientSecretBasic(***))");
    }
}
