//! `/api/whoami`, `/api/users`, permissions and topic permissions. Writes are for
//! administrators; each goes through the broker's operator functions.

use super::listing::{self, ListParams};
use super::{Api, ApiError, ApiResult, Caller, body, created_or_updated, ok_json};
use crate::access::{Permission, TopicPermission, User, model, pattern::Pattern};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/whoami", get(whoami))
        .route("/api/users", get(list_users))
        .route("/api/users/bulk-delete", post(bulk_delete))
        .route(
            "/api/users/{user}",
            get(show_user).put(put_user).delete(delete_user),
        )
        .route(
            "/api/users/{user}/permissions",
            get(user_permissions::<false>),
        )
        .route(
            "/api/users/{user}/topic-permissions",
            get(user_permissions::<true>),
        )
        .route("/api/permissions", get(all_permissions::<false>))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(show_permission)
                .put(put_permission)
                .delete(delete_permission),
        )
        .route(
            "/api/vhosts/{vhost}/permissions",
            get(vhost_permissions::<false>),
        )
        .route(
            "/api/vhosts/{vhost}/topic-permissions",
            get(vhost_permissions::<true>),
        )
        .route("/api/topic-permissions", get(all_permissions::<true>))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(show_topic).put(put_topic).delete(delete_topic),
        )
}

fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash,
        "hashing_algorithm": u.hashing_algorithm,
        "tags": u.tags,
        "limits": u.limits,
    })
}

fn to_values<T: serde::Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

async fn whoami(caller: Caller) -> Response {
    ok_json(json!({"name": caller.user.name, "tags": caller.user.tags}))
}

async fn list_users(
    State(api): State<Api>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    caller.admin()?;
    let mut users = api.ctx.broker.access().read(|s| s.users.clone());
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let items = users.iter().map(user_json).collect();
    Ok(ok_json(listing::apply(items, &params)?))
}

async fn show_user(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    let user = api.ctx.broker.access().read(|s| s.user(&name).cloned());
    user.map(|u| ok_json(user_json(&u)))
        .ok_or_else(ApiError::not_found)
}

async fn put_user(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    let map = body::object(&bytes)?;
    let broker = &api.ctx.broker;
    let existing = broker.access().read(|s| s.user(&name).cloned());
    let tags = match map.get("tags") {
        Some(v) => body::tags(Some(v))?,
        None => existing
            .as_ref()
            .map(|u| u.tags.clone())
            .unwrap_or_default(),
    };
    let mut user = User {
        name: name.clone(),
        password_hash: String::new(),
        hashing_algorithm: model::SHA256.to_owned(),
        tags,
        limits: existing
            .as_ref()
            .map(|u| u.limits.clone())
            .unwrap_or_default(),
    };
    let password = body::string(&map, "password")?;
    if password.is_none() {
        if let Some(hash) = body::string(&map, "password_hash")? {
            if !hash.is_empty() {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(&hash)
                    .map_err(|_| ApiError::bad_request(format!("not_base64: {hash}")))?;
            }
            user.password_hash = hash;
            if let Some(algorithm) = body::string(&map, "hashing_algorithm")? {
                user.hashing_algorithm = algorithm;
            }
        } else if let Some(old) = &existing {
            user.password_hash = old.password_hash.clone();
            user.hashing_algorithm = old.hashing_algorithm.clone();
        }
    }
    broker.put_user(user, password.as_deref())?;
    Ok(created_or_updated(existing.is_some()))
}

