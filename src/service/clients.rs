//! The client registry: relying parties an operator registers (`stepgate
//! client …`), and client authentication at the token endpoint.
//!
//! A confidential client gets a 256-bit secret, shown once and stored only as
//! its SHA-256: the secret is generated here with full entropy, so a fast hash
//! compared in constant time is enough (PRODUCT.md security model); argon2 is
//! for what people choose. A public client (a native or browser app) has no
//! secret and authenticates with `none`, so PKCE is what protects its codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::{Host, Url};

use crate::crypto::{constant_time_eq, random_id, random_token, sha256_hex};
use crate::protocol::grant::GrantType;
use crate::service::Error;
use crate::state::AppState;
use crate::store::audit::{self, Event};
use crate::store::clients::{self as store, NewClientRow, decode_list};
use crate::store::entities::clients::Model as ClientRow;

// The registration rules and the stored lists speak the wire names of
// `protocol::grant::GrantType`, the one list of grants.
pub const GRANT_AUTHORIZATION_CODE: &str = GrantType::AuthorizationCode.as_str();
pub const GRANT_REFRESH_TOKEN: &str = GrantType::RefreshToken.as_str();
pub const GRANT_CLIENT_CREDENTIALS: &str = GrantType::ClientCredentials.as_str();
/// Every grant type a client may be registered for.
pub const GRANT_TYPES: [&str; 3] = [
    GrantType::ALL[0].as_str(),
    GrantType::ALL[1].as_str(),
    GrantType::ALL[2].as_str(),
];
/// What a client registered without grant types may use.
pub const DEFAULT_GRANT_TYPES: [&str; 2] = [GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN];

/// Every scope a client may be registered for (and discovery's
/// `scopes_supported`).
pub const SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// What a client registered without scopes may use: all of them (PRODUCT.md,
/// contract details → Clients).
pub const DEFAULT_SCOPES: [&str; 4] = SCOPES;

/// RFC 6749 §2.3.1: the secret in HTTP Basic; what confidential clients are
/// registered with (discovery's default, OIDC Discovery §3).
pub const AUTH_METHOD_CLIENT_SECRET_BASIC: &str = "client_secret_basic";
/// RFC 6749 §2.3.1: the secret in the form body; also accepted from every
/// confidential client.
pub const AUTH_METHOD_CLIENT_SECRET_POST: &str = "client_secret_post";
/// A public client: no client authentication (OIDC Core §9).
pub const AUTH_METHOD_NONE: &str = "none";

/// Longest client name accepted (it is shown on the consent page).
pub const MAX_NAME_CHARS: usize = 100;

/// A registered client, as the rest of Stepgate sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    /// `client_secret_basic` for a confidential client (`client_secret_post`
    /// is accepted too), `none` for a public one.
    pub token_endpoint_auth_method: String,
    pub require_mfa: bool,
    pub first_party: bool,
    /// A resource server: may introspect access tokens issued to any
    /// client, and API keys (RFC 7662 §4; `protocol::introspect`). Set at
    /// registration only, so a cached client (`ClientCache`) never carries
    /// a stale value of it.
    pub introspect: bool,
    pub created_at: i64,
}

