//! What each way of signing in costs the server's CPU, side by side in one
//! run (SPEC §12): the password's Argon2id verification, the authenticator
//! app's code check (open the sealed secret, HMAC-SHA-1 over three steps),
//! and a passkey's assertion (parse the browser's answer and the ceremony's
//! state, check client data, flags and the P-256 signature with
//! `webauthn-rs`). Storage and HTTP come on top of each, the same for all.
//!
//! ```text
//! cargo bench -p latchkey-app --bench sign_in
//! ```

// Test code: an authenticator that cannot unwrap has failed.
#[allow(dead_code, unreachable_pub, clippy::unwrap_used)]
#[path = "../../latchkey-server/tests/common/authenticator.rs"]
mod authenticator;

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_core::password::PasswordHasher;
use latchkey_core::seal::{self, MasterKey};
use latchkey_core::totp;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential, Url, Uuid,
    WebauthnBuilder,
};

const ORIGIN: &str = "http://localhost:8080";

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let mut group = c.benchmark_group("sign_in");

    let hasher = PasswordHasher::new(&rng).expect("hasher");
    let stored = hasher.hash("load test password", &rng).expect("hash");
    group.sample_size(20);
    group.bench_function("password_argon2id", |b| {
        b.iter(|| assert!(hasher.verify(black_box("load test password"), Some(&stored))))
    });
    group.sample_size(100);

    let master = MasterKey::from_hex(&"ab".repeat(32)).expect("a master key");
    let secret = [7u8; 20];
    let sealed = seal::seal(Some(&master), "totp:fac_1", &secret, &rng).expect("seal");
    let now = 1_800_000_000;
    let code = totp::code_at(&secret, totp::step_of(now));
    group.bench_function("totp_code", |b| {
        b.iter(|| {
            let opened = match seal::open(Some(&master), "totp:fac_1", black_box(&sealed)) {
                Ok(seal::Opened::Sealed(s) | seal::Opened::Plain(s)) => s,
                Err(e) => panic!("{e}"),
            };
            assert!(totp::matching_step(&opened, black_box(&code), now).is_some());
        })
    });

    // A passkey registered once; each iteration checks a fresh assertion
    // (one per challenge, as in real sign-ins), from the JSON the server
    // reads: the browser's answer and the stored ceremony and credential.
    let origin = Url::parse(ORIGIN).expect("origin");
    let webauthn = WebauthnBuilder::new("localhost", &origin)
        .and_then(|b| b.build())
        .expect("webauthn");
    let mut key = authenticator::Authenticator::new(ORIGIN);
    let (creation, registration) = webauthn
        .start_passkey_registration(Uuid::from_bytes([9; 16]), "alice", "alice", None)
        .expect("creation options");
    let creation = serde_json::to_value(&creation).expect("json");
    let answer = serde_json::from_value(key.create(&creation)).expect("registration answer");
    let registration: PasskeyRegistration = registration;
    let passkey = webauthn
        .finish_passkey_registration(&answer, &registration)
        .expect("registered");
    let stored_passkey = serde_json::to_string(&passkey).expect("json");
    group.bench_function("passkey_assertion", |b| {
        b.iter_batched(
            || {
                let (request, state) = webauthn
                    .start_discoverable_authentication()
                    .expect("request options");
                let request = serde_json::json!({ "publicKey": request.public_key });
                let answer = key.get(&request).to_string();
                (answer, serde_json::to_string(&state).expect("state"))
            },
            |(answer, state)| {
                let credential: PublicKeyCredential =
                    serde_json::from_str(&answer).expect("answer");
                let state: DiscoverableAuthentication =
                    serde_json::from_str(&state).expect("state");
                let passkey: Passkey = serde_json::from_str(&stored_passkey).expect("passkey");
                webauthn
                    .identify_discoverable_authentication(&credential)
                    .expect("a user handle");
                webauthn
                    .finish_discoverable_authentication_v2(&credential, state, &passkey)
                    .expect("verified")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
