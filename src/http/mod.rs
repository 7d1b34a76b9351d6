//! The HTTP surface: the one route table, and the layers every request passes.

pub mod access_log;
pub mod assets;
pub mod client_ip;
pub mod cookies;
pub mod csrf;
pub mod discovery;
pub mod error;
pub mod health;
pub mod interaction;
pub mod limit;
pub mod oauth;
pub mod pages;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::protocol::discovery::{
    AUTHORIZATION_PATH, DISCOVERY_PATH, END_SESSION_PATH, INTROSPECTION_PATH, JWKS_PATH,
    REVOCATION_PATH, TOKEN_PATH, USERINFO_PATH,
};
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The pages' Content-Security-Policy: nothing loads but our own styles,
/// images and the one passkey script (no inline script), which may call our
/// own endpoints only; no framing (clickjacking), no `<base>` tricks.
/// `form-action` is left out on purpose: `response_mode=form_post` and the
/// post-consent redirect go to the relying party's origin, and browsers
/// apply `form-action` to redirects.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                   style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: AppState) -> Router {
    let limit_state = state.clone();
    let state_metrics = state.metrics.clone();
    // Validated at load (`Settings::validate`); settings built in code that
    // skipped it trust no proxy, the safe side.
    let proxies = client_ip::TrustedProxies::parse(&state.settings.http.trusted_proxies)
        .unwrap_or_else(|reason| {
            tracing::error!(%reason, "http.trusted_proxies is invalid; trusting no proxy");
            client_ip::TrustedProxies::default()
        });
    let https = state.https();
    let request_timeout = Duration::from_secs(state.settings.http.request_timeout_secs);
    let body_limit = state.settings.http.body_limit_bytes;

    let routes = Router::new()
        .route(DISCOVERY_PATH, get(discovery::openid_configuration_get))
        .route(JWKS_PATH, get(discovery::jwks_get))
        .route("/healthz", get(health::healthz_get))
        .route("/readyz", get(health::readyz_get))
        .route(
            AUTHORIZATION_PATH,
            get(oauth::authorize::authorize).post(oauth::authorize::authorize),
        )
        .route(TOKEN_PATH, axum::routing::post(oauth::token::token_post))
        .route(
            REVOCATION_PATH,
            axum::routing::post(oauth::revoke::revoke_post),
        )
        .route(
            INTROSPECTION_PATH,
            axum::routing::post(oauth::introspect::introspect_post),
        )
        .route(
            interaction::RESUME_PATH,
            get(oauth::authorize::resume_get).post(oauth::authorize::resume_post),
        )
        .route(
            "/consent",
            get(oauth::authorize::consent_get).post(oauth::authorize::consent_post),
        )
        .route(
            USERINFO_PATH,
            get(oauth::userinfo::userinfo).post(oauth::userinfo::userinfo),
        )
        .route("/assets/style.css", get(assets::style_css))
        .route("/assets/webauthn.js", get(assets::webauthn_js))
        .route("/favicon.ico", get(assets::favicon_get))
        .route(
            "/signup",
            get(pages::account::signup_get).post(pages::account::signup_post),
        )
        .route("/confirm", get(pages::account::confirm_get))
        .route(
            "/confirm/resend",
            axum::routing::post(pages::account::confirm_resend_post),
        )
        .route(
            "/login",
            get(pages::account::login_get).post(pages::account::login_post),
        )
        .route(
            END_SESSION_PATH,
            get(oauth::logout::logout_get).post(oauth::logout::logout_post),
        )
        .route(
            "/login/2fa",
            get(pages::two_factor::login_2fa_get).post(pages::two_factor::login_2fa_post),
        )
        .route("/login/passkey", get(pages::passkeys::step_up_get))
        .route(
            "/login/passkey/options",
            axum::routing::post(pages::passkeys::passwordless_options),
        )
        .route(
            "/login/passkey/finish",
            axum::routing::post(pages::passkeys::passwordless_finish),
        )
        .route(
            "/login/2fa/passkey/options",
            axum::routing::post(pages::passkeys::verify_options),
        )
        .route(
            "/login/2fa/passkey/finish",
            axum::routing::post(pages::passkeys::verify_finish),
        )
        .route("/profile/passkeys", get(pages::passkeys::passkeys_get))
        .route(
            "/profile/passkeys/options",
            axum::routing::post(pages::passkeys::register_options),
        )
        .route(
            "/profile/passkeys/finish",
            axum::routing::post(pages::passkeys::register_finish),
        )
        .route(
            "/profile/passkeys/confirm",
            axum::routing::post(pages::passkeys::confirm_post),
        )
        .route(
            "/profile/passkeys/rename",
            axum::routing::post(pages::passkeys::rename_post),
        )
        .route(
            "/profile/passkeys/remove",
            axum::routing::post(pages::passkeys::remove_post),
        )
        .route(
            "/profile/consents/revoke",
            axum::routing::post(pages::profile::consent_revoke_post),
        )
        .route(
            "/profile/2fa/activate",
            get(pages::two_factor::activate_get).post(pages::two_factor::activate_post),
        )
        .route(
            "/profile/2fa/recovery-codes",
            axum::routing::post(pages::two_factor::recovery_codes_post),
        )
        .route(
            "/profile/2fa/deactivate",
            axum::routing::post(pages::two_factor::deactivate_post),
        )
        .route(
            "/profile",
            get(pages::profile::profile_get).post(pages::profile::profile_post),
        )
        .route(
            "/profile/api-keys",
            get(pages::api_keys::api_keys_get).post(pages::api_keys::api_keys_post),
        )
        .route(
            "/profile/api-keys/revoke",
            axum::routing::post(pages::api_keys::api_key_revoke_post),
        )
        .route(
            "/password/forgot",
            get(pages::password::forgot_get).post(pages::password::forgot_post),
        )
        .route(
            "/password/reset",
            get(pages::password::reset_get).post(pages::password::reset_post),
        )
        .fallback(error::not_found)
        .with_state(state);

    let security_headers = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            // Only meaningful (and only sent) when the issuer is https.
            https.then(|| HeaderValue::from_static("max-age=31536000")),
        ));

    routes.layer(
        ServiceBuilder::new()
            .layer(access_log::AccessLogLayer::new(REQUEST_ID, state_metrics))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn_with_state(
                std::sync::Arc::new(proxies),
                client_ip::resolve,
            ))
            .layer(security_headers)
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                request_timeout,
            ))
            .layer(axum::middleware::from_fn_with_state(
                limit_state,
                limit::limit_body,
            ))
            .layer(DefaultBodyLimit::max(body_limit)),
    )
}
