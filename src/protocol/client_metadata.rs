//! The rules of client metadata (RFC 7591 §2, OpenID Connect Dynamic
//! Client Registration §2): what a registration may ask for, its defaults,
//! and the refusals, each naming its field so that the CLI, the admin API
//! and RFC 7591 §3.2.2 errors (or RFC 9457 `invalid-params`) can report it.
//! Pure: the registry that stores clients is `service::clients`.

use std::fmt;

use url::{Host, Url};

use crate::protocol::grant::GrantType;
use crate::protocol::scope::SUPPORTED_SCOPES;

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
pub const SCOPES: [&str; 4] = SUPPORTED_SCOPES;
/// What a client registered without scopes may use: all of them
/// (docs/integrate.md, "2. Register your client").
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
}

/// What a registration asks for. `None` lists take the defaults
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

/// A registered value, by its RFC 7591 §2 metadata name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ClientName,
    RedirectUris,
    PostLogoutRedirectUris,
    GrantTypes,
    Scope,
    /// Stepgate's own: may introspect others' tokens (`protocol::introspect`).
    Introspect,
}

impl Field {
    /// The metadata name (RFC 7591 §2; `post_logout_redirect_uris` is
    /// RP-Initiated Logout 1.0 §3.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Field::ClientName => "client_name",
            Field::RedirectUris => "redirect_uris",
            Field::PostLogoutRedirectUris => "post_logout_redirect_uris",
            Field::GrantTypes => "grant_types",
            Field::Scope => "scope",
            Field::Introspect => "introspect",
        }
    }

    /// How a person at the CLI knows the field.
    pub fn label(self) -> &'static str {
        match self {
            Field::ClientName => "name",
            Field::RedirectUris => "redirect URI",
            Field::PostLogoutRedirectUris => "post-logout redirect URI",
            Field::GrantTypes => "grant type",
            Field::Scope => "scope",
            Field::Introspect => "introspect",
        }
    }
}

/// A refused registration: the field, and why in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: Field,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: Field, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The RFC 7591 §3.2.2 error code.
    pub fn error_code(&self) -> &'static str {
        match self.field {
            Field::RedirectUris | Field::PostLogoutRedirectUris => "invalid_redirect_uri",
            _ => "invalid_client_metadata",
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field.label(), self.reason)
    }
}

impl std::error::Error for Invalid {}

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
fn check_name(name: &str) -> Result<String, Invalid> {
    let invalid = |reason: String| Invalid::new(Field::ClientName, reason);
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid(
            "give the client a name (people see it on the consent page)".into(),
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(format!("use at most {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "use letters, digits, spaces and punctuation only".into(),
        ));
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

fn check_grant_types(requested: Option<Vec<String>>, public: bool) -> Result<Vec<String>, Invalid> {
    let invalid = |reason: String| Invalid::new(Field::GrantTypes, reason);
    let grants = match requested {
        None => DEFAULT_GRANT_TYPES.map(String::from).to_vec(),
        Some(grants) => dedup(grants),
    };
    if grants.is_empty() {
        return Err(invalid(format!(
            "give at least one of {}",
            GRANT_TYPES.join(", ")
        )));
    }
    if let Some(unknown) = grants.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
        return Err(invalid(format!(
            "{unknown:?} is not supported; use {}",
            GRANT_TYPES.join(", ")
        )));
    }
    if public && grants.iter().any(|g| g == GRANT_CLIENT_CREDENTIALS) {
        return Err(invalid(format!(
            "a public client cannot use {GRANT_CLIENT_CREDENTIALS}: it has no secret, so anyone could get its tokens (RFC 6749 §4.4 is for confidential clients)"
        )));
    }
    Ok(grants)
}

fn check_scopes(requested: Option<Vec<String>>) -> Result<Vec<String>, Invalid> {
    let invalid = |reason: String| Invalid::new(Field::Scope, reason);
    let scopes = match requested {
        None => DEFAULT_SCOPES.map(String::from).to_vec(),
        Some(scopes) => dedup(scopes),
    };
    if scopes.is_empty() {
        return Err(invalid(format!(
            "give at least one of {}",
            SCOPES.join(", ")
        )));
    }
    if let Some(unknown) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(invalid(format!(
            "{unknown:?} is not supported; use {}",
            SCOPES.join(", ")
        )));
    }
    Ok(scopes)
}