impl Client {
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Whether the client is registered for `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.allows_grant(grant.as_str())
    }

    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Exact string comparison, with no normalization of any kind (RFC 9700
    /// §4.1.3; OIDC Core §3.1.2.1).
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|u| u == uri)
    }

    /// Exact string comparison, like `has_redirect_uri` (RP-Initiated
    /// Logout 1.0 §3).
    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|u| u == uri)
    }

    fn from_row(row: ClientRow) -> Result<Self, sea_orm::DbErr> {
        Ok(Self {
            redirect_uris: decode_list("redirect_uris", &row.redirect_uris)?,
            post_logout_redirect_uris: decode_list(
                "post_logout_redirect_uris",
                &row.post_logout_redirect_uris,
            )?,
            grant_types: decode_list("grant_types", &row.grant_types)?,
            scopes: decode_list("scopes", &row.scopes)?,
            client_id: row.client_id,
            name: row.name,
            public: row.public,
            token_endpoint_auth_method: row.token_endpoint_auth_method,
            require_mfa: row.require_mfa,
            first_party: row.first_party,
            introspect: row.introspect,
            created_at: row.created_at,
        })
    }
}

/// What an operator asks for. `None` lists take the defaults
/// (`DEFAULT_GRANT_TYPES`, `DEFAULT_SCOPES`).
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub require_mfa: bool,
    pub first_party: bool,
    /// Registers a resource server, allowed to introspect access tokens and
    /// API keys.
    pub introspect: bool,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A refusal, with its reason in plain words (`field: reason`).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Account(#[from] Error),
}

impl From<sea_orm::DbErr> for ClientError {
    fn from(e: sea_orm::DbErr) -> Self {
        ClientError::Account(e.into())
    }
}

async fn audit(
    state: &AppState,
    kind: &str,
    client_id: &str,
    detail: Option<&str>,
) -> Result<(), Error> {
    audit::record(
        &state.appender,
        Event {
            kind,
            outcome: "success",
            user_id: None,
            client_id: Some(client_id),
            ip: None,
            detail,
        },
        state.now(),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- rules

/// A redirect URI a client may register: absolute, https, or http only on a
/// loopback host (127.0.0.1, [::1], localhost — RFC 8252 §7.3); no fragment
/// (RFC 6749 §3.1.2); no user info. Err(reason) in plain words.
///
/// The URI is stored exactly as given and later compared as a string, so
/// anything a URL parser would quietly rewrite (surrounding spaces, a
/// missing `//`) is refused rather than normalized.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    const USE: &str = "use https, or http on a loopback address (127.0.0.1, [::1] or localhost)";
    if uri.is_empty() {
        return Err("it is empty".into());
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{uri:?} contains spaces or control characters; give the URI exactly as the client will send it"
        ));
    }
    let not_absolute = || {
        format!(
            "{uri} is not an absolute URI; give the scheme and host, like https://app.example.com/callback"
        )
    };
    let parsed = match Url::parse(uri) {
        Ok(parsed) => parsed,
        Err(url::ParseError::RelativeUrlWithoutBase) => return Err(not_absolute()),
        Err(e) => return Err(format!("{uri} is not a valid URI ({e})")),
    };
    let scheme = parsed.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(format!("{uri} uses the scheme {scheme}:; {USE}"));
    }
    // `https:host/path` parses as `https://host/path`; insist on the `//` so
    // what is stored is what a browser will be sent to.
    let prefix = uri.get(..scheme.len() + 3).unwrap_or_default();
    if !prefix.eq_ignore_ascii_case(&format!("{scheme}://")) {
        return Err(not_absolute());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "{uri} contains user information (user@ or user:password@ before the host), which a redirect URI must not have"
        ));
    }
    if parsed.fragment().is_some() {
        return Err(format!(
            "{uri} has a fragment (#…), which a redirect URI must not have (RFC 6749 §3.1.2)"
        ));
    }
    if scheme == "http" {
        let loopback = match parsed.host() {
            Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
            Some(Host::Domain(domain)) => domain == "localhost",
            None => false,
        };
        if !loopback {
            return Err(format!(
                "{uri} uses http on a host that is not a loopback address, so codes and tokens would cross the network in the clear; {USE}"
            ));
        }
    }
    Ok(())
}

/// The trimmed name, or why it is refused.
fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("name: give the client a name (people see it on the consent page)".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name: use at most {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name: use letters, digits, spaces and punctuation only".into());
    }
    Ok(name.to_owned())
}

/// The values in their first order, each once.
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

fn check_grant_types(requested: Option<Vec<String>>, public: bool) -> Result<Vec<String>, String> {
    let grants = match requested {
        None => DEFAULT_GRANT_TYPES.map(String::from).to_vec(),
        Some(grants) => dedup(grants),
    };
    if grants.is_empty() {
        return Err(format!(
            "grant type: give at least one of {}",
            GRANT_TYPES.join(", ")
        ));
    }
    if let Some(unknown) = grants.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
        return Err(format!(
            "grant type: {unknown:?} is not supported; use {}",
            GRANT_TYPES.join(", ")
        ));
    }
    if public && grants.iter().any(|g| g == GRANT_CLIENT_CREDENTIALS) {
        return Err(format!(
            "grant type: a public client cannot use {GRANT_CLIENT_CREDENTIALS}: it has no secret, so anyone could get its tokens (RFC 6749 §4.4 is for confidential clients)"
        ));
    }
    Ok(grants)
}

