//! An exchange's bindings, indexed for routing: direct exchanges look the routing
//! key up in a map, topic exchanges walk a trie of the binding patterns' words (as
//! RabbitMQ's topic trie does), so routing costs what matches, not the number of
//! bindings. The list in creation order stays the record for listings, fanout and
//! headers exchanges.

use super::{Binding, Destination, ExchangeKind};
use crate::model::FastMap;
use amq_protocol::types::FieldTable;
use std::sync::Arc;

/// A binding's destination as a map key: a queue by identity, an exchange by name.
#[derive(PartialEq, Eq, Hash)]
enum Target {
    Queue(usize),
    Exchange(Box<str>),
}

impl Target {
    fn of(d: &Destination) -> Target {
        match d {
            Destination::Queue(q) => Target::Queue(Arc::as_ptr(q) as usize),
            Destination::Exchange(name) => Target::Exchange(name.as_str().into()),
        }
    }
}

/// A node of the topic trie: the patterns that continue with a word, with `*`, with
/// `#`, and the destinations of the patterns that end here.
#[derive(Default)]
struct Node {
    words: FastMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    here: Vec<Destination>,
}

impl Node {
    fn child(&mut self, word: &str) -> &mut Node {
        match word {
            "*" => self.star.get_or_insert_with(Box::default),
            "#" => self.hash.get_or_insert_with(Box::default),
            w => self.words.entry(w.into()).or_default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.here.is_empty() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }

    /// Removes one destination bound with the pattern `rest` below this node,
    /// pruning the nodes left empty.
    fn remove(&mut self, rest: &[&str], d: &Destination) {
        let Some((first, tail)) = rest.split_first() else {
            if let Some(at) = self.here.iter().position(|h| h.same(d)) {
                self.here.swap_remove(at);
            }
            return;
        };
        match *first {
            "*" | "#" => {
                let slot = if *first == "*" {
                    &mut self.star
                } else {
                    &mut self.hash
                };
                if let Some(n) = slot {
                    n.remove(tail, d);
                    if n.is_empty() {
                        *slot = None;
                    }
                }
            }
            w => {
                if let Some(n) = self.words.get_mut(w) {
                    n.remove(tail, d);
                    if n.is_empty() {
                        self.words.remove(w);
                    }
                }
            }
        }
    }

    /// Calls `found` for the destinations of every pattern that matches `key`'s
    /// remaining words. A destination may be reported more than once (patterns such
    /// as `#.#`): routing keeps each queue once.
    fn walk(&self, key: &[&str], found: &mut impl FnMut(&Destination)) {
        if let Some(h) = &self.hash {
            // `#` takes none, one or more of the remaining words.
            for skip in 0..=key.len() {
                h.walk(&key[skip..], found);
            }
        }
        let Some((first, rest)) = key.split_first() else {
            self.here.iter().for_each(&mut *found);
            return;
        };
        if let Some(n) = self.words.get(*first) {
            n.walk(rest, found);
        }
        if let Some(n) = &self.star {
            n.walk(rest, found);
        }
    }
}

/// How many words a routing key is split into without allocating.
const INLINE_WORDS: usize = 16;

/// Calls `f` with the words of a topic key; the empty key has none.
fn with_words<R>(key: &str, f: impl FnOnce(&[&str]) -> R) -> R {
    if key.is_empty() {
        return f(&[]);
    }
    let mut inline = [""; INLINE_WORDS];
    let mut n = 0;
    for w in key.split('.') {
        if n == INLINE_WORDS {
            let all: Vec<&str> = key.split('.').collect();
            return f(&all);
        }
        inline[n] = w;
        n += 1;
    }
    f(&inline[..n])
}

#[derive(Default)]
pub(super) struct Bindings {
    /// Every binding, in the order they were made.
    list: Vec<Binding>,
    /// The arguments of the bindings of each (destination, routing key): a binding
    /// is one of these, so binding twice is found without scanning the list.
    ids: FastMap<(Target, Box<str>), Vec<FieldTable>>,
    /// Direct exchanges: destinations by routing key.
    exact: FastMap<Box<str>, Vec<Destination>>,
    /// Topic exchanges: destinations by pattern.
    trie: Node,
}

impl Bindings {
    pub(super) fn list(&self) -> &[Binding] {
        &self.list
    }

    /// Adds a binding; false if it existed.
    pub(super) fn add(&mut self, kind: ExchangeKind, b: Binding) -> bool {
        let args = self
            .ids
            .entry((Target::of(&b.destination), b.routing_key.as_str().into()))
            .or_default();
        if args.contains(&b.arguments) {
            return false;
        }
        args.push(b.arguments.clone());
        match kind {
            ExchangeKind::Direct => self
                .exact
                .entry(b.routing_key.as_str().into())
                .or_default()
                .push(b.destination.clone()),
            ExchangeKind::Topic => with_words(&b.routing_key, |words| {
                let node = words.iter().fold(&mut self.trie, |n, w| n.child(w));
                node.here.push(b.destination.clone());
            }),
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
        self.list.push(b);
        true
    }

    /// Removes the bindings `pred` selects; returns how many went.
    pub(super) fn remove_where(
        &mut self,
        kind: ExchangeKind,
        mut pred: impl FnMut(&Binding) -> bool,
    ) -> usize {
        let mut removed = Vec::new();
        self.list.retain(|b| {
            let go = pred(b);
            if go {
                removed.push(b.clone());
            }
            !go
        });
        for b in &removed {
            self.forget(kind, b);
        }
        removed.len()
    }

    fn forget(&mut self, kind: ExchangeKind, b: &Binding) {
        let id = (
            Target::of(&b.destination),
            Box::<str>::from(b.routing_key.as_str()),
        );
        if let Some(args) = self.ids.get_mut(&id) {
            if let Some(at) = args.iter().position(|a| *a == b.arguments) {
                args.swap_remove(at);
            }
            if args.is_empty() {
                self.ids.remove(&id);
            }
        }
        match kind {
            ExchangeKind::Direct => {
                if let Some(ds) = self.exact.get_mut(b.routing_key.as_str()) {
                    if let Some(at) = ds.iter().position(|d| d.same(&b.destination)) {
                        ds.swap_remove(at);
                    }
                    if ds.is_empty() {
                        self.exact.remove(b.routing_key.as_str());
                    }
                }
            }
            ExchangeKind::Topic => {
                with_words(&b.routing_key, |words| {
                    self.trie.remove(words, &b.destination)
                });
            }
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
    }

    /// Calls `found` with the destinations of the direct or topic bindings that
    /// match `routing_key`.
    pub(super) fn matching(
        &self,
        kind: ExchangeKind,
        routing_key: &str,
        found: &mut impl FnMut(&Destination),
    ) {
        match kind {
            ExchangeKind::Direct => {
                if let Some(ds) = self.exact.get(routing_key) {
                    ds.iter().for_each(found);
                }
            }
            ExchangeKind::Topic => with_words(routing_key, |words| self.trie.walk(words, found)),
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
    }
}
