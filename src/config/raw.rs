//! YAML → a position-aware tree ([`Node`]): whole (`parse_tree`), or for fleet files the head and
//! then the items of `lines:` in slices (`parse_streamed`), so that the whole tree never
//! exists. The YAML crate (`serde-saphyr`: maintained, reports positions, budgets aliases
//! against YAML bombs) is used only here, so swapping it touches this file alone. No IO, no
//! lookups: `resolve` gives the tree its meaning.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

// `Pos` lives with the diagnostics that print it, so that this parser and the messages do not
// import each other; it stays reachable here, where positions are made.
use super::diagnostics::Diagnostic;
pub use super::diagnostics::Pos;

/// A YAML value with where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// A mapping key with where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// What kind of value this is, for "expected a string, found a list" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses YAML text into a tree, on this thread. The one error it can return is a YAML syntax
/// or budget error. This is the reference parse: `parse_streamed` gives way to it whenever the
/// two could differ.
pub fn parse_tree(file: &str, text: &str) -> Result<Node, Diagnostic> {
    if text.trim().is_empty() {
        return Ok(Node { value: Value::Null, pos: Pos { line: 1, column: 1 } });
    }
    match parse_whole(text) {
        Ok(tree) => match first_tag(&tree, text) {
            Some((pos, tag)) => Err(Diagnostic::error(
                file,
                Some(pos),
                "",
                format!("YAML tag `{tag}` is not accepted: write the value itself (a tag such as !!binary turns text into something the file does not show)"),
            )),
            None => Ok(tree),
        },
        Err(err) => {
            let pos = err.location().map(|l| Pos { line: l.line() as u32, column: l.column() as u32 });
            Err(Diagnostic::error(file, pos, "", format!("invalid YAML: {}", first_line(&err.to_string()))))
        }
    }
}

/// The first node written with a YAML tag (`!!binary aGk=`, `!custom x`), with the tag. The
/// parser applies tags silently (`!!binary` decodes base64), so a name could be something no
/// one reading the file sees; tags have no use in this config, so they are refused.
fn first_tag<'a>(tree: &Node, text: &'a str) -> Option<(Pos, &'a str)> {
    if !text.contains('!') {
        return None;
    }
    let starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let mut stack = vec![tree];
    while let Some(node) = stack.pop() {
        if let Some(tag) = tag_before(text, &starts, node.pos) {
            return Some((node.pos, tag));
        }
        match &node.value {
            Value::Seq(items) => stack.extend(items.iter().rev()),
            Value::Map(entries) => stack.extend(entries.iter().rev().map(|(_, v)| v)),
            _ => {}
        }
    }
    None
}

/// The token right before `pos` when it is a tag (starts with `!`).
fn tag_before<'a>(text: &'a str, line_starts: &[usize], pos: Pos) -> Option<&'a str> {
    let line_start = *line_starts.get(pos.line.checked_sub(1)? as usize)?;
    let line = &text[line_start..];
    let column = line.char_indices().nth(pos.column.saturating_sub(1) as usize).map_or(line.len(), |(i, _)| i);
    let before = text[..line_start + column].trim_end();
    let token = before.rsplit(|c: char| c.is_whitespace()).next()?;
    token.starts_with('!').then_some(token)
}

fn parse_whole(text: &str) -> Result<Node, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options::<Spanned<NodeValue>>(text, options()).map(node)
}

/// Files at least this large are streamed: below it the whole tree is a few MB at most, and
/// the second thread would cost more than it saves.
const STREAM_MIN_BYTES: usize = 1 << 20;
/// Files larger than this parse whole, so that the budgets the parts cannot add up
/// (`Limits`) never matter: at most 32 MB of text cannot hold 512 MB of scalars or input, or
/// 64 MB of comments.
const STREAM_MAX_BYTES: usize = 32 << 20;
/// Items per slice: about 70 KB of fleet YAML and 550 KB of tree. The trees alive at once (per
/// parsing thread one being parsed and one queued, plus the one being resolved) stay under
/// 3 MB, and 200 hand-offs for 100,000 lines cost nothing measurable (2,000 items a slice
/// measured the same speed and 8 MB more peak RSS).
const SLICE_ITEMS: usize = 500;

