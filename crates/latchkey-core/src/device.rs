//! The device authorization grant's rules (RFC 8628, SPEC §16): user codes
//! (8 letters of an alphabet without vowels or look-alikes, shown
//! `XXXX-XXXX`, read without regard to case or the dash), device codes
//! (`lk_dc_` and 256 random bits, stored only as a keyed hash), and what a
//! poll of the token endpoint answers, as a pure decision.

use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Result;
use crate::id::random_bytes;
use crate::records::{DeviceGrant, DeviceStatus, has_expired};
use crate::refresh::{RefreshKeys, TokenHash};

/// The letters of a user code: no vowels (no words), none that looks like
/// a digit.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Letters in a user code: 20^8, about 2^34.6 codes.
pub const USER_CODE_LEN: usize = 8;

/// Seconds added to a device's polling interval each time it polls too fast.
pub const SLOW_DOWN_STEP: i64 = 5;

const DEVICE_PREFIX: &str = "lk_dc_";

/// A new user code, in its canonical (undashed) form. Each letter is drawn
/// without bias (bytes of 240 and above are drawn again).
pub fn new_user_code(rng: &dyn SecureRandom) -> Result<String> {
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        for b in random_bytes::<16>(rng)? {
            if code.len() == USER_CODE_LEN {
                break;
            }
            if b < 240 {
                code.push(char::from(USER_CODE_ALPHABET[usize::from(b % 20)]));
            }
        }
    }
    Ok(code)
}

/// What a person typed, as a user code: upper-cased, without dashes or
/// spaces; `None` unless it is 8 letters of the alphabet.
pub fn normalise_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid =
        code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}

/// A canonical user code as shown: `XXXX-XXXX`.
pub fn format_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_owned(),
    }
}

impl RefreshKeys {
    /// A new device code and the hash to store.
    pub fn new_device_code(&self, rng: &dyn SecureRandom) -> Result<(String, TokenHash)> {
        let bytes = random_bytes::<32>(rng)?;
        let code = format!("{DEVICE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let hash = self.code_hash(&code);
        Ok((code, hash))
    }

    /// The keyed hash of a canonical user code (under the code key, with a
    /// prefix no other code has).
    pub fn user_code_hash(&self, canonical: &str) -> TokenHash {
        self.code_hash(&format!("lk_uc_{canonical}"))
    }
}

/// What a poll of the token endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// `authorization_pending`.
    Pending,
    /// `slow_down`: polled before the interval passed; the interval is now
    /// this many seconds.
    SlowDown {
        /// The new interval.
        interval: i64,
    },
    /// `access_denied`.
    Denied,
    /// `expired_token`.
    Expired,
    /// Issue tokens for this user: the grant is now redeemed.
    Issue {
        /// The user who allowed it.
        user_id: String,
        /// When they signed in.
        auth_time: i64,
        /// How they signed in.
        auth_method: crate::strength::AuthMethod,
        /// The scope asked for and allowed.
        scope: String,
    },
    /// Redeemed before (`invalid_grant`).
    Redeemed,
    /// The device code is another client's (`invalid_grant`); nothing
    /// changes.
    OtherClient,
}

/// The answer to a poll at `now`, and the grant as it is to be stored after
/// it (the poll's time, a longer interval, or redeemed for `session_id`).
/// An answered grant answers at once; only a pending one is held to its
/// interval, which grows by [`SLOW_DOWN_STEP`] whenever it is not kept.
/// A device code presented by another client than its own changes nothing.
pub fn poll(
    grant: &DeviceGrant,
    client_id: &str,
    now: i64,
    session_id: &str,
) -> (Poll, DeviceGrant) {
    let mut next = grant.clone();
    if grant.client_id != client_id {
        return (Poll::OtherClient, next);
    }
    next.last_polled_at = Some(now);
    let answer = match &grant.status {
        DeviceStatus::Redeemed { .. } => {
            next.last_polled_at = grant.last_polled_at;
            Poll::Redeemed
        }
        _ if has_expired(grant.expires_at, now) => Poll::Expired,
        DeviceStatus::Denied => Poll::Denied,
        DeviceStatus::Approved {
            user_id,
            auth_time,
            auth_method,
        } => {
            next.status = DeviceStatus::Redeemed {
                session_id: session_id.to_owned(),
            };
            Poll::Issue {
                user_id: user_id.clone(),
                auth_time: *auth_time,
                auth_method: *auth_method,
                scope: grant.scope.clone(),
            }
        }
        DeviceStatus::Pending => match grant.last_polled_at {
            Some(last) if now - last < grant.interval => {
                next.interval = grant.interval + SLOW_DOWN_STEP;
                Poll::SlowDown {
                    interval: next.interval,
                }
            }
            _ => Poll::Pending,
        },
    };
    (answer, next)
}

