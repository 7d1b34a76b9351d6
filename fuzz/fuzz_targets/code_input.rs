//! What people type as a second factor: a TOTP code (`totp::verify`, RFC
//! 6238) or a recovery code (`normalize_recovery_code`). Never a panic; a
//! code accepted is exactly the digits the generator gives for a step in
//! the window, and a normalised recovery code normalises to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepgate::auth::totp::{TotpParams, code_at, normalize_recovery_code, verify};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let secret = [7u8; 20];
    let params = TotpParams::default();
    let now = 1_800_000_015;
    if verify(&secret, &params, input, now).is_some() {
        // One of the steps in the skew window (RFC 6238 §5.2).
        let skew = u64::from(params.skew) * params.period_secs;
        let window: Vec<String> = (0..=2 * u64::from(params.skew))
            .map(|i| code_at(&secret, &params, now - skew + i * params.period_secs))
            .collect();
        assert!(
            window.iter().any(|c| c == input.trim()),
            "accepted {input:?}"
        );
    }
    if let Some(code) = normalize_recovery_code(input) {
        assert_eq!(
            normalize_recovery_code(&code).as_deref(),
            Some(code.as_str())
        );
    }
});
