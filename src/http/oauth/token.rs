//! `POST /token` (RFC 6749 §3.2): client authentication, then the grant
//! named by `grant_type` — "is it supported, may this client use it" before
//! dispatching. Every answer is JSON and `no-store`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::client_auth::{authenticated_form, error, invalid_request, json_no_store, server_error};
use crate::http::client_ip::ClientIp;
use crate::protocol::error::{OAuthError, OAuthErrorCode};
use crate::protocol::grant::GrantType;
use crate::service::error::Refused;
use crate::service::token::{authorization_code, client_credentials, refresh_token};
use crate::state::AppState;

pub async fn token_post(
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
    let Some(grant_type) = params.get("grant_type") else {
        return invalid_request("grant_type is required");
    };
    let Some(grant) = GrantType::parse(grant_type) else {
        return error(
            &OAuthError::new(
                OAuthErrorCode::UnsupportedGrantType,
                "this grant type is not supported",
            ),
            false,
        );
    };
    if !client.allows(grant) {
        return error(
            &OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "this client may not use this grant type",
            ),
            false,
        );
    }
    let result = match grant {
        GrantType::AuthorizationCode => {
            let Some(code) = params.get("code") else {
                return invalid_request("code is required");
            };
            let sent = authorization_code::Request {
                code,
                redirect_uri: params.get("redirect_uri"),
                code_verifier: params.get("code_verifier"),
            };
            authorization_code::redeem(&state, &client, sent).await
        }
        GrantType::RefreshToken => {
            let Some(refresh_token) = params.get("refresh_token") else {
                return invalid_request("refresh_token is required");
            };
            refresh_token::refresh(&state, &client, refresh_token, params.get("scope")).await
        }
        GrantType::ClientCredentials => {
            client_credentials::issue(&state, &client, params.get("scope")).await
        }
    };
    match result {
        Ok(tokens) => json_no_store(tokens),
        Err(Refused::Protocol(e)) => error(&e, basic),
        Err(Refused::Failed(e)) => server_error(e),
    }
}
