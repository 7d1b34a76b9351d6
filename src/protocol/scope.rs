//! Scopes (RFC 6749 §3.3): a space-delimited, order-free set of tokens.

use std::collections::BTreeSet;

/// What this server knows how to grant (OpenID Connect Core §5.4, §11).
/// Discovery publishes the same list as `scopes_supported`.
pub const SUPPORTED_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A set of scope tokens, kept sorted so that the wire form of equal sets is
/// equal.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Scopes(pub BTreeSet<String>);

impl Scopes {
    /// RFC 6749 §3.3: tokens are separated by spaces (%x20); runs of spaces
    /// leave empty tokens, which are ignored, and a token given twice counts
    /// once.
    pub fn parse(s: &str) -> Scopes {
        Scopes(
            s.split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }

    /// Every scope of `self` is in `other` (a refresh may narrow, never widen,
    /// RFC 6749 §6).
    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The scopes of `self` that are in `allowed`.
    pub fn intersect(&self, allowed: &[String]) -> Scopes {
        Scopes(
            self.0
                .iter()
                .filter(|s| allowed.iter().any(|a| a == *s))
                .cloned()
                .collect(),
        )
    }

    /// The `scope` parameter: space-joined, sorted.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(s);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What granting `scope` lets the application do, in plain words for the
/// consent page. `None` for a scope this server does not grant.
pub fn describe(scope: &str) -> Option<&'static str> {
    match scope {
        "openid" => Some("Know who you are (your account id)"),
        "profile" => Some("See your name"),
        "email" => Some("See your email address"),
        "offline_access" => Some("Stay signed in to it while you are away (refresh its access)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_splits_on_spaces_and_ignores_empty_tokens() {
        let s = Scopes::parse("  openid   email openid profile ");
        assert_eq!(s.to_wire(), "email openid profile");
        assert!(s.contains("openid"));
        assert!(!s.contains("offline_access"));
        assert!(Scopes::parse("").is_empty());
        assert!(Scopes::parse("   ").is_empty());
        assert!(!Scopes::parse("openid").is_empty());
    }

    #[test]
    fn subset_and_intersection() {
        let granted = Scopes::parse("openid profile email");
        assert!(Scopes::parse("openid email").is_subset(&granted));
        assert!(Scopes::parse("").is_subset(&granted));
        assert!(!Scopes::parse("openid offline_access").is_subset(&granted));
        let kept = Scopes::parse("openid email admin").intersect(&strings(&["openid", "email"]));
        assert_eq!(kept, Scopes::parse("email openid"));
        assert!(granted.intersect(&[]).is_empty());
    }

    #[test]
    fn every_supported_scope_is_described() {
        for s in SUPPORTED_SCOPES {
            assert!(describe(s).is_some(), "{s}");
        }
        assert_eq!(describe("profile"), Some("See your name"));
        assert_eq!(describe("admin"), None);
    }

    #[test]
    fn serde_round_trip() {
        let s = Scopes::parse("openid email");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["email","openid"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), s);
    }
}