fn check_uris(field: Field, uris: Vec<String>) -> Result<Vec<String>, Invalid> {
    let uris = dedup(uris);
    for uri in &uris {
        check_redirect_uri(uri).map_err(|reason| Invalid::new(field, reason))?;
    }
    Ok(uris)
}

/// A registration that passed every rule.
#[derive(Debug)]
pub struct Checked {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
}

/// Every registration rule, in the order a person fixes them; the first
/// refusal is returned.
pub fn check_new_client(new: NewClient) -> Result<Checked, Invalid> {
    let name = check_name(&new.name)?;
    let grant_types = check_grant_types(new.grant_types, new.public)?;
    let scopes = check_scopes(new.scopes)?;
    let redirect_uris = check_uris(Field::RedirectUris, new.redirect_uris)?;
    if redirect_uris.is_empty() && grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
        return Err(Invalid::new(
            Field::RedirectUris,
            format!(
                "give at least one; the {GRANT_AUTHORIZATION_CODE} grant sends its codes there"
            ),
        ));
    }
    let post_logout_redirect_uris =
        check_uris(Field::PostLogoutRedirectUris, new.post_logout_redirect_uris)?;
    // RFC 7662 §2.1: the introspection endpoint needs client
    // authentication, which a public client's bare client_id is not.
    if new.introspect && new.public {
        return Err(Invalid::new(
            Field::Introspect,
            "a public client cannot introspect tokens: it has no secret to authenticate with (RFC 7662 §2.1); register the resource server as a confidential client",
        ));
    }
    Ok(Checked {
        name,
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        scopes,
    })
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
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("name:"), "{err}");
        let err = check_new_client(NewClient {
            name: "x".repeat(MAX_NAME_CHARS + 1),
            ..new_client()
        })
        .unwrap_err()
        .to_string();
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
        .unwrap_err()
        .to_string();
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
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("redirect URI: http://example.com/cb"),
            "{err}"
        );
        let err = check_new_client(NewClient {
            post_logout_redirect_uris: vec!["https://ok.example/bye#x".into()],
            ..new_client()
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("post-logout redirect URI:"), "{err}");
    }

    #[test]
    fn grant_types_are_checked() {
        let err = check_grant_types(Some(vec!["password".into()]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"password\" is not supported"), "{err}");
        let err = check_grant_types(Some(vec![]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one"), "{err}");
        let err = check_grant_types(Some(vec![GRANT_CLIENT_CREDENTIALS.into()]), true)
            .unwrap_err()
            .to_string();
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
        .unwrap_err()
        .to_string();
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
        let err = check_scopes(Some(vec!["admin".into()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"admin\" is not supported"), "{err}");
        let err = check_scopes(Some(vec![])).unwrap_err().to_string();
        assert!(err.contains("at least one"), "{err}");
        assert_eq!(
            check_scopes(Some(vec!["email".into(), "openid".into()])).unwrap(),
            ["email", "openid"]
        );
    }

    #[test]
    fn a_refusal_names_its_field_and_rfc_7591_error_code() {
        let err = check_new_client(NewClient {
            redirect_uris: vec!["http://example.com/cb".into()],
            ..new_client()
        })
        .unwrap_err();
        assert_eq!(err.field, Field::RedirectUris);
        assert_eq!(err.field.as_str(), "redirect_uris");
        assert_eq!(err.error_code(), "invalid_redirect_uri");
        let err = check_new_client(NewClient {
            scopes: Some(vec!["admin".into()]),
            ..new_client()
        })
        .unwrap_err();
        assert_eq!(
            (err.field, err.error_code()),
            (Field::Scope, "invalid_client_metadata")
        );
        assert_eq!(err.to_string(), format!("scope: {}", err.reason));
    }
}
