//! Reading a definitions document into records, accepting what RabbitMQ 3.x and
//! 4.x exports write: tags as a list or a comma string, limits and operator policy
//! definitions as lists of pairs (3.10), vhost fields under `metadata` (3.10+),
//! plaintext `password`s, missing optional fields. Each entry that cannot be read
//! is reported by its section, position and name.

use super::fields::{object, to_table};
use super::{Failure, names};
use crate::access::{GlobalParameter, Parameter, Permission, Policy, TopicPermission, User};
use crate::access::{VHostInfo, model};
use amq_protocol::types::FieldTable;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A user to create: the record, and the plaintext password to hash, if the file
/// gave one instead of a hash.
pub struct UserDef {
    pub user: User,
    pub password: Option<String>,
}

pub struct ExchangeDef {
    pub vhost: String,
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

pub struct QueueDef {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

pub struct BindingDef {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    pub to_queue: bool,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// A parsed definitions document, in import order.
#[derive(Default)]
pub struct Definitions {
    pub users: Vec<UserDef>,
    pub vhosts: Vec<VHostInfo>,
    pub permissions: Vec<Permission>,
    pub exchanges: Vec<ExchangeDef>,
    pub topic_permissions: Vec<TopicPermission>,
    pub global_parameters: Vec<GlobalParameter>,
    pub policies: Vec<Policy>,
    pub operator_policies: Vec<Policy>,
    pub parameters: Vec<Parameter>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    /// `amq.*` exchanges and queues, and the default exchange, left out.
    pub skipped: Vec<String>,
}

/// The entries of one top-level section (absent or null: none).
fn section<'a>(doc: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], Failure> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(Failure::new(key, "is not a list")),
    }
}

/// How an entry is named in errors: `users[2] 'bob'`.
fn label(key: &str, i: usize, v: &Value) -> String {
    match v
        .get("name")
        .or_else(|| v.get("user"))
        .and_then(Value::as_str)
    {
        Some(name) => format!("{key}[{i}] '{name}'"),
        None => format!("{key}[{i}]"),
    }
}

fn read<T: DeserializeOwned>(what: &str, v: &Value) -> Result<T, Failure> {
    T::deserialize(v).map_err(|e| Failure::new(what, e.to_string()))
}

fn table(what: &str, v: Option<&Value>) -> Result<FieldTable, Failure> {
    to_table(v.unwrap_or(&Value::Null)).map_err(|e| Failure::new(what, e))
}

#[derive(Deserialize)]
struct RawUser {
    name: String,
    password_hash: Option<String>,
    password: Option<String>,
    hashing_algorithm: Option<String>,
    #[serde(default, deserialize_with = "model::tags")]
    tags: Vec<String>,
    /// Before tags (RabbitMQ 2.x): a boolean, as a string or not.
    administrator: Option<Value>,
    #[serde(default)]
    limits: Value,
}

/// The algorithm of a hash without one: RabbitMQ's rule (3.0-3.5 exported MD5
/// hashes without naming it; later versions name it, and the default is SHA-256).
fn default_algorithm(version: Option<&str>) -> &'static str {
    match version {
        Some(v)
            if ["3.0.", "3.1.", "3.2.", "3.3.", "3.4.", "3.5."]
                .iter()
                .any(|p| v.starts_with(p)) =>
        {
            model::MD5
        }
        _ => model::SHA256,
    }
}

