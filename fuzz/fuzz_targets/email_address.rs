//! Email address parsing (`check_email`, `normalize_email`,
//! `canonical_email`): never a panic, and for every address accepted the
//! comparison key is stable (normalising twice changes nothing), the
//! canonical form compares equal to what was typed and is accepted too, and
//! the key is ASCII (no Unicode case folding can make two addresses one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepgate::service::accounts::check_email;
use stepgate::store::users::{canonical_email, normalize_email};

fuzz_target!(|data: &[u8]| {
    let Ok(email) = std::str::from_utf8(data) else {
        return;
    };
    let key = normalize_email(email);
    let canonical = canonical_email(email);
    if check_email(email).is_none() {
        assert_eq!(normalize_email(&key), key, "normalising is idempotent");
        assert_eq!(normalize_email(&canonical), key, "canonical compares equal");
        assert!(check_email(&canonical).is_none(), "canonical is accepted");
        assert!(
            key.is_ascii(),
            "an accepted address has an ASCII key: {key:?}"
        );
    }
});
