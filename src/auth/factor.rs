//! The authentication factors a session can pass, and the `acr` and `amr`
//! they add up to: the one place that lists factors (a new one, such as
//! passkeys, is a new variant here and a ceremony that records it).

/// `acr` of a sign-in with the password alone.
pub const ACR_PWD: &str = "urn:stepgate:acr:pwd";
/// `acr` of a sign-in with more than one factor, or with a user-verified
/// passkey alone (possession and a PIN or biometric).
pub const ACR_MFA: &str = "urn:stepgate:acr:mfa";
/// `acr` of a phishing-resistant sign-in: a passkey, bound to our origin,
/// was used in it. A recovery code or a 6-digit code never meets it.
pub const ACR_PHR: &str = "urn:stepgate:acr:phr";

/// The assurance levels, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Acr {
    Pwd,
    Mfa,
    Phr,
}

impl Acr {
    pub fn as_str(self) -> &'static str {
        match self {
            Acr::Pwd => ACR_PWD,
            Acr::Mfa => ACR_MFA,
            Acr::Phr => ACR_PHR,
        }
    }

    pub fn parse(value: &str) -> Option<Acr> {
        [Acr::Pwd, Acr::Mfa, Acr::Phr]
            .into_iter()
            .find(|a| a.as_str() == value)
    }

    /// What a request's `acr_values` demands, honoured as required: any one
    /// of the listed values satisfies it (OpenID Connect Core §3.1.2.1,
    /// "in order of preference"), so the weakest one we know. Values we do
    /// not know demand nothing; `None` when nothing is demanded.
    pub fn demanded(acr_values: &[String]) -> Option<Acr> {
        acr_values.iter().filter_map(|v| Acr::parse(v)).min()
    }
}

/// One authentication factor. The order of the variants is the order of
/// their `amr` values in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Factor {
    /// Something you know: the account password.
    Password,
    /// A 6-digit code from an authenticator app (RFC 6238).
    Totp,
    /// One of the single-use recovery codes, standing in for the app.
    RecoveryCode,
    /// A passkey (WebAuthn), always with user verification.
    Passkey,
}

impl Factor {
    pub const ALL: [Factor; 4] = [
        Factor::Password,
        Factor::Totp,
        Factor::RecoveryCode,
        Factor::Passkey,
    ];