/// Parses a fleet-shaped file in parts and hands them to `consume`, so that the file's whole
/// tree never exists (a 100,000-line fleet's is about 113 MiB): first the head (everything
/// before the first item of `lines:`, one tree in which `lines` is null), then the items of
/// `lines:`, a slice of `SLICE_ITEMS` at a time, each slice parsed alone on one of `PARSERS`
/// threads while `consume` works on the ones before, its line numbers shifted to the file's.
///
/// The shape must make the parts' result the whole parse's: the last top-level key is
/// `lines:` with nothing on its line, holding a block sequence whose items are cut where they
/// start; no anchors, aliases or merge keys (an item could refer to another slice), no tabs,
/// carriage returns, directives or second documents. `None` when the file has another shape,
/// when any part fails to parse or comes out as something else, or when the parts together
/// exceed a budget the whole would exceed (`Limits`): then `consume`'s result is dropped and
/// the caller parses the whole file, so that errors and their positions are always the
/// one-thread parse's.
pub fn parse_streamed<R>(
    text: &str,
    consume: impl FnOnce(&Node, &mut dyn Iterator<Item = Vec<Node>>) -> R,
) -> Option<R> {
    if !(STREAM_MIN_BYTES..=STREAM_MAX_BYTES).contains(&text.len()) {
        return None;
    }
    stream(text, SLICE_ITEMS, Limits::of(&options()), consume)
}

/// `parse_streamed` with its slice size and budget as parameters, for tests.
pub(super) fn stream<R>(
    text: &str,
    slice_items: usize,
    limits: Limits,
    consume: impl FnOnce(&Node, &mut dyn Iterator<Item = Vec<Node>>) -> R,
) -> Option<R> {
    // `!` may be a tag, which the whole parse refuses with its position.
    if text.bytes().any(|b| matches!(b, b'&' | b'*' | b'\t' | b'\r' | b'!')) || text.contains("<<") {
        return None;
    }
    let cuts = cuts(text, slice_items)?;
    let head_text = &text[..cuts.starts[0].0];
    let mut head = parse_whole(head_text).ok()?;
    let Value::Map(root) = &head.value else { return None };
    match root.split_last() {
        Some(((key, value), rest)) if key.name == "lines" && value.value == Value::Null => {
            // A second `lines:` earlier would make the whole parse read another value.
            if rest.iter().any(|(k, _)| k.name == "lines") {
                return None;
            }
        }
        _ => return None,
    }
    // The stream's and the document's events.
    let mut total = Tally { events: 4, ..Tally::default() };
    total.comments(head_text);
    tally(&mut head, 0, 0, &mut total);

    let spent =
        Spent { nodes: AtomicUsize::new(total.nodes), events: AtomicUsize::new(total.events), ..Spent::default() };
    let parsers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(PARSERS);
    std::thread::scope(|scope| {
        // Parser `p` parses slices `p`, `p + parsers`, … and hands them over in that order
        // through a channel of its own, so that reading the channels in turn yields every
        // slice in file order, and at most two slices per parser wait.
        let mut receivers = Vec::with_capacity(parsers);
        let mut handles = Vec::with_capacity(parsers);
        for first in 0..parsers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Node>>(1);
            let (cuts, spent) = (&cuts, &spent);
            // The main thread's stack size: a deep item must not overflow a parsing thread
            // where the whole parse, on the caller's thread, would not.
            let handle = std::thread::Builder::new().stack_size(8 << 20).spawn_scoped(scope, move || {
                for i in (first..cuts.starts.len()).step_by(parsers) {
                    let parsed = (!spent.failed.load(Ordering::Relaxed))
                        .then(|| parse_slice(cuts.slice(text, i), cuts.starts[i].1, spent, &limits))
                        .flatten();
                    if parsed.is_none_or(|items| tx.send(items).is_err()) {
                        spent.failed.store(true, Ordering::Relaxed);
                        return false;
                    }
                }
                true
            });
            match handle {
                Ok(handle) => handles.push(handle),
                // No thread to parse with: parse whole (dropping the receivers stops the others).
                Err(_) => return None,
            }
            receivers.push(rx);
        }
        let mut in_order = (0..).map_while(|i| receivers[i % parsers].recv().ok());
        let result = consume(&head, &mut in_order);
        // Slices the consumer left unread must parse as well, and no parser may be left
        // blocked on a full channel.
        receivers.iter().for_each(|rx| rx.iter().for_each(drop));
        let complete = handles.into_iter().all(|h| h.join().unwrap_or(false));
        complete.then_some(result)
    })
}

