//! Values that must never reach a log: the API key, the Basic header, access tokens.

use http::HeaderValue;
use std::fmt;

/// A header value carrying a credential; `Debug` prints `***` and hyper marks it sensitive.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretHeader(HeaderValue);

impl SecretHeader {
    /// Wraps `value`, or `None` when it cannot be a header value.
    pub(crate) fn new(value: &str) -> Option<Self> {
        let mut header = HeaderValue::from_str(value).ok()?;
        header.set_sensitive(true);
        Some(Self(header))
    }

    /// The header value to send.
    pub(crate) fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = SecretHeader::new("Bearer abc.def.ghi");
        assert_eq!(format!("{secret:?}"), "Some(***)");
        assert!(secret.is_some_and(|s| s.header().is_sensitive()));
        assert!(SecretHeader::new("line\nbreak").is_none());
    }
}
