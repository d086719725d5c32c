//! Extension methods for `Request` types

pub mod extensions;
pub mod request;

pub use extensions::RequestExt;
pub use request::{PayloadError, RequestPayloadExt};
