//! `POST /revoke` (RFC 7009): client-authenticated; 200 for a revoked token
//! and for an unknown one alike (§2.2).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::client_auth::{authenticated_form, invalid_request, server_error};
use crate::http::client_ip::ClientIp;
use crate::service::revocation;
use crate::state::AppState;

pub async fn revoke_post(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (params, client, _) = match authenticated_form(&state, &headers, body, ip.as_deref()).await
    {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Some(token) = params.get("token") else {
        return invalid_request("token is required");
    };
    match revocation::revoke(&state, &client, token, params.get("token_type_hint")).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => server_error(e),
    }
}