async fn delete_user(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    if api.ctx.broker.delete_user(&name) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

async fn bulk_delete(
    State(api): State<Api>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    let map = body::object(&bytes)?;
    let Some(Value::Array(names)) = map.get("users") else {
        return Err(ApiError::bad_request("[{key_missing,users}]"));
    };
    let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
    let broker = &api.ctx.broker;
    if let Some(missing) = names
        .iter()
        .find(|n| broker.access().read(|s| s.user(n).is_none()))
    {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "bad_request".into(),
            reason: json!(["no_such_user", missing]),
        });
    }
    for name in names {
        broker.delete_user(name);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Permissions (or topic permissions) selected by `keep`, as a listing.
fn permissions_listing(
    api: &Api,
    topic: bool,
    keep: impl Fn(&str, &str) -> bool,
    params: &ListParams,
) -> ApiResult<Response> {
    let items = api.ctx.broker.access().read(|s| {
        if topic {
            let list: Vec<TopicPermission> = s
                .topic_permissions
                .iter()
                .filter(|p| keep(&p.vhost, &p.user))
                .cloned()
                .collect();
            to_values(&list)
        } else {
            let list: Vec<Permission> = s
                .permissions
                .iter()
                .filter(|p| keep(&p.vhost, &p.user))
                .cloned()
                .collect();
            to_values(&list)
        }
    });
    Ok(ok_json(listing::apply(items, params)?))
}

fn known_user(api: &Api, user: &str) -> ApiResult<()> {
    if api.ctx.broker.access().read(|s| s.user(user).is_none()) {
        return Err(ApiError::not_found());
    }
    Ok(())
}

fn known_vhost(api: &Api, vhost: &str) -> ApiResult<()> {
    if api.ctx.broker.vhost(vhost).is_none() {
        return Err(ApiError::not_found());
    }
    Ok(())
}

// Each listing serves permissions (TOPIC = false) and topic permissions (true).

async fn all_permissions<const TOPIC: bool>(
    State(api): State<Api>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    caller.admin()?;
    permissions_listing(&api, TOPIC, |_, _| true, &p)
}

async fn user_permissions<const TOPIC: bool>(
    State(api): State<Api>,
    caller: Caller,
    Path(user): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    caller.admin()?;
    known_user(&api, &user)?;
    permissions_listing(&api, TOPIC, |_, u| u == user, &p)
}

async fn vhost_permissions<const TOPIC: bool>(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    caller.admin()?;
    known_vhost(&api, &vhost)?;
    permissions_listing(&api, TOPIC, |v, _| v == vhost, &p)
}

async fn show_permission(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.admin()?;
    let found = api
        .ctx
        .broker
        .access()
        .read(|s| s.permission(&user, &vhost).cloned());
    found
        .and_then(|p| serde_json::to_value(p).ok())
        .map(ok_json)
        .ok_or_else(ApiError::not_found)
}

/// Checks each regex as RabbitMQ does (400 `invalid_regexp`).
fn regexes(map: &Map<String, Value>, keys: &[&str]) -> ApiResult<Vec<String>> {
    let values = body::required(map, keys)?;
    for v in &values {
        Pattern::new(v).map_err(|e| ApiError::bad_request(format!("invalid_regexp '{v}': {e}")))?;
    }
    Ok(values)
}

fn user_and_vhost(api: &Api, user: &str, vhost: &str) -> ApiResult<()> {
    let user_known = api.ctx.broker.access().read(|s| s.user(user).is_some());
    if !user_known || api.ctx.broker.vhost(vhost).is_none() {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    Ok(())
}

async fn put_permission(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    let map = body::object(&bytes)?;
    user_and_vhost(&api, &user, &vhost)?;
    let v = regexes(&map, &["configure", "write", "read"])?;
    let broker = &api.ctx.broker;
    let existed = broker
        .access()
        .read(|s| s.permission(&user, &vhost).is_some());
    broker.set_permissions(Permission {
        user,
        vhost,
        configure: v[0].clone(),
        write: v[1].clone(),
        read: v[2].clone(),
    })?;
    Ok(created_or_updated(existed))
}

async fn delete_permission(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    if api.ctx.broker.clear_permissions(&user, &vhost) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

async fn show_topic(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    caller.admin()?;
    let any = api.ctx.broker.access().read(|s| {
        s.topic_permissions
            .iter()
            .any(|t| t.user == user && t.vhost == vhost)
    });
    if !any {
        return Err(ApiError::not_found());
    }
    permissions_listing(&api, true, |v, u| v == vhost && u == user, &p)
}

async fn put_topic(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    let map = body::object(&bytes)?;
    user_and_vhost(&api, &user, &vhost)?;
    let exchange = body::required(&map, &["exchange"])?.remove(0);
    let v = regexes(&map, &["write", "read"])?;
    let broker = &api.ctx.broker;
    let existed = broker.access().read(|s| {
        s.topic_permissions
            .iter()
            .any(|t| t.user == user && t.vhost == vhost && t.exchange == exchange)
    });
    broker.set_topic_permissions(TopicPermission {
        user,
        vhost,
        exchange,
        write: v[0].clone(),
        read: v[1].clone(),
    })?;
    Ok(created_or_updated(existed))
}

async fn delete_topic(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    if api.ctx.broker.clear_topic_permissions(&user, &vhost, None) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
