//! Who is asking: `Authorization: Bearer <token>` → the staff member the token acts for.
//! Extracting [`Viewer`] is what makes a route authenticated; [`Admin`] additionally
//! requires the admin flag.

use crate::api::error::ApiError;
use crate::app::Caller;
use crate::http::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::Utc;
use rapport_core::permission::Action;

/// The authenticated staff member making the request.
#[derive(Debug, Clone)]
pub struct Viewer(pub Caller);

/// The authenticated staff member, who is an admin.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthenticated(
                "unauthenticated",
                "send `Authorization: Bearer <token>`; `rapport token create` makes a token"
                    .to_owned(),
            )
        })?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "unauthenticated",
                    "the Authorization header must be `Bearer <token>`".to_owned(),
                )
            })?;
        match state
            .engine
            .store()
            .authenticate_api_token(presented, Utc::now())
            .await?
        {
            Some(staff) => {
                crate::audit::actor(staff.id);
                Ok(Viewer(Caller::new(staff)))
            }
            None => Err(ApiError::Unauthenticated(
                "invalid-token",
                "the token is unknown, expired or revoked, or its owner has left: make a new one with `rapport token create`"
                    .to_owned(),
            )),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Viewer(caller) = Viewer::from_request_parts(parts, state).await?;
        crate::app::authorize(state.engine.store(), &caller, Action::Administer).await?;
        Ok(Admin(caller))
    }
}
