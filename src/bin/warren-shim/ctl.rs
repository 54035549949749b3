//! The commands that go through the management API: what they share (the client, the
//! options, RabbitMQ's ways of reporting errors) and the dispatch to list.rs, admin.rs
//! and diag.rs.

use crate::api::{self, Api, Failure};
use crate::options::Options;
use crate::{EX_CONFIG, EX_DATAERR, EX_NOPERM, EX_UNAVAILABLE, EX_USAGE, admin, diag, list};
use std::cell::OnceCell;
use warren::Config;

/// The commands answered through the management API.
pub const COMMANDS: &[&str] = &[
    "list_queues",
    "list_exchanges",
    "list_bindings",
    "list_connections",
    "list_channels",
    "list_consumers",
    "list_users",
    "list_vhosts",
    "list_permissions",
    "list_user_permissions",
    "list_policies",
    "purge_queue",
    "delete_queue",
    "add_user",
    "delete_user",
    "change_password",
    "authenticate_user",
    "set_user_tags",
    "add_vhost",
    "delete_vhost",
    "set_permissions",
    "clear_permissions",
    "set_policy",
    "clear_policy",
    "export_definitions",
    "import_definitions",
    "close_connection",
    "check_local_alarms",
    "check_alarms",
    "check_virtual_hosts",
    "alarms",
];

pub struct Ctl<'a> {
    pub tool: &'a str,
    pub api: Api,
    pub o: &'a Options,
    node: OnceCell<String>,
}

impl Ctl<'_> {
    /// Prints a command's banner (its first line), unless quiet or JSON.
    pub fn banner(&self, text: &str) {
        if !self.o.quiet && !self.o.json() {
            println!("{text}");
        }
    }

    /// Reports missing arguments as rabbitmqctl does.
    pub fn usage(&self, usage: &str) -> u8 {
        eprintln!(
            "Error (argument validation): not enough arguments.\nUsage:\n{} {usage}",
            self.tool
        );
        EX_USAGE
    }

    /// The node name the API reports (the local node name if it does not say).
    pub fn node(&self) -> &str {
        self.node.get_or_init(|| {
            self.api
                .get("/api/overview")
                .ok()
                .and_then(|o| o.get("node").and_then(|n| n.as_str()).map(str::to_string))
                .unwrap_or_else(warren::identity::node_name)
        })
    }

    /// Reports a failure no command expects.
    pub fn fail(&self, f: &Failure) -> u8 {
        match f {
            Failure::Unreachable(e) => {
                eprintln!(
                    "Error: unable to reach the management API at {} ({e}).\n\
                     Give its address with --api http://HOST:PORT or WARREN_API.",
                    self.api.base()
                );
                EX_UNAVAILABLE
            }
            Failure::Status { status: 401, .. } => {
                eprintln!(
                    "Error: the management API at {} refused the credentials of user \"{}\"; \
                     give an administrator's with --username and --password.",
                    self.api.base(),
                    self.api.user()
                );
                EX_NOPERM
            }
            Failure::Status { status: 403, .. } => {
                eprintln!(
                    "Error: user \"{}\" is not allowed to do this: {}",
                    self.api.user(),
                    f.reason()
                );
                EX_NOPERM
            }
            Failure::Status { status, .. } => {
                eprintln!("Error:\n{}", f.reason());
                if *status == 400 {
                    EX_DATAERR
                } else {
                    EX_UNAVAILABLE
                }
            }
        }
    }

    /// Whether a vhost exists (Err: the exit code of a failure already reported).
    pub fn vhost_exists(&self, vhost: &str) -> Result<bool, u8> {
        self.exists(&format!("/api/vhosts/{}", api::seg(vhost)))
    }

    pub fn user_exists(&self, user: &str) -> Result<bool, u8> {
        self.exists(&format!("/api/users/{}", api::seg(user)))
    }

    fn exists(&self, path: &str) -> Result<bool, u8> {
        match self.api.get(path) {
            Ok(_) => Ok(true),
            Err(f) if f.status() == Some(404) => Ok(false),
            Err(f) => Err(self.fail(&f)),
        }
    }
}

/// Runs `command` over the management API; None when it is not such a command.
pub fn run(tool: &str, options: &Options, config: &Config) -> Option<u8> {
    let command = options.args.first()?.as_str();
    if !COMMANDS.contains(&command) {
        return None;
    }
    let api = match api::locate(options, config) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("Error: {e}");
            return Some(EX_CONFIG);
        }
    };
    let ctl = Ctl {
        tool,
        api,
        o: options,
        node: OnceCell::new(),
    };
    let args = &options.args[1..];
    list::run(&ctl, command, args)
        .or_else(|| admin::run(&ctl, command, args))
        .or_else(|| diag::run(&ctl, command))
}

/// The management API for status, when it can be found.
pub fn locate(options: &Options, config: &Config) -> Option<Api> {
    api::locate(options, config).ok()
}