/// At most this many parsing threads. Parsing is about four fifths of a load's work, so with one
/// the resolving thread would mostly wait; two keep a 100,000-line load as fast as the whole
/// tree parsed in two halves was, the resolving thread taking what the cores have left.
const PARSERS: usize = 2;

/// What the parsing threads have counted so far against the budget, and whether one failed.
#[derive(Default)]
struct Spent {
    nodes: AtomicUsize,
    events: AtomicUsize,
    failed: AtomicBool,
}

/// Parses one slice of items alone; `lines_before` is how many lines of the file precede it.
/// `None` when it does not parse as a sequence, or the parts so far exceed `limits`.
fn parse_slice(text: &str, lines_before: usize, spent: &Spent, limits: &Limits) -> Option<Vec<Node>> {
    let tree = parse_whole(text).ok()?;
    let Value::Seq(mut items) = tree.value else { return None };
    let shift = u32::try_from(lines_before).ok()?;
    // Each part is a stream, a document and (here) a sequence of its own: a few events the
    // whole parse does not have, so that the sum stays an upper bound.
    let mut part = Tally { events: 6, ..Tally::default() };
    part.comments(text);
    for item in &mut items {
        // Depth as in the whole file: the root mapping and `lines:` hold every item.
        tally(item, shift, 2, &mut part);
    }
    let spent = Tally {
        nodes: spent.nodes.fetch_add(part.nodes, Ordering::Relaxed) + part.nodes,
        events: spent.events.fetch_add(part.events, Ordering::Relaxed) + part.events,
        depth: part.depth,
    };
    (!spent.exceeds(limits)).then_some(items)
}

/// Where a fleet-shaped file is cut: `starts[0]` is the first item of `lines:` (the head ends
/// there), each start is an item at the sequence's indentation, with the number of lines before
/// it; a slice runs from its start to the next.
struct Cuts {
    starts: Vec<(usize, usize)>,
}

impl Cuts {
    fn slice<'t>(&self, text: &'t str, i: usize) -> &'t str {
        let end = self.starts.get(i + 1).map_or(text.len(), |&(next, _)| next);
        &text[self.starts[i].0..end]
    }
}

