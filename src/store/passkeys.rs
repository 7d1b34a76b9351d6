//! Queries on `passkeys` (a user's WebAuthn credentials) and
//! `webauthn_challenges` (the state of each ceremony in progress: any node
//! can finish what another began; each is consumed once).

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};

use super::entities::passkeys::{self, Entity as Passkeys, Model as StoredPasskey};
use super::entities::webauthn_challenges::{self, Entity as Challenges, Model as Challenge};

pub async fn list(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<Vec<StoredPasskey>, sea_orm::DbErr> {
    Passkeys::find()
        .filter(passkeys::Column::UserId.eq(user_id))
        .order_by_asc(passkeys::Column::CreatedAt)
        .order_by_asc(passkeys::Column::CredentialId)
        .all(db)
        .await
}

pub async fn count(db: &DatabaseConnection, user_id: &str) -> Result<u64, sea_orm::DbErr> {
    Passkeys::find()
        .filter(passkeys::Column::UserId.eq(user_id))
        .count(db)
        .await
}

/// Whether the user has a passkey registered at or before `at`.
pub async fn has_one_since(
    db: &DatabaseConnection,
    user_id: &str,
    at: i64,
) -> Result<bool, sea_orm::DbErr> {
    Ok(Passkeys::find()
        .filter(passkeys::Column::UserId.eq(user_id))
        .filter(passkeys::Column::CreatedAt.lte(at))
        .count(db)
        .await?
        > 0)
}

/// A credential by its id, whoever it belongs to.
pub async fn find(
    db: &DatabaseConnection,
    credential_id: &str,
) -> Result<Option<StoredPasskey>, sea_orm::DbErr> {
    Passkeys::find_by_id(credential_id.to_owned()).one(db).await
}

/// Inserts a new credential, unless its id is registered already (to
/// anyone): `false` then (WebAuthn §7.1 step 26).
pub async fn insert(db: &DatabaseConnection, row: StoredPasskey) -> Result<bool, sea_orm::DbErr> {
    let inserted = Passkeys::insert(passkeys::ActiveModel {
        credential_id: Set(row.credential_id),
        user_id: Set(row.user_id),
        name: Set(row.name),
        passkey: Set(row.passkey),
        sign_count: Set(row.sign_count),
        backup_eligible: Set(row.backup_eligible),
        backup_state: Set(row.backup_state),
        transports: Set(row.transports),
        created_at: Set(row.created_at),
        last_used_at: Set(row.last_used_at),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(passkeys::Column::CredentialId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await;
    match inserted {
        Ok(n) => Ok(n > 0),
        Err(sea_orm::DbErr::RecordNotInserted) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a verified assertion changes on its credential.
pub struct Used<'a> {
    pub credential_id: &'a str,
    pub user_id: &'a str,
    pub passkey: &'a str,
    pub sign_count: i64,
    pub backup_state: bool,
    pub now: i64,
}

/// Records a verified assertion, once: one conditional UPDATE that
/// succeeds only if the credential still exists for the user and, when the
/// authenticator keeps a counter, only if the new count is above the stored
/// one (WebAuthn §7.2 step 22), so two nodes cannot both accept the same
/// count; a count of 0 only while none was ever stored. `false` when the credential is gone or the counter did not move
/// forward.
pub async fn record_use(db: &DatabaseConnection, used: Used<'_>) -> Result<bool, sea_orm::DbErr> {
    let mut update = Passkeys::update_many()
        .col_expr(passkeys::Column::Passkey, Expr::value(used.passkey))
        .col_expr(passkeys::Column::SignCount, Expr::value(used.sign_count))
        .col_expr(
            passkeys::Column::BackupState,
            Expr::value(used.backup_state),
        )
        .col_expr(passkeys::Column::LastUsedAt, Expr::value(used.now))
        .filter(passkeys::Column::CredentialId.eq(used.credential_id))
        .filter(passkeys::Column::UserId.eq(used.user_id));
    update = if used.sign_count > 0 {
        update.filter(passkeys::Column::SignCount.lt(used.sign_count))
    } else {
        // An authenticator without a counter reports 0 every time; once a
        // count was stored, 0 is a step backwards.
        update.filter(passkeys::Column::SignCount.eq(0))
    };
    Ok(update.exec(db).await?.rows_affected == 1)
}

pub async fn rename(
    db: &DatabaseConnection,
    user_id: &str,
    credential_id: &str,
    name: &str,
) -> Result<bool, sea_orm::DbErr> {
    let result = Passkeys::update_many()
        .col_expr(passkeys::Column::Name, Expr::value(name))
        .filter(passkeys::Column::CredentialId.eq(credential_id))
        .filter(passkeys::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn delete(
    db: &DatabaseConnection,
    user_id: &str,
    credential_id: &str,
) -> Result<bool, sea_orm::DbErr> {
    let result = Passkeys::delete_many()
        .filter(passkeys::Column::CredentialId.eq(credential_id))
        .filter(passkeys::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Removes every passkey of a user (operator reset); how many there were.
pub async fn delete_for_user(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<u64, sea_orm::DbErr> {
    let result = Passkeys::delete_many()
        .filter(passkeys::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

// ---------------------------------------------------------------- ceremonies

pub struct NewChallenge<'a> {
    pub challenge_hash: &'a str,
    pub purpose: &'a str,
    pub user_id: Option<&'a str>,
    pub binding_hash: &'a str,
    pub state: &'a str,
    pub now: i64,
    pub expires_at: i64,
}

pub async fn put_challenge(
    db: &DatabaseConnection,
    new: NewChallenge<'_>,
) -> Result<(), sea_orm::DbErr> {
    Challenges::insert(webauthn_challenges::ActiveModel {
        challenge_hash: Set(new.challenge_hash.to_owned()),
        purpose: Set(new.purpose.to_owned()),
        user_id: Set(new.user_id.map(str::to_owned)),
        binding_hash: Set(new.binding_hash.to_owned()),
        state: Set(new.state.to_owned()),
        created_at: Set(new.now),
        expires_at: Set(new.expires_at),
    })
    .exec_without_returning(db)
    .await
    .map(|_| ())
}

/// Why a ceremony's state could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTaken {
    /// No such challenge for this purpose and browser: never issued, or
    /// already used (by this node or another).
    Unknown,
    Expired,
}

/// Takes the state of the ceremony whose challenge hashes to
/// `challenge_hash`, once: the row is read, then deleted by a DELETE that
/// only one of any number of racing requests (on any node) can win. The
/// state never changes after it is written, so what was read is what the
/// winner deleted.
pub async fn take_challenge(
    db: &DatabaseConnection,
    challenge_hash: &str,
    purpose: &str,
    binding_hash: &str,
    now: i64,
) -> Result<Result<Challenge, NotTaken>, sea_orm::DbErr> {
    let Some(row) = Challenges::find_by_id(challenge_hash.to_owned())
        .filter(webauthn_challenges::Column::Purpose.eq(purpose))
        .filter(webauthn_challenges::Column::BindingHash.eq(binding_hash))
        .one(db)
        .await?
    else {
        return Ok(Err(NotTaken::Unknown));
    };
    let taken = Challenges::delete_many()
        .filter(webauthn_challenges::Column::ChallengeHash.eq(challenge_hash))
        .filter(webauthn_challenges::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?
        .rows_affected
        == 1;
    if taken {
        return Ok(Ok(row));
    }
    Ok(Err(if row.expires_at <= now {
        NotTaken::Expired
    } else {
        NotTaken::Unknown
    }))
}
