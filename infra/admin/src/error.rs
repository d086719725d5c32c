//! What can go wrong in an admin command, and the exit code each failure gets.

use crate::retry::MAX_ATTEMPTS;
use crate::rules::InputError;
use shared::api_key::RandomError;
use shared::keys::KeyError;
use shared::store::StoreError;

/// A failed admin command. Messages never carry secrets.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad operator input.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("no customer with this code")]
    NotFound,
    #[error("a customer with this code already exists")]
    AlreadyExists,
    /// Other commands changed the same thing between every read and write of this one.
    #[error(
        "{0} was changed concurrently by another admin command between this command's read and its write, {MAX_ATTEMPTS} times in a row; {1}; retry"
    )]
    Concurrent(String, &'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl AdminError {
    /// 2 for bad input (nothing written), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Input(_) | Self::NotFound | Self::AlreadyExists => 2,
            _ => 1,
        }
    }
}
