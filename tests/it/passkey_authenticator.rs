//! A software passkey authenticator for the tests: a P-256 key, a
//! discoverable credential, user verification, a sign counter, and
//! attestation "none" (WebAuthn Level 3 §6.5), written out by hand in CBOR.
//! Each field can be bent to make the refusals a real authenticator or a
//! phishing page would cause: another origin, another rp id, no user
//! verification, a counter that goes backwards.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use serde_json::{Value, json};

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

pub struct Authenticator {
    key: SigningKey,
    pub credential_id: Vec<u8>,
    /// The user handle the credential was created for (the account's id).
    pub user_handle: Vec<u8>,
    /// The next assertion's counter is this plus one; 0 keeps no counter.
    pub counter: u32,
    pub keeps_counter: bool,
    /// What the browser puts in `clientDataJSON.origin`.
    pub origin: String,
    /// What the authenticator hashes into `rpIdHash`.
    pub rp_id: String,
    /// Whether it verifies the user (PIN, biometric).
    pub verifies_user: bool,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("random bytes");
    bytes
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

// ---------------------------------------------------------------- CBOR (RFC 8949)

fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let m = major << 5;
    match value {
        0..=23 => out.push(m | value as u8),
        24..=0xff => out.extend([m | 24, value as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((value as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend((value as u32).to_be_bytes());
        }
    }
}

fn int(out: &mut Vec<u8>, value: i64) {
    if value >= 0 {
        head(out, 0, value as u64);
    } else {
        head(out, 1, (-1 - value) as u64);
    }
}

fn bytes(out: &mut Vec<u8>, data: &[u8]) {
    head(out, 2, data.len() as u64);
    out.extend(data);
}

fn text(out: &mut Vec<u8>, data: &str) {
    head(out, 3, data.len() as u64);
    out.extend(data.as_bytes());
}

impl Authenticator {
    /// An authenticator for the site at `origin` (`http://localhost:PORT`).
    pub fn new(origin: &str) -> Self {
        let host = url::Url::parse(origin)
            .expect("origin")
            .host_str()
            .expect("host")
            .to_owned();
        let key = loop {
            if let Ok(key) = SigningKey::from_slice(&random_bytes::<32>()) {
                break key;
            }
        };
        Self {
            key,
            credential_id: random_bytes::<16>().to_vec(),
            user_handle: Vec::new(),
            counter: 0,
            keeps_counter: true,
            origin: origin.to_owned(),
            rp_id: host,
            verifies_user: true,
        }
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_sec1_point(false);
        let sec1 = point.as_bytes();
        let mut out = Vec::new();
        head(&mut out, 5, 5);
        int(&mut out, 1); // kty
        int(&mut out, 2); // EC2
        int(&mut out, 3); // alg
        int(&mut out, -7); // ES256
        int(&mut out, -1); // crv
        int(&mut out, 1); // P-256
        int(&mut out, -2); // x
        bytes(&mut out, &sec1[1..33]);
        int(&mut out, -3); // y
        bytes(&mut out, &sec1[33..65]);
        out
    }

    fn flags(&self) -> u8 {
        if self.verifies_user { UP | UV } else { UP }
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    /// `navigator.credentials.create()` for `options` (`{"publicKey": …}`):
    /// the credential as the page's script posts it.
    pub fn create(&mut self, options: &Value) -> Value {
        let pk = &options["publicKey"];
        let challenge = pk["challenge"].as_str().expect("a challenge");
        self.user_handle = unb64(pk["user"]["id"].as_str().expect("a user id"));
        let client_data = self.client_data("webauthn.create", challenge);
        let mut auth_data = sha256(self.rp_id.as_bytes());
        auth_data.push(self.flags() | AT);
        auth_data.extend(0u32.to_be_bytes());
        auth_data.extend([0u8; 16]); // AAGUID: none
        auth_data.extend((self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&self.credential_id);
        auth_data.extend(self.cose_key());
        let mut attestation = Vec::new();
        head(&mut attestation, 5, 3);
        text(&mut attestation, "fmt");
        text(&mut attestation, "none");
        text(&mut attestation, "attStmt");
        head(&mut attestation, 5, 0);
        text(&mut attestation, "authData");
        bytes(&mut attestation, &auth_data);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64(&attestation),
                "clientDataJSON": b64(&client_data),
                "transports": ["internal"],
            },
        })
    }

    /// `navigator.credentials.get()` for `options`: the assertion as the
    /// page's script posts it (the user handle included: discoverable).
    pub fn get(&mut self, options: &Value) -> Value {
        let challenge = options["publicKey"]["challenge"]
            .as_str()
            .expect("a challenge");
        let client_data = self.client_data("webauthn.get", challenge);
        if self.keeps_counter {
            self.counter += 1;
        }
        self.sign(&client_data, self.counter)
    }

    /// An assertion over `client_data` with `counter`, as this
    /// authenticator would make it.
    pub fn sign(&self, client_data: &[u8], counter: u32) -> Value {
        let mut auth_data = sha256(self.rp_id.as_bytes());
        auth_data.push(self.flags());
        auth_data.extend(counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend(sha256(client_data));
        let signature: DerSignature = self.key.sign(&signed);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(client_data),
                "signature": b64(signature.as_bytes()),
                "userHandle": b64(&self.user_handle),
            },
        })
    }
}