fn check_scopes(requested: Option<Vec<String>>) -> Result<Vec<String>, String> {
    let scopes = match requested {
        None => DEFAULT_SCOPES.map(String::from).to_vec(),
        Some(scopes) => dedup(scopes),
    };
    if scopes.is_empty() {
        return Err(format!("scope: give at least one of {}", SCOPES.join(", ")));
    }
    if let Some(unknown) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(format!(
            "scope: {unknown:?} is not supported; use {}",
            SCOPES.join(", ")
        ));
    }
    Ok(scopes)
}

fn check_uris(what: &str, uris: Vec<String>) -> Result<Vec<String>, String> {
    let uris = dedup(uris);
    for uri in &uris {
        check_redirect_uri(uri).map_err(|reason| format!("{what}: {reason}"))?;
    }
    Ok(uris)
}

/// A registration that passed every rule.
#[derive(Debug)]
struct Checked {
    name: String,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    scopes: Vec<String>,
}

fn check_new_client(new: NewClient) -> Result<Checked, String> {
    let name = check_name(&new.name)?;
    let grant_types = check_grant_types(new.grant_types, new.public)?;
    let scopes = check_scopes(new.scopes)?;
    let redirect_uris = check_uris("redirect URI", new.redirect_uris)?;
    if redirect_uris.is_empty() && grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
        return Err(format!(
            "redirect URI: give at least one; the {GRANT_AUTHORIZATION_CODE} grant sends its codes there"
        ));
    }
    let post_logout_redirect_uris =
        check_uris("post-logout redirect URI", new.post_logout_redirect_uris)?;
    // RFC 7662 §2.1: the introspection endpoint needs client
    // authentication, which a public client's bare client_id is not.
    if new.introspect && new.public {
        return Err(
            "introspect: a public client cannot introspect tokens: it has no secret to authenticate with (RFC 7662 §2.1); register the resource server as a confidential client"
                .into(),
        );
    }
    Ok(Checked {
        name,
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        scopes,
    })
}

// ---------------------------------------------------------------- registry

/// Registers a client. The secret (for a confidential client) is returned
/// here once and never again: only its hash is kept.
pub async fn create(
    state: &AppState,
    new: NewClient,
) -> Result<(Client, Option<String>), ClientError> {
    let (public, require_mfa, first_party, introspect) =
        (new.public, new.require_mfa, new.first_party, new.introspect);
    let checked = check_new_client(new).map_err(ClientError::Invalid)?;
    let client_id = random_id();
    let secret = (!public).then(random_token);
    let secret_hash = secret.as_deref().map(sha256_hex);
    let row = store::insert(
        &state.db,
        NewClientRow {
            client_id: &client_id,
            name: &checked.name,
            secret_hash: secret_hash.as_deref(),
            public,
            redirect_uris: &checked.redirect_uris,
            post_logout_redirect_uris: &checked.post_logout_redirect_uris,
            grant_types: &checked.grant_types,
            scopes: &checked.scopes,
            token_endpoint_auth_method: if public {
                AUTH_METHOD_NONE
            } else {
                AUTH_METHOD_CLIENT_SECRET_BASIC
            },
            require_mfa,
            first_party,
            introspect,
        },
        state.now(),
    )
    .await?;
    let client = Client::from_row(row)?;
    let kind = if public { "public" } else { "confidential" };
    let detail = format!("{kind}: {}", client.name);
    audit(state, "client.created", &client.client_id, Some(&detail)).await?;
    tracing::info!(client_id = %client.client_id, public, "client registered");
    Ok((client, secret))
}

pub async fn find(state: &AppState, client_id: &str) -> Result<Option<Client>, Error> {
    match store::find_by_id(&state.db, client_id).await? {
        Some(row) => Ok(Some(Client::from_row(row)?)),
        None => Ok(None),
    }
}

