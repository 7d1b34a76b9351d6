//! The errors of the service layer, converted upward with `From`: `Error`
//! for what failed beneath a service (the store), and `Refused` for a
//! protocol service that turns a request down in the protocol's own terms.
//! How either travels (a page, a JSON body, a header) is `http::error`'s
//! business.

use crate::protocol::error::OAuthError;

/// What failed beneath a service: never the caller's fault, logged in full
/// by `http::error` and answered as a generic failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// A stored value that does not read back, or a library that refused
    /// what it was given by us (never by the request).
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The database is away or too busy (`store::is_unavailable`): the
    /// request may succeed when sent again, and is answered 503.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Db(e) => crate::store::is_unavailable(e),
            Error::Internal(_) => false,
        }
    }
}

/// Why a protocol service did not succeed: the request is refused with an
/// OAuth error (RFC 6749 §5.2, RFC 6750 §3.1), or the service failed.
#[derive(Debug)]
pub enum Refused {
    Protocol(OAuthError),
    Failed(Error),
}

impl From<OAuthError> for Refused {
    fn from(e: OAuthError) -> Self {
        Refused::Protocol(e)
    }
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Failed(e)
    }
}

impl From<sea_orm::DbErr> for Refused {
    fn from(e: sea_orm::DbErr) -> Self {
        Refused::Failed(Error::Db(e))
    }
}
