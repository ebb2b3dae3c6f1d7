//! Property tests of rotation (issue 19, part): whatever the order of
//! refreshes, reuses, revocations, expiries and grace replays, the real
//! store agrees with a simple model of the rules, a session never has two
//! live refresh tokens, and a reuse outside the grace window always ends
//! the session.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

use latchkey_core::refresh::TokenHash;
use latchkey_core::rotation::{BindingPolicy, Outcome, Policy, RevocationReason, RotationRequest};
use latchkey_core::session::{self, NewSession};
use latchkey_core::store::User;
use latchkey_core::store::roles::*;
use latchkey_store_sqlite::SqliteStore;
use proptest::prelude::*;

const START: i64 = 1_800_000_000;
const IDLE: i64 = 60;
const ABSOLUTE: i64 = 300;

#[derive(Debug, Clone)]
enum Op {
    /// Present the n-th token issued so far (modulo how many there are).
    Present(usize),
    /// Let time pass.
    Wait(i64),
    /// Log out.
    Revoke,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..8).prop_map(Op::Present),
        2 => (0i64..45).prop_map(Op::Wait),
        1 => Just(Op::Revoke),
    ]
}

/// What the model expects of a presentation.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Rotated,
    Replayed,
    Revoked,
    Rejected,
}

/// The model: the tokens in issue order, when each was used, the session's
/// state.
struct Model {
    issued: Vec<(TokenHash, i64)>,
    used: Vec<Option<i64>>,
    revoked: bool,
    grace: i64,
}

impl Model {
    fn expect(&self, i: usize, now: i64) -> Expect {
        if self.revoked {
            return Expect::Rejected;
        }
        let replay = match self.used[i] {
            Some(at) if self.grace > 0 && now - at <= self.grace => true,
            Some(_) => return Expect::Revoked,
            None => false,
        };
        if START + ABSOLUTE < now {
            return Expect::Rejected;
        }
        let idle_end = (self.issued[i].1 + IDLE).min(START + ABSOLUTE);
        if !replay && idle_end < now {
            return Expect::Rejected;
        }
        if replay {
            Expect::Replayed
        } else {
            Expect::Rotated
        }
    }
}

fn hash(n: usize) -> TokenHash {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(n as u64 + 1).to_be_bytes());
    TokenHash(bytes)
}

/// The successor of a token is a function of it, as the server derives it
/// (so that a grace replay names the successor already stored).
fn successor_of(token: &TokenHash) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &token.0);
    TokenHash::from_slice(digest.as_ref()).unwrap()
}

async fn run(ops: Vec<Op>, grace: i64) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("model.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let user = User {
        id: "usr_m".into(),
        username: "m".into(),
        password_hash: "$argon2id$x".into(),
        disabled: false,
        created_at: START,
        email: None,
        email_verified: false,
        admin: false,
    };
    store.insert_user(&user).await.unwrap();
    let start = session::start(
        &Policy {
            idle_ttl: IDLE,
            absolute_ttl: ABSOLUTE,
            reuse_grace: grace,
            binding_ip: BindingPolicy::Off,
            audit_refreshes: true,
        },
        NewSession {
            id: "ses_m".into(),
            user_id: &user.id,
            client_id: None,
            scope: "profile".into(),
            first_token: hash(0),
            access_jti: "j0".into(),
            ip: "127.0.0.1",
            user_agent: "model",
            dpop_jkt: None,
            auth_time: START,
            auth_method: latchkey_core::strength::AuthMethod::Password,
            now: START,
        },
    );
    store.create_session(&start, 10).await.unwrap().unwrap();
    let policy = Policy {
        idle_ttl: IDLE,
        absolute_ttl: ABSOLUTE,
        reuse_grace: grace,
        binding_ip: BindingPolicy::Off,
        audit_refreshes: true,
    };
    let mut model = Model {
        issued: vec![(hash(0), START)],
        used: vec![None],
        revoked: false,
        grace,
    };
    let mut now = START;
    for op in ops {
        match op {
            Op::Wait(seconds) => now += seconds,
            Op::Revoke => {
                store
                    .revoke_session("ses_m", RevocationReason::Logout, now)
                    .await
                    .unwrap();
                model.revoked = true;
            }
            Op::Present(n) => {
                let i = n % model.issued.len();
                let expected = model.expect(i, now);
                let successor = successor_of(&model.issued[i].0);
                let request = RotationRequest {
                    presented: model.issued[i].0,
                    successor,
                    client_id: None,
                    expected_session: None,
                    scope: None,
                    access_jti: format!("j{}", model.issued.len()),
                    ip: "127.0.0.1".into(),
                    user_agent: "model".into(),
                    dpop_jkt: None,
                    now,
                };
                let outcome = store.rotate(&policy, &request).await.unwrap();
                let got = match outcome {
                    Outcome::Rotated { .. } => Expect::Rotated,
                    Outcome::Replayed { .. } => Expect::Replayed,
                    Outcome::Revoked { reason, .. } => {
                        assert_eq!(reason, RevocationReason::Reuse);
                        Expect::Revoked
                    }
                    Outcome::Rejected(_) => Expect::Rejected,
                };
                assert_eq!(got, expected, "token {i} at +{}s", now - START);
                match got {
                    Expect::Rotated => {
                        model.used[i] = Some(now);
                        model.issued.push((successor, now));
                        model.used.push(None);
                    }
                    Expect::Revoked => model.revoked = true,
                    Expect::Replayed | Expect::Rejected => {}
                }
            }
        }
        // Never two live tokens; none at all once revoked.
        let mut live = 0;
        for (token, _) in &model.issued {
            let (record, session) = store.refresh_token(token).await.unwrap().unwrap();
            assert_eq!(session.revoked_at.is_some(), model.revoked);
            if record.used_at.is_none() {
                live += 1;
            }
        }
        assert!(live <= 1, "{live} unused tokens in one session");
    }
}

proptest! {
    // No failure files in the source tree; a failure prints its case.
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rotation_matches_the_model_without_grace(ops in proptest::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops, 0));
    }

    #[test]
    fn rotation_matches_the_model_with_grace(ops in proptest::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops, 10));
    }
}
