//! Outgoing email: plain-text messages through the transport `email.transport`
//! names. `file` writes each message as an `.eml` file into `email.outbox_dir`
//! (a first run, development, tests); `smtp` hands it to an SMTP server over
//! pooled connections.
//!
//! Bodies carry single-use links (email confirmation, password reset), so no
//! log line and no error holds a body, the SMTP password or a full recipient
//! address: logs name the recipient's domain only.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailSettings, EmailTransport, SmtpSecurity};

/// One plain-text message to one recipient.
///
/// `Debug` shows the recipient's domain and the subject only: the body holds
/// single-use links.
#[derive(Clone)]
pub struct OutgoingEmail {
    /// The recipient's address, e.g. `alice@example.com`.
    pub to: String,
    pub subject: String,
    /// The plain-text body.
    pub text: String,
}

impl fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.to.rsplit_once('@').map_or("?", |(_, domain)| domain);
        f.debug_struct("OutgoingEmail")
            .field("to", &format_args!("…@{domain}"))
            .field("subject", &self.subject)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish()
    }
}

/// An absolute link for an email body: `base` (the issuer), `path`, and
/// `query` serialized by `url`'s form-urlencoded serializer. Every value is
/// percent-encoded, so none can end a line, start a header or add text or a
/// link of its own to the message (RFC 5322 §2.1.1 keeps each line under
/// 998 octets; the values are ours and short).
pub fn link(base: &str, path: &str, query: &[(&str, &str)]) -> String {
    let mut url = format!("{base}{path}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish(),
        );
    }
    url
}

/// Why a message was not sent. No variant holds the body, the SMTP password or
/// the recipient's address, and none keeps lettre's error as a source: an SMTP
/// server's reply text is copied in only after the password (in every form
/// AUTH sends it) and the recipient's address are cut out.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// The settings cannot make a transport.
    #[error("email settings: {0}")]
    Settings(String),
    /// The recipient is not an email address.
    #[error("the recipient is not a valid email address")]
    InvalidRecipient,
    /// The message could not be put together.
    #[error("could not build the message: {0}")]
    Message(String),
    /// The `file` transport could not write to the outbox.
    #[error("could not write to the outbox at {}: {source}", path.display())]
    Outbox {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The SMTP server could not be reached, failed, or refused the message;
    /// `permanent` when it answered with a 5xx code (retrying will not help).
    #[error("SMTP: {message}")]
    Smtp { message: String, permanent: bool },
    /// The SMTP exchange did not finish within `email.smtp_timeout_secs`.
    #[error("SMTP: the server did not finish within {0:?}")]
    Timeout(Duration),
    /// The runtime shut down before the message was handed over.
    #[error("sending was interrupted by shutdown")]
    Interrupted,
}

/// Sends email through the configured transport. Cheap to clone: clones share
/// one transport (and, for SMTP, one connection pool).
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    from: Mailbox,
    transport: Transport,
}

enum Transport {
    File { outbox_dir: PathBuf },
    Smtp(SmtpSender),
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Mailer");
        match &self.inner.transport {
            Transport::File { outbox_dir } => s
                .field("transport", &"file")
                .field("outbox_dir", outbox_dir),
            Transport::Smtp(smtp) => s
                .field("transport", &"smtp")
                .field("host", &smtp.settings.smtp_host)
                .field("port", &smtp.settings.smtp_port),
        }
        .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Builds the transport once. The SMTP transport starts lettre's pool
    /// maintenance task, so it must be built inside a Tokio runtime; outside
    /// one this is an error, not a panic.
    pub fn from_settings(settings: &EmailSettings) -> Result<Mailer, EmailError> {
        let from: Mailbox = settings.from.parse().map_err(|_| {
            EmailError::Settings(format!(
                "key `email.from`: not an email address (got {:?})",
                settings.from
            ))
        })?;
        let transport = match settings.transport {
            EmailTransport::File => Transport::File {
                outbox_dir: settings.outbox_dir.clone(),
            },
            EmailTransport::Smtp => Transport::Smtp(SmtpSender::new(settings)?),
        };
        Ok(Mailer {
            inner: Arc::new(Inner { from, transport }),
        })
    }

