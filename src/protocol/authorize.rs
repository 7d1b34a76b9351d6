//! The authorization request (RFC 6749 §4.1.1, OpenID Connect Core
//! §3.1.2.1), checked in two stages:
//!
//! 1. the client and its exact redirect URI. Until both are trusted an error
//!    is shown to the person on a page and never redirected (RFC 6749
//!    §4.1.2.1, RFC 9700 §4.1.3), so a forged request cannot turn this server
//!    into an open redirector;
//! 2. everything else. From here errors go back to the client's redirect URI
//!    with `error`, `error_description`, `state` (RFC 6749 §4.1.2.1) and `iss`
//!    (RFC 9207 §2), in the response mode the request asked for.
//!
//! `validate` reads as the list of checks, in order; each is a small function
//! below it.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::error::{OAuthError, OAuthErrorCode};
use crate::protocol::pkce;
use crate::protocol::scope::{SUPPORTED_SCOPES, Scopes};

/// The longest `state`, `nonce` and `login_hint` accepted, in characters: the
/// request is stored server-side while the user signs in, so what the client
/// may make us keep is bounded.
pub const MAX_PARAM_CHARS: usize = 2048;

/// The request's parameters, with every repeated name recorded (RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once").
#[derive(Debug, Clone, Default)]
pub struct RawParams {
    pub values: BTreeMap<String, String>,
    pub repeated: BTreeSet<String>,
}

impl RawParams {
    /// Keeps the first value of each name and records names given again.
    /// RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if
    /// they were omitted from the request", so an empty value is skipped and
    /// does not make its name repeated.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> RawParams {
        let mut params = RawParams::default();
        for (name, value) in pairs {
            if value.is_empty() {
                continue;
            }
            match params.values.entry(name) {
                Entry::Occupied(first) => {
                    params.repeated.insert(first.key().clone());
                }
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
            }
        }
        params
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn is_repeated(&self, name: &str) -> bool {
        self.repeated.contains(name)
    }
}

/// What the endpoint needs to know about the registered client.
#[derive(Debug, Clone, Copy)]
pub struct ClientView<'a> {
    pub client_id: &'a str,
    pub redirect_uris: &'a [String],
    /// A public client cannot keep a secret, so PKCE is its only proof at the
    /// token endpoint (RFC 9700 §2.1.1).
    pub public: bool,
    pub allowed_scopes: &'a [String],
}

/// How the authorization response travels (OAuth 2.0 Multiple Response Type
/// Encoding Practices §2.1, OAuth 2.0 Form Post Response Mode §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ResponseMode {
    /// Parameters in the redirect URI's query (the default for `code`).
    Query,
    /// An auto-submitting HTML form that POSTs the parameters.
    FormPost,
}

/// OpenID Connect Core §3.1.2.1 `prompt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    /// Show no page: answer with an error when a page would be needed.
    pub none: bool,
    /// Sign in again even with a live session (`login`, and `select_account`,
    /// since one session holds one account).
    pub login: bool,
    /// Ask for consent even when it is remembered.
    pub consent: bool,
}

/// A request that passed every check: what the interaction stores.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Only the supported scopes the client may use; always holds `openid`.
    pub scope: Scopes,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// An S256 challenge (RFC 7636 §4.2), when the request sent one.
    pub code_challenge: Option<String>,
    pub response_mode: ResponseMode,
    pub prompt: Prompt,
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    /// Not verified here: checking it needs the keys and the clock.
    pub id_token_hint: Option<String>,
    pub acr_values: Vec<String>,
}

/// Errors before the client and redirect URI are trusted: shown on a page, never redirected (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    MissingClientId,
    RepeatedClientId,
    UnknownClient,
    MissingRedirectUri,
    RepeatedRedirectUri,
    RedirectUriMismatch,
}

impl PageError {
    /// A heading for the error page.
    pub fn title(&self) -> &'static str {
        match self {
            PageError::MissingClientId | PageError::UnknownClient => "Unknown application",
            PageError::RepeatedClientId
            | PageError::MissingRedirectUri
            | PageError::RepeatedRedirectUri
            | PageError::RedirectUriMismatch => "Invalid sign-in request",
        }
    }

    /// What happened, in plain words for the person who followed the link.
    pub fn message(&self) -> &'static str {
        match self {
            PageError::MissingClientId => {
                "The request does not say which application sent you here, so sign-in cannot continue."
            }
            PageError::RepeatedClientId => {
                "The request names the application more than once, so sign-in cannot continue."
            }
            PageError::UnknownClient => {
                "The application that sent you here is not registered with this sign-in service."
            }
            PageError::MissingRedirectUri => {
                "The request does not say where to send you back to, so sign-in cannot continue."
            }
            PageError::RepeatedRedirectUri => {
                "The request gives more than one address to send you back to, so sign-in cannot continue."
            }
            PageError::RedirectUriMismatch => {
                "The address this request would send you back to is not one the application registered, so you will not be sent there."
            }
        }
    }
}

