//! The domain of Latchkey: access and refresh tokens, sessions, the rotation and
//! reuse rules, and the storage trait every backend implements.
//!
//! This crate does no I/O. Time (`now`, in Unix seconds) and randomness (a
//! [`SecureRandom`](aws_lc_rs::rand::SecureRandom)) are passed in by the caller,
//! so every rule can be tested exactly.
//!
//! ```
//! use aws_lc_rs::rand::SystemRandom;
//! use latchkey_core::refresh::{RefreshKeys, RefreshToken};
//!
//! let rng = SystemRandom::new();
//! let keys = RefreshKeys::from_secret(&[7u8; 32]);
//! let token = RefreshToken::generate(&rng).unwrap();
//! assert!(token.expose().starts_with("lk_rt_"));
//! // The database only ever sees the keyed hash.
//! let hash = keys.hash(&token);
//! assert_eq!(hash, keys.hash(&RefreshToken::parse(token.expose()).unwrap()));
//! // The successor is derived from the parent, so a retried rotation can
//! // hand out the same successor again (the grace window).
//! assert_eq!(keys.successor(&token).expose(), keys.successor(&token).expose());
//! ```

pub mod account;
pub mod client_secret;
pub mod clock;
pub mod code;
pub mod coordination;
pub mod device;
pub mod dpop;
pub mod error;
pub mod id;
pub mod jwt;
pub mod keys;
pub mod outbox;
pub mod password;
pub mod records;
pub mod refresh;
pub mod rotation;
pub mod scope;
pub mod seal;
pub mod session;
pub mod signers;
pub mod store;
pub mod store_error;
pub mod strength;
pub mod totp;
pub mod username;

pub use error::{Error, Result};