    /// Sends one message. An invalid recipient is `EmailError::InvalidRecipient`.
    /// Over SMTP the whole exchange (connecting, TLS, authentication, the
    /// message) must finish within `email.smtp_timeout_secs`.
    ///
    /// The delivery runs on its own task, so it finishes (or times out) even
    /// when the caller is cancelled: an SMTP exchange abandoned halfway would
    /// leave a pooled connection in the middle of a transaction.
    pub async fn send(&self, email: OutgoingEmail) -> Result<(), EmailError> {
        let to: Mailbox = email
            .to
            .trim()
            .parse()
            .map_err(|_| EmailError::InvalidRecipient)?;
        let to_domain = to.email.domain().to_owned();
        let message = self.inner.message(to, email.subject, email.text)?;
        let inner = Arc::clone(&self.inner);
        match tokio::spawn(async move { inner.deliver(message, &to_domain).await }).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(EmailError::Interrupted),
        }
    }
}

impl Inner {
    fn message(&self, to: Mailbox, subject: String, text: String) -> Result<Message, EmailError> {
        // RFC 5322 §3.6.4: a unique id; the sender's domain rather than lettre's
        // default (this machine's host name, which recipients need not learn).
        let random = random_hex::<16>()
            .map_err(|_| EmailError::Message("the system random number generator failed".into()))?;
        let message_id = format!("<{random}@{}>", self.from.email.domain());
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id))
            // `singlepart` adds MIME-Version (RFC 2045 §4), which `body` leaves out.
            .singlepart(
                SinglePart::builder()
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .body(plain_8bit_body(&text)?),
            )
            .map_err(|e| EmailError::Message(e.to_string()))
    }

    async fn deliver(&self, message: Message, to_domain: &str) -> Result<(), EmailError> {
        match &self.transport {
            Transport::File { outbox_dir } => {
                let dir = outbox_dir.clone();
                let bytes = message.formatted();
                let path = tokio::task::spawn_blocking(move || write_to_outbox(&dir, &bytes))
                    .await
                    .map_err(|_| EmailError::Interrupted)??;
                tracing::info!(path = %path.display(), to_domain, "wrote an email to the outbox");
            }
            Transport::Smtp(smtp) => {
                smtp.send(message).await?;
                tracing::info!(to_domain, "sent an email over SMTP");
            }
        }
        Ok(())
    }
}

/// The body as 8bit text, never quoted-printable or base64: the single-use
/// links in our emails must stay intact and clickable in any reader, and
/// quoted-printable would break them across lines (`=` becomes `=3D`). 8bit
/// only requires lines under 998 octets (RFC 5322 §2.1.1), which lettre's own
/// chooser does not know (it picks quoted-printable past 76), so the body is
/// encoded here: CRLF line ends, each line checked.
fn plain_8bit_body(text: &str) -> Result<lettre::message::Body, EmailError> {
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    if crlf.split("\r\n").any(|line| line.len() > 998) || crlf.contains('\0') {
        return Err(EmailError::Message(
            "a line of the body is longer than 998 octets".into(),
        ));
    }
    Ok(lettre::message::Body::dangerous_pre_encoded(
        crlf.into_bytes(),
        lettre::message::header::ContentTransferEncoding::EightBit,
    ))
}

