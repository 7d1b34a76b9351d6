//! The SMTP transport against a real SMTP listener: a small RFC 5321 server
//! on port 0 that records what it receives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use stepgate::config::{EmailSettings, EmailTransport, SmtpSecurity};
use stepgate::email::{EmailError, Mailer, OutgoingEmail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How the test server treats one connection.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Behaviour {
    /// Answers every command.
    Normal,
    /// Accepts the connection and never says a word.
    Silent,
    /// Takes the whole message, then reads on but never answers again.
    StallAfterData,
    /// Takes half a second to accept each message.
    SlowAfterData,
    /// Refuses AUTH, quoting the credentials back (a badly behaved server).
    RejectAuthQuotingCredentials,
}

/// One message as the server received it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Received {
    /// The connection it came on, counting from 0.
    connection: usize,
    /// (mechanism, user, password), decoded from base64.
    auth: Option<(String, String, String)>,
    mail_from: String,
    pub(crate) rcpt_to: Vec<String>,
    /// The DATA, dot-unstuffed, without the final `.` line.
    data: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub(crate) fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body);
        // The part's last line break, and an empty line lettre adds: it ends
        // DATA with CRLF . CRLF even when the message already ends in CRLF.
        let body = body.strip_suffix("\r\n\r\n").unwrap_or(body);
        body.replace("\r\n", "\n")
    }
}

pub(crate) struct SmtpServer {
    pub(crate) addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Received>,
    pub(crate) connections: Arc<AtomicUsize>,
}

impl SmtpServer {
    /// A server that advertises `AUTH <auth_mechanisms>` and treats the n-th
    /// connection as `behaviour(n)` says.
    pub(crate) async fn start(
        auth_mechanisms: &'static str,
        behaviour: impl Fn(usize) -> Behaviour + Send + 'static,
    ) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, received) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(serve(stream, n, behaviour(n), auth_mechanisms, tx));
            }
        });
        SmtpServer {
            addr,
            received,
            connections,
        }
    }

    async fn normal() -> SmtpServer {
        SmtpServer::start("PLAIN LOGIN", |_| Behaviour::Normal).await
    }

    pub(crate) fn settings(&self) -> EmailSettings {
        EmailSettings {
            transport: EmailTransport::Smtp,
            from: "Stepgate <no-reply@stepgate.test>".into(),
            smtp_host: self.addr.ip().to_string(),
            smtp_port: self.addr.port(),
            smtp_security: SmtpSecurity::None,
            smtp_timeout_secs: 2,
            ..EmailSettings::default()
        }
    }

    pub(crate) async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(5), self.received.recv())
            .await
            .expect("the server received a message in time")
            .expect("the server is running")
    }

    fn nothing_received(&mut self) -> bool {
        self.received.try_recv().is_err()
    }
}

