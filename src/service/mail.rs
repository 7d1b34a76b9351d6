//! The durable outbox (audit issue 14, item 7). A request that means to
//! send an email inserts what it wants sent, an [`Intent`], into
//! `mail_queue` and returns: it never waits on a mail server, and the same
//! form does the same work whether or not the address has an account (the
//! account is looked up here, by the worker, not by the request).
//!
//! A worker on every node ([`run`]) claims due rows under a lease, looks up
//! what each needs, issues a link token at the moment it composes the
//! message (only its hash is stored; the raw token lives in the message
//! alone), sends, and deletes the row. A node that dies mid-way loses no
//! email: its lease runs out and another node sends the row. Delivery is
//! therefore at least once: a node killed between the hand-over and the
//! delete makes the row go out twice, the way every outbox without a
//! two-phase commit with the mail server behaves.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto::random_id;
use crate::email::{EmailError, OutgoingEmail};
use crate::service::Error;
use crate::service::accounts::{issue_link, link};
use crate::service::limits::Limit;
use crate::service::oidc;
use crate::state::AppState;
use crate::store::email_tokens::{self, Purpose};
use crate::store::entities::users::Model as User;
use crate::store::mail_queue::{self, Claimed};
use crate::store::users;

/// What a request wants sent. Serialized into `mail_queue.intent`; the
/// worker decides from the database, at send time, whether there is
/// anything to send at all.
///
/// No variant holds a secret: link tokens are made by the worker. The
/// interaction id of [`Intent::Confirm`] is a handle on an authorization
/// in progress, which grants nothing without signing in, and it is
/// carried into the email link as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// A new account's confirmation link; back into the authorization
    /// `interaction` if it is still live when the email is composed.
    Confirm {
        user_id: String,
        interaction: Option<String>,
    },
    /// `/confirm/resend`: a new confirmation link if `email` is an
    /// unconfirmed, active account.
    ResendConfirmation { email: String },
    /// A sign-up with an address that has an account: its owner is told,
    /// if the address is confirmed.
    SignupTaken { email: String },
    /// `/password/forgot`: a reset link if `email` is a confirmed, active
    /// account.
    PasswordReset { email: String },
    /// A security notice with no secret in it (2FA on or off, a new API
    /// key), composed by the request.
    Notice {
        to: String,
        subject: String,
        text: String,
    },
}

impl Intent {
    fn kind(&self) -> &'static str {
        match self {
            Intent::Confirm { .. } => "confirm",
            Intent::ResendConfirmation { .. } => "resend_confirmation",
            Intent::SignupTaken { .. } => "signup_taken",
            Intent::PasswordReset { .. } => "password_reset",
            Intent::Notice { .. } => "notice",
        }
    }
}

/// Rows claimed per query.
const BATCH: u32 = 20;
/// Attempts before a row is given up on: with [`backoff_secs`] between
/// them, about two hours of a mail server being away.
pub const MAX_ATTEMPTS: u32 = 8;

/// Wait before attempt `attempts + 1`: one minute, doubling, at most an hour.
pub fn backoff_secs(attempts: u32) -> i64 {
    (30_i64 << attempts.clamp(1, 7)).min(3600)
}

/// How long a claim holds a row: longer than a send may take
/// (`email.smtp_timeout_secs`), so only a dead or hung worker loses it.
pub fn lease_secs(state: &AppState) -> i64 {
    let timeout = i64::try_from(state.settings.email.smtp_timeout_secs).unwrap_or(3600);
    timeout.saturating_mul(2).saturating_add(30)
}

/// Queues `intent` and wakes this node's worker.
pub async fn enqueue(state: &AppState, intent: Intent) -> Result<(), Error> {
    let json = serde_json::to_string(&intent).expect("an intent serializes");
    let now = state.now();
    mail_queue::enqueue(&state.store.db, &random_id(), &json, now).await?;
    state.mail_wakeup.notify_one();
    Ok(())
}

/// Queues a notice to `to`.
pub async fn notice(
    state: &AppState,
    to: &str,
    subject: String,
    text: String,
) -> Result<(), Error> {
    enqueue(
        state,
        Intent::Notice {
            to: to.to_owned(),
            subject,
            text,
        },
    )
    .await
}

/// What one [`deliver_due`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Messages handed to the transport.
    pub sent: u32,
    /// Intents with nothing to send (no such account, over the budget).
    pub nothing_to_send: u32,
    /// Messages that failed and wait for a later attempt.
    pub retried: u32,
    /// Messages dropped: a permanent failure, or [`MAX_ATTEMPTS`] failures.
    pub given_up: u32,
}

enum Outcome {
    Sent,
    NothingToSend,
    Retried,
    GivenUp,
}

