//! Sessions made by the admin API (`POST /admin/sessions`): for a user whom
//! an application authenticated by its own means, the scope rules of a
//! login, then the same session and first token pair.

use std::sync::Arc;

use latchkey_core::store::{Client, User};
use latchkey_core::strength::AuthMethod;

use crate::service::{Issued, Refusal, RequestContext, TokenIssuer};

/// The admin API's session flow.
pub struct AdminSessions {
    issuer: Arc<TokenIssuer>,
}

impl AdminSessions {
    /// Sessions opened by `issuer`.
    pub fn new(issuer: Arc<TokenIssuer>) -> Self {
        Self { issuer }
    }

    /// A session of `user` through `client` (none: first-party), audited as
    /// made by the admin client `admin_client_id`. `None` when the user is
    /// disabled.
    pub async fn start(
        &self,
        user: &User,
        client: Option<&Client>,
        scope: Option<&str>,
        admin_client_id: &str,
        ctx: &RequestContext,
    ) -> Result<Option<Issued>, Refusal> {
        let scope = self.issuer.user_scope(scope, client)?;
        let client_id = client.map(|c| c.id.as_str());
        let Some(issued) = self
            .issuer
            .start_session(user, client_id, &scope, ctx, "admin", AuthMethod::Password)
            .await?
        else {
            return Ok(None);
        };
        self.issuer
            .audit(
                "admin_session_created",
                Some(&user.id),
                issued.session_id.as_deref(),
                Some(admin_client_id),
                ctx,
                "",
            )
            .await;
        Ok(Some(issued))
    }
}