async fn serve(
    stream: TcpStream,
    connection: usize,
    behaviour: Behaviour,
    auth_mechanisms: &str,
    tx: mpsc::UnboundedSender<Received>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if behaviour == Behaviour::Silent {
        // Hold the connection open until the client gives up.
        let _ = lines.read_line(&mut String::new()).await;
        return;
    }
    let mut reply = async |text: &str| write.write_all(text.as_bytes()).await.is_ok();
    let mut read_line = async || {
        let mut line = Vec::new();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(String::from_utf8_lossy(&line).into_owned()),
        }
    };
    let decode =
        |b64: &str| String::from_utf8(STANDARD.decode(b64.trim()).expect("base64")).expect("UTF-8");

    if !reply("220 smtp.test ESMTP test server\r\n").await {
        return;
    }
    let mut current = Received {
        connection,
        ..Received::default()
    };
    while let Some(line) = read_line().await {
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let ok = match verb.as_str() {
            "EHLO" => {
                reply(&format!(
                    "250-smtp.test\r\n250-AUTH {auth_mechanisms}\r\n250 HELP\r\n"
                ))
                .await
            }
            "HELO" | "NOOP" | "RSET" => reply("250 OK\r\n").await,
            "AUTH" => {
                let mut words = command.split(' ').skip(1);
                let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
                let (user, password) = match mechanism.as_str() {
                    "PLAIN" => {
                        let initial = match words.next() {
                            Some(initial) => initial.to_owned(),
                            None => {
                                reply("334 \r\n").await;
                                read_line().await.unwrap_or_default()
                            }
                        };
                        let decoded = decode(&initial);
                        let mut parts = decoded.split('\0').skip(1);
                        (
                            parts.next().unwrap_or("").to_owned(),
                            parts.next().unwrap_or("").to_owned(),
                        )
                    }
                    "LOGIN" => {
                        reply("334 VXNlcm5hbWU6\r\n").await; // "Username:"
                        let user = decode(&read_line().await.unwrap_or_default());
                        reply("334 UGFzc3dvcmQ6\r\n").await; // "Password:"
                        let password = decode(&read_line().await.unwrap_or_default());
                        (user, password)
                    }
                    _ => {
                        reply("504 mechanism not supported\r\n").await;
                        continue;
                    }
                };
                if behaviour == Behaviour::RejectAuthQuotingCredentials {
                    let quoted = format!(
                        "535 5.7.8 bad credentials {user} {password} {}\r\n",
                        command.split(' ').nth(2).unwrap_or("")
                    );
                    reply(&quoted).await
                } else {
                    current.auth = Some((mechanism, user, password));
                    reply("235 2.7.0 Authentication successful\r\n").await
                }
            }
            "MAIL" => {
                current.mail_from = command["MAIL FROM:".len()..].to_owned();
                reply("250 OK\r\n").await
            }
            "RCPT" => {
                let to = command["RCPT TO:".len()..].to_owned();
                if to.contains("reject") {
                    reply(&format!("550 5.1.1 {to}: Recipient address rejected\r\n")).await
                } else {
                    current.rcpt_to.push(to);
                    reply("250 OK\r\n").await
                }
            }
            "DATA" => {
                reply("354 end data with <CR><LF>.<CR><LF>\r\n").await;
                let mut data = String::new();
                loop {
                    let Some(line) = read_line().await else {
                        return;
                    };
                    if line == ".\r\n" {
                        break;
                    }
                    // RFC 5321 §4.5.2: a leading dot was doubled by the client.
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                if behaviour == Behaviour::StallAfterData {
                    // Read on (a NOOP, a QUIT) but never answer again.
                    while read_line().await.is_some() {}
                    return;
                }
                if behaviour == Behaviour::SlowAfterData {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let auth = current.auth.clone();
                let message = std::mem::replace(
                    &mut current,
                    Received {
                        connection,
                        auth,
                        ..Received::default()
                    },
                );
                if data.contains("\r\nSubject: Reject") {
                    reply("550 5.7.1 message refused\r\n").await
                } else {
                    let _ = tx.send(Received { data, ..message });
                    reply("250 OK queued\r\n").await
                }
            }
            "QUIT" => {
                reply("221 bye\r\n").await;
                return;
            }
            _ => reply("502 command not implemented\r\n").await,
        };
        if !ok {
            return;
        }
    }
}

fn email(to: &str, subject: &str, text: &str) -> OutgoingEmail {
    OutgoingEmail {
        to: to.into(),
        subject: subject.into(),
        text: text.into(),
    }
}

const LINK_TEXT: &str = "Hello,\n\nconfirm your address: https://id.example.com/confirm?token=abc123\n.\nA line with only a dot, above.\n";

#[tokio::test]
async fn smtp_delivers_recipient_subject_and_body() {
    let mut server = SmtpServer::normal().await;
    let mailer = Mailer::from_settings(&server.settings()).unwrap();
    mailer
        .send(email("alice@example.com", "Confirm your email", LINK_TEXT))
        .await
        .unwrap();

    let got = server.next().await;
    assert_eq!(got.auth, None, "no AUTH without a user name");
    assert_eq!(got.mail_from, "<no-reply@stepgate.test>");
    assert_eq!(got.rcpt_to, ["<alice@example.com>"]);
    assert_eq!(got.header("To"), Some("alice@example.com"));
    assert_eq!(got.header("Subject"), Some("Confirm your email"));
    assert_eq!(
        got.header("From"),
        Some("Stepgate <no-reply@stepgate.test>")
    );
    assert_eq!(
        got.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(got.header("Date").is_some());
    assert!(got.header("Message-ID").is_some());
    assert_eq!(got.body(), LINK_TEXT);
}

#[tokio::test]
async fn smtp_reuses_one_pooled_connection() {
    let mut server = SmtpServer::normal().await;
    let mailer = Mailer::from_settings(&server.settings()).unwrap();
    for to in ["alice@example.com", "bob@example.com"] {
        mailer.clone().send(email(to, "Hi", "Hi")).await.unwrap();
        assert_eq!(server.next().await.rcpt_to, [format!("<{to}>")]);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn smtp_authenticates_with_plain() {
    let mut server = SmtpServer::normal().await;
    let settings = EmailSettings {
        smtp_username: "mailer@stepgate.test".into(),
        smtp_password: "correct horse battery staple".into(),
        ..server.settings()
    };
    let mailer = Mailer::from_settings(&settings).unwrap();
    mailer
        .send(email("alice@example.com", "Hi", "Hi"))
        .await
        .unwrap();
    let got = server.next().await;
    assert_eq!(
        got.auth,
        Some((
            "PLAIN".into(),
            "mailer@stepgate.test".into(),
            "correct horse battery staple".into()
        ))
    );
}

#[tokio::test]
async fn smtp_authenticates_with_login() {
    let mut server = SmtpServer::start("LOGIN", |_| Behaviour::Normal).await;
    let settings = EmailSettings {
        smtp_username: "mailer".into(),
        smtp_password: "pa:ss wörd".into(),
        ..server.settings()
    };
    let mailer = Mailer::from_settings(&settings).unwrap();
    mailer
        .send(email("alice@example.com", "Hi", "Hi"))
        .await
        .unwrap();
    let got = server.next().await;
    assert_eq!(
        got.auth,
        Some(("LOGIN".into(), "mailer".into(), "pa:ss wörd".into()))
    );
}

#[tokio::test]
async fn smtp_errors_never_show_the_password() {
    let mut server = SmtpServer::start("PLAIN", |_| Behaviour::RejectAuthQuotingCredentials).await;
    let settings = EmailSettings {
        smtp_username: "mailer".into(),
        smtp_password: "hunter2".into(),
        ..server.settings()
    };
    let mailer = Mailer::from_settings(&settings).unwrap();
    let error = mailer
        .send(email(
            "alice@example.com",
            "Hi",
            "https://x/reset?token=s3cret",
        ))
        .await
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(
        matches!(
            error,
            EmailError::Smtp {
                permanent: true,
                ..
            }
        ),
        "{shown}"
    );
    assert!(shown.contains("535"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        !shown.contains(&STANDARD.encode("\0mailer\0hunter2")),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(server.nothing_received());
}

#[tokio::test]
async fn smtp_rejected_recipient_is_a_permanent_error() {
    let mut server = SmtpServer::normal().await;
    let mailer = Mailer::from_settings(&server.settings()).unwrap();
    let error = mailer
        .send(email("reject@example.com", "Hi", "Hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            EmailError::Smtp {
                permanent: true,
                ..
            }
        ),
        "{error}"
    );
    // The server quoted the address; the error does not.
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("550"), "{shown}");
    assert!(!shown.contains("reject@example.com"), "{shown}");
    // The failed exchange does not spoil the next one.
    mailer
        .send(email("alice@example.com", "Hi", "Hi"))
        .await
        .unwrap();
    assert_eq!(server.next().await.rcpt_to, ["<alice@example.com>"]);
}

#[tokio::test]
async fn smtp_bad_recipient_is_an_error_and_sends_nothing() {
    let mut server = SmtpServer::normal().await;
    let mailer = Mailer::from_settings(&server.settings()).unwrap();
    let result = mailer.send(email("not an address", "Hi", "Hi")).await;
    assert!(
        matches!(result, Err(EmailError::InvalidRecipient)),
        "{result:?}"
    );
    assert!(server.nothing_received());
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

/// Fails the test if `send` takes longer than the configured timeout plus slack.
async fn send_within(mailer: &Mailer, limit: Duration) -> Result<(), EmailError> {
    let started = Instant::now();
    let result = tokio::time::timeout(limit, mailer.send(email("alice@example.com", "Hi", "Hi")))
        .await
        .expect("send gave up within the timeout");
    assert!(started.elapsed() < limit);
    result
}

#[tokio::test]
async fn smtp_unreachable_server_is_an_error_within_the_timeout() {
    // A port that was just free: nothing listens on it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let settings = EmailSettings {
        transport: EmailTransport::Smtp,
        smtp_host: addr.ip().to_string(),
        smtp_port: addr.port(),
        smtp_security: SmtpSecurity::None,
        smtp_timeout_secs: 1,
        ..EmailSettings::default()
    };
    let mailer = Mailer::from_settings(&settings).unwrap();
    let error = send_within(&mailer, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            EmailError::Smtp {
                permanent: false,
                ..
            } | EmailError::Timeout(_)
        ),
        "{error}"
    );
}

#[tokio::test]
async fn smtp_silent_server_is_an_error_within_the_timeout() {
    let server = SmtpServer::start("PLAIN", |_| Behaviour::Silent).await;
    let settings = EmailSettings {
        smtp_timeout_secs: 1,
        ..server.settings()
    };
    let mailer = Mailer::from_settings(&settings).unwrap();
    let error = send_within(&mailer, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(matches!(error, EmailError::Timeout(_)), "{error}");
}

#[tokio::test]
async fn smtp_recovers_after_a_server_stalls_mid_message() {
    let mut server = SmtpServer::start("PLAIN", |n| {
        if n == 0 {
            Behaviour::StallAfterData
        } else {
            Behaviour::Normal
        }
    })
    .await;
    let settings = EmailSettings {
        smtp_timeout_secs: 1,
        ..server.settings()
    };
    let mailer = Mailer::from_settings(&settings).unwrap();
    let error = send_within(&mailer, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(matches!(error, EmailError::Timeout(_)), "{error}");

    // The stalled connection is not reused: the next send opens a new one.
    send_within(&mailer, Duration::from_secs(3)).await.unwrap();
    let got = server.next().await;
    assert_eq!(got.connection, 1);
    assert_eq!(got.rcpt_to, ["<alice@example.com>"]);
}

#[tokio::test]
async fn smtp_send_finishes_even_when_the_caller_gives_up() {
    let mut server = SmtpServer::start("PLAIN", |_| Behaviour::SlowAfterData).await;
    let mailer = Mailer::from_settings(&server.settings()).unwrap();
    // The caller stops waiting while the server is still taking the message,
    // as when an HTTP request times out...
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        mailer.send(email("alice@example.com", "First", "First")),
    )
    .await;
    assert!(abandoned.is_err(), "the caller gave up first");
    // ...yet the message is delivered,
    assert_eq!(server.next().await.header("Subject"), Some("First"));
    // and the connection is not left mid-transaction: had it been, the next
    // exchange would read each reply one command late and take the server's
    // refusal of the message for a success.
    let refused = mailer
        .send(email("bob@example.com", "Reject", "Reject"))
        .await;
    assert!(
        matches!(
            refused,
            Err(EmailError::Smtp {
                permanent: true,
                ..
            })
        ),
        "{refused:?}"
    );
    mailer
        .send(email("carol@example.com", "Third", "Third"))
        .await
        .unwrap();
    let got = server.next().await;
    assert_eq!(got.rcpt_to, ["<carol@example.com>"]);
    assert_eq!(got.body(), "Third");
}
