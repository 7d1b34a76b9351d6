//! Queries on `users`.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    sea_query::Expr,
};

use super::entities::users::{self, Entity as Users, Model as User};
use super::is_unique_violation;

/// A domain's IDNA A-label (UTS #46 processing, as URLs use it: lower case,
/// compatibility mappings applied, Punycode where needed), or `None` when it
/// is not a valid domain name.
pub fn domain_a_label(domain: &str) -> Option<String> {
    idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::URL)
        .ok()
        .filter(|a| !a.is_empty())
        .map(|a| a.into_owned())
}

/// The address as it is stored and mailed: the local part as entered, the
/// domain as its A-label when it is not ASCII, so the domain we send to is
/// exactly the one we compare.
pub fn canonical_email(email: &str) -> String {
    let email = email.trim();
    match email.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => match domain_a_label(domain) {
            Some(domain) => format!("{local}@{domain}"),
            None => email.to_owned(),
        },
        _ => email.to_owned(),
    }
}

/// How emails are compared: the local part case-insensitively in ASCII only
/// (Unicode case folding would make "\u{212A}" — the Kelvin sign — equal
/// "k", so a look-alike could squat an address), the domain as its A-label
/// ("Bücher.example" and "xn--bcher-kva.example" are one domain).
pub fn normalize_email(email: &str) -> String {
    let email = email.trim();
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let domain = domain_a_label(domain).unwrap_or_else(|| domain.to_lowercase());
            format!("{}@{domain}", local.to_ascii_lowercase())
        }
        None => email.to_ascii_lowercase(),
    }
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub email_verified: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("an account with this email exists")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
}

/// Inserts a user. The unique index on the normalized email decides races:
/// of two concurrent sign-ups with one address, one gets `EmailTaken`.
pub async fn create(
    db: &DatabaseConnection,
    new: NewUser<'_>,
    now: i64,
) -> Result<User, CreateUserError> {
    let model = users::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        email: Set(canonical_email(new.email)),
        email_normalized: Set(normalize_email(new.email)),
        name: Set(new.name.trim().to_owned()),
        password_hash: Set(new.password_hash.to_owned()),
        email_verified: Set(new.email_verified),
        disabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    };
    model.insert(db).await.map_err(|e| {
        if is_unique_violation(&e) {
            CreateUserError::EmailTaken
        } else {
            CreateUserError::Db(e)
        }
    })
}

pub async fn find_by_email(
    db: &DatabaseConnection,
    email: &str,
) -> Result<Option<User>, sea_orm::DbErr> {
    Users::find()
        .filter(users::Column::EmailNormalized.eq(normalize_email(email)))
        .one(db)
        .await
}

pub async fn find_by_id(db: &DatabaseConnection, id: &str) -> Result<Option<User>, sea_orm::DbErr> {
    Users::find_by_id(id.to_owned()).one(db).await
}

pub async fn list(db: &DatabaseConnection) -> Result<Vec<User>, sea_orm::DbErr> {
    Users::find()
        .order_by_asc(users::Column::CreatedAt)
        .order_by_asc(users::Column::EmailNormalized)
        .all(db)
        .await
}

async fn update_column(
    db: &DatabaseConnection,
    id: &str,
    column: users::Column,
    value: sea_orm::Value,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let result = Users::update_many()
        .col_expr(column, Expr::value(value))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn set_email_verified(
    db: &DatabaseConnection,
    id: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    update_column(db, id, users::Column::EmailVerified, true.into(), now).await
}

pub async fn set_name(
    db: &DatabaseConnection,
    id: &str,
    name: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    update_column(db, id, users::Column::Name, name.trim().into(), now).await
}

pub async fn set_password_hash(
    db: &DatabaseConnection,
    id: &str,
    hash: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    update_column(db, id, users::Column::PasswordHash, hash.into(), now).await
}

pub async fn set_disabled(
    db: &DatabaseConnection,
    id: &str,
    disabled: bool,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    update_column(db, id, users::Column::Disabled, disabled.into(), now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_do_not_fold_into_ascii() {
        // U+212A KELVIN SIGN lower-cases to "k" in Unicode, never here.
        assert_ne!(
            normalize_email("\u{212A}im@example.com"),
            normalize_email("kim@example.com")
        );
        assert_eq!(normalize_email(" Kim@Example.COM "), "kim@example.com");
    }

    #[test]
    fn domains_compare_as_their_a_label() {
        assert_eq!(
            normalize_email("ann@B\u{fc}cher.Example"),
            "ann@xn--bcher-kva.example"
        );
        assert_eq!(
            normalize_email("ann@xn--bcher-kva.example"),
            "ann@xn--bcher-kva.example"
        );
        // The Kelvin sign in a domain maps to "k" under IDNA, as every
        // resolver maps it: one domain, so one account.
        assert_eq!(
            normalize_email("ann@\u{212A}iosk.example"),
            normalize_email("ann@kiosk.example")
        );
    }

    #[test]
    fn stored_addresses_keep_the_local_part_and_an_ascii_domain() {
        assert_eq!(canonical_email(" Ann@Example.com "), "Ann@Example.com");
        assert_eq!(
            canonical_email("Ann@B\u{fc}cher.example"),
            "Ann@xn--bcher-kva.example"
        );
    }
}
