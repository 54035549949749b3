//! Definitions: a broker's users, vhosts, permissions, policies, parameters,
//! exchanges, queues and bindings in RabbitMQ's JSON format, imported (at boot from
//! `load_definitions`, or by the HTTP API) and exported.
//!
//! An import is checked whole before anything changes: a document that does not
//! parse, or that refers to a vhost, user, exchange or queue that neither exists nor
//! is defined in it, is refused with an error naming the entry. Then the entries are
//! applied in RabbitMQ's order (users, vhosts, permissions, exchanges, topic
//! permissions, global parameters, policies, parameters, queues, bindings) through
//! the broker's own operator functions.

mod apply;
mod check;
mod export;
pub mod fields;
mod parse;

use crate::broker::Broker;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub use export::export;
pub use parse::{Definitions, parse};

/// What an import does with what already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// At boot: what exists stays as it is (users, vhosts, permissions, policies,
    /// parameters, exchanges, queues); only what is missing is created.
    KeepExisting,
    /// The HTTP API's import: users, vhost records, permissions, policies and
    /// parameters are replaced by the file's; exchanges and queues that exist are
    /// kept, as RabbitMQ keeps them.
    Overwrite,
}

/// How many entries of one kind an import created, replaced, or left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub kept: usize,
}

/// What an import did, per kind (`users`, `vhosts`, `queues`...), and what it
/// skipped (`amq.*` names, the default exchange).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub kinds: BTreeMap<&'static str, Counts>,
    pub skipped: Vec<String>,
}

impl Summary {
    pub fn counts(&self, kind: &str) -> Counts {
        self.kinds.get(kind).copied().unwrap_or_default()
    }

    fn add(&mut self, kind: &'static str, outcome: Outcome) {
        let c = self.kinds.entry(kind).or_default();
        match outcome {
            Outcome::Created => c.created += 1,
            Outcome::Updated => c.updated += 1,
            Outcome::Kept => c.kept += 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Created,
    Updated,
    Kept,
}

/// Why definitions were refused: the file (when read from one), the entry
/// (`queues[3] 'orders'`, or `the document`), and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionsError {
    pub file: Option<String>,
    pub entry: String,
    pub reason: String,
}

impl DefinitionsError {
    pub fn new(entry: &str, reason: impl Into<String>) -> DefinitionsError {
        DefinitionsError {
            file: None,
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn in_file(mut self, file: &Path) -> DefinitionsError {
        self.file = Some(file.display().to_string());
        self
    }
}

impl std::fmt::Display for DefinitionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "definitions file {file}: {} {}", self.entry, self.reason),
            None => write!(f, "definitions: {} {}", self.entry, self.reason),
        }
    }
}

impl std::error::Error for DefinitionsError {}

pub(crate) type Failure = DefinitionsError;

/// How entities are named in messages, as RabbitMQ names them.
pub(crate) mod names {
    pub fn exchange(vhost: &str, name: &str) -> String {
        format!("exchange '{name}' in vhost '{vhost}'")
    }

    pub fn queue(vhost: &str, name: &str) -> String {
        format!("queue '{name}' in vhost '{vhost}'")
    }
}

/// Parses JSON text (as bytes).
pub fn parse_bytes(bytes: &[u8]) -> Result<Value, DefinitionsError> {
    serde_json::from_slice(bytes)
        .map_err(|e| DefinitionsError::new("the document", format!("is not valid JSON: {e}")))
}

/// Reads and parses a definitions file (nothing checked against a broker yet).
pub fn read_file(path: &Path) -> Result<Definitions, DefinitionsError> {
    let bytes = std::fs::read(path).map_err(|e| {
        DefinitionsError::new("the file", format!("cannot be read: {e}")).in_file(path)
    })?;
    parse_bytes(&bytes)
        .and_then(|doc| parse(&doc))
        .map_err(|e| e.in_file(path))
}

/// The definitions files `load_definitions` names: the file, or every `.json`
/// file of the directory in name order (as RabbitMQ reads a directory).
pub fn files(path: &Path) -> Result<Vec<std::path::PathBuf>, DefinitionsError> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        DefinitionsError::new("the directory", format!("cannot be read: {e}")).in_file(path)
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Imports a definitions document: checks it whole, then applies it. A refused
/// document changes nothing; only a failure the broker reports while applying
/// (which the check did not foresee) can leave part of it applied, and names the
/// entry.
pub fn import(broker: &Broker, doc: &Value, mode: ImportMode) -> Result<Summary, DefinitionsError> {
    let defs = parse(doc)?;
    import_parsed(broker, &defs, mode)
}

