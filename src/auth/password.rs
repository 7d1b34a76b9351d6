//! Password rules and argon2id hashing (pure, blocking: callers run these on
//! the bounded hashing threads, see `hasher`).

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::config::PasswordSettings;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRuleError {
    #[error("Use at least {0} characters.")]
    TooShort(usize),
    #[error("Use at most {0} characters.")]
    TooLong(usize),
}

/// NIST SP 800-63B §3.1.1.2: a length range and nothing else (no composition
/// rules). Length counts Unicode characters, not bytes.
pub fn check_password_rules(
    password: &str,
    rules: &PasswordSettings,
) -> Result<(), PasswordRuleError> {
    let length = password.chars().count();
    if length < rules.min_length {
        return Err(PasswordRuleError::TooShort(rules.min_length));
    }
    if length > rules.max_length {
        return Err(PasswordRuleError::TooLong(rules.max_length));
    }
    Ok(())
}

fn argon2(settings: &PasswordSettings) -> Argon2<'static> {
    let params = Params::new(
        settings.argon2_memory_kib,
        settings.argon2_iterations,
        settings.argon2_parallelism,
        None,
    )
    .expect("argon2 parameters validated at configuration load");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// An argon2id PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
pub fn hash_password(password: &str, settings: &PasswordSettings) -> String {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).expect("the system RNG works");
    argon2(settings)
        .hash_password_with_salt(password.as_bytes(), &salt)
        .expect("argon2id hashing with valid parameters")
        .to_string()
}

/// Verifies with the parameters stored in the hash itself, so hashes made
/// under older settings keep working. A malformed hash never verifies.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordSettings {
        PasswordSettings {
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..PasswordSettings::default()
        }
    }

    #[test]
    fn hash_then_verify() {
        let hash = hash_password("correct horse battery staple", &fast());
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(verify_password("correct horse battery staple", &hash));
        assert!(!verify_password("correct horse battery stapl", &hash));
        assert!(!verify_password("x", "not a hash"));
        // Same password, new salt, new hash.
        assert_ne!(hash, hash_password("correct horse battery staple", &fast()));
    }

    #[test]
    fn length_rules_count_characters() {
        let rules = PasswordSettings::default();
        assert_eq!(
            check_password_rules("short", &rules),
            Err(PasswordRuleError::TooShort(8))
        );
        assert!(check_password_rules("éééééééé", &rules).is_ok());
        assert!(check_password_rules(&"a".repeat(64), &rules).is_ok());
        assert_eq!(
            check_password_rules(&"a".repeat(257), &rules),
            Err(PasswordRuleError::TooLong(256))
        );
        // No composition rules: all lower-case letters is fine.
        assert!(check_password_rules("aaaaaaaa", &rules).is_ok());
    }
}
