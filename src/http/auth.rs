//! Basic auth with the broker's users, and RabbitMQ's tag rules: a user needs one of
//! the management tags to use the API at all; `administrator` may do everything,
//! `monitoring` may read everything, `policymaker` may manage policies, and the others
//! see only the vhosts they hold permissions in. The texts are RabbitMQ 3.10.8's.

use super::{Api, ApiError};
use crate::access::User;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use base64::Engine;
use std::net::SocketAddr;

/// Tags that let a user in at all.
const MANAGEMENT_TAGS: &[&str] = &["administrator", "monitoring", "policymaker", "management"];

/// The authenticated user of a request.
pub struct Caller {
    pub user: User,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.has_tag("administrator")
    }

    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.user.has_tag("monitoring")
    }

    pub fn is_policymaker(&self) -> bool {
        self.is_admin() || self.user.has_tag("policymaker")
    }

    /// 401 "Not administrator user" unless the caller is an administrator.
    pub fn admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not administrator user"))
        }
    }

    /// 401 "Not monitor user" unless the caller may read everything.
    pub fn monitor(&self) -> Result<(), ApiError> {
        if self.is_monitor() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not monitor user"))
        }
    }

    /// 401 "Not policymaker user" unless the caller may manage policies.
    pub fn policymaker(&self) -> Result<(), ApiError> {
        if self.is_policymaker() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not policymaker user"))
        }
    }

    /// Whether the caller may see `vhost`: administrators see every vhost, the
    /// others those they hold permissions in.
    pub fn sees_vhost(&self, api: &Api, vhost: &str) -> bool {
        self.is_admin()
            || api
                .ctx
                .broker
                .access()
                .read(|s| s.permission(&self.user.name, vhost).is_some())
    }

    /// 404 for a vhost that does not exist, 401 for one the caller may not see.
    pub fn vhost(&self, api: &Api, vhost: &str) -> Result<(), ApiError> {
        if api.ctx.broker.vhost(vhost).is_none() {
            return Err(ApiError::not_found());
        }
        if self.sees_vhost(api, vhost) {
            Ok(())
        } else {
            Err(ApiError::not_authorised(
                "User not authorised to access virtual host",
            ))
        }
    }
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Caller, ApiError> {
        let Some((name, pass)) = credentials(parts) else {
            // RabbitMQ answers a request without credentials with an empty 401.
            return Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                error: String::new(),
                reason: serde_json::Value::Null,
            });
        };
        let login_failed =
            || ApiError::new(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed");
        let user = api
            .ctx
            .broker
            .access()
            .authenticate(&name, &pass)
            .ok_or_else(login_failed)?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        if api.ctx.config.guest_loopback_only
            && name == "guest"
            && peer.is_some_and(|p| !p.ip().is_loopback())
        {
            return Err(login_failed());
        }
        if !MANAGEMENT_TAGS.iter().any(|t| user.has_tag(t)) {
            return Err(ApiError::not_authorised("Not management user"));
        }
        Ok(Caller { user })
    }
}

/// The user and password of an `Authorization: Basic` header.
fn credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}
