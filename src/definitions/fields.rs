//! Arguments between JSON and AMQP tables, as RabbitMQ converts them
//! (`rabbit_misc:to_amqp_table` and `amqp_table`): JSON strings become long strings,
//! integers 64-bit signed `long`s, other numbers doubles, objects tables, arrays
//! arrays, and `null` void.

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Number, Value};

/// The AMQP table for a JSON object (`null` is an empty table). Err: the value is
/// not an object.
pub fn to_table(v: &Value) -> Result<FieldTable, String> {
    match v {
        Value::Null => Ok(FieldTable::default()),
        Value::Object(m) => {
            let mut t = FieldTable::default();
            for (k, v) in m {
                if k.len() > 255 {
                    return Err(format!("argument name '{k}' is longer than 255 bytes"));
                }
                t.insert(ShortString::from(k.as_str()), to_value(v)?);
            }
            Ok(t)
        }
        // RabbitMQ 3.10 writes some tables as lists of [key, value] pairs.
        other => match pairs(other) {
            Some(map) => to_table(&map),
            None => Err(format!("arguments must be an object, not {other}")),
        },
    }
}

fn to_value(v: &Value) -> Result<AMQPValue, String> {
    Ok(match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => return Err(format!("number {n} is out of range")),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(a) => {
            let items: Result<Vec<AMQPValue>, String> = a.iter().map(to_value).collect();
            AMQPValue::FieldArray(FieldArray::from(items?))
        }
        Value::Object(_) => AMQPValue::FieldTable(to_table(v)?),
    })
}

/// The JSON object for an AMQP table.
pub fn from_table(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), from_value(v)))
            .collect(),
    )
}

fn from_value(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Timestamp(n) => Value::from(*n),
        AMQPValue::Float(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        AMQPValue::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let f = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(from_value).collect()),
        AMQPValue::FieldTable(t) => from_table(t),
        AMQPValue::Void => Value::Null,
    }
}

/// An Erlang proplist as RabbitMQ 3.10 exports some maps (vhost limits, operator
/// policy definitions): `[["key", value], ...]` as an object; `[]` is an empty one.
/// None if `v` is not such a list.
pub fn pairs(v: &Value) -> Option<Value> {
    let Value::Array(items) = v else {
        return None;
    };
    let mut map = Map::new();
    for item in items {
        match item.as_array().map(Vec::as_slice) {
            Some([Value::String(k), value]) => {
                map.insert(k.clone(), value.clone());
            }
            _ => return None,
        }
    }
    Some(Value::Object(map))
}

/// `v` as an object when it is one or a list of pairs; None otherwise (`null`
/// included).
pub fn object(v: &Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m.clone()),
        Value::Array(_) => match pairs(v) {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_round_trip_through_amqp_tables() {
        let v = json!({"x-message-ttl": 30000, "x-dead-letter-exchange": "dlx",
                        "flag": true, "ratio": 0.5, "list": [1, "a"], "nested": {"k": null}});
        let t = to_table(&v).expect("an object");
        assert_eq!(
            t.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(30000))
        );
        assert_eq!(from_table(&t), v);
        assert!(to_table(&json!("nope")).is_err());
        assert_eq!(
            from_table(&to_table(&json!([["max-length", 5]])).expect("pairs")),
            json!({"max-length": 5})
        );
    }
}