/// Errors after: redirected to the client with `error`, `error_description`, `state` and `iss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub error: OAuthError,
}

impl RedirectError {
    /// The response parameters, in either response mode: `error`,
    /// `error_description` (RFC 6749 §4.1.2.1), `state` when the request had
    /// one, and `iss` (RFC 9207 §2).
    pub fn params(&self, issuer: &str) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("error", self.error.code.as_str().to_owned()),
            ("error_description", self.error.description_wire()),
        ];
        if let Some(state) = &self.state {
            params.push(("state", state.clone()));
        }
        params.push(("iss", issuer.to_owned()));
        params
    }

    /// Where to send the browser in `ResponseMode::Query` (a form post sends
    /// `params` to `redirect_uri` instead).
    pub fn location(&self, issuer: &str) -> String {
        let params = self.params(issuer);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        redirect_with(&self.redirect_uri, &pairs)
    }
}

/// The `client_id`, which must be present once (RFC 6749 §4.1.1, §3.1).
pub fn client_id(params: &RawParams) -> Result<&str, PageError> {
    if params.is_repeated("client_id") {
        return Err(PageError::RepeatedClientId);
    }
    params.get("client_id").ok_or(PageError::MissingClientId)
}

/// With the client loaded (None = unknown): first the exact redirect URI (simple string comparison, RFC 9700 §4.1.3; OIDC Core requires redirect_uri, so missing → page), then everything else.
pub fn validate(
    params: &RawParams,
    client: Option<&ClientView>,
    require_pkce: bool,
) -> Result<AuthorizationRequest, Result<RedirectError, PageError>> {
    // Stage 1: errors shown on a page.
    let client_id = client_id(params).map_err(Err)?;
    let client = match client {
        Some(client) if client.client_id == client_id => client,
        _ => return Err(Err(PageError::UnknownClient)),
    };
    let redirect_uri = parse_redirect_uri(params, client).map_err(Err)?;

    // Stage 2: errors redirected. RFC 6749 §4.1.2.1: `state` goes back
    // exactly as received; a repeated one has no single value to echo.
    let state = if params.is_repeated("state") {
        None
    } else {
        params.get("state").map(str::to_owned)
    };
    let redirect_error = |response_mode, error| {
        Err(Ok(RedirectError {
            redirect_uri: redirect_uri.to_owned(),
            response_mode,
            state: state.clone(),
            error,
        }))
    };
    // Read first so that every later error travels the way the client asked.
    let response_mode = match parse_response_mode(params) {
        Ok(mode) => mode,
        Err(error) => return redirect_error(ResponseMode::Query, error),
    };
    let checked: Result<AuthorizationRequest, OAuthError> = (|| {
        check_no_repeated_params(params)?;
        check_lengths(params)?;
        check_no_request_object(params)?;
        check_response_type(params)?;
        let scope = parse_scope(params, client)?;
        let prompt = parse_prompt(params)?;
        let max_age = parse_max_age(params)?;
        let code_challenge = parse_code_challenge(params, client.public || require_pkce)?;
        Ok(AuthorizationRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scope,
            state: state.clone(),
            nonce: params.get("nonce").map(str::to_owned),
            code_challenge,
            response_mode,
            prompt,
            max_age,
            login_hint: params.get("login_hint").map(str::to_owned),
            id_token_hint: params.get("id_token_hint").map(str::to_owned),
            acr_values: parse_acr_values(params),
        })
    })();
    checked.or_else(|error| redirect_error(response_mode, error))
}

/// OpenID Connect Core §3.1.2.1 makes `redirect_uri` REQUIRED; it must equal
/// a registered URI character for character (RFC 9700 §4.1.3, RFC 3986
/// §6.2.1 simple string comparison: no normalisation of case, port, path or
/// trailing slash).
fn parse_redirect_uri<'p>(
    params: &'p RawParams,
    client: &ClientView,
) -> Result<&'p str, PageError> {
    if params.is_repeated("redirect_uri") {
        return Err(PageError::RepeatedRedirectUri);
    }
    let uri = params
        .get("redirect_uri")
        .ok_or(PageError::MissingRedirectUri)?;
    if client
        .redirect_uris
        .iter()
        .any(|registered| registered == uri)
    {
        Ok(uri)
    } else {
        Err(PageError::RedirectUriMismatch)
    }
}

