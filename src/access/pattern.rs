//! The regular expressions of permissions, topic permissions and policy patterns,
//! matched as RabbitMQ's `re:run` matches a binary name: unanchored, on bytes.
//!
//! RabbitMQ's regexes are PCRE, so operators write look-arounds and back-references
//! (`^(?!amq\.).*` to keep clients off the `amq.*` names). A pattern the `regex`
//! crate takes runs there (linear time, no allocation per match); one that needs
//! PCRE's extras runs on `fancy-regex`, which backtracks only where those extras are.

use regex::bytes::RegexBuilder;

/// Most backtracking steps of one match of a fancy pattern; past it the match fails
/// (a pathological pattern must not stall a connection).
const BACKTRACK_LIMIT: usize = 100_000;

#[derive(Debug, Clone)]
pub enum Pattern {
    Plain(regex::bytes::Regex),
    Fancy(fancy_regex::Regex),
}

impl Pattern {
    /// Compiles `pattern`. When neither engine takes it, the error is the `regex`
    /// crate's (its messages name the cause precisely).
    pub fn new(pattern: &str) -> Result<Pattern, regex::Error> {
        let plain = RegexBuilder::new(pattern)
            .unicode(false)
            .size_limit(1 << 20)
            .build();
        match plain {
            Ok(r) => Ok(Pattern::Plain(r)),
            // Only for what the regex crate lacks: otherwise its refusal stands (the
            // backtracking engine is laxer than PCRE about some malformed patterns).
            Err(e) if !needs_backtracking(&e) => Err(e),
            Err(e) => fancy_regex::RegexBuilder::new(pattern)
                .backtrack_limit(BACKTRACK_LIMIT)
                .build()
                .map(Pattern::Fancy)
                .map_err(|_| e),
        }
    }

    pub fn is_match(&self, name: &str) -> bool {
        match self {
            Pattern::Plain(r) => r.is_match(name.as_bytes()),
            // A match that runs out of backtracking steps counts as no match.
            Pattern::Fancy(r) => r.is_match(name).unwrap_or(false),
        }
    }
}

/// Whether the regex crate refused a pattern only for a PCRE feature it lacks.
fn needs_backtracking(e: &regex::Error) -> bool {
    let text = e.to_string();
    text.contains("look-around") || text.contains("backreferences")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> bool {
        Pattern::new(p).expect("compiles").is_match(name)
    }

    #[test]
    fn unanchored_with_pcre_look_arounds_and_back_references() {
        assert!(m("b", "abc"));
        assert!(m("^(?!amq\\.).*", "orders"));
        assert!(!m("^(?!amq\\.).*", "amq.topic"));
        assert!(m("^(?!amq\\.)(a|o).*", "orders"));
        assert!(m("(.)\\1", "xaay"));
        assert!(!m("(.)\\1", "xay"));
        assert!(m("^q(?=1)", "q1"));
        assert!(Pattern::new("(unclosed").is_err());
    }
}
