//! The links that carry an authorization request between the protocol
//! endpoints (`oauth`) and the hosted pages (`pages`): both use this
//! module, neither imports the other for it.

use crate::protocol::authorize;

/// The query parameter that carries an interaction's id between pages.
pub const INTERACTION: &str = "interaction";

/// Where an interaction goes on once a page step is done (`/authorize`
/// decides the next one).
pub const RESUME_PATH: &str = "/authorize/resume";

/// `path?interaction=ID`.
pub fn with_interaction(path: &str, id: &str) -> String {
    authorize::redirect_with(path, &[(INTERACTION, id)])
}

/// Where a sign-in step goes when it is done: back into the interaction it
/// belongs to, else the profile.
pub fn after_sign_in(interaction: Option<&str>) -> String {
    match interaction {
        Some(id) if !id.is_empty() => with_interaction(RESUME_PATH, id),
        _ => "/profile".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_returns_into_its_interaction_or_to_the_profile() {
        assert_eq!(
            after_sign_in(Some("abc")),
            "/authorize/resume?interaction=abc"
        );
        assert_eq!(after_sign_in(Some("")), "/profile");
        assert_eq!(after_sign_in(None), "/profile");
        assert_eq!(with_interaction("/login", "a b"), "/login?interaction=a+b");
    }
}
