//! A passkey authenticator in software, as a browser and a platform
//! authenticator together would answer WebAuthn's `create()` and `get()`:
//! P-256 keys, `none` attestation, user verification done, a signature
//! counter the test controls. It is the client side of the ceremony; the
//! server checks it with its real WebAuthn library.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

/// One credential the authenticator holds.
pub struct Credential {
    pub id: Vec<u8>,
    key: EcdsaKeyPair,
    pub user_handle: Vec<u8>,
    pub rp_id: String,
    /// The signature counter of the next assertion, less one; a test may
    /// set it back to play a cloned authenticator.
    pub counter: u32,
}

/// The authenticator, for pages of `origin`.
pub struct Authenticator {
    pub origin: String,
    pub credentials: Vec<Credential>,
    /// Whether assertions count (a counter of 0 forever, as many passkey
    /// providers send, when false).
    pub counts: bool,
}

/// CBOR, as much as a credential needs (RFC 8949): heads, byte and text
/// strings, maps.
fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
    }
}

fn int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        head(0, n as u64, out);
    } else {
        head(1, (-1 - n) as u64, out);
    }
}

fn bytes(b: &[u8], out: &mut Vec<u8>) {
    head(2, b.len() as u64, out);
    out.extend_from_slice(b);
}

fn text(t: &str, out: &mut Vec<u8>) {
    head(3, t.len() as u64, out);
    out.extend_from_slice(t.as_bytes());
}

fn b64(value: &Value) -> Vec<u8> {
    B64.decode(value.as_str().expect("a base64url string"))
        .expect("base64url")
}

impl Authenticator {
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            credentials: Vec::new(),
            counts: true,
        }
    }

    fn client_data(&self, kind: &str, challenge: &Value) -> Vec<u8> {
        json!({
            "type": kind,
            "challenge": challenge.as_str().expect("challenge"),
            "origin": self.origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    fn auth_data(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
        let mut data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        data.push(flags);
        data.extend(counter.to_be_bytes());
        data
    }

    /// `navigator.credentials.create({publicKey})`, as `toJSON()` writes
    /// its answer. `options` is the server's `{"publicKey": …}`.
    pub fn create(&mut self, options: &Value) -> Value {
        let options = &options["publicKey"];
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let point = key.public_key().as_ref().to_vec();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        let mut id = vec![0u8; 32];
        rng.fill(&mut id).unwrap();
        let rp_id = options["rp"]["id"].as_str().expect("rp.id").to_owned();

        let mut cose = Vec::new();
        head(5, 5, &mut cose);
        int(1, &mut cose); // kty: EC2
        int(2, &mut cose);
        int(3, &mut cose); // alg: ES256
        int(-7, &mut cose);
        int(-1, &mut cose); // crv: P-256
        int(1, &mut cose);
        int(-2, &mut cose);
        bytes(&point[1..33], &mut cose);
        int(-3, &mut cose);
        bytes(&point[33..], &mut cose);

        // User present, user verified, attested credential data.
        let mut auth_data = Self::auth_data(&rp_id, 0x01 | 0x04 | 0x40, 0);
        auth_data.extend([0u8; 16]);
        auth_data.extend((id.len() as u16).to_be_bytes());
        auth_data.extend(&id);
        auth_data.extend(&cose);

        let mut attestation = Vec::new();
        head(5, 3, &mut attestation);
        text("fmt", &mut attestation);
        text("none", &mut attestation);
        text("attStmt", &mut attestation);
        head(5, 0, &mut attestation);
        text("authData", &mut attestation);
        bytes(&auth_data, &mut attestation);

        let client_data = self.client_data("webauthn.create", &options["challenge"]);
        self.credentials.push(Credential {
            id: id.clone(),
            key,
            user_handle: b64(&options["user"]["id"]),
            rp_id,
            counter: 0,
        });
        json!({
            "id": B64.encode(&id),
            "rawId": B64.encode(&id),
            "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(&client_data),
                "attestationObject": B64.encode(&attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        })
    }

    /// `navigator.credentials.get({publicKey})` with the credential at
    /// `index`, as `toJSON()` writes its answer.
    pub fn get_with(&mut self, options: &Value, index: usize) -> Value {
        let options = &options["publicKey"];
        let client_data = self.client_data("webauthn.get", &options["challenge"]);
        let counts = self.counts;
        let credential = &mut self.credentials[index];
        if counts {
            credential.counter += 1;
        }
        let auth_data = Self::auth_data(&credential.rp_id, 0x01 | 0x04, credential.counter);
        let mut signed = auth_data.clone();
        signed.extend(digest(&SHA256, &client_data).as_ref());
        let signature = credential.key.sign(&SystemRandom::new(), &signed).unwrap();
        json!({
            "id": B64.encode(&credential.id),
            "rawId": B64.encode(&credential.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(&client_data),
                "authenticatorData": B64.encode(&auth_data),
                "signature": B64.encode(signature.as_ref()),
                "userHandle": B64.encode(&credential.user_handle),
            },
            "clientExtensionResults": {},
        })
    }

    /// The same with the newest credential.
    pub fn get(&mut self, options: &Value) -> Value {
        let last = self.credentials.len() - 1;
        self.get_with(options, last)
    }
}