/// Writes `bytes` as `<unix-millis>-<random>.eml` in `dir` (created when
/// missing): first to a hidden temporary file, then renamed, so a reader of
/// `*.eml` never sees half a message. Mode 0600: bodies hold single-use links.
fn write_to_outbox(dir: &Path, bytes: &[u8]) -> Result<PathBuf, EmailError> {
    let outbox_error = |path: &Path, source| EmailError::Outbox {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(|e| outbox_error(dir, e))?;
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let random = random_hex::<8>().map_err(|e| outbox_error(dir, e))?;
    // Messages written in the same millisecond keep their order through a
    // per-process sequence number; the random part keeps nodes sharing one
    // outbox apart.
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000_000;
    // 13 digits until the year 2286, so names sort by time as strings too.
    let name = format!("{millis:013}-{seq:06}-{random}.eml");
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
        .map(|()| path.clone())
        .map_err(|e| outbox_error(&path, e))
}

/// `N` random bytes from the system RNG, as lowercase hex.
fn random_hex<const N: usize>() -> io::Result<String> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| io::Error::other("the system RNG failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The SMTP transport, replaced by a fresh one when an exchange times out.
///
/// lettre applies `timeout` to the TCP connect only; a server that accepts and
/// then stalls would hold a send forever, so `send` puts its own deadline
/// around the whole exchange. Abandoning an exchange that way leaves its
/// connection in lettre's pool mid-transaction (lettre cannot tell), where the
/// next send would read the stale replies; so the pool is dropped with it.
struct SmtpSender {
    settings: EmailSettings,
    timeout: Duration,
    /// Strings cut out of SMTP error messages: the password, and the base64
    /// forms AUTH PLAIN and AUTH LOGIN send it in.
    secrets: Vec<String>,
    transport: Mutex<Arc<AsyncSmtpTransport<Tokio1Executor>>>,
}

impl SmtpSender {
    fn new(settings: &EmailSettings) -> Result<SmtpSender, EmailError> {
        if settings.smtp_host.trim().is_empty() {
            return Err(EmailError::Settings(
                "key `email.smtp_host`: must not be empty".into(),
            ));
        }
        if settings.smtp_timeout_secs == 0 {
            return Err(EmailError::Settings(
                "key `email.smtp_timeout_secs`: must be at least 1".into(),
            ));
        }
        // A user name without a password is most often a password variable
        // that did not reach the process; better to say so now than at the
        // first sign-up.
        if settings.smtp_username.is_empty() != settings.smtp_password.is_empty() {
            return Err(EmailError::Settings(
                "keys `email.smtp_username` and `email.smtp_password`: set both, or neither for no authentication".into(),
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(EmailError::Settings(
                "the SMTP transport must be built inside a Tokio runtime".into(),
            ));
        }
        if settings.smtp_security == SmtpSecurity::None
            && !settings.smtp_username.is_empty()
            && !is_local_host(&settings.smtp_host)
        {
            tracing::warn!(
                host = %settings.smtp_host,
                "email.smtp_security is `none`: the SMTP password crosses the network unencrypted"
            );
        }
        let secrets = if settings.smtp_password.is_empty() {
            Vec::new()
        } else {
            let (user, password) = (&settings.smtp_username, &settings.smtp_password);
            vec![
                password.clone(),
                STANDARD.encode(format!("\0{user}\0{password}")),
                STANDARD.encode(password),
            ]
        };
        Ok(SmtpSender {
            settings: settings.clone(),
            timeout: Duration::from_secs(settings.smtp_timeout_secs),
            secrets,
            transport: Mutex::new(Arc::new(build_smtp_transport(settings)?)),
        })
    }

    fn current(&self) -> Arc<AsyncSmtpTransport<Tokio1Executor>> {
        Arc::clone(&self.transport.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn send(&self, message: Message) -> Result<(), EmailError> {
        // Servers quote the recipient in their replies ("550 5.1.1 <alice@…>:
        // Recipient address rejected").
        let recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let transport = self.current();
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) if e.is_timeout() => Err(EmailError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(EmailError::Smtp {
                message: redact(&redact(&e.to_string(), &self.secrets), &recipients),
                permanent: e.is_permanent(),
            }),
            Err(_elapsed) => {
                self.replace(&transport);
                Err(EmailError::Timeout(self.timeout))
            }
        }
    }

    /// Swaps in a fresh transport unless another send already did. Sends
    /// still running on the old one finish on it; its pool goes when they do.
    fn replace(&self, stale: &Arc<AsyncSmtpTransport<Tokio1Executor>>) {
        let mut current = self.transport.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current, stale) {
            return;
        }
        match build_smtp_transport(&self.settings) {
            Ok(fresh) => {
                *current = Arc::new(fresh);
                tracing::warn!(
                    host = %self.settings.smtp_host,
                    "the SMTP server did not answer in time; starting over with new connections"
                );
            }
            Err(e) => tracing::warn!(error = %e, "could not rebuild the SMTP transport"),
        }
    }
}

impl Drop for SmtpSender {
    fn drop(&mut self) {
        // lettre's pool spawns a task when dropped, which panics outside a
        // Tokio runtime (a Mailer that outlives its runtime). Then leak it:
        // the runtime, and most likely the process, is ending anyway.
        if tokio::runtime::Handle::try_current().is_err() {
            let transport = self.transport.get_mut().unwrap_or_else(|e| e.into_inner());
            std::mem::forget(Arc::clone(transport));
        }
    }
}

fn build_smtp_transport(
    settings: &EmailSettings,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
    type Smtp = AsyncSmtpTransport<Tokio1Executor>;
    let host = settings.smtp_host.trim();
    let builder = match settings.smtp_security {
        SmtpSecurity::Starttls => Smtp::starttls_relay(host),
        SmtpSecurity::Tls => Smtp::relay(host),
        SmtpSecurity::None => Ok(Smtp::builder_dangerous(host)),
    }
    .map_err(|e| EmailError::Settings(format!("key `email.smtp_host`: {e}")))?;
    let mut builder = builder
        .port(settings.smtp_port)
        .timeout(Some(Duration::from_secs(settings.smtp_timeout_secs)));
    if !settings.smtp_username.is_empty() {
        builder = builder.credentials(Credentials::new(
            settings.smtp_username.clone(),
            settings.smtp_password.clone(),
        ));
    }
    Ok(builder.build())
}

fn is_local_host(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `text` with each of `secrets` replaced by `[redacted]`; ASCII letters match
/// in either case (servers may change an address's case, a password matches
/// only itself or something longer).
fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let needle = secret.to_ascii_lowercase();
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        // ASCII lowercasing keeps every byte offset, so a match in the
        // lowered copy is a match at the same offsets in the original.
        while let Some(at) = rest.to_ascii_lowercase().find(&needle) {
            out.push_str(&rest[..at]);
            out.push_str("[redacted]");
            rest = &rest[at + needle.len()..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let name = format!(
                "stepgate-email-test-{}-{}",
                std::process::id(),
                random_hex::<8>().unwrap()
            );
            TempDir(std::env::temp_dir().join(name))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn file_settings(outbox_dir: &Path) -> EmailSettings {
        EmailSettings {
            transport: EmailTransport::File,
            outbox_dir: outbox_dir.to_owned(),
            from: "Stepgate <no-reply@stepgate.test>".into(),
            ..EmailSettings::default()
        }
    }

    fn smtp_settings() -> EmailSettings {
        EmailSettings {
            transport: EmailTransport::Smtp,
            smtp_host: "127.0.0.1".into(),
            smtp_port: 2525,
            smtp_security: SmtpSecurity::None,
            ..EmailSettings::default()
        }
    }

    fn email(to: &str, subject: &str, text: &str) -> OutgoingEmail {
        OutgoingEmail {
            to: to.into(),
            subject: subject.into(),
            text: text.into(),
        }
    }

    /// The `.eml` files in `dir`, sorted by name, and whether anything else is there.
    fn outbox(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        for file in &files {
            assert_eq!(
                file.extension().and_then(|e| e.to_str()),
                Some("eml"),
                "only .eml files are left in the outbox: {}",
                file.display()
            );
        }
        files
    }

    /// An RFC 5322 message split into unfolded headers and a decoded body.
    struct Parsed {
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Parsed {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn parse_eml(bytes: &[u8]) -> Parsed {
        let text = std::str::from_utf8(bytes).expect("a formatted message is UTF-8");
        assert!(
            !text.replace("\r\n", "").contains(['\r', '\n']),
            "every line ends in CRLF"
        );
        let (head, body) = text
            .split_once("\r\n\r\n")
            .expect("a blank line after the headers");
        // Headers stay 7-bit (RFC 2047 encodes the rest); only an 8bit body may not.
        assert!(head.is_ascii(), "8-bit data in the headers");
        // The line break that ends the last body line belongs to the format.
        let body = body.strip_suffix("\r\n").unwrap_or(body);
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                headers
                    .last_mut()
                    .expect("a folded line follows a header")
                    .1 += line;
            } else {
                let (name, value) = line.split_once(':').expect("a header line has a colon");
                headers.push((name.to_owned(), value.trim().to_owned()));
            }
        }
        let mut parsed = Parsed {
            headers,
            body: String::new(),
        };
        parsed.body = match parsed.header("Content-Transfer-Encoding") {
            None | Some("7bit") | Some("8bit") => body.to_owned(),
            Some("base64") => {
                String::from_utf8(STANDARD.decode(body.replace("\r\n", "")).unwrap()).unwrap()
            }
            Some(other) => panic!("unexpected Content-Transfer-Encoding {other}"),
        };
        parsed
    }

    /// RFC 2047 `=?utf-8?b?…?=` words; whitespace between two of them is dropped (§6.2).
    fn decode_encoded_words(text: &str) -> String {
        let mut out = String::new();
        let mut previous_encoded = false;
        for word in text.split_whitespace() {
            let encoded = word
                .strip_prefix("=?utf-8?b?")
                .and_then(|w| w.strip_suffix("?="));
            let joined_to_previous = previous_encoded && encoded.is_some();
            if !out.is_empty() && !joined_to_previous {
                out.push(' ');
            }
            match encoded {
                Some(b64) => out += &String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap(),
                None => out += word,
            }
            previous_encoded = encoded.is_some();
        }
        out
    }

    #[test]
    fn links_encode_every_value() {
        assert_eq!(
            link("https://id.example.com", "/login", &[]),
            "https://id.example.com/login"
        );
        assert_eq!(
            link(
                "https://id.example.com",
                "/confirm",
                &[("token", "abc"), ("interaction", "x\r\nBcc: e@x & y=z")]
            ),
            "https://id.example.com/confirm?token=abc&interaction=x%0D%0ABcc%3A+e%40x+%26+y%3Dz"
        );
    }

    #[tokio::test]
    async fn long_links_stay_whole_on_one_line() {
        let dir = TempDir::new();
        let mailer = Mailer::from_settings(&file_settings(&dir.0)).unwrap();
        let link = format!(
            "https://id.example.com/password/reset?token={}",
            "A".repeat(43)
        );
        let text = format!("Open this link to choose a new password for your account:\n\n{link}\n");
        mailer
            .send(email("ann@example.com", "Reset", &text))
            .await
            .unwrap();
        let raw = fs::read_to_string(&outbox(&dir.0)[0]).unwrap();
        assert!(
            raw.lines().any(|l| l == link),
            "the link is one raw line: {raw}"
        );
        assert!(raw.contains("Content-Transfer-Encoding: 8bit"));
    }

    #[tokio::test]
    async fn a_line_over_998_octets_is_an_error() {
        let dir = TempDir::new();
        let mailer = Mailer::from_settings(&file_settings(&dir.0)).unwrap();
        let result = mailer
            .send(email("ann@example.com", "Long", &"x".repeat(999)))
            .await;
        assert!(matches!(result, Err(EmailError::Message(_))), "{result:?}");
    }

    #[tokio::test]
    async fn file_transport_writes_one_parseable_eml_per_send() {
        let dir = TempDir::new();
        // The outbox does not exist yet, nor its parent.
        let outbox_dir = dir.0.join("data").join("outbox");
        let mailer = Mailer::from_settings(&file_settings(&outbox_dir)).unwrap();
        let text = "Hello Alice,\n\nconfirm your address:\nhttps://id.example.com/confirm?token=abc123\n\n.\nA dot line.\n";
        mailer
            .send(email("alice@example.com", "Confirm your email", text))
            .await
            .unwrap();
        mailer
            .send(email("bob@example.org", "Reset your password", "Second."))
            .await
            .unwrap();

        let files = outbox(&outbox_dir);
        assert_eq!(files.len(), 2);
        let first = parse_eml(&fs::read(&files[0]).unwrap());
        assert_eq!(first.header("To"), Some("alice@example.com"));
        assert_eq!(first.header("Subject"), Some("Confirm your email"));
        assert_eq!(
            first.header("From"),
            Some("Stepgate <no-reply@stepgate.test>")
        );
        assert_eq!(
            first.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(first.header("MIME-Version"), Some("1.0"));
        assert!(first.header("Date").is_some());
        let message_id = first.header("Message-ID").unwrap();
        assert!(
            message_id.starts_with('<') && message_id.ends_with("@stepgate.test>"),
            "{message_id}"
        );
        assert_eq!(first.body.replace("\r\n", "\n"), text);

        let second = parse_eml(&fs::read(&files[1]).unwrap());
        assert_eq!(second.header("To"), Some("bob@example.org"));
        assert_eq!(second.body.replace("\r\n", "\n"), "Second.");
        assert_ne!(second.header("Message-ID"), first.header("Message-ID"));
    }

    #[tokio::test]
    async fn file_names_sort_by_time_and_files_are_private() {
        let dir = TempDir::new();
        let mailer = Mailer::from_settings(&file_settings(&dir.0)).unwrap();
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        mailer
            .send(email("alice@example.com", "Hi", "Hi"))
            .await
            .unwrap();
        let files = outbox(&dir.0);
        let name = files[0].file_name().unwrap().to_str().unwrap();
        let parts: Vec<&str> = name.strip_suffix(".eml").unwrap().split('-').collect();
        let [millis, seq, random] = parts[..] else {
            panic!("{name}")
        };
        assert_eq!(millis.len(), 13, "{name}");
        assert!(millis.parse::<u128>().unwrap() >= before, "{name}");
        assert_eq!(seq.len(), 6, "{name}");
        assert_eq!(random.len(), 16, "{name}");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn messages_keep_their_order_within_one_millisecond() {
        let dir = TempDir::new();
        let mailer = Mailer::from_settings(&file_settings(&dir.0)).unwrap();
        for i in 0..20 {
            mailer
                .send(email("ann@example.com", &format!("n{i:02}"), "x"))
                .await
                .unwrap();
        }
        let subjects: Vec<String> = outbox(&dir.0)
            .iter()
            .map(|f| {
                parse_eml(&fs::read(f).unwrap())
                    .header("Subject")
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let expected: Vec<String> = (0..20).map(|i| format!("n{i:02}")).collect();
        assert_eq!(subjects, expected);
    }

    #[tokio::test]
    async fn non_ascii_subject_and_body_survive() {
        let dir = TempDir::new();
        let mailer = Mailer::from_settings(&file_settings(&dir.0)).unwrap();
        let text = "Grüße, Zoë — ваш код: https://id.example.com/reset?t=ÄÖÜ\n";
        mailer
            .send(email("zoe@example.com", "Passwort zurücksetzen", text))
            .await
            .unwrap();
        let parsed = parse_eml(&fs::read(&outbox(&dir.0)[0]).unwrap());
        assert_eq!(parsed.body.replace("\r\n", "\n"), text);
        // The body is 8bit UTF-8; headers use RFC 2047 encoded words, not raw UTF-8.
        assert_eq!(parsed.header("Content-Transfer-Encoding"), Some("8bit"));
        let subject = parsed.header("Subject").unwrap();
        assert_eq!(decode_encoded_words(subject), "Passwort zurücksetzen");
    }

    #[tokio::test]
    async fn bad_recipient_is_an_error_and_writes_nothing() {
        let dir = TempDir::new();
        let mailer = Mailer::from_settings(&file_settings(&dir.0)).unwrap();
        for to in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example.com, bob@example.com",
            "alice@example.com\r\nBcc: eve@example.com",
        ] {
            let result = mailer.send(email(to, "Hi", "secret link")).await;
            assert!(
                matches!(result, Err(EmailError::InvalidRecipient)),
                "{to:?}: {result:?}"
            );
        }
        assert!(!dir.0.exists() || outbox(&dir.0).is_empty());
    }

    #[tokio::test]
    async fn a_subject_cannot_add_headers() {
        let dir = TempDir::new();
        let mailer = Mailer::from_settings(&file_settings(&dir.0)).unwrap();
        mailer
            .send(email(
                "alice@example.com",
                "Hi\r\nBcc: eve@example.com\r\n\r\nInjected body",
                "Body",
            ))
            .await
            .unwrap();
        let parsed = parse_eml(&fs::read(&outbox(&dir.0)[0]).unwrap());
        assert_eq!(parsed.header("Bcc"), None);
        assert_eq!(parsed.body, "Body");
    }

    #[tokio::test]
    async fn unwritable_outbox_is_an_error() {
        let dir = TempDir::new();
        fs::create_dir_all(&dir.0).unwrap();
        let blocker = dir.0.join("a-file");
        fs::write(&blocker, "").unwrap();
        let mailer = Mailer::from_settings(&file_settings(&blocker.join("outbox"))).unwrap();
        let result = mailer.send(email("alice@example.com", "Hi", "Hi")).await;
        assert!(
            matches!(result, Err(EmailError::Outbox { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn smtp_settings_are_checked_once_at_build() {
        let ok = Mailer::from_settings(&smtp_settings());
        assert!(ok.is_ok(), "{ok:?}");
        for (settings, key) in [
            (
                EmailSettings {
                    smtp_host: " ".into(),
                    ..smtp_settings()
                },
                "smtp_host",
            ),
            (
                EmailSettings {
                    smtp_timeout_secs: 0,
                    ..smtp_settings()
                },
                "smtp_timeout_secs",
            ),
            (
                EmailSettings {
                    smtp_username: "mailer".into(),
                    ..smtp_settings()
                },
                "smtp_password",
            ),
            (
                EmailSettings {
                    from: "not an address".into(),
                    ..smtp_settings()
                },
                "from",
            ),
        ] {
            let error = Mailer::from_settings(&settings).unwrap_err();
            assert!(
                matches!(&error, EmailError::Settings(m) if m.contains(key)),
                "{key}: {error}"
            );
        }
    }

    #[test]
    fn smtp_outside_a_runtime_is_an_error_not_a_panic() {
        let result = Mailer::from_settings(&smtp_settings());
        assert!(matches!(result, Err(EmailError::Settings(_))), "{result:?}");
    }

    #[test]
    fn a_mailer_may_outlive_its_runtime() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mailer = runtime.block_on(async { Mailer::from_settings(&smtp_settings()).unwrap() });
        drop(runtime);
        drop(mailer);
    }

    #[test]
    fn errors_never_show_the_password_or_the_recipient() {
        let secrets = vec![
            "hunter2".to_owned(),
            STANDARD.encode("\0mailer\0hunter2"),
            STANDARD.encode("hunter2"),
        ];
        let server_said = format!(
            "permanent error (535): bad credentials hunter2 {} {}",
            secrets[1], secrets[2]
        );
        let shown = redact(&server_said, &secrets);
        assert_eq!(
            shown,
            "permanent error (535): bad credentials [redacted] [redacted] [redacted]"
        );
        let shown = redact(
            "550 5.1.1 <Alice@Example.com>: rejected; alice@example.com unknown",
            &["alice@example.com".to_owned()],
        );
        assert_eq!(
            shown,
            "550 5.1.1 <[redacted]>: rejected; [redacted] unknown"
        );
    }

    #[test]
    fn debug_output_hides_the_body_and_the_local_part() {
        let shown = format!(
            "{:?}",
            email("alice@example.com", "Reset", "https://x/reset?token=s3cret")
        );
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(
            shown.contains("example.com") && shown.contains("Reset"),
            "{shown}"
        );
    }

    #[test]
    fn mailer_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Mailer>();
    }

    #[test]
    fn local_hosts() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "::1", "[::1]"] {
            assert!(is_local_host(host), "{host}");
        }
        for host in ["smtp.example.com", "10.0.0.1", "localhost.example.com"] {
            assert!(!is_local_host(host), "{host}");
        }
    }
}
