//! Access-token verification in process against the raw Ed25519 verify of
//! the crypto backend on the same bytes (SPEC §9: at least 90 %), plus
//! signing and refresh-token hashing.
//!
//! `cargo bench -p latchkey-verify --bench verify`

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_core::jwt::{AccessClaims, Verifier, sign};
use latchkey_core::keys::{SigningAlg, SigningKey};
use latchkey_core::refresh::{RefreshKeys, RefreshToken};

const NOW: i64 = 1_800_000_000;

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "usr_P7dqnVeNE4Qr4LxSKihBDQ".into(),
        aud: "latchkey".into(),
        exp: NOW + 600,
        iat: NOW,
        nbf: None,
        jti: "W9DozUfibln222lJIuysbA".into(),
        client_id: "first-party".into(),
        scope: "profile".into(),
        sid: Some("ses_BHyLMR3aj5P_vQXBOtb6ug".into()),
        auth_time: Some(NOW),
        amr: None,
        acr: None,
        cnf: None,
        fingerprint: None,
    }
}

fn bench(c: &mut Criterion) {
    // As the server signs: with its signers kept per key.
    latchkey_core::signers::install();
    let rng = SystemRandom::new();
    let (key, pkcs8) = SigningKey::generate(SigningAlg::EdDSA, &rng).expect("key");
    let mut verifier = Verifier::new("http://127.0.0.1:8080", "latchkey");
    verifier.insert(&key.jwk).expect("jwk");
    let token = sign(&key, &claims()).expect("sign");

    // The raw backend rate: one Ed25519 verify of the same signing input.
    let (message, signature) = token.rsplit_once('.').expect("jws");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("b64");
    let public = URL_SAFE_NO_PAD
        .decode(key.jwk.x.as_deref().expect("x"))
        .expect("b64");
    let raw_key = UnparsedPublicKey::new(&ED25519, public);

    let mut group = c.benchmark_group("access_token");
    group.bench_function("raw_ed25519_verify", |b| {
        b.iter(|| {
            raw_key
                .verify(black_box(message.as_bytes()), black_box(&signature))
                .expect("valid")
        })
    });
    // First sight: every token is new to the verifier (20,000 distinct
    // tokens, more than it remembers), so each one is parsed and its
    // signature checked: the cost of the first request with a token.
    let fresh: Vec<String> = (0..20_000)
        .map(|n| {
            let mut c = claims();
            c.jti = format!("jti{n}");
            sign(&key, &c).expect("sign")
        })
        .collect();
    let mut next = fresh.iter().cycle();
    group.bench_function("verify_first_sight", |b| {
        b.iter(|| {
            let token = next.next().expect("cycle");
            verifier.verify(black_box(token), NOW).expect("valid")
        })
    });
    // Again: the same token, as a resource server sees it on every request
    // of its lifetime; the verifier re-checks only its times.
    group.bench_function("verify_again", |b| {
        b.iter(|| verifier.verify(black_box(&token), NOW).expect("valid"))
    });
    group.bench_function("sign", |b| {
        b.iter(|| sign(&key, black_box(&claims())).expect("sign"))
    });
    // The backend's own costs: a signature with a parsed key, and parsing
    // the key (which derives its public half).
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("pkcs8");
    group.bench_function("raw_ed25519_sign", |b| {
        b.iter(|| pair.sign(black_box(message.as_bytes())))
    });
    group.bench_function("raw_ed25519_parse_key", |b| {
        b.iter(|| {
            Ed25519KeyPair::from_pkcs8(black_box(&pkcs8))
                .expect("pkcs8")
                .public_key()
                .as_ref()
                .len()
        })
    });
    group.finish();

    let keys = RefreshKeys::from_secret(&[7; 32]);
    let refresh = RefreshToken::generate(&rng).expect("token");
    let mut group = c.benchmark_group("refresh_token");
    group.bench_function("keyed_hash", |b| b.iter(|| keys.hash(black_box(&refresh))));
    group.bench_function("derive_successor", |b| {
        b.iter(|| keys.successor(black_box(&refresh)))
    });
    group.finish();
}

/// A DPoP proof of an ES256 or Ed25519 key, as a client makes one.
fn proof(alg: jsonwebtoken::Algorithm, jti: &str) -> String {
    use aws_lc_rs::signature::{self, KeyPair};
    let rng = SystemRandom::new();
    let (encoding, jwk) = match alg {
        jsonwebtoken::Algorithm::ES256 => {
            let a = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(a, &rng).expect("key");
            let pair = signature::EcdsaKeyPair::from_pkcs8(a, pkcs8.as_ref()).expect("key");
            let p = pair.public_key().as_ref();
            (
                jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])}),
            )
        }
        _ => {
            let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
            let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
            (
                jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
            )
        }
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(serde_json::from_value(jwk).expect("jwk"));
    let claims = serde_json::json!({"jti": jti, "htm": "GET", "htu": "https://api.example/hello", "iat": NOW,
        "ath": latchkey_core::dpop::ath("token")});
    jsonwebtoken::encode(&header, &claims, &encoding).expect("proof")
}

/// Checking a DPoP proof beside checking an access token: what a request
/// with a DPoP-bound token costs a resource server on top.
fn bench_proofs(c: &mut Criterion) {
    latchkey_core::signers::install();
    let expected = latchkey_core::dpop::Expected {
        method: "GET",
        url: "https://api.example/hello",
        now: NOW,
        access_token: Some("token"),
    };
    let mut group = c.benchmark_group("dpop_proof");
    for (name, alg) in [
        ("verify_es256", jsonwebtoken::Algorithm::ES256),
        ("verify_eddsa", jsonwebtoken::Algorithm::EdDSA),
    ] {
        let proof = proof(alg, "jti-1");
        latchkey_core::dpop::verify(&proof, &expected).expect("valid");
        group.bench_function(name, |b| {
            b.iter(|| latchkey_core::dpop::verify(black_box(&proof), &expected).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_proofs);
criterion_main!(benches);