/// OAuth 2.0 Multiple Response Type Encoding Practices §2.1; `form_post` from
/// OAuth 2.0 Form Post Response Mode §2. `fragment` is for implicit flows,
/// which this server does not offer (RFC 9700 §2.1.2).
fn parse_response_mode(params: &RawParams) -> Result<ResponseMode, OAuthError> {
    if params.is_repeated("response_mode") {
        return Err(OAuthError::invalid_request(
            "response_mode must not be repeated",
        ));
    }
    match params.get("response_mode") {
        None | Some("query") => Ok(ResponseMode::Query),
        Some("form_post") => Ok(ResponseMode::FormPost),
        Some(_) => Err(OAuthError::invalid_request(
            "response_mode not supported: use query or form_post",
        )),
    }
}

/// RFC 6749 §3.1: "Request and response parameters MUST NOT be included more
/// than once."
fn check_no_repeated_params(params: &RawParams) -> Result<(), OAuthError> {
    match params.repeated.iter().next() {
        None => Ok(()),
        Some(name) => {
            // The name is the client's own input; bounded so the redirect is too.
            let name: String = name.chars().take(64).collect();
            Err(OAuthError::invalid_request(format!(
                "parameter {name} must not be repeated"
            )))
        }
    }
}

/// OpenID Connect Core §6 request objects are not supported, so §3.1.2.6's
/// dedicated codes apply. (Discovery 1.0 §3: `request_parameter_supported`
/// defaults to false, but `request_uri_parameter_supported` defaults to true,
/// so discovery must publish it as false.)
fn check_no_request_object(params: &RawParams) -> Result<(), OAuthError> {
    if params.get("request").is_some() {
        return Err(OAuthError::new(
            OAuthErrorCode::RequestNotSupported,
            "the request parameter is not supported",
        ));
    }
    if params.get("request_uri").is_some() {
        return Err(OAuthError::new(
            OAuthErrorCode::RequestUriNotSupported,
            "the request_uri parameter is not supported",
        ));
    }
    Ok(())
}

/// RFC 6749 §4.1.1: `response_type` is REQUIRED; only the authorization code
/// flow is offered (RFC 9700 §2.1.2).
fn check_response_type(params: &RawParams) -> Result<(), OAuthError> {
    match params.get("response_type") {
        None => Err(OAuthError::invalid_request("response_type required")),
        Some("code") => Ok(()),
        Some(_) => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedResponseType,
            "only response_type=code is supported",
        )),
    }
}

/// OpenID Connect Core §3.1.2.1: `scope` must hold `openid`. Scopes this
/// server does not know, or this client may not use, are dropped rather than
/// refused (RFC 6749 §3.3 lets the server grant less than asked).
fn parse_scope(params: &RawParams, client: &ClientView) -> Result<Scopes, OAuthError> {
    let requested = Scopes::parse(params.get("scope").unwrap_or(""));
    if !requested.contains("openid") {
        return Err(OAuthError::invalid_scope("scope must include openid"));
    }
    let supported = SUPPORTED_SCOPES.map(str::to_owned);
    let granted = requested
        .intersect(&supported)
        .intersect(client.allowed_scopes);
    if !granted.contains("openid") {
        return Err(OAuthError::invalid_scope(
            "this client may not use the openid scope",
        ));
    }
    Ok(granted)
}

/// OpenID Connect Core §3.1.2.1 `prompt`: a space-delimited list; `none`
/// "MUST NOT" be combined with any other value.
fn parse_prompt(params: &RawParams) -> Result<Prompt, OAuthError> {
    let mut prompt = Prompt::default();
    let Some(value) = params.get("prompt") else {
        return Ok(prompt);
    };
    for token in value.split(' ').filter(|t| !t.is_empty()) {
        match token {
            "none" => prompt.none = true,
            "login" | "select_account" => prompt.login = true,
            "consent" => prompt.consent = true,
            _ => {
                return Err(OAuthError::invalid_request(
                    "prompt values must be none, login, consent or select_account",
                ));
            }
        }
    }
    if prompt.none && (prompt.login || prompt.consent) {
        return Err(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        ));
    }
    Ok(prompt)
}

/// OpenID Connect Core §3.1.2.1 `max_age`: seconds, a non-negative integer
/// (digits only: no sign, no fraction, no spaces).
fn parse_max_age(params: &RawParams) -> Result<Option<u64>, OAuthError> {
    let Some(value) = params.get("max_age") else {
        return Ok(None);
    };
    let invalid = || OAuthError::invalid_request("max_age must be a non-negative integer");
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    value.parse::<u64>().map(Some).map_err(|_| invalid())
}

/// RFC 7636 §4.3/§4.4.1 and RFC 9700 §2.1.1: a challenge is required from
/// public clients (and from every client when the server requires PKCE), and
/// a challenge that is sent is always checked, whoever sends it.
fn parse_code_challenge(params: &RawParams, required: bool) -> Result<Option<String>, OAuthError> {
    let method = params.get("code_challenge_method");
    match params.get("code_challenge") {
        None if required => Err(OAuthError::invalid_request("code_challenge required")),
        None if method.is_some() => Err(OAuthError::invalid_request(
            "code_challenge_method sent without code_challenge",
        )),
        None => Ok(None),
        Some(challenge) => {
            pkce::check_code_challenge_method(method)?;
            pkce::check_code_challenge(challenge)?;
            Ok(Some(challenge.to_owned()))
        }
    }
}