    /// The name a session row stores (`sessions.factors`).
    pub fn name(self) -> &'static str {
        match self {
            Factor::Password => "pwd",
            Factor::Totp => "totp",
            Factor::RecoveryCode => "recovery",
            Factor::Passkey => "passkey",
        }
    }

    pub fn from_name(name: &str) -> Option<Factor> {
        Factor::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Its RFC 8176 §2 authentication method references. A recovery code
    /// is a one-time password ("otp") like the app's code; a passkey is a
    /// proof of possession of a key ("pop").
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            Factor::Password => &["pwd"],
            Factor::Totp | Factor::RecoveryCode => &["otp"],
            Factor::Passkey => &["pop"],
        }
    }

    /// Whether it counts as a second factor beside the password.
    pub fn is_second_factor(self) -> bool {
        !matches!(self, Factor::Password)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The set of factors a session passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Factors(u8);

impl Factors {
    pub fn of(factor: Factor) -> Factors {
        Factors(factor.bit())
    }

    #[must_use]
    pub fn with(self, factor: Factor) -> Factors {
        Factors(self.0 | factor.bit())
    }

    pub fn contains(self, factor: Factor) -> bool {
        self.0 & factor.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Factor> {
        Factor::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// Whether any second factor was passed.
    pub fn has_second_factor(self) -> bool {
        self.iter().any(Factor::is_second_factor)
    }

    /// As `sessions.factors` stores it: names separated by spaces.
    pub fn to_names(self) -> String {
        self.iter().map(Factor::name).collect::<Vec<_>>().join(" ")
    }

    /// Reads `sessions.factors`. A name this version does not know (written
    /// by a newer node) is left out, so it can only ask for more, never
    /// grant more.
    pub fn from_names(names: &str) -> Factors {
        names
            .split(' ')
            .filter_map(Factor::from_name)
            .fold(Factors::default(), Factors::with)
    }

    /// The strongest level these factors meet: `phr` with a passkey (alone
    /// it is multi-factor too: possession plus the authenticator's user
    /// verification), `mfa` with two factors, else `pwd`.
    pub fn acr(self) -> Acr {
        if self.contains(Factor::Passkey) {
            Acr::Phr
        } else if self.has_second_factor() && self.iter().count() > 1 {
            Acr::Mfa
        } else {
            Acr::Pwd
        }
    }

    /// `acr` and `amr` of a sign-in with these factors: each factor's RFC
    /// 8176 §2 values once, in [`Factor`] order; "user" when a passkey was
    /// the whole sign-in (its user verification is what stands in for the
    /// password); then "mfa" when two factors, or such a passkey, were used
    /// (RFC 8176 §2: "mfa", multiple-factor authentication).
    pub fn assurance(self) -> (&'static str, Vec<String>) {
        let mut amr: Vec<String> = Vec::new();
        for value in self.iter().flat_map(|f| f.amr().iter()) {
            if !amr.iter().any(|v| v == value) {
                amr.push((*value).to_owned());
            }
        }
        let passwordless = self.contains(Factor::Passkey) && !self.contains(Factor::Password);
        if passwordless {
            amr.push("user".to_owned());
        }
        let acr = self.acr();
        if acr > Acr::Pwd {
            amr.push("mfa".to_owned());
        }
        (acr.as_str(), amr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pwd_and(f: Factor) -> Factors {
        Factors::of(Factor::Password).with(f)
    }

    #[test]
    fn the_password_alone_is_pwd() {
        let (acr, amr) = Factors::of(Factor::Password).assurance();
        assert_eq!(acr, ACR_PWD);
        assert_eq!(amr, ["pwd"]);
    }

    #[test]
    fn password_and_code_is_mfa() {
        let (acr, amr) = pwd_and(Factor::Totp).assurance();
        assert_eq!(acr, ACR_MFA);
        assert_eq!(amr, ["pwd", "otp", "mfa"]);
    }

    #[test]
    fn a_recovery_code_counts_as_a_one_time_password() {
        let (acr, amr) = pwd_and(Factor::RecoveryCode).assurance();
        assert_eq!(acr, ACR_MFA);
        assert_eq!(amr, ["pwd", "otp", "mfa"]);
        // Code then recovery code on one session: "otp" once.
        let (_, amr) = pwd_and(Factor::Totp).with(Factor::RecoveryCode).assurance();
        assert_eq!(amr, ["pwd", "otp", "mfa"]);
    }

    #[test]
    fn a_passkey_alone_is_phishing_resistant_multi_factor() {
        let (acr, amr) = Factors::of(Factor::Passkey).assurance();
        assert_eq!(acr, ACR_PHR);
        assert_eq!(amr, ["pop", "user", "mfa"]);
    }

    #[test]
    fn password_then_passkey_is_phr() {
        let (acr, amr) = pwd_and(Factor::Passkey).assurance();
        assert_eq!(acr, ACR_PHR);
        assert_eq!(amr, ["pwd", "pop", "mfa"]);
        // A code and a passkey in one session: both said, phr met.
        let (acr, amr) = pwd_and(Factor::Totp).with(Factor::Passkey).assurance();
        assert_eq!(acr, ACR_PHR);
        assert_eq!(amr, ["pwd", "otp", "pop", "mfa"]);
    }

    #[test]
    fn a_recovery_code_never_meets_phr() {
        assert_eq!(pwd_and(Factor::RecoveryCode).acr(), Acr::Mfa);
        assert_eq!(pwd_and(Factor::Totp).acr(), Acr::Mfa);
        assert_eq!(Factors::of(Factor::RecoveryCode).acr(), Acr::Pwd);
    }

    #[test]
    fn acr_values_demand_the_weakest_value_listed() {
        let v = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(Acr::demanded(&v(&[])), None);
        assert_eq!(Acr::demanded(&v(&["urn:other"])), None);
        assert_eq!(Acr::demanded(&v(&[ACR_PHR])), Some(Acr::Phr));
        assert_eq!(Acr::demanded(&v(&[ACR_PHR, ACR_MFA])), Some(Acr::Mfa));
        assert_eq!(Acr::demanded(&v(&["urn:other", ACR_MFA])), Some(Acr::Mfa));
        assert_eq!(Acr::demanded(&v(&[ACR_MFA, ACR_PWD])), Some(Acr::Pwd));
    }

    #[test]
    fn names_round_trip_and_unknown_names_grant_nothing() {
        for set in [
            Factors::of(Factor::Password),
            pwd_and(Factor::Totp),
            pwd_and(Factor::RecoveryCode).with(Factor::Passkey),
        ] {
            assert_eq!(Factors::from_names(&set.to_names()), set);
        }
        assert_eq!(pwd_and(Factor::Totp).to_names(), "pwd totp");
        let read = Factors::from_names("pwd retina");
        assert_eq!(read, Factors::of(Factor::Password));
        assert!(!read.has_second_factor());
        assert_eq!(Factors::from_names(""), Factors::default());
    }

    #[test]
    fn only_a_second_factor_is_owed_after_the_password() {
        assert!(!Factors::of(Factor::Password).has_second_factor());
        for f in [Factor::Totp, Factor::RecoveryCode, Factor::Passkey] {
            assert!(f.is_second_factor());
            assert!(pwd_and(f).has_second_factor());
        }
    }
}