/// Imports JSON text.
pub fn import_bytes(
    broker: &Broker,
    bytes: &[u8],
    mode: ImportMode,
) -> Result<Summary, DefinitionsError> {
    import(broker, &parse_bytes(bytes)?, mode)
}

/// Imports the definitions of one vhost (as `GET /api/definitions/VHOST` exports
/// them: entries without a `vhost` field): exchanges, queues, bindings, policies and
/// parameters go into `vhost`, which must exist; users, vhosts and permissions in
/// the document are ignored, as RabbitMQ ignores them.
pub fn import_vhost(
    broker: &Broker,
    doc: &Value,
    vhost: &str,
    mode: ImportMode,
) -> Result<Summary, DefinitionsError> {
    if broker.vhost(vhost).is_none() {
        return Err(DefinitionsError::new(
            &format!("vhost '{vhost}'"),
            "does not exist",
        ));
    }
    let Value::Object(map) = doc else {
        return Err(DefinitionsError::new(
            "the document",
            "is not a JSON object",
        ));
    };
    let mut scoped = serde_json::Map::new();
    for key in ["exchanges", "queues", "bindings", "policies", "parameters"] {
        let Some(Value::Array(items)) = map.get(key) else {
            continue;
        };
        let items = items
            .iter()
            .map(|item| {
                let mut item = item.clone();
                if let Value::Object(m) = &mut item {
                    m.insert("vhost".into(), Value::String(vhost.to_owned()));
                }
                item
            })
            .collect();
        scoped.insert(key.to_owned(), Value::Array(items));
    }
    import(broker, &Value::Object(scoped), mode)
}

/// Checks parsed definitions against the broker, then applies them.
pub fn import_parsed(
    broker: &Broker,
    defs: &Definitions,
    mode: ImportMode,
) -> Result<Summary, DefinitionsError> {
    check::check(broker, defs)?;
    let mut summary = apply::apply(broker, defs, mode)?;
    summary.skipped.extend(defs.skipped.iter().cloned());
    for s in &defs.skipped {
        tracing::warn!(entity = %s, "definitions: skipped (reserved name)");
    }
    Ok(summary)
}

/// The parsed `load_definitions` file(s), read before the store is opened, so that
/// a file that does not parse stops the boot before anything is touched.
pub struct BootDefinitions {
    files: Vec<(std::path::PathBuf, Definitions)>,
}

impl BootDefinitions {
    /// Reads and parses the file, or every `.json` file of the directory.
    pub fn read(path: &Path) -> Result<BootDefinitions, DefinitionsError> {
        let mut parsed = Vec::new();
        for file in files(path)? {
            let defs = read_file(&file)?;
            parsed.push((file, defs));
        }
        Ok(BootDefinitions { files: parsed })
    }

    /// Imports them. Every file is checked (with what the others define) before
    /// any is applied; an error names the file. Exchanges and queues that exist are
    /// kept in either mode; `mode` decides for users, vhost records, permissions,
    /// policies and parameters (RabbitMQ itself re-imports at every boot and so
    /// replaces them: [`ImportMode::Overwrite`]).
    pub fn import(&self, broker: &Broker, mode: ImportMode) -> Result<Summary, DefinitionsError> {
        for (i, (file, defs)) in self.files.iter().enumerate() {
            let others: Vec<&Definitions> = self
                .files
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, d))| d)
                .collect();
            check::check_with(broker, defs, &others).map_err(|e| e.in_file(file))?;
        }
        let mut total = Summary::default();
        for (file, defs) in &self.files {
            let mut summary = apply::apply(broker, defs, mode).map_err(|e| e.in_file(file))?;
            summary.skipped.extend(defs.skipped.iter().cloned());
            tracing::info!(
                file = %file.display(),
                summary = ?summary.kinds,
                skipped = ?summary.skipped,
                "definitions imported"
            );
            for (kind, c) in summary.kinds {
                let t = total.kinds.entry(kind).or_default();
                t.created += c.created;
                t.updated += c.updated;
                t.kept += c.kept;
            }
            total.skipped.extend(summary.skipped);
        }
        Ok(total)
    }
}

/// The text of a broker error.
pub(crate) fn reason(e: &crate::model::BrokerError) -> String {
    use crate::model::BrokerError as E;
    match e {
        E::NotFound(s)
        | E::AccessRefused(s)
        | E::ResourceLocked(s)
        | E::PreconditionFailed(s)
        | E::NotAllowed(s)
        | E::CommandInvalid(s)
        | E::NotImplemented(s)
        | E::Internal(s)
        | E::Invalid(s) => s.clone(),
    }
}