/// OpenID Connect Core §3.1.2.1 `acr_values`: space-separated, in order of
/// preference. Values this server does not know are kept: the interaction
/// decides what each one asks for.
fn parse_acr_values(params: &RawParams) -> Vec<String> {
    params
        .get("acr_values")
        .map(|v| {
            v.split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The most the stored parameters may take together, in bytes (UTF-8), so
/// an anonymous request can add only a bounded row (audit issue 14, item 6).
pub const MAX_STORED_PARAMS_BYTES: usize = 16 * 1024;

/// Every parameter the interaction stores, echoes or may store (OpenID
/// Connect Core §3.1.2.1), with its longest value in characters. Unknown
/// parameters are ignored and never stored (RFC 6749 §3.1), so they need
/// no bound here beyond the request body's.
const PARAM_LIMITS: &[(&str, usize)] = &[
    ("state", MAX_PARAM_CHARS),
    ("nonce", MAX_PARAM_CHARS),
    ("login_hint", MAX_PARAM_CHARS),
    ("scope", MAX_PARAM_CHARS),
    ("acr_values", MAX_PARAM_CHARS),
    ("claims", MAX_PARAM_CHARS),
    ("ui_locales", 256),
    ("claims_locales", 256),
    ("display", 64),
    ("prompt", 64),
    ("max_age", 64),
    ("id_token_hint", crate::protocol::logout::MAX_HINT_CHARS),
];

/// Values the interaction stores and echoes are bounded, each (`PARAM_LIMITS`)
/// and together (`MAX_STORED_PARAMS_BYTES`); the excess is `invalid_request`
/// (RFC 6749 §4.1.2.1), never truncated.
fn check_lengths(params: &RawParams) -> Result<(), OAuthError> {
    let mut total = 0;
    for (name, limit) in PARAM_LIMITS {
        let Some(value) = params.get(name) else {
            continue;
        };
        if value.len() > *limit && value.chars().count() > *limit {
            return Err(OAuthError::invalid_request(format!(
                "{name} must be at most {limit} characters"
            )));
        }
        total += value.len();
    }
    if total > MAX_STORED_PARAMS_BYTES {
        return Err(OAuthError::invalid_request(format!(
            "the request parameters must be at most {MAX_STORED_PARAMS_BYTES} bytes together"
        )));
    }
    Ok(())
}

/// `redirect_uri` with `params` appended to its query, keeping any query it already has (RFC 6749 §3.1.2) and encoding properly.
///
/// The URI is not parsed and re-serialised: it was matched character for
/// character against a registered one, and normalising it (as a URL parser
/// does) would send the browser somewhere else than registered. Parameters
/// are `application/x-www-form-urlencoded` (RFC 6749 §4.1.2, Appendix B).
/// A fragment, which RFC 6749 §3.1.2 forbids in registered URIs, would stay
/// after the query.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let (base, fragment) = match redirect_uri.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (redirect_uri, None),
    };
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut out = String::with_capacity(redirect_uri.len() + encoded.len() + 1);
    out.push_str(base);
    if !encoded.is_empty() {
        if !base.contains('?') {
            out.push('?');
        } else if !base.ends_with('?') && !base.ends_with('&') {
            out.push('&');
        }
        out.push_str(&encoded);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_ID: &str = "nao-cloud";
    const REDIRECT_URI: &str = "https://rp.example.com/cb";
    /// RFC 7636 Appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    struct Client {
        redirect_uris: Vec<String>,
        allowed_scopes: Vec<String>,
    }

    impl Client {
        fn new() -> Self {
            Self {
                redirect_uris: vec![
                    REDIRECT_URI.to_owned(),
                    "http://127.0.0.1:8080/callback".to_owned(),
                ],
                allowed_scopes: SUPPORTED_SCOPES.map(str::to_owned).to_vec(),
            }
        }

        fn view(&self, public: bool) -> ClientView<'_> {
            ClientView {
                client_id: CLIENT_ID,
                redirect_uris: &self.redirect_uris,
                public,
                allowed_scopes: &self.allowed_scopes,
            }
        }
    }

    /// A complete, valid request.
    fn base() -> Vec<(String, String)> {
        [
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("response_type", "code"),
            ("scope", "openid email"),
            ("state", "af0ifjsldkj"),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// `base()` with `name` set to `value` (an empty value removes it).
    fn set(name: &str, value: &str) -> Vec<(String, String)> {
        with(base(), name, value)
    }

    fn with(mut pairs: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
        pairs.retain(|(k, _)| k != name);
        if !value.is_empty() {
            pairs.push((name.to_owned(), value.to_owned()));
        }
        pairs
    }

    fn push(mut pairs: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
        pairs.push((name.to_owned(), value.to_owned()));
        pairs
    }

    fn run(
        pairs: Vec<(String, String)>,
    ) -> Result<AuthorizationRequest, Result<RedirectError, PageError>> {
        let client = Client::new();
        validate(
            &RawParams::from_pairs(pairs),
            Some(&client.view(false)),
            false,
        )
    }

    fn page_error(pairs: Vec<(String, String)>) -> PageError {
        match run(pairs) {
            Err(Err(e)) => e,
            other => panic!("expected a page error, got {other:?}"),
        }
    }

    fn redirect_error(pairs: Vec<(String, String)>) -> RedirectError {
        redirect_error_of(run(pairs))
    }

    fn redirect_error_of(
        result: Result<AuthorizationRequest, Result<RedirectError, PageError>>,
    ) -> RedirectError {
        match result {
            Err(Ok(e)) => e,
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    /// Asserts the code, and that the error goes to the trusted URI with the
    /// state echoed.
    fn assert_redirect(e: &RedirectError, code: OAuthErrorCode) {
        assert_eq!(e.error.code, code, "{e:?}");
        assert_eq!(e.redirect_uri, REDIRECT_URI);
        assert_eq!(e.state.as_deref(), Some("af0ifjsldkj"));
    }

    // ---- the happy path

    #[test]
    fn a_valid_request_is_accepted() {
        let pairs = push(
            push(set("prompt", "login consent"), "max_age", "3600"),
            "acr_values",
            "urn:stepgate:acr:mfa  urn:stepgate:acr:pwd",
        );
        let pairs = push(
            push(pairs, "login_hint", "ada@example.com"),
            "id_token_hint",
            "eyJ.x.y",
        );
        let req = run(pairs).unwrap();
        assert_eq!(
            req,
            AuthorizationRequest {
                client_id: CLIENT_ID.into(),
                redirect_uri: REDIRECT_URI.into(),
                scope: Scopes::parse("openid email"),
                state: Some("af0ifjsldkj".into()),
                nonce: Some("n-0S6_WzA2Mj".into()),
                code_challenge: Some(CHALLENGE.into()),
                response_mode: ResponseMode::Query,
                prompt: Prompt {
                    none: false,
                    login: true,
                    consent: true
                },
                max_age: Some(3600),
                login_hint: Some("ada@example.com".into()),
                id_token_hint: Some("eyJ.x.y".into()),
                acr_values: vec!["urn:stepgate:acr:mfa".into(), "urn:stepgate:acr:pwd".into()],
            }
        );
    }

    #[test]
    fn minimal_request_from_a_confidential_client_without_pkce() {
        let pairs = with(
            with(with(set("state", ""), "nonce", ""), "code_challenge", ""),
            "code_challenge_method",
            "",
        );
        let req = run(pairs).unwrap();
        assert_eq!(req.state, None);
        assert_eq!(req.nonce, None);
        assert_eq!(req.code_challenge, None);
        assert_eq!(req.prompt, Prompt::default());
        assert_eq!(req.max_age, None);
        assert!(req.acr_values.is_empty());
    }

    #[test]
    fn form_post_and_explicit_query_modes() {
        assert_eq!(
            run(set("response_mode", "form_post"))
                .unwrap()
                .response_mode,
            ResponseMode::FormPost
        );
        assert_eq!(
            run(set("response_mode", "query")).unwrap().response_mode,
            ResponseMode::Query
        );
    }

    #[test]
    fn unknown_and_disallowed_scopes_are_dropped() {
        let client = Client {
            allowed_scopes: vec!["openid".into(), "profile".into()],
            ..Client::new()
        };
        let pairs = set("scope", "openid profile email admin");
        let req = validate(
            &RawParams::from_pairs(pairs),
            Some(&client.view(false)),
            false,
        )
        .unwrap();
        assert_eq!(req.scope.to_wire(), "openid profile");
    }

    #[test]
    fn prompt_select_account_reads_as_login_and_none_alone_is_fine() {
        assert!(run(set("prompt", "select_account")).unwrap().prompt.login);
        let none = run(set("prompt", "none")).unwrap().prompt;
        assert_eq!(
            none,
            Prompt {
                none: true,
                login: false,
                consent: false
            }
        );
        assert_eq!(run(set("max_age", "0")).unwrap().max_age, Some(0));
    }

    #[test]
    fn ignored_parameters_cause_no_error() {
        let mut pairs = base();
        for (k, v) in [
            ("display", "popup"),
            ("ui_locales", "fr-CA fr"),
            ("claims_locales", "fr"),
            ("claims", r#"{"userinfo":{"email":null}}"#),
            ("something_else", "x"),
        ] {
            pairs = push(pairs, k, v);
        }
        assert!(run(pairs).is_ok());
    }

    #[test]
    fn empty_values_count_as_absent_not_repeated() {
        let pairs = push(push(base(), "client_id", ""), "prompt", "");
        let req = run(pairs).unwrap();
        assert_eq!(req.prompt, Prompt::default());
    }

    #[test]
    fn public_client_with_pkce_and_loopback_redirect() {
        let client = Client::new();
        let pairs = set("redirect_uri", "http://127.0.0.1:8080/callback");
        let req = validate(
            &RawParams::from_pairs(pairs),
            Some(&client.view(true)),
            false,
        )
        .unwrap();
        assert_eq!(req.redirect_uri, "http://127.0.0.1:8080/callback");
        assert_eq!(req.code_challenge.as_deref(), Some(CHALLENGE));
    }

    // ---- page errors

    #[test]
    fn client_id_missing() {
        assert_eq!(page_error(set("client_id", "")), PageError::MissingClientId);
        assert_eq!(
            client_id(&RawParams::default()),
            Err(PageError::MissingClientId)
        );
    }

    #[test]
    fn client_id_repeated() {
        assert_eq!(
            page_error(push(base(), "client_id", CLIENT_ID)),
            PageError::RepeatedClientId
        );
        assert_eq!(
            page_error(push(base(), "client_id", "other")),
            PageError::RepeatedClientId
        );
    }

    #[test]
    fn client_unknown() {
        let params = RawParams::from_pairs(base());
        assert_eq!(
            validate(&params, None, false).unwrap_err(),
            Err(PageError::UnknownClient)
        );
        // A client record that is not the one the request names.
        let client = Client::new();
        let other = ClientView {
            client_id: "other",
            ..client.view(false)
        };
        assert_eq!(
            validate(&params, Some(&other), false).unwrap_err(),
            Err(PageError::UnknownClient)
        );
    }

    #[test]
    fn redirect_uri_missing() {
        assert_eq!(
            page_error(set("redirect_uri", "")),
            PageError::MissingRedirectUri
        );
    }

    #[test]
    fn redirect_uri_repeated() {
        assert_eq!(
            page_error(push(base(), "redirect_uri", REDIRECT_URI)),
            PageError::RepeatedRedirectUri
        );
    }

    /// RFC 9700 §4.1.3: a redirect URI that differs in any way gets a page,
    /// never a redirect.
    #[test]
    fn redirect_uri_mismatch_in_any_way() {
        for uri in [
            "https://rp.example.com/cb/",
            "https://rp.example.com/CB",
            "https://RP.example.com/cb",
            "HTTPS://rp.example.com/cb",
            "http://rp.example.com/cb",
            "https://rp.example.com:443/cb",
            "https://rp.example.com/cb?x=1",
            "https://rp.example.com/cb#",
            "https://rp.example.com/other",
            "https://evil.example.com/cb",
            "http://127.0.0.1:8081/callback",
        ] {
            assert_eq!(
                page_error(set("redirect_uri", uri)),
                PageError::RedirectUriMismatch,
                "{uri}"
            );
        }
    }

    #[test]
    fn page_errors_have_words_for_people() {
        for e in [
            PageError::MissingClientId,
            PageError::RepeatedClientId,
            PageError::UnknownClient,
            PageError::MissingRedirectUri,
            PageError::RepeatedRedirectUri,
            PageError::RedirectUriMismatch,
        ] {
            assert!(!e.title().is_empty());
            assert!(e.message().ends_with('.'), "{e:?}");
        }
    }

    // ---- redirect errors

    #[test]
    fn response_mode_unsupported_is_sent_by_query() {
        let e = redirect_error(set("response_mode", "fragment"));
        assert_redirect(&e, OAuthErrorCode::InvalidRequest);
        assert_eq!(e.response_mode, ResponseMode::Query);
    }

    #[test]
    fn response_mode_repeated_is_sent_by_query() {
        let pairs = push(
            set("response_mode", "form_post"),
            "response_mode",
            "form_post",
        );
        let e = redirect_error(pairs);
        assert_redirect(&e, OAuthErrorCode::InvalidRequest);
        assert_eq!(e.response_mode, ResponseMode::Query);
    }

    #[test]
    fn later_errors_use_the_requested_response_mode() {
        let pairs = with(set("response_mode", "form_post"), "response_type", "token");
        let e = redirect_error(pairs);
        assert_redirect(&e, OAuthErrorCode::UnsupportedResponseType);
        assert_eq!(e.response_mode, ResponseMode::FormPost);
    }

    #[test]
    fn repeated_parameter() {
        for name in [
            "scope",
            "response_type",
            "nonce",
            "prompt",
            "code_challenge",
            "unknown_thing",
        ] {
            let e = redirect_error(push(push(base(), name, "a"), name, "b"));
            assert_redirect(&e, OAuthErrorCode::InvalidRequest);
            assert!(e.error.description.contains(name), "{e:?}");
        }
    }

    #[test]
    fn repeated_state_is_not_echoed() {
        let e = redirect_error(push(base(), "state", "second"));
        assert_eq!(e.error.code, OAuthErrorCode::InvalidRequest);
        assert_eq!(e.state, None);
    }

    #[test]
    fn request_object_not_supported() {
        let e = redirect_error(push(base(), "request", "eyJhbGciOiJub25lIn0.e30."));
        assert_redirect(&e, OAuthErrorCode::RequestNotSupported);
    }

    #[test]
    fn request_uri_not_supported() {
        let e = redirect_error(push(base(), "request_uri", "https://rp.example.com/r/1"));
        assert_redirect(&e, OAuthErrorCode::RequestUriNotSupported);
    }

    #[test]
    fn response_type_missing() {
        assert_redirect(
            &redirect_error(set("response_type", "")),
            OAuthErrorCode::InvalidRequest,
        );
    }

    #[test]
    fn response_type_unsupported() {
        for rt in ["token", "id_token", "code id_token", "Code", "code "] {
            let e = redirect_error(set("response_type", rt));
            assert_redirect(&e, OAuthErrorCode::UnsupportedResponseType);
        }
    }

    #[test]
    fn scope_without_openid() {
        assert_redirect(
            &redirect_error(set("scope", "profile email")),
            OAuthErrorCode::InvalidScope,
        );
        assert_redirect(
            &redirect_error(set("scope", "")),
            OAuthErrorCode::InvalidScope,
        );
        assert_redirect(
            &redirect_error(set("scope", "OpenID")),
            OAuthErrorCode::InvalidScope,
        );
    }

    #[test]
    fn scope_openid_not_allowed_for_the_client() {
        let client = Client {
            allowed_scopes: vec!["profile".into()],
            ..Client::new()
        };
        let e = redirect_error_of(validate(
            &RawParams::from_pairs(base()),
            Some(&client.view(false)),
            false,
        ));
        assert_redirect(&e, OAuthErrorCode::InvalidScope);
    }

    #[test]
    fn prompt_unknown_value() {
        for p in ["always", "None", "login,consent"] {
            assert_redirect(
                &redirect_error(set("prompt", p)),
                OAuthErrorCode::InvalidRequest,
            );
        }
    }

    #[test]
    fn prompt_none_with_another_value() {
        for p in ["none login", "consent none", "none select_account"] {
            assert_redirect(
                &redirect_error(set("prompt", p)),
                OAuthErrorCode::InvalidRequest,
            );
        }
    }

    #[test]
    fn max_age_not_a_non_negative_integer() {
        for v in ["-1", "+5", "1.5", "ten", " 5", "18446744073709551616"] {
            assert_redirect(
                &redirect_error(set("max_age", v)),
                OAuthErrorCode::InvalidRequest,
            );
        }
    }

    #[test]
    fn code_challenge_missing_for_a_public_client() {
        let client = Client::new();
        let pairs = with(
            with(base(), "code_challenge", ""),
            "code_challenge_method",
            "",
        );
        let e = redirect_error_of(validate(
            &RawParams::from_pairs(pairs),
            Some(&client.view(true)),
            false,
        ));
        assert_redirect(&e, OAuthErrorCode::InvalidRequest);
        assert_eq!(e.error.description, "code_challenge required");
    }

    #[test]
    fn code_challenge_missing_when_the_server_requires_pkce() {
        let client = Client::new();
        let pairs = with(
            with(base(), "code_challenge", ""),
            "code_challenge_method",
            "",
        );
        let e = redirect_error_of(validate(
            &RawParams::from_pairs(pairs),
            Some(&client.view(false)),
            true,
        ));
        assert_redirect(&e, OAuthErrorCode::InvalidRequest);
        assert_eq!(e.error.description, "code_challenge required");
    }

    #[test]
    fn code_challenge_method_plain_or_missing() {
        assert_redirect(
            &redirect_error(set("code_challenge_method", "plain")),
            OAuthErrorCode::InvalidRequest,
        );
        assert_redirect(
            &redirect_error(set("code_challenge_method", "")),
            OAuthErrorCode::InvalidRequest,
        );
    }

    #[test]
    fn code_challenge_malformed() {
        for c in [&CHALLENGE[..42], "not a challenge", &"a".repeat(128)] {
            assert_redirect(
                &redirect_error(set("code_challenge", c)),
                OAuthErrorCode::InvalidRequest,
            );
        }
    }

    #[test]
    fn code_challenge_method_without_challenge() {
        let e = redirect_error(set("code_challenge", ""));
        assert_redirect(&e, OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn nonce_too_long() {
        assert!(run(set("nonce", &"n".repeat(MAX_PARAM_CHARS))).is_ok());
        let e = redirect_error(set("nonce", &"n".repeat(MAX_PARAM_CHARS + 1)));
        assert_redirect(&e, OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn state_too_long() {
        let long = "s".repeat(MAX_PARAM_CHARS + 1);
        let e = redirect_error(set("state", &long));
        assert_eq!(e.error.code, OAuthErrorCode::InvalidRequest);
        assert_eq!(e.state.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn every_stored_parameter_is_bounded() {
        for (name, limit) in PARAM_LIMITS {
            let e = redirect_error(set(name, &"x".repeat(limit + 1)));
            assert_eq!(e.error.code, OAuthErrorCode::InvalidRequest, "{name}");
            assert_eq!(e.redirect_uri, REDIRECT_URI);
            let text = &e.error.description;
            assert!(text.contains(name), "{name}: {text}");
        }
        // An ID token of the usual size passes the length check (and fails,
        // if at all, only on what it says).
        let hint = format!("{}.{}.{}", "a".repeat(40), "b".repeat(900), "c".repeat(342));
        assert!(run(set("id_token_hint", &hint)).is_ok());
    }

    #[test]
    fn stored_parameters_are_bounded_together() {
        let mut pairs = base();
        for name in ["nonce", "login_hint", "acr_values", "claims"] {
            pairs = with(pairs, name, &"v".repeat(MAX_PARAM_CHARS));
        }
        pairs = with(pairs, "id_token_hint", &"h".repeat(8192));
        let e = redirect_error(pairs);
        assert_redirect(&e, OAuthErrorCode::InvalidRequest);
        assert!(e.error.description.contains("together"), "{e:?}");
    }

    #[test]
    fn a_length_counts_characters_not_bytes() {
        assert!(run(set("nonce", &"é".repeat(MAX_PARAM_CHARS))).is_ok());
    }

    #[test]
    fn login_hint_too_long() {
        let e = redirect_error(set("login_hint", &"h".repeat(MAX_PARAM_CHARS + 1)));
        assert_redirect(&e, OAuthErrorCode::InvalidRequest);
    }

    // ---- the error response

    #[test]
    fn redirect_error_carries_state_and_iss() {
        let e = redirect_error(set("response_type", ""));
        assert_eq!(
            e.location("https://id.example.com"),
            "https://rp.example.com/cb?error=invalid_request&error_description=response_type+required&state=af0ifjsldkj&iss=https%3A%2F%2Fid.example.com"
        );
        let no_state = redirect_error(with(set("response_type", ""), "state", ""));
        let names: Vec<_> = no_state
            .params("https://id.example.com")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(names, ["error", "error_description", "iss"]);
    }

    // ---- redirect_with

    #[test]
    fn redirect_with_adds_a_query() {
        assert_eq!(
            redirect_with(
                "https://rp.example.com/cb",
                &[("code", "abc"), ("state", "xyz")]
            ),
            "https://rp.example.com/cb?code=abc&state=xyz"
        );
    }

    #[test]
    fn redirect_with_keeps_an_existing_query() {
        assert_eq!(
            redirect_with(
                "https://rp.example.com/cb?tenant=a%20b&x",
                &[("code", "abc")]
            ),
            "https://rp.example.com/cb?tenant=a%20b&x&code=abc"
        );
        assert_eq!(
            redirect_with("https://rp.example.com/cb?", &[("code", "abc")]),
            "https://rp.example.com/cb?code=abc"
        );
        assert_eq!(
            redirect_with("https://rp.example.com/cb?a=1&", &[("code", "abc")]),
            "https://rp.example.com/cb?a=1&code=abc"
        );
    }

    #[test]
    fn redirect_with_encodes_characters() {
        assert_eq!(
            redirect_with(
                "http://127.0.0.1:8080/callback",
                &[
                    ("state", "a b&c=d/é#?+%"),
                    ("iss", "https://id.example.com/t")
                ]
            ),
            "http://127.0.0.1:8080/callback?state=a+b%26c%3Dd%2F%C3%A9%23%3F%2B%25&iss=https%3A%2F%2Fid.example.com%2Ft"
        );
    }

    #[test]
    fn redirect_with_nothing_to_add_or_a_fragment() {
        assert_eq!(
            redirect_with("https://rp.example.com/cb", &[]),
            "https://rp.example.com/cb"
        );
        assert_eq!(
            redirect_with("https://rp.example.com/cb#frag", &[("code", "abc")]),
            "https://rp.example.com/cb?code=abc#frag"
        );
    }
}