/// Works through every row due now, one at a time, and returns when none
/// is left. A database error stops it; the rows it held are taken over
/// when their lease runs out.
pub async fn deliver_due(state: &AppState) -> Result<Delivered, Error> {
    let mut done = Delivered::default();
    loop {
        let now = state.now();
        let claimed = mail_queue::claim(&state.store.db, now, lease_secs(state), BATCH).await?;
        let full = claimed.len() == BATCH as usize;
        for row in claimed {
            match process(state, &row).await? {
                Outcome::Sent => done.sent += 1,
                Outcome::NothingToSend => done.nothing_to_send += 1,
                Outcome::Retried => done.retried += 1,
                Outcome::GivenUp => done.given_up += 1,
            }
        }
        if !full {
            return Ok(done);
        }
    }
}

async fn process(state: &AppState, row: &Claimed) -> Result<Outcome, Error> {
    let intent: Intent = match serde_json::from_str(&row.intent) {
        Ok(intent) => intent,
        Err(error) => {
            // Written by another version, or by hand: nothing can send it.
            tracing::error!(id = %row.id, %error, "an unreadable mail intent was dropped");
            mail_queue::finish(&state.store.db, &row.id).await?;
            return Ok(Outcome::GivenUp);
        }
    };
    // The budget of anonymous mails counts a message once, not per retry.
    let first_attempt = row.attempts <= 1;
    let Some(email) = compose(state, &intent, first_attempt).await? else {
        mail_queue::finish(&state.store.db, &row.id).await?;
        return Ok(Outcome::NothingToSend);
    };
    let kind = intent.kind();
    match state.mailer.send(email).await {
        Ok(()) => {
            mail_queue::finish(&state.store.db, &row.id).await?;
            Ok(Outcome::Sent)
        }
        Err(error) if is_permanent(&error) || row.attempts >= MAX_ATTEMPTS => {
            tracing::error!(
                kind,
                attempts = row.attempts,
                %error,
                "gave up on an email"
            );
            mail_queue::finish(&state.store.db, &row.id).await?;
            Ok(Outcome::GivenUp)
        }
        Err(error) => {
            let wait = backoff_secs(row.attempts);
            tracing::warn!(
                kind,
                attempts = row.attempts,
                retry_in_secs = wait,
                %error,
                "could not send an email; it stays queued"
            );
            let now = state.now();
            mail_queue::retry_at(&state.store.db, &row.id, now.saturating_add(wait)).await?;
            Ok(Outcome::Retried)
        }
    }
}

/// A retry cannot help: the server refused the message for good, or it
/// cannot be built or addressed.
fn is_permanent(error: &EmailError) -> bool {
    matches!(
        error,
        EmailError::Smtp {
            permanent: true,
            ..
        } | EmailError::InvalidRecipient
            | EmailError::Message(_)
    )
}

/// The message an intent stands for now, or `None` when there is nothing
/// to send. Link tokens are issued here, after every check.
async fn compose(
    state: &AppState,
    intent: &Intent,
    count_budget: bool,
) -> Result<Option<OutgoingEmail>, Error> {
    match intent {
        Intent::Confirm {
            user_id,
            interaction,
        } => {
            let Some(user) = users::find_by_id(&state.store.db, user_id).await? else {
                return Ok(None);
            };
            let interaction = match interaction {
                Some(id) => oidc::find_interaction(state, id)
                    .await?
                    .map(|_| id.as_str()),
                None => None,
            };
            confirmation(state, &user, interaction, count_budget).await
        }
        Intent::ResendConfirmation { email } => {
            match users::find_by_email(&state.store.db, email).await? {
                Some(user) => confirmation(state, &user, None, count_budget).await,
                None => Ok(None),
            }
        }
        Intent::SignupTaken { email } => {
            // Only a confirmed address is told: an unconfirmed row may be a
            // look-alike's squat, whose mailbox is not the owner's.
            let Some(owner) = users::find_by_email(&state.store.db, email).await? else {
                return Ok(None);
            };
            if !owner.email_verified || !budget_left(state, &owner, count_budget).await? {
                return Ok(None);
            }
            let product = &state.settings.ui.product_name;
            Ok(Some(OutgoingEmail {
                to: owner.email.clone(),
                subject: format!("Someone tried to sign up to {product} with your email"),
                text: format!(
                    "Hello {name},\n\nSomeone (maybe you) tried to create a {product} account with this email address, which already has one. You can sign in at {login}, or reset your password at {forgot}.\n\nIf it was not you, you can ignore this email: nothing has changed.\n",
                    name = owner.name,
                    login = link(state, "/login", &[]),
                    forgot = link(state, "/password/forgot", &[]),
                ),
            }))
        }
        Intent::PasswordReset { email } => {
            // Only a confirmed address of an active account: an unconfirmed
            // one may not be its owner's (it confirms itself through the
            // confirmation link, which `/confirm/resend` sends again).
            let Some(user) = users::find_by_email(&state.store.db, email).await? else {
                return Ok(None);
            };
            if user.disabled
                || !user.email_verified
                || !budget_left(state, &user, count_budget).await?
            {
                return Ok(None);
            }
            let now = state.now();
            // A new link retires the older ones.
            email_tokens::retire_for_user(&state.store.db, &user.id, Purpose::Reset, now).await?;
            let ttl = state.settings.account.reset_ttl_secs;
            let token = issue_link(state, &user.id, Purpose::Reset, ttl).await?;
            let product = &state.settings.ui.product_name;
            Ok(Some(OutgoingEmail {
                to: user.email.clone(),
                subject: format!("Reset your {product} password"),
                text: format!(
                    "Hello {name},\n\nTo choose a new password for your {product} account, open:\n\n{url}\n\nThe link works once and expires in {minutes} minutes. Setting a new password signs you out everywhere and revokes every app's access and your API keys.\n\nIf you did not ask for this, ignore this email: your password has not changed.\n",
                    name = user.name,
                    url = link(state, "/password/reset", &[("token", &token)]),
                    minutes = ttl / 60,
                ),
            }))
        }
        Intent::Notice { to, subject, text } => Ok(Some(OutgoingEmail {
            to: to.clone(),
            subject: subject.clone(),
            text: text.clone(),
        })),
    }
}

