// Included once per storage backend by tests/faults.rs; `BACKEND` names it.

use crate::common::{PASSWORD, field};
use serde_json::Value;

#[tokio::test]
async fn a_failing_database_is_a_503_and_the_server_recovers() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    // The tables logins and refreshes need disappear (as far as the server
    // can tell) under the running server.
    app.execute_sql("ALTER TABLE refresh_tokens RENAME TO refresh_tokens_away").await;
    app.execute_sql("ALTER TABLE users RENAME TO users_away").await;
    let login = app.post_form("/auth/login", &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(login.status(), 503);
    assert_eq!(login.headers()["retry-after"], "1");
    let body: Value = login.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body["error_description"].as_str().unwrap().contains("database is unavailable"));
    let refresh = app.refresh(field(&pair, "refresh_token")).await;
    assert_eq!(refresh.status(), 503);
    // Back: the server serves again without a restart, and the refresh
    // token that met the outage was not used up.
    app.execute_sql("ALTER TABLE users_away RENAME TO users").await;
    app.execute_sql("ALTER TABLE refresh_tokens_away RENAME TO refresh_tokens").await;
    let refresh = app.refresh(field(&pair, "refresh_token")).await;
    assert_eq!(refresh.status(), 200);
    assert_eq!(app.post_form("/auth/login", &[("username", "alice"), ("password", PASSWORD)]).await.status(), 200);
}
