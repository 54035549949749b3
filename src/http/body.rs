//! Request bodies: JSON objects whatever the content type says (rabbitmqadmin and curl
//! users often send none), with booleans and numbers accepted as strings too
//! (rabbitmqadmin v1 sends `"true"` and `"10"`).

use super::ApiError;
use serde_json::{Map, Value};

/// The body as a JSON object; an empty body is an empty object. Anything else is
/// RabbitMQ's 400 `not_json`.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("not_json")),
        Err(_) => Err(ApiError::bad_request("not_json")),
    }
}

/// A string field (`None` when absent or null); anything else but a string is a 400.
pub fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// A required string field: 400 `[{key_missing,KEY}]`-style when absent.
pub fn required(map: &Map<String, Value>, keys: &[&str]) -> Result<Vec<String>, ApiError> {
    present(map, keys)?;
    keys.iter()
        .map(|k| string(map, k).map(Option::unwrap_or_default))
        .collect()
}

/// 400 `[{key_missing,KEY},...]` unless every key is present.
pub fn present(map: &Map<String, Value>, keys: &[&str]) -> Result<(), ApiError> {
    let missing: Vec<String> = keys
        .iter()
        .filter(|k| matches!(map.get(**k), None | Some(Value::Null)))
        .map(|k| format!("{{key_missing,{k}}}"))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!("[{}]", missing.join(","))));
    }
    Ok(())
}

/// A number given as JSON or as a string (`"10"`).
pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Tags given as a list or as a comma-separated string.
pub fn tags(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(|t| t.trim().to_owned()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| match t {
                Value::String(s) => Ok(s.trim().to_owned()),
                _ => Err(ApiError::bad_request("tags must be strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::bad_request("tags must be a list or a string")),
    };
    Ok(list.into_iter().filter(|t| !t.is_empty()).collect())
}

/// Numbers inside a policy definition may arrive as strings (rabbitmqadmin v1):
/// turn the values of known numeric keys into numbers.
pub fn numeric_definition(map: &mut Map<String, Value>) {
    const NUMERIC: &[&str] = &[
        "expires",
        "message-ttl",
        "max-length",
        "max-length-bytes",
        "max-in-memory-length",
        "max-in-memory-bytes",
        "delivery-limit",
        "queue-version",
        "stream-max-segment-size-bytes",
        "target-group-size",
        "ha-sync-batch-size",
    ];
    for (key, value) in map.iter_mut() {
        if NUMERIC.contains(&key.as_str())
            && let Value::String(s) = value
            && let Ok(n) = s.trim().parse::<i64>()
        {
            *value = Value::from(n);
        }
    }
}