/// Finds the cuts, or `None` when the file does not have the shape `parse_streamed` needs.
fn cuts(text: &str, slice_items: usize) -> Option<Cuts> {
    // The last top-level key's line, and what the lines after it read as so far.
    let mut key: Option<&str> = None;
    let mut items: Option<Cuts> = None;
    let mut qualifies = false;
    let (mut indent, mut count) = (0, 0);
    let mut offset = 0;
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let at = offset;
        offset += line.len();
        let body = line.trim_start_matches(' ');
        let depth = line.len() - body.len();
        let is_item = body.starts_with("- ") || body.trim_end() == "-";
        match line.as_bytes()[0] {
            b'-' | b'.' if line.starts_with("---") || line.starts_with("...") => return None,
            b'%' | b'-' | b'[' | b'{' | b'?' | b'!' | b'|' | b'>' | b'"' | b'\'' => return None,
            // Blank lines and comments, at any indentation, belong to no item.
            _ if body.trim_end().is_empty() || body.starts_with('#') => {}
            b' ' => match &mut items {
                // The first line after the key must open the sequence.
                None if qualifies && is_item => {
                    items = Some(Cuts { starts: vec![(at, line_no)] });
                    (indent, count) = (depth, 1);
                }
                None => qualifies = false,
                Some(_) if depth > indent => {}
                Some(cuts) if depth == indent && is_item => {
                    if count % slice_items == 0 {
                        cuts.starts.push((at, line_no));
                    }
                    count += 1;
                }
                // Less indented than the items, or not an item at their indentation: leave it
                // to the whole parse.
                Some(_) => {
                    items = None;
                    qualifies = false;
                }
            },
            _ => {
                key = Some(line);
                items = None;
                qualifies = true;
                count = 0;
            }
        }
    }
    // `lines:` with nothing after it but a comment: the head reads it as null, and the items
    // that follow are its whole value.
    let rest = key?.strip_prefix("lines:")?;
    let rest = rest.trim_end();
    if !(rest.is_empty() || (rest.starts_with(' ') && rest.trim_start().starts_with('#'))) {
        return None;
    }
    items
}

/// Nodes, events and depth of the parts so far, counted as the crate's budget counts them, so
/// that parts which pass one by one but would not pass together fall back to the whole parse
/// (which then refuses the file with its own message).
#[derive(Default)]
struct Tally {
    nodes: usize,
    events: usize,
    depth: usize,
}

impl Tally {
    /// Every comment is an event of its own; each has a `#`.
    fn comments(&mut self, text: &str) {
        self.events += text.bytes().filter(|&b| b == b'#').count();
    }

    fn exceeds(&self, limits: &Limits) -> bool {
        self.nodes > limits.nodes || self.events > limits.events || self.depth > limits.depth
    }
}

/// The budgets that parsing in parts could otherwise evade.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub nodes: usize,
    pub events: usize,
    pub depth: usize,
}

impl Limits {
    fn of(options: &serde_saphyr::Options) -> Limits {
        let budget = options.budget.clone().unwrap_or_default();
        Limits { nodes: budget.max_nodes, events: budget.max_events, depth: budget.max_depth }
    }
}

/// Shifts `node`'s lines by `lines` and counts it into `total`; `depth` is how many
/// collections hold it.
fn tally(node: &mut Node, lines: u32, depth: usize, total: &mut Tally) {
    node.pos.line += lines;
    // A scalar or a collection's start, plus a collection's end.
    total.nodes += 1;
    total.events += 1;
    match &mut node.value {
        Value::Seq(items) => {
            total.events += 1;
            total.depth = total.depth.max(depth + 1);
            items.iter_mut().for_each(|n| tally(n, lines, depth + 1, total));
        }
        Value::Map(entries) => {
            total.events += 1;
            total.depth = total.depth.max(depth + 1);
            for (key, value) in entries {
                key.pos.line += lines;
                total.nodes += 1;
                total.events += 1;
                tally(value, lines, depth + 1, total);
            }
        }
        _ => {}
    }
}

/// The YAML budget: room for fleet-size files (100,000 lines and more), while alias
/// expansion stays bounded by the crate's replay limits, which is what stops YAML bombs.
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 20_000_000;
    budget.max_events = 40_000_000;
    budget.max_total_scalar_bytes = 512 * 1024 * 1024;
    budget.max_reader_input_bytes = Some(512 * 1024 * 1024);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// One line of the crate's message, without the position (we print it ourselves), a rendered
/// snippet, or advice about the crate's own options.
fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or(message).trim();
    line = line.strip_prefix("error: ").unwrap_or(line);
    if let Some(rest) = line.strip_prefix("line ") {
        // "line 6 column 12: budget breached ..."
        if let Some((_, after)) = rest.split_once(": ") {
            line = after;
        }
    }
    let line = line.split(", set DuplicateKeyPolicy").next().unwrap_or(line);
    if line.starts_with("budget breached") {
        return format!("document too large or aliases expanded too far ({line})");
    }
    line.to_string()
}

