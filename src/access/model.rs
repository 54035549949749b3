//! The records operators manage: users, virtual hosts, permissions, topic
//! permissions, policies and runtime parameters, in the shape of RabbitMQ's
//! definitions JSON (field names as RabbitMQ exports them), so that the same types
//! serve the store, definitions import/export and the HTTP API.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// RabbitMQ's name for salted SHA-256, its default.
pub const SHA256: &str = "rabbit_password_hashing_sha256";
pub const SHA512: &str = "rabbit_password_hashing_sha512";
/// What exports of RabbitMQ 3.0 to 3.5 used, and what a user without an algorithm means.
pub const MD5: &str = "rabbit_password_hashing_md5";

fn md5_name() -> String {
    MD5.to_owned()
}

/// Tags arrive as a list (current exports) or a comma-separated string (old ones).
pub fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Joined(String),
        Nothing(()),
    }
    Ok(match Tags::deserialize(d)? {
        Tags::List(l) => l
            .into_iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        Tags::Joined(s) => s
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        Tags::Nothing(()) => Vec::new(),
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// base64 of (4-byte salt ++ digest(salt ++ password)); empty: no password login.
    #[serde(default)]
    pub password_hash: String,
    #[serde(default = "md5_name")]
    pub hashing_algorithm: String,
    #[serde(default, deserialize_with = "tags")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub limits: Map<String, Value>,
}

impl User {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The user limit `key` (`max-connections`, `max-channels`), if set and not
    /// negative (RabbitMQ: a negative limit means none).
    pub fn limit(&self, key: &str) -> Option<u64> {
        self.limits
            .get(key)?
            .as_i64()
            .and_then(|n| u64::try_from(n).ok())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VHostInfo {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, deserialize_with = "tags")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl VHostInfo {
    pub fn named(name: &str) -> VHostInfo {
        VHostInfo {
            name: name.to_owned(),
            description: String::new(),
            tags: Vec::new(),
            default_queue_type: None,
            metadata: None,
        }
    }
}

/// configure / write / read regexes of one user in one virtual host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// write / read regexes on routing keys of one topic exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPermission {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to", default = "all")]
    pub apply_to: String,
    #[serde(default)]
    pub priority: i64,
    pub definition: Map<String, Value>,
}

fn all() -> String {
    "all".to_owned()
}

/// A vhost-scoped runtime parameter (for example component `vhost-limits`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub vhost: String,
    pub component: String,
    pub name: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalParameter {
    pub name: String,
    pub value: Value,
}

/// Everything operators define apart from exchanges, queues and bindings. The store
/// keeps it as one JSON document: it changes rarely, and only by operator action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessState {
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub vhosts: Vec<VHostInfo>,
    #[serde(default)]
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermission>,
    #[serde(default)]
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub operator_policies: Vec<Policy>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    #[serde(default)]
    pub global_parameters: Vec<GlobalParameter>,
}

impl AccessState {
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn vhost(&self, name: &str) -> Option<&VHostInfo> {
        self.vhosts.iter().find(|v| v.name == name)
    }

    pub fn permission(&self, user: &str, vhost: &str) -> Option<&Permission> {
        self.permissions
            .iter()
            .find(|p| p.user == user && p.vhost == vhost)
    }

    /// The value of vhost limit `key` (`max-connections`, `max-queues`), if set and
    /// not negative (RabbitMQ: a negative limit means none).
    pub fn vhost_limit(&self, vhost: &str, key: &str) -> Option<u64> {
        let p = self
            .parameters
            .iter()
            .find(|p| p.vhost == vhost && p.component == "vhost-limits")?;
        p.value
            .get(key)?
            .as_i64()
            .and_then(|n| u64::try_from(n).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_from_a_list_or_a_comma_string() {
        let a: User = serde_json::from_str(
            r#"{"name":"a","password_hash":"x","hashing_algorithm":"rabbit_password_hashing_sha256","tags":["administrator","monitoring"]}"#,
        )
        .expect("valid user");
        let b: User = serde_json::from_str(
            r#"{"name":"b","password_hash":"x","tags":"administrator, monitoring"}"#,
        )
        .expect("valid user");
        assert_eq!(a.tags, b.tags);
        assert_eq!(b.hashing_algorithm, MD5);
        let c: User = serde_json::from_str(r#"{"name":"c","tags":""}"#).expect("valid user");
        assert!(c.tags.is_empty());
    }
}