/// A confirmation link for an unconfirmed, active account.
async fn confirmation(
    state: &AppState,
    user: &User,
    interaction: Option<&str>,
    count_budget: bool,
) -> Result<Option<OutgoingEmail>, Error> {
    if user.email_verified || user.disabled || !budget_left(state, user, count_budget).await? {
        return Ok(None);
    }
    let ttl = state.settings.account.confirm_ttl_secs;
    let token = issue_link(state, &user.id, Purpose::Confirm, ttl).await?;
    let mut query = vec![("token", token.as_str())];
    query.extend(interaction.map(|id| ("interaction", id)));
    let product = &state.settings.ui.product_name;
    Ok(Some(OutgoingEmail {
        to: user.email.clone(),
        subject: format!("Confirm your email address for {product}"),
        text: format!(
            "Hello {name},\n\nConfirm your email address to finish creating your {product} account:\n\n{url}\n\nThe link works once and expires in {hours} hours. If you did not sign up, ignore this email.\n",
            name = user.name,
            url = link(state, "/confirm", &query),
            hours = ttl / 3600,
        ),
    }))
}

/// Counts one email that an anonymous request triggers (a confirmation
/// link, a reset link, "someone tried to sign up") to the user's address,
/// and says whether to send it: at most `email.address_mails_per_hour`
/// per address, so nobody can bomb a mailbox through the forms. Asked
/// before a link is issued, so a dropped email retires no link already
/// sent. Counted under an HMAC of the address (`service::limits`), on
/// every node together. A retry of a message counted once is not counted
/// again (`count == false`).
async fn budget_left(state: &AppState, user: &User, count: bool) -> Result<bool, Error> {
    if !count {
        return Ok(true);
    }
    Ok(
        match Limit::per_recipient(state, &user.email).hit(state).await? {
            Ok(()) => true,
            Err(limited) => {
                tracing::warn!(
                    retry_after_secs = limited.retry_after_secs,
                    "an address had its hourly budget of requested emails; one was dropped"
                );
                false
            }
        },
    )
}

/// Delivers the queue until the task is dropped: at once when this node
/// queued something, and every `email.queue_poll_secs` for rows queued by
/// other nodes, retries that came due and leases that ran out.
pub async fn run(state: AppState) {
    let poll = Duration::from_secs(state.settings.email.queue_poll_secs.max(1));
    loop {
        match deliver_due(&state).await {
            Ok(done) if done == Delivered::default() => {}
            Ok(done) => tracing::debug!(?done, "mail queue delivered"),
            Err(error) => {
                tracing::warn!(%error, "mail queue: the database failed; trying again soon");
            }
        }
        // A wake-up that came while delivering is kept (a stored permit),
        // so nothing queued meanwhile waits for the poll.
        tokio::select! {
            () = state.mail_wakeup.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// How full the queue is, for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatus {
    /// Rows waiting: due, being sent, or waiting for a retry.
    pub queued: u64,
    /// Of them, rows a worker is sending now (a live lease).
    pub leased: u64,
}

pub async fn status(state: &AppState) -> Result<QueueStatus, Error> {
    let now = state.now();
    let (queued, leased) = mail_queue::count(&state.store.db, now).await?;
    Ok(QueueStatus { queued, leased })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_to_an_hour() {
        let waits: Vec<i64> = (1..=MAX_ATTEMPTS).map(backoff_secs).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff_secs(0), 60);
        assert_eq!(backoff_secs(u32::MAX), 3600);
    }

    #[test]
    fn intents_keep_their_shape_on_the_wire() {
        // Rows written by one version are read by the next: the JSON shape
        // is part of the schema.
        let intent = Intent::PasswordReset {
            email: "ada@example.com".into(),
        };
        let json = serde_json::to_string(&intent).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"password_reset","email":"ada@example.com"}"#
        );
        assert_eq!(serde_json::from_str::<Intent>(&json).unwrap(), intent);
        let confirm: Intent =
            serde_json::from_str(r#"{"kind":"confirm","user_id":"u1","interaction":null}"#)
                .unwrap();
        assert_eq!(
            confirm,
            Intent::Confirm {
                user_id: "u1".into(),
                interaction: None
            }
        );
        assert!(serde_json::from_str::<Intent>(r#"{"kind":"unheard_of"}"#).is_err());
    }
}