fn user(what: &str, v: &Value, version: Option<&str>) -> Result<UserDef, Failure> {
    let raw: RawUser = read(what, v)?;
    if raw.password.is_some() && raw.password_hash.is_some() {
        return Err(Failure::new(what, "has both password and password_hash"));
    }
    let hashing_algorithm = raw
        .hashing_algorithm
        .unwrap_or_else(|| default_algorithm(version).to_owned());
    if !crate::access::password::known(&hashing_algorithm) {
        return Err(Failure::new(
            what,
            format!("unknown hashing algorithm '{hashing_algorithm}'"),
        ));
    }
    let mut tags = raw.tags;
    let legacy_admin = match &raw.administrator {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if legacy_admin && v.get("tags").is_none() {
        tags.push("administrator".to_owned());
    }
    let limits = match &raw.limits {
        Value::Null => Map::new(),
        other => object(other).ok_or_else(|| Failure::new(what, "limits is not an object"))?,
    };
    Ok(UserDef {
        user: User {
            name: raw.name,
            password_hash: raw.password_hash.unwrap_or_default(),
            hashing_algorithm,
            tags,
            limits,
        },
        password: raw.password,
    })
}

#[derive(Deserialize)]
struct RawVHost {
    name: String,
    description: Option<String>,
    #[serde(default)]
    tags: Option<Value>,
    default_queue_type: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    limits: Value,
}

fn vhost(what: &str, v: &Value, defs: &mut Definitions) -> Result<VHostInfo, Failure> {
    let raw: RawVHost = read(what, v)?;
    let meta = raw.metadata.clone().unwrap_or_default();
    let tags_value = raw.tags.or_else(|| meta.get("tags").cloned());
    let tags = match tags_value {
        Some(t) => model::tags(t).map_err(|e| Failure::new(what, e.to_string()))?,
        None => Vec::new(),
    };
    let description = raw
        .description
        .or_else(|| {
            meta.get("description")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let default_queue_type = raw.default_queue_type.or_else(|| {
        meta.get("default_queue_type")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    match &raw.limits {
        Value::Null => {}
        other => {
            let limits =
                object(other).ok_or_else(|| Failure::new(what, "limits is not an object"))?;
            if !limits.is_empty() {
                defs.parameters.push(Parameter {
                    vhost: raw.name.clone(),
                    component: "vhost-limits".to_owned(),
                    name: "limits".to_owned(),
                    value: Value::Object(limits),
                });
            }
        }
    }
    Ok(VHostInfo {
        name: raw.name,
        description,
        tags,
        default_queue_type,
        metadata: raw.metadata.map(Value::Object),
    })
}

/// A policy's fields with its definition as an object (3.10 writes operator
/// policy definitions as lists of pairs).
fn policy(what: &str, v: &Value) -> Result<Policy, Failure> {
    let mut v = v.clone();
    if let Some(d) = v.get("definition").and_then(object)
        && let Some(slot) = v.get_mut("definition")
    {
        *slot = Value::Object(d);
    }
    read(what, &v)
}

fn parameter(what: &str, v: &Value, defs: &mut Definitions) -> Result<(), Failure> {
    let mut p: Parameter = read(what, v)?;
    match p.component.as_str() {
        "operator_policy" | "policy" => {
            let mut value = p.value.clone();
            if let Value::Object(m) = &mut value {
                m.insert("vhost".into(), Value::String(p.vhost.clone()));
                m.insert("name".into(), Value::String(p.name.clone()));
            }
            let policy = policy(what, &value)?;
            if p.component == "policy" {
                defs.policies.push(policy);
            } else {
                defs.operator_policies.push(policy);
            }
        }
        _ => {
            if let Some(m) = object(&p.value) {
                p.value = Value::Object(m);
            }
            // A later vhost-limits parameter replaces limits given in the vhost.
            defs.parameters.retain(|q| {
                !(q.vhost == p.vhost && q.component == p.component && q.name == p.name)
            });
            defs.parameters.push(p);
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Named {
    name: String,
    vhost: String,
}

/// Reads a whole document; nothing is checked against the broker yet.
pub fn parse(doc: &Value) -> Result<Definitions, Failure> {
    let Value::Object(doc) = doc else {
        return Err(Failure::new("the document", "is not a JSON object"));
    };
    let version = ["rabbitmq_version", "rabbit_version"]
        .iter()
        .find_map(|k| doc.get(*k).and_then(Value::as_str));
    let mut defs = Definitions::default();
    for (i, v) in section(doc, "users")?.iter().enumerate() {
        defs.users.push(user(&label("users", i, v), v, version)?);
    }
    for (i, v) in section(doc, "vhosts")?.iter().enumerate() {
        let vh = vhost(&label("vhosts", i, v), v, &mut defs)?;
        defs.vhosts.push(vh);
    }
    for (i, v) in section(doc, "permissions")?.iter().enumerate() {
        defs.permissions.push(read(&label("permissions", i, v), v)?);
    }
    for (i, v) in section(doc, "topic_permissions")?.iter().enumerate() {
        defs.topic_permissions
            .push(read(&label("topic_permissions", i, v), v)?);
    }
    for (i, v) in section(doc, "global_parameters")?.iter().enumerate() {
        defs.global_parameters
            .push(read(&label("global_parameters", i, v), v)?);
    }
    for (i, v) in section(doc, "policies")?.iter().enumerate() {
        defs.policies.push(policy(&label("policies", i, v), v)?);
    }
    for (i, v) in section(doc, "parameters")?.iter().enumerate() {
        parameter(&label("parameters", i, v), v, &mut defs)?;
    }
    for (i, v) in section(doc, "exchanges")?.iter().enumerate() {
        let what = label("exchanges", i, v);
        let n: Named = read(&what, v)?;
        if n.name.is_empty() || n.name.starts_with("amq.") {
            defs.skipped.push(names::exchange(&n.vhost, &n.name));
            continue;
        }
        let kind = v.get("type").and_then(Value::as_str);
        let Some(kind) = kind else {
            return Err(Failure::new(&what, "has no type"));
        };
        defs.exchanges.push(ExchangeDef {
            kind: kind.to_owned(),
            durable: flag(&what, v, "durable", true)?,
            auto_delete: flag(&what, v, "auto_delete", false)?,
            internal: flag(&what, v, "internal", false)?,
            arguments: table(&what, v.get("arguments"))?,
            vhost: n.vhost,
            name: n.name,
        });
    }
    for (i, v) in section(doc, "queues")?.iter().enumerate() {
        let what = label("queues", i, v);
        let n: Named = read(&what, v)?;
        if n.name.starts_with("amq.") {
            defs.skipped.push(names::queue(&n.vhost, &n.name));
            continue;
        }
        let mut arguments = table(&what, v.get("arguments"))?;
        // 4.x exports carry the type beside the arguments; a classic queue needs no
        // argument, another type is declared through x-queue-type.
        if let Some(kind) = v.get("type").and_then(Value::as_str)
            && kind != "classic"
            && !arguments.inner().contains_key("x-queue-type")
        {
            arguments.insert(
                "x-queue-type".into(),
                amq_protocol::types::AMQPValue::LongString(kind.into()),
            );
        }
        defs.queues.push(QueueDef {
            durable: flag(&what, v, "durable", true)?,
            auto_delete: flag(&what, v, "auto_delete", false)?,
            arguments,
            vhost: n.vhost,
            name: n.name,
        });
    }
    for (i, v) in section(doc, "bindings")?.iter().enumerate() {
        let what = format!("bindings[{i}]");
        let field = |k: &str| -> Result<String, Failure> {
            match v.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                None | Some(Value::Null) if k == "routing_key" => Ok(String::new()),
                _ => Err(Failure::new(&what, format!("has no {k}"))),
            }
        };
        let to_queue = match field("destination_type")?.as_str() {
            "queue" => true,
            "exchange" => false,
            other => {
                return Err(Failure::new(
                    &what,
                    format!("has destination_type '{other}' (queue or exchange)"),
                ));
            }
        };
        defs.bindings.push(BindingDef {
            vhost: field("vhost")?,
            source: field("source")?,
            destination: field("destination")?,
            to_queue,
            routing_key: field("routing_key")?,
            arguments: table(&what, v.get("arguments"))?,
        });
    }
    Ok(defs)
}

/// A boolean field with its default; RabbitMQ's HTTP API also takes "true"/"false".
fn flag(what: &str, v: &Value, key: &str, default: bool) -> Result<bool, Failure> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(other) => Err(Failure::new(
            what,
            format!("{key} is {other}, not a boolean"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_hash_without_algorithm_follows_the_exporting_version() {
        let user = json!({"name": "u", "password_hash": "abc", "tags": "a, b"});
        let old = parse(&json!({"rabbit_version": "3.5.7", "users": [user]})).expect("parses");
        assert_eq!(old.users[0].user.hashing_algorithm, model::MD5);
        assert_eq!(old.users[0].user.tags, vec!["a", "b"]);
        let new = parse(&json!({"rabbit_version": "3.10.8", "users": [user]})).expect("parses");
        assert_eq!(new.users[0].user.hashing_algorithm, model::SHA256);
        let both = json!({"users": [{"name": "u", "password": "p", "password_hash": "h"}]});
        let err = parse(&both).err().expect("refused");
        assert_eq!(err.entry, "users[0] 'u'");
    }

    #[test]
    fn rabbitmq_3_10_shapes_are_read() {
        let doc = json!({
            "vhosts": [{"name": "v", "limits": [["max-queues", 5]],
                        "metadata": {"description": "d", "tags": ["t"], "default_queue_type": "quorum"}}],
            "parameters": [{"vhost": "v", "component": "operator_policy", "name": "op",
                            "value": {"pattern": "^", "apply-to": "queues", "priority": 0,
                                      "definition": [["max-length", 1]]}}],
            "queues": [{"name": "q", "vhost": "v", "type": "quorum"},
                       {"name": "amq.q", "vhost": "v"}],
            "exchanges": [{"name": "amq.x", "vhost": "v", "type": "direct"}]
        });
        let defs = parse(&doc).expect("parses");
        let v = &defs.vhosts[0];
        assert_eq!(
            (v.description.as_str(), v.tags.clone()),
            ("d", vec!["t".to_owned()])
        );
        assert_eq!(v.default_queue_type.as_deref(), Some("quorum"));
        assert_eq!(defs.parameters[0].value, json!({"max-queues": 5}));
        assert_eq!(defs.operator_policies[0].definition["max-length"], 1);
        assert!(defs.queues[0].durable);
        assert!(
            defs.queues[0]
                .arguments
                .inner()
                .contains_key("x-queue-type")
        );
        assert_eq!(defs.queues.len(), 1);
        assert!(defs.exchanges.is_empty());
        assert_eq!(defs.skipped.len(), 2);
    }

    #[test]
    fn entries_without_a_vhost_are_refused_by_name() {
        let err = parse(&json!({"queues": [{"name": "q"}]}))
            .err()
            .expect("refused");
        assert_eq!(err.entry, "queues[0] 'q'");
        assert!(err.reason.contains("vhost"), "{}", err.reason);
        let b = json!({"bindings": [{"source": "x", "vhost": "/", "destination": "q"}]});
        assert!(
            parse(&b)
                .err()
                .expect("refused")
                .reason
                .contains("destination_type")
        );
    }
}