fn node(spanned: Spanned<NodeValue>) -> Node {
    let loc = spanned.referenced;
    Node { value: spanned.value.0, pos: Pos { line: loc.line() as u32, column: loc.column() as u32 } }
}

/// Deserialize target for any YAML node.
struct NodeValue(Value);

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor).map(NodeValue)
    }
}

/// Deserialize target for a mapping key: scalars become their text.
struct KeyName(String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(ValueVisitor)? {
            Value::Str(s) => Ok(KeyName(s)),
            Value::Int(i) => Ok(KeyName(i.to_string())),
            Value::Float(f) => Ok(KeyName(f.to_string())),
            Value::Bool(b) => Ok(KeyName(b.to_string())),
            Value::Null => Ok(KeyName("null".to_string())),
            other => Err(de::Error::custom(format!("a mapping key must be a plain word, found {}", other.kind()))),
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64)))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64)))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<NodeValue>>()? {
            items.push(node(item));
        }
        items.shrink_to_fit();
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyName>>()? {
            let pos = Pos { line: key.referenced.line() as u32, column: key.referenced.column() as u32 };
            let value = node(map.next_value::<Spanned<NodeValue>>()?);
            entries.push((Key { name: key.value.0, pos }, value));
        }
        entries.shrink_to_fit();
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let tree = parse_tree("t.yaml", "global:\n  timeout: 30s\nlines:\n  - name: a\n").unwrap();
        let Value::Map(root) = tree.value else { panic!("root is a map") };
        assert_eq!(root[0].0.name, "global");
        assert_eq!(root[0].0.pos, Pos { line: 1, column: 1 });
        let Value::Map(global) = &root[0].1.value else { panic!() };
        assert_eq!(global[0].0.pos, Pos { line: 2, column: 3 });
        assert_eq!(global[0].1.value, Value::Str("30s".into()));
        let Value::Seq(lines) = &root[1].1.value else { panic!() };
        assert_eq!(lines[0].pos.line, 4);
    }

    #[test]
    fn takes_fleet_size_files() {
        let lines: String =
            (0..60_000).map(|i| format!("  - {{name: line-{i}, driver: demo, profile: steady}}\n")).collect();
        let tree = parse_tree("t.yaml", &format!("lines:\n{lines}")).expect("a 60,000-line file parses");
        let Value::Map(root) = tree.value else { panic!("root is a map") };
        let Value::Seq(items) = &root[0].1.value else { panic!() };
        assert_eq!(items.len(), 60_000);
    }

    fn fleet(lines: usize) -> String {
        let mut text =
            String::from("# a fleet\nglobal:\n  poll_interval: 1m\naccounts:\n  a: {driver: demo}\nlines:\n");
        for i in 0..lines {
            if i % 3 == 0 {
                text += &format!("  - name: line-{i}\n    account: a\n    labels: {{site: \"s{i}\"}}\n  # note {i}\n");
            } else {
                text += &format!("  - {{name: line-{i}, driver: demo, profile: steady}}\n");
            }
        }
        text
    }

    const NO_LIMITS: Limits = Limits { nodes: usize::MAX, events: usize::MAX, depth: usize::MAX };

    /// The streamed parts put back together as one tree, and how many slices there were.
    fn streamed(text: &str, slice_items: usize, limits: Limits) -> Option<(Node, usize)> {
        let (mut head, slices) =
            stream(text, slice_items, limits, |head, slices| (head.clone(), slices.collect::<Vec<_>>()))?;
        let count = slices.len();
        let Value::Map(root) = &mut head.value else { panic!("the head is a mapping") };
        let lines = &mut root.last_mut().expect("lines").1;
        lines.value = Value::Seq(slices.into_iter().flatten().collect());
        Some((head, count))
    }

    /// `lines:`'s own position is the one thing the parts cannot know (nothing reads it when
    /// `lines:` is a list); take it from `whole`.
    fn with_lines_pos_of(mut tree: Node, whole: &Node) -> Node {
        let (Value::Map(root), Value::Map(whole_root)) = (&mut tree.value, &whole.value) else { panic!() };
        root.last_mut().unwrap().1.pos = whole_root.last().unwrap().1.pos;
        tree
    }

    #[test]
    fn a_streamed_file_equals_the_file_parsed_whole() {
        let text = fleet(3_000);
        let whole = parse_whole(&text).expect("parses");
        for (slice_items, slices) in [(1, 3_000), (7, 429), (1_000, 3), (2_999, 2), (3_000, 1), (5_000, 1)] {
            let (tree, count) = streamed(&text, slice_items, NO_LIMITS).expect("this shape streams");
            assert_eq!(count, slices, "slices of {slice_items}");
            assert_eq!(with_lines_pos_of(tree, &whole), whole, "slices of {slice_items}");
        }
        // Comments and blank lines before the first item, a comment on the key's line, nested
        // lists and block scalars inside items, an item with nothing in it.
        let text = "global: {timeout: 1s}\nlines: # the fleet\n\n# first\n  - name: a\n    tags:\n      - x\n  \
            - name: b\n    note: |\n      - not an item\n\n  -\n  - {name: c,\n     driver: demo}\n";
        let whole = parse_whole(text).expect("parses");
        let (tree, count) = streamed(text, 1, NO_LIMITS).expect("this shape streams");
        assert_eq!(count, 4);
        assert_eq!(with_lines_pos_of(tree, &whole), whole);
    }

    /// The differential test `serde-saphyr`'s exact pin stands on (Cargo.toml): every config
    /// of the corpus (`tests/config/{good,warn,bad}`, `config/`) that streams gives, slice by
    /// slice, the tree the crate gives for the whole file — at one item a slice and at two.
    #[test]
    fn every_config_of_the_corpus_that_streams_equals_its_whole_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["tests/config/good", "tests/config/warn", "tests/config/bad", "config"] {
            for entry in std::fs::read_dir(root.join(dir)).expect(dir) {
                let path = entry.expect(dir).path();
                if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut streamed_files = 0;
        for path in &files {
            let Ok(text) = std::fs::read_to_string(path) else { continue };
            for slice_items in [1, 2] {
                let Some((tree, _)) = streamed(&text, slice_items, NO_LIMITS) else { continue };
                let whole = parse_whole(&text)
                    .unwrap_or_else(|e| panic!("{}: streams, but the whole file does not parse: {e}", path.display()));
                assert_eq!(with_lines_pos_of(tree, &whole), whole, "{} in slices of {slice_items}", path.display());
                streamed_files += usize::from(slice_items == 1);
            }
        }
        assert!(files.len() >= 50, "the corpus has {} configs", files.len());
        assert!(streamed_files >= 20, "only {streamed_files} of {} configs stream", files.len());
    }

    #[test]
    fn files_of_other_shapes_are_parsed_whole() {
        let text = fleet(300);
        let streams = |text: &str| streamed(text, 7, NO_LIMITS).is_some();
        assert!(streams(&text));
        // A key after the sequence, an anchor, a merge key, a second document, a directive, a
        // tab, a value on the key's line, items at column 0 or less indented than the first,
        // a last key other than `lines`, a second `lines:`: all parse whole.
        assert!(!streams(&format!("{text}extra: 1\n")));
        assert!(!streams(&text.replace("accounts:\n  a:", "accounts:\n  a: &x")));
        assert!(!streams(&text.replace("  a: {driver: demo}", "  a: {<<: {driver: demo}}")));
        assert!(!streams(&format!("{text}---\nlines: []\n")));
        assert!(!streams(&format!("%YAML 1.2\n---\n{text}")));
        assert!(!streams(&text.replace("poll_interval: 1m", "poll_interval:\t1m")));
        assert!(!streams(&text.replace("lines:\n", "lines: !!seq\n")));
        assert!(!streams(&text.replace("\n  - ", "\n- ")));
        assert!(!streams(&format!("{text} - {{name: x, driver: demo}}\n")));
        assert!(!streams(&text.replace("lines:\n", "items:\n")));
        assert!(!streams(&text.replace("global:", "lines: []\nglobal:")));
        // A broken item in a later slice: the whole parse reports it, at its real line.
        let broken = format!("{text}  - {{name: [oops\n");
        assert!(!streams(&broken));
        let err = parse_tree("t.yaml", &broken).unwrap_err();
        assert!(err.pos.is_some_and(|p| p.line as usize >= text.lines().count()), "{err}");
    }

    /// The smallest `max_nodes` or `max_events` (per `set`) with which the whole file parses.
    fn crate_count(text: &str, set: fn(&mut serde_saphyr::Budget, usize)) -> usize {
        let parses = |limit: usize| {
            let mut options = options();
            set(options.budget.as_mut().unwrap(), limit);
            serde_saphyr::from_str_with_options::<Spanned<NodeValue>>(text, options).is_ok()
        };
        let (mut low, mut high) = (0, 1_000_000);
        while low < high {
            let mid = (low + high) / 2;
            if parses(mid) {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        low
    }

    #[test]
    fn parts_that_pass_alone_but_not_together_fall_back() {
        let text = fleet(300);
        // Nodes are counted exactly as the crate counts them, events never below it.
        let nodes = crate_count(&text, |b, n| b.max_nodes = n);
        let mut counted = Tally::default();
        tally(&mut parse_whole(&text).unwrap(), 0, 0, &mut counted);
        assert_eq!(counted.nodes, nodes);
        let events = crate_count(&text, |b, n| b.max_events = n);
        let limits = |nodes, events| Limits { nodes, events, depth: 64 };
        assert!(streamed(&text, 7, limits(nodes, usize::MAX)).is_some());
        assert!(streamed(&text, 7, limits(nodes - 1, usize::MAX)).is_none());
        assert!(streamed(&text, 7, limits(usize::MAX, events - 1)).is_none());
        // An item 63 lists deep is 64 deep in a slice of its own but 65 in the file, one more
        // than the crate allows: the whole parse refuses it.
        // (A debug build recurses deeper than a test thread's stack allows.)
        let deep = format!("{text}  - {}{}\n", "[".repeat(63), "]".repeat(63));
        let big_stack = std::thread::Builder::new().stack_size(64 << 20);
        big_stack
            .spawn(move || {
                assert!(parse_tree("t.yaml", &deep).is_err());
                assert!(parse_whole(&format!("{}{}\n", "[".repeat(64), "]".repeat(64))).is_ok());
                assert!(streamed(&deep, 1, Limits::of(&options())).is_none());
                // Alone, its slice would have passed.
                assert!(streamed(&deep, 1, Limits { depth: usize::MAX, ..Limits::of(&options()) }).is_some());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn reports_syntax_errors_with_a_position() {
        let err = parse_tree("t.yaml", "lines:\n  - name: [a\n").unwrap_err();
        assert!(err.pos.is_some(), "{err}");
    }

    /// Issue 14: tags were applied silently (`!!binary` turned a name into decoded bytes).
    #[test]
    fn yaml_tags_are_refused_with_their_position() {
        let cases = [
            ("lines:\n  - name: !!binary aGVsbG8=\n", 2, "!!binary"),
            ("lines:\n  - name: !custom x\n", 2, "!custom"),
            ("lines:\n  - !!map {name: a}\n", 2, "!!map"),
            ("global:\n  timeout: 30s\nlines:\n  - name: a\n    msisdn: !!str 5\n", 5, "!!str"),
        ];
        for (text, line, tag) in cases {
            let err = parse_tree("t.yaml", text).expect_err(text).to_string();
            assert!(err.contains(&format!("t.yaml:{line}:")) && err.contains(tag), "{text:?}: {err}");
        }
        // `!` inside values and comments is text, not a tag.
        let fine = "lines: # hi!\n  - {name: \"a!\", plan: 'x !y'}\n  - name: b!c\n";
        assert!(parse_tree("t.yaml", fine).is_ok());
    }
}