/// Every client, oldest first.
pub async fn list(state: &AppState) -> Result<Vec<Client>, Error> {
    let rows = store::list(&state.db).await?;
    let clients = rows
        .into_iter()
        .map(Client::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(clients)
}

/// Deletes a client with its pending requests, codes, tokens and consents.
/// Whether there was such a client.
pub async fn delete(state: &AppState, client_id: &str) -> Result<bool, Error> {
    let deleted = store::delete(&state.db, client_id).await?;
    if deleted {
        audit(state, "client.deleted", client_id, None).await?;
        tracing::info!(%client_id, "client deleted");
    }
    Ok(deleted)
}

/// Gives a confidential client a new secret, returned once; the old one stops
/// working at once. `None` when there is no such client; a public client is
/// refused (it has no secret).
pub async fn rotate_secret(
    state: &AppState,
    client_id: &str,
) -> Result<Option<String>, ClientError> {
    let Some(row) = store::find_by_id(&state.db, client_id).await? else {
        return Ok(None);
    };
    if row.public {
        return Err(ClientError::Invalid(format!(
            "client {client_id} is public: it has no secret to rotate"
        )));
    }
    let secret = random_token();
    if !store::set_secret_hash(&state.db, client_id, &sha256_hex(&secret), state.now()).await? {
        // Deleted in the meantime.
        return Ok(None);
    }
    audit(state, "client.secret_rotated", client_id, None).await?;
    tracing::info!(%client_id, "client secret rotated");
    Ok(Some(secret))
}

/// Client authentication at the token endpoint (RFC 6749 §2.3.1): a
/// confidential client must present its secret; a public client must present
/// none. Ok(None) = authentication failed (unknown client, wrong/missing
/// secret, or a secret from a public client), reported by the caller as
/// invalid_client.
/// A presented client secret against its stored SHA-256 hex, in constant
/// time. Both sides are SHA-256 hex, so the lengths match and say nothing.
/// Pure (no database), so the benchmarks measure exactly what the token
/// endpoint does per request.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    constant_time_eq(sha256_hex(secret).as_bytes(), stored_hash.as_bytes())
}

/// The client `client_id` if `secret` authenticates it (RFC 6749 §2.3.1):
/// a public client with no secret, a confidential one with its secret.
///
/// The row comes from `state.client_cache` while it is fresh. A secret that
/// does not match the cached hash is checked again against a fresh read, so
/// a rotated secret works at once; the cache only lets a replaced secret or
/// a deleted client live on for `oauth.client_cache_secs`.
pub async fn authenticate(
    state: &AppState,
    client_id: &str,
    secret: Option<&str>,
) -> Result<Option<Arc<Client>>, Error> {
    if let Some(cached) = state.client_cache.get(client_id)
        && cached.authenticates(secret)
    {
        return Ok(Some(cached.client.clone()));
    }
    let Some(row) = store::find_by_id(&state.db, client_id).await? else {
        state.client_cache.forget(client_id);
        return Ok(None);
    };
    let cached = CachedClient {
        secret_hash: row.secret_hash.clone(),
        client: Arc::new(Client::from_row(row)?),
    };
    let authenticated = cached.authenticates(secret);
    let client = cached.client.clone();
    state.client_cache.put(client_id, cached);
    Ok(authenticated.then_some(client))
}

/// A client as read for authentication, with its secret's hash.
struct CachedClient {
    secret_hash: Option<String>,
    client: Arc<Client>,
}

impl CachedClient {
    fn authenticates(&self, secret: Option<&str>) -> bool {
        match (self.client.public, secret, self.secret_hash.as_deref()) {
            (true, None, _) => true,
            (false, Some(secret), Some(hash)) => secret_matches(secret, hash),
            _ => false,
        }
    }
}

/// Clients read for client authentication, kept `oauth.client_cache_secs`
/// (PRODUCT.md: a node's state is only caches that may be lost). Only
/// clients that exist are kept, so unknown ids cannot grow it; it is bounded
/// anyway and starts over when full.
pub struct ClientCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<CachedClient>)>>,
}

