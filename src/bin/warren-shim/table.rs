//! rabbitmqctl's output of listings: an info line ("Listing queues for vhost / ..."),
//! then a tab-separated table with a header row; `-q` drops the info line,
//! `--no-table-headers` the header row, and `--formatter json` prints a JSON array of
//! objects with the columns in the order asked for.

use crate::options::Options;
use serde_json::Value;

/// How a column's value is shown.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// As it is: strings bare, lists as `[a, b]`.
    Plain,
    /// An AMQP table (arguments): `[{"key",value}]` in tables, `[["key","type",value]]`
    /// in JSON.
    Args,
    /// A JSON document shown as its text (a policy's definition).
    JsonText,
}

/// One column a listing command knows: its rabbitmqctl name, where the management
/// API's object has it (dotted path), and how it is shown.
pub struct Column {
    pub key: &'static str,
    pub path: &'static str,
    pub kind: Kind,
}

pub const fn col(key: &'static str, path: &'static str, kind: Kind) -> Column {
    Column { key, path, kind }
}

/// The columns the arguments ask for (or `default`), or rabbitmqctl's complaint.
pub fn choose<'a>(
    known: &'a [Column],
    asked: &[String],
    default: &[&str],
) -> Result<Vec<&'a Column>, String> {
    let names: Vec<&str> = if asked.is_empty() {
        default.to_vec()
    } else {
        asked.iter().map(String::as_str).collect()
    };
    // rabbitmqctl accepts `name,messages` as well as `name messages`.
    let names: Vec<&str> = names
        .iter()
        .flat_map(|n| n.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !known.iter().any(|c| c.key == *n))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "Info key(s) {} are not supported",
            unknown.join(",")
        ));
    }
    Ok(names
        .iter()
        .filter_map(|n| known.iter().find(|c| c.key == *n))
        .collect())
}

/// The value at a dotted path of an API object (null where absent).
pub fn pick<'a>(item: &'a Value, path: &str) -> &'a Value {
    let mut v = item;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return &Value::Null,
        }
    }
    v
}

/// A cell of the table.
pub fn cell(v: &Value, kind: Kind) -> String {
    match kind {
        Kind::Args => match v {
            Value::Null => "[]".into(),
            other => erlang_quoted(other),
        },
        Kind::JsonText => match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        },
        Kind::Plain => plain(v),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(plain).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{{{k}, {}}}", plain(v)))
                .collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// An AMQP table as rabbitmqctl prints it: strings quoted, tables as lists of pairs.
fn erlang_quoted(v: &Value) -> String {
    match v {
        Value::Null => "undefined".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(erlang_quoted).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{{{k:?},{}}}", erlang_quoted(v)))
                .collect();
            format!("[{}]", items.join(","))
        }
    }
}

/// The AMQP type rabbitmqctl names for a JSON value.
fn amqp_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "void",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "long",
        Value::String(_) => "longstr",
        Value::Array(_) => "array",
        Value::Object(_) => "table",
    }
}

/// An AMQP table in rabbitmqctl's JSON: a list of `[key, type, value]`.
fn typed(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Array(
            map.iter()
                .map(|(k, v)| {
                    Value::Array(vec![k.clone().into(), amqp_type(v).into(), typed_value(v)])
                })
                .collect(),
        ),
        _ => Value::Array(Vec::new()),
    }
}

fn typed_value(v: &Value) -> Value {
    match v {
        Value::Object(_) => typed(v),
        // An array's elements become an object of type to value, as rabbitmqctl shows them.
        Value::Array(items) => Value::Object(
            items
                .iter()
                .map(|i| (amqp_type(i).to_string(), typed_value(i)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A value of the JSON output.
pub fn json_value(v: &Value, kind: Kind) -> Value {
    match kind {
        Kind::Args => typed(v),
        Kind::JsonText => match v {
            Value::String(_) => v.clone(),
            Value::Null => Value::String(String::new()),
            other => Value::String(other.to_string()),
        },
        Kind::Plain => v.clone(),
    }
}

/// One object of the JSON output, its keys in the columns' order.
fn json_row(item: &Value, columns: &[&Column]) -> String {
    let fields: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                Value::String(c.key.to_string()),
                json_value(pick(item, c.path), c.kind)
            )
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// Prints a listing. `streaming` listings (queues, exchanges, bindings, connections,
/// channels, consumers) print nothing after the info line when empty; the others
/// print an empty line, as rabbitmqctl does.
pub fn print(options: &Options, info: &str, columns: &[&Column], rows: &[Value], streaming: bool) {
    if options.json() {
        if rows.is_empty() {
            println!("{}", if streaming { "[\n]" } else { "[]" });
        } else {
            let rows: Vec<String> = rows.iter().map(|r| json_row(r, columns)).collect();
            println!("[\n{}\n]", rows.join("\n,"));
        }
        return;
    }
    if !options.quiet && !info.is_empty() {
        println!("{info}");
    }
    if rows.is_empty() {
        if !streaming {
            println!();
        }
        return;
    }
    let mut out = String::new();
    if options.table_headers {
        let header: Vec<&str> = columns.iter().map(|c| c.key).collect();
        out.push_str(&header.join("\t"));
        out.push('\n');
    }
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| cell(pick(row, c.path), c.kind))
            .collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    print!("{out}");
}
