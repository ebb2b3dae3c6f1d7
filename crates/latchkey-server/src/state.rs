//! The shared state of the server: the composed application
//! ([`latchkey_app::App`]: its configuration, services and flows), behind
//! one reference count, which every request clones. Handlers reach the
//! flows through it (`state.login`, `state.grants`, …); it forwards nothing.

use std::ops::Deref;
use std::sync::Arc;

use latchkey_app::App;
use latchkey_app::keyring::KeyError;
use latchkey_core::clock::{Clock, SystemClock};
use latchkey_core::coordination::Coordinator;
use latchkey_core::store::Store;

use crate::config::Config;

pub use latchkey_app::flows::MAX_USERNAME_BYTES;
pub use latchkey_app::service::{Issued, MAX_WAITING_HASHES, Principal, RequestContext};

/// What the server shares between requests. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    app: Arc<App>,
}

/// The system's time in Unix seconds (for the command line; a server asks
/// its clock, [`App::now`]).
pub fn now() -> i64 {
    SystemClock.now()
}

impl AppState {
    /// Composes the application ([`App::build`]) on the system clock.
    pub async fn new(
        config: Config,
        store: Arc<dyn Store>,
        coordinator: Option<Arc<dyn Coordinator>>,
    ) -> Result<Self, KeyError> {
        Self::with_clock(config, store, coordinator, Arc::new(SystemClock)).await
    }

    /// Composes the application on `clock` (tests move a [`ManualClock`]
    /// instead of sleeping).
    ///
    /// [`ManualClock`]: latchkey_core::clock::ManualClock
    pub async fn with_clock(
        config: Config,
        store: Arc<dyn Store>,
        coordinator: Option<Arc<dyn Coordinator>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyError> {
        let app = App::build(config, store, coordinator, clock).await?;
        Ok(Self::from(Arc::new(app)))
    }

    /// The composed application (for the background work of
    /// [`latchkey_app::maintenance`]).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }
}

impl From<Arc<App>> for AppState {
    fn from(app: Arc<App>) -> Self {
        Self { app }
    }
}

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}
