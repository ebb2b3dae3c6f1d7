//! The operator's console (SPEC §15), on every backend: who gets the scope
//! `latchkey:admin` from a sign-in (an admin, strongly enough, first-party,
//! nobody else), the admin API's checks of such a token on every call, the
//! admin's user id in the audit trail, the overview's counts shared by every
//! instance, the search of users, `Send password reset`, and the page itself
//! in real headless Chromium.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;
mod driver;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/console.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/console.rs");
}

/// Draws the overview for the book (`docs/src/images/console-overview.png`)
/// after 45 minutes of logins, failures, refreshes and one replayed refresh
/// token, made through the HTTP interface on a clock that moves a minute at
/// a time:
/// `LATCHKEY_SCREENSHOT=docs/src/images/console-overview.png cargo test -p latchkey-server --test console -- --ignored`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "draws the book's picture of the overview"]
async fn screenshot_of_the_overview() {
    use std::sync::Arc;

    use common::{Backend, PASSWORD, TestApp, field};
    use latchkey_app::service::Actor;
    use latchkey_core::clock::ManualClock;

    let Ok(path) = std::env::var("LATCHKEY_SCREENSHOT") else {
        return;
    };
    let clock = Arc::new(ManualClock::at_system_time());
    let env = [("LATCHKEY_CONSOLE_ACR", "pwd")];
    let Some(app) = TestApp::start_with_clock(Backend::Sqlite, &env, clock.clone()).await else {
        return;
    };
    for name in ["alice", "bob", "carol", "dave"] {
        app.add_user(name).await;
    }
    let root = app.add_user("root").await;
    app.state
        .users
        .set_admin(&root, true, &Actor::cli())
        .await
        .unwrap();
    for minute in 0..45_u32 {
        let people = ["alice", "bob", "carol", "dave"];
        for name in &people[..(1 + (minute * 7 % 4) as usize)] {
            let pair = app.login(name).await;
            let mut refresh = field(&pair, "refresh_token").to_owned();
            for _ in 0..(minute % 5 + 2) {
                let next: serde_json::Value = app.refresh(&refresh).await.json().await.unwrap();
                refresh = field(&next, "refresh_token").to_owned();
            }
        }
        if minute % 6 == 2 {
            app.post_form("/auth/login", &[("username", "bob"), ("password", "guess")])
                .await;
        }
        if minute == 31 {
            let pair = app.login("carol").await;
            let stolen = field(&pair, "refresh_token").to_owned();
            app.refresh(&stolen).await;
            app.refresh(&stolen).await;
        }
        app.state.activity.flush().await.unwrap();
        clock.advance(60);
    }
    let Some(browser) = driver::Browser::launch().await else {
        return;
    };
    browser.goto(&app.url("/console")).await;
    browser
        .field("Username")
        .await
        .send_keys("root")
        .await
        .unwrap();
    browser
        .field("Password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    browser.button("Log in").await.click().await.unwrap();
    browser.wait_for_text("Reuse detections").await;
    let png = browser.client.screenshot().await.unwrap();
    std::fs::write(path, png).unwrap();
    browser.quit().await;
}