impl ClientCache {
    const MAX_ENTRIES: usize = 10_000;

    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<CachedClient>)>> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters: every entry is replaced whole.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, client_id: &str) -> Option<Arc<CachedClient>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.lock();
        let (read_at, cached) = entries.get(client_id)?;
        (read_at.elapsed() < self.ttl).then(|| cached.clone())
    }

    fn put(&self, client_id: &str, cached: CachedClient) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(client_id) {
            entries.clear();
        }
        entries.insert(client_id.to_owned(), (Instant::now(), Arc::new(cached)));
    }

    fn forget(&self, client_id: &str) {
        self.lock().remove(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(uri: &str) -> String {
        match check_redirect_uri(uri) {
            Ok(()) => panic!("{uri} was accepted"),
            Err(reason) => reason,
        }
    }

    #[test]
    fn https_is_accepted_with_path_query_and_port() {
        assert_eq!(
            check_redirect_uri("https://app.example.com/callback"),
            Ok(())
        );
        assert_eq!(
            check_redirect_uri("https://app.example.com:8443/cb?x=1"),
            Ok(())
        );
        assert_eq!(check_redirect_uri("HTTPS://app.example.com/cb"), Ok(()));
    }

    #[test]
    fn http_on_127_0_0_1_with_a_port_is_accepted() {
        // RFC 8252 §7.3: native apps listen on an ephemeral loopback port.
        assert_eq!(check_redirect_uri("http://127.0.0.1:53124/cb"), Ok(()));
        assert_eq!(check_redirect_uri("http://127.0.0.1/cb"), Ok(()));
    }

    #[test]
    fn http_on_localhost_is_accepted() {
        assert_eq!(check_redirect_uri("http://localhost:3000/cb"), Ok(()));
        assert_eq!(check_redirect_uri("http://localhost/"), Ok(()));
    }

    #[test]
    fn http_on_ipv6_loopback_is_accepted() {
        assert_eq!(check_redirect_uri("http://[::1]:8080/cb"), Ok(()));
        assert_eq!(check_redirect_uri("http://[::1]/cb"), Ok(()));
    }

    #[test]
    fn http_on_another_host_is_refused() {
        for uri in [
            "http://example.com/cb",
            "http://10.0.0.1/cb",
            "http://127.0.0.1.nip.io/cb",
            "http://localhost.example.com/cb",
        ] {
            assert!(refused(uri).contains("not a loopback address"), "{uri}");
        }
    }

    #[test]
    fn a_fragment_is_refused() {
        assert!(refused("https://app.example.com/cb#frag").contains("fragment"));
        assert!(refused("https://app.example.com/cb#").contains("fragment"));
    }

    #[test]
    fn a_relative_uri_is_refused() {
        assert!(refused("/callback").contains("not an absolute URI"));
        assert!(refused("app.example.com/cb").contains("not an absolute URI"));
        assert!(refused("https:app.example.com/cb").contains("not an absolute URI"));
    }

    #[test]
    fn a_custom_scheme_is_refused() {
        for uri in [
            "com.example.app:/oauth2redirect",
            "myapp://callback",
            "javascript:alert(1)",
            "ftp://example.com/cb",
        ] {
            assert!(refused(uri).contains("uses the scheme"), "{uri}");
        }
    }

    #[test]
    fn user_info_is_refused() {
        assert!(refused("https://user@app.example.com/cb").contains("user information"));
        assert!(refused("https://user:pw@app.example.com/cb").contains("user information"));
        assert!(refused("http://evil@127.0.0.1/cb").contains("user information"));
    }

    #[test]
    fn empty_spaces_and_control_characters_are_refused() {
        assert!(refused("").contains("empty"));
        assert!(refused(" https://app.example.com/cb").contains("spaces"));
        assert!(refused("https://app.example.com/c b").contains("spaces"));
        assert!(refused("https://app.example.com/cb\n").contains("control"));
    }

    #[test]
    fn an_unparsable_uri_is_refused() {
        assert!(refused("https://exa mple.com/cb").contains("spaces"));
        assert!(refused("https://[::1/cb").contains("not a valid URI"));
    }

    fn new_client() -> NewClient {
        NewClient {
            name: "  Shop  ".into(),
            redirect_uris: vec!["https://shop.example/cb".into()],
            ..NewClient::default()
        }
    }

    #[test]
    fn defaults_and_trimming() {
        let checked = check_new_client(new_client()).unwrap();
        assert_eq!(checked.name, "Shop");
        assert_eq!(checked.grant_types, DEFAULT_GRANT_TYPES);
        assert_eq!(checked.scopes, SCOPES);
        assert!(checked.post_logout_redirect_uris.is_empty());
    }

    #[test]
    fn duplicates_are_removed_in_order() {
        let checked = check_new_client(NewClient {
            redirect_uris: vec![
                "https://b.example/cb".into(),
                "https://a.example/cb".into(),
                "https://b.example/cb".into(),
            ],
            grant_types: Some(vec![
                "refresh_token".into(),
                "authorization_code".into(),
                "refresh_token".into(),
            ]),
            scopes: Some(vec!["openid".into(), "openid".into()]),
            ..new_client()
        })
        .unwrap();
        assert_eq!(
            checked.redirect_uris,
            ["https://b.example/cb", "https://a.example/cb"]
        );
        assert_eq!(checked.grant_types, ["refresh_token", "authorization_code"]);
        assert_eq!(checked.scopes, ["openid"]);
    }

    #[test]
    fn a_name_is_required_and_bounded() {
        let err = check_new_client(NewClient {
            name: "   ".into(),
            ..new_client()
        })
        .unwrap_err();
        assert!(err.starts_with("name:"), "{err}");
        let err = check_new_client(NewClient {
            name: "x".repeat(MAX_NAME_CHARS + 1),
            ..new_client()
        })
        .unwrap_err();
        assert!(err.contains("at most 100"), "{err}");
        assert!(
            check_new_client(NewClient {
                name: "é".repeat(MAX_NAME_CHARS),
                ..new_client()
            })
            .is_ok()
        );
    }

    #[test]
    fn the_code_grant_needs_a_redirect_uri() {
        let err = check_new_client(NewClient {
            redirect_uris: vec![],
            ..new_client()
        })
        .unwrap_err();
        assert!(err.starts_with("redirect URI: give at least one"), "{err}");
        // A machine client needs none.
        let checked = check_new_client(NewClient {
            redirect_uris: vec![],
            grant_types: Some(vec![GRANT_CLIENT_CREDENTIALS.into()]),
            ..new_client()
        })
        .unwrap();
        assert_eq!(checked.grant_types, [GRANT_CLIENT_CREDENTIALS]);
    }

    #[test]
    fn every_uri_is_checked() {
        let err = check_new_client(NewClient {
            redirect_uris: vec![
                "https://ok.example/cb".into(),
                "http://example.com/cb".into(),
            ],
            ..new_client()
        })
        .unwrap_err();
        assert!(
            err.starts_with("redirect URI: http://example.com/cb"),
            "{err}"
        );
        let err = check_new_client(NewClient {
            post_logout_redirect_uris: vec!["https://ok.example/bye#x".into()],
            ..new_client()
        })
        .unwrap_err();
        assert!(err.starts_with("post-logout redirect URI:"), "{err}");
    }

    #[test]
    fn grant_types_are_checked() {
        let err = check_grant_types(Some(vec!["password".into()]), false).unwrap_err();
        assert!(err.contains("\"password\" is not supported"), "{err}");
        let err = check_grant_types(Some(vec![]), false).unwrap_err();
        assert!(err.contains("at least one"), "{err}");
        let err = check_grant_types(Some(vec![GRANT_CLIENT_CREDENTIALS.into()]), true).unwrap_err();
        assert!(
            err.contains("public client cannot use client_credentials"),
            "{err}"
        );
        assert!(check_grant_types(Some(vec![GRANT_CLIENT_CREDENTIALS.into()]), false).is_ok());
        assert_eq!(check_grant_types(None, true).unwrap(), DEFAULT_GRANT_TYPES);
    }

    #[test]
    fn only_a_confidential_client_may_introspect() {
        let err = check_new_client(NewClient {
            public: true,
            introspect: true,
            ..new_client()
        })
        .unwrap_err();
        assert!(err.starts_with("introspect: a public client"), "{err}");
        assert!(
            check_new_client(NewClient {
                introspect: true,
                ..new_client()
            })
            .is_ok()
        );
    }

    #[test]
    fn scopes_are_checked() {
        let err = check_scopes(Some(vec!["admin".into()])).unwrap_err();
        assert!(err.contains("\"admin\" is not supported"), "{err}");
        let err = check_scopes(Some(vec![])).unwrap_err();
        assert!(err.contains("at least one"), "{err}");
        assert_eq!(
            check_scopes(Some(vec!["email".into(), "openid".into()])).unwrap(),
            ["email", "openid"]
        );
    }
}
