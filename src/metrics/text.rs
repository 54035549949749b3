//! The Prometheus text exposition format (version 0.0.4), which RabbitMQ serves:
//! `# TYPE` then `# HELP` before each family, one sample per line.
//!
//! Written by hand rather than with prometheus-client: that crate encodes OpenMetrics,
//! where a counter family is named without its `_total` suffix
//! (`# TYPE rabbitmq_connections_opened counter`), and it wants metrics registered
//! up front, while these are read from the broker at each scrape. RabbitMQ's output,
//! which dashboards and alert rules are written against, is plain 0.0.4 text.

use std::fmt::{Display, Write};

/// A metric family's type as `# TYPE` names it.
#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Untyped,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Untyped => "untyped",
        }
    }
}

/// An exposition being written.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Starts a family: its `# TYPE` and `# HELP` lines, in RabbitMQ's order.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        let _ = writeln!(self.out, "# HELP {name} {help}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_into(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single sample.
    pub fn single(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) {
        self.family(name, kind, help);
        self.sample(name, labels, value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escaped_labels() {
        let mut t = Text::default();
        t.family("rabbitmq_queue_messages", Kind::Gauge, "Depth");
        t.sample(
            "rabbitmq_queue_messages",
            &[("vhost", "/"), ("queue", "a\"b\\c\nd")],
            3,
        );
        t.single("rabbitmq_queues", Kind::Gauge, "Queues available", &[], 1);
        assert_eq!(
            t.finish(),
            "# TYPE rabbitmq_queue_messages gauge\n# HELP rabbitmq_queue_messages Depth\n\
             rabbitmq_queue_messages{vhost=\"/\",queue=\"a\\\"b\\\\c\\nd\"} 3\n\
             # TYPE rabbitmq_queues gauge\n# HELP rabbitmq_queues Queues available\n\
             rabbitmq_queues 1\n"
        );
    }
}
