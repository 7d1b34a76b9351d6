//! `POST /introspect` (RFC 7662): for authenticated confidential clients;
//! what each may learn is `protocol::introspect` (resource servers register
//! with `--introspect`); `{"active": false}` for anything unusable or not
//! the caller's to know.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::client_auth::{authenticated_form, error, invalid_request, json_no_store, server_error};
use crate::http::client_ip::ClientIp;
use crate::protocol::error::{OAuthError, OAuthErrorCode};
use crate::service::introspection;
use crate::state::AppState;

pub async fn introspect_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (params, client, basic) =
        match authenticated_form(&state, &headers, body, ip.as_deref()).await {
            Ok(found) => found,
            Err(response) => return *response,
        };
    // RFC 7662 §2.1: the endpoint requires authorization (401 without); a
    // public client's bare client_id is no authorization.
    if client.public {
        return error(
            &OAuthError::new(
                OAuthErrorCode::InvalidClient,
                "introspection needs a confidential client",
            ),
            basic,
        );
    }
    let Some(token) = params.get("token") else {
        return invalid_request("token is required");
    };
    match introspection::introspect(&state, &client, token).await {
        Ok(answer) => json_no_store(answer),
        Err(e) => server_error(e),
    }
}
