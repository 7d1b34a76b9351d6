//! JWT decoding as `id_token_hint` meets it: `decode_rs256` never panics on
//! any input, with a key that refuses every signature (the real case for a
//! forgery) and with one that accepts every signature, so the fuzzer also
//! reaches the claim checks behind the signature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepgate::protocol::jwt::{VerifyKey, decode_rs256};

struct Accepts(bool);

impl VerifyKey for Accepts {
    fn verifies(&self, _message: &[u8], _signature: &[u8]) -> bool {
        self.0
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    for accepts in [false, true] {
        let decoded = decode_rs256::<serde_json::Value, _>(
            token,
            Some("JWT"),
            "https://id.example.com",
            1_800_000_000,
            |_| Some(Accepts(accepts)),
        );
        if !accepts {
            assert!(decoded.is_err(), "a refused signature decoded");
        }
        if let Ok(claims) = decoded {
            assert_eq!(claims["iss"], "https://id.example.com");
        }
    }
});