/// Whether a person may still answer `grant` at `now`.
pub fn answerable(grant: &DeviceGrant, now: i64) -> bool {
    grant.status == DeviceStatus::Pending && !has_expired(grant.expires_at, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(status: DeviceStatus, last: Option<i64>) -> DeviceGrant {
        let hash = TokenHash::from_slice(&[1; 32]).expect("32 bytes");
        DeviceGrant {
            device_hash: hash,
            user_hash: hash,
            client_id: "cli_tv".into(),
            scope: "openid".into(),
            created_at: 1000,
            expires_at: 1600,
            interval: 5,
            last_polled_at: last,
            status,
        }
    }

    #[test]
    fn user_codes_are_eight_letters_of_the_alphabet_read_loosely() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        for _ in 0..200 {
            let code = new_user_code(&rng).expect("random");
            assert_eq!(normalise_user_code(&code).as_deref(), Some(code.as_str()));
            let shown = format_user_code(&code);
            assert_eq!(shown.len(), 9);
            assert_eq!(&shown[4..5], "-");
            assert_eq!(
                normalise_user_code(&shown.to_lowercase()).as_deref(),
                Some(code.as_str())
            );
        }
        for bad in [
            "",
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "ABCD-EFGH",
            "BCDF-GHJ1",
            "BCDF\u{2010}GHJK",
            "ＢCDFGHJK",
        ] {
            assert_eq!(normalise_user_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_pending_grant_is_held_to_its_interval_which_grows() {
        let first = grant(DeviceStatus::Pending, None);
        let (answer, next) = poll(&first, "cli_tv", 1010, "ses_x");
        assert_eq!(answer, Poll::Pending);
        assert_eq!(next.last_polled_at, Some(1010));
        let (answer, next) = poll(&next, "cli_tv", 1012, "ses_x");
        assert_eq!(answer, Poll::SlowDown { interval: 10 });
        assert_eq!(next.interval, 10);
        let (answer, next) = poll(&next, "cli_tv", 1021, "ses_x");
        assert_eq!(answer, Poll::SlowDown { interval: 15 });
        let (answer, _) = poll(&next, "cli_tv", 1036, "ses_x");
        assert_eq!(answer, Poll::Pending);
    }

    #[test]
    fn answers_come_at_once_and_a_grant_is_redeemed_once() {
        let approved = DeviceStatus::Approved {
            user_id: "usr_a".into(),
            auth_time: 1005,
            auth_method: crate::strength::AuthMethod::PasswordAndOtp,
        };
        let (answer, next) = poll(&grant(approved, Some(1010)), "cli_tv", 1011, "ses_1");
        assert_eq!(
            answer,
            Poll::Issue {
                user_id: "usr_a".into(),
                auth_time: 1005,
                auth_method: crate::strength::AuthMethod::PasswordAndOtp,
                scope: "openid".into(),
            }
        );
        assert_eq!(
            next.status,
            DeviceStatus::Redeemed {
                session_id: "ses_1".into()
            }
        );
        assert_eq!(poll(&next, "cli_tv", 1020, "ses_2").0, Poll::Redeemed);
        assert_eq!(
            poll(
                &grant(DeviceStatus::Denied, Some(1010)),
                "cli_tv",
                1011,
                "s"
            )
            .0,
            Poll::Denied
        );
        assert_eq!(
            poll(&grant(DeviceStatus::Pending, None), "cli_tv", 1601, "s").0,
            Poll::Expired
        );
        let (answer, next) = poll(&grant(DeviceStatus::Pending, None), "cli_other", 1010, "s");
        assert_eq!(answer, Poll::OtherClient);
        assert_eq!(next, grant(DeviceStatus::Pending, None));
        assert!(answerable(&grant(DeviceStatus::Pending, None), 1600));
        assert!(!answerable(&grant(DeviceStatus::Pending, None), 1601));
        assert!(!answerable(&grant(DeviceStatus::Denied, None), 1100));
    }
}
