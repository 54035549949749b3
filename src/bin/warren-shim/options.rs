//! The command line of the shims: RabbitMQ's global options (node, quiet, timeout,
//! vhost, formatter, ...), the options of the commands Warren answers, and the options
//! that say where the management API is. What is left are the command and its
//! positional arguments.

use std::time::Duration;

pub struct Options {
    pub quiet: bool,
    /// `--timeout`, when given.
    pub timeout: Option<Duration>,
    /// `-p` / `--vhost`.
    pub vhost: Option<String>,
    /// `--formatter` (`json` changes the output; the others print tables).
    pub formatter: Option<String>,
    /// False with `--no-table-headers`.
    pub table_headers: bool,
    /// `--api URL` (the management API's address), else `WARREN_API`.
    pub api: Option<String>,
    /// `--username` / `--password` for the management API.
    pub username: Option<String>,
    pub password: Option<String>,
    /// delete_queue's `--if-empty` / `-e` and `--if-unused` / `-u`.
    pub if_empty: bool,
    pub if_unused: bool,
    /// Options of single commands that take a value: `--priority`, `--apply-to`,
    /// `--description`, `--tags`, `--default-queue-type`, `--format`.
    pub values: Vec<(String, String)>,
    pub args: Vec<String>,
}

/// Options that take a value and belong to single commands.
const VALUED: [&str; 6] = [
    "--priority",
    "--apply-to",
    "--description",
    "--tags",
    "--default-queue-type",
    "--format",
];

impl Options {
    /// The timeout for a command whose own default is `default`.
    pub fn timeout_or(&self, default: Duration) -> Duration {
        self.timeout.unwrap_or(default)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout_or(Duration::from_secs(10))
    }

    pub fn json(&self) -> bool {
        self.formatter
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("json"))
    }

    pub fn vhost(&self) -> &str {
        self.vhost.as_deref().unwrap_or("/")
    }

    pub fn value(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn seconds(value: &str) -> Result<Duration, String> {
    let secs: u64 = value
        .parse()
        .map_err(|_| format!("--timeout {value} is not a number of seconds"))?;
    Ok(Duration::from_secs(secs.max(1)))
}

/// Strips the options from `argv` (anywhere on the line, as RabbitMQ's tools accept).
pub fn parse(argv: Vec<String>) -> Result<Options, String> {
    let mut o = Options {
        quiet: false,
        timeout: None,
        vhost: None,
        formatter: None,
        table_headers: true,
        api: std::env::var("WARREN_API").ok().filter(|s| !s.is_empty()),
        username: None,
        password: None,
        if_empty: false,
        if_unused: false,
        values: Vec::new(),
        args: Vec::new(),
    };
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        // `--name=value` is the same as `--name value`.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let value = |it: &mut std::vec::IntoIter<String>| match inline.clone() {
            Some(v) => Ok(v),
            None => it
                .next()
                .ok_or_else(|| format!("option {name} needs a value")),
        };
        match name.as_str() {
            "-q" | "--quiet" | "-s" | "--silent" => o.quiet = true,
            "-l" | "--longnames" | "--offline" | "--online" | "--local" => {}
            "--no-table-headers" => o.table_headers = false,
            "-e" | "--if-empty" => o.if_empty = true,
            "-u" | "--if-unused" => o.if_unused = true,
            "-n" | "--node" | "--erlang-cookie" => {
                value(&mut it)?;
            }
            "-p" | "--vhost" => o.vhost = Some(value(&mut it)?),
            "--formatter" => o.formatter = Some(value(&mut it)?),
            "--api" => o.api = Some(value(&mut it)?),
            "--username" => o.username = Some(value(&mut it)?),
            "--password" => o.password = Some(value(&mut it)?),
            "-t" | "--timeout" => o.timeout = Some(seconds(&value(&mut it)?)?),
            n if VALUED.contains(&n) => {
                let v = value(&mut it)?;
                o.values.push((n.to_string(), v));
            }
            _ => o.args.push(arg),
        }
    }
    Ok(o)
}
