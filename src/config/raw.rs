//! YAML → a position-aware tree ([`Node`]). The YAML crate (`serde-saphyr`: maintained, reports
//! positions, budgets aliases against YAML bombs) is used only here, so swapping it touches
//! this file alone. No IO, no lookups: `resolve` gives the tree its meaning.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::diagnostics::Diagnostic;

/// A 1-based line and column in the config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

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

/// Parses YAML text into a tree. The one error it can return is a YAML syntax or budget error.
pub fn parse_tree(file: &str, text: &str) -> Result<Node, Diagnostic> {
    if text.trim().is_empty() {
        return Ok(Node { value: Value::Null, pos: Pos { line: 1, column: 1 } });
    }
    if let Some(tree) = parse_in_halves(text) {
        return Ok(tree);
    }
    match parse_whole(text) {
        Ok(tree) => Ok(tree),
        Err(err) => {
            let pos = err.location().map(|l| Pos { line: l.line() as u32, column: l.column() as u32 });
            Err(Diagnostic::error(file, pos, "", format!("invalid YAML: {}", first_line(&err.to_string()))))
        }
    }
}

fn parse_whole(text: &str) -> Result<Node, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options::<Spanned<NodeValue>>(text, options()).map(node)
}

/// Files at least this large are worth two threads (a 100,000-line fleet is about 14 MB and
/// takes over a second to parse on one).
const SPLIT_MIN_BYTES: usize = 1 << 20;
/// Files larger than this parse whole, so that the node budget applies to the file as a whole
/// (two halves could each pass where the whole would not).
const SPLIT_MAX_BYTES: usize = 32 << 20;

/// Parses a large file on two threads when its shape allows a split that cannot change the
/// result: the last top-level key holds a block sequence (`lines:`), and the second half starts
/// at one of its items. The second half then parses alone as that sequence and its items are
/// appended, their lines shifted. Anything unusual (anchors or aliases, several documents,
/// directives, tabs, another key after the sequence) or any error in either half returns
/// `None`, and the whole file is parsed as usual, so errors and their positions are always the
/// one-thread parse's.
fn parse_in_halves(text: &str) -> Option<Node> {
    if !(SPLIT_MIN_BYTES..=SPLIT_MAX_BYTES).contains(&text.len())
        || std::thread::available_parallelism().map_or(true, |n| n.get() < 2)
        || text.bytes().any(|b| matches!(b, b'&' | b'*' | b'\t' | b'\r'))
    {
        return None;
    }
    let split = split_point(text)?;
    let (first, second) = text.split_at(split);
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| parse_whole(second).ok());
        (parse_whole(first).ok(), second.join().ok().flatten())
    });
    let (mut first, mut second) = (first?, second?);
    let Value::Map(root) = &mut first.value else { return None };
    let (_, last) = root.last_mut()?;
    let (Value::Seq(items), Value::Seq(more)) = (&mut last.value, &mut second.value) else { return None };
    let shift = u32::try_from(first_lines(text, split)).ok()?;
    for item in more.iter_mut() {
        shift_lines(item, shift);
    }
    items.append(more);
    Some(first)
}

/// Where the second half starts: the first item of the last top-level key's block sequence
/// at or after the middle of `text`; `None` when the file does not have that shape.
fn split_point(text: &str) -> Option<usize> {
    let mut last_key = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let first = line.bytes().next();
        match first {
            Some(b' ' | b'#' | b'\n') | None => {}
            Some(b'-' | b'.') if line.starts_with("---") || line.starts_with("...") => return None,
            Some(b'%' | b'-' | b'[' | b'{' | b'?' | b'!' | b'|' | b'>' | b'"' | b'\'') => return None,
            Some(_) => last_key = Some(offset + line.len()),
        }
        offset += line.len();
    }
    // The items of the last key: every line after it is blank, a comment, or indented.
    let start = last_key?;
    let mut lines = text[start..].split_inclusive('\n').scan(start, |at, line| {
        let here = *at;
        *at += line.len();
        Some((here, line))
    });
    let item = |line: &str| {
        let body = line.trim_start_matches(' ');
        let indent = line.len() - body.len();
        (indent > 0 && (body.starts_with("- ") || body.starts_with("-\n"))).then_some(indent)
    };
    let (_, first_item) = lines.find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    let indent = item(first_item)?;
    let middle = text.len() / 2;
    lines.find(|(at, line)| *at >= middle && item(line) == Some(indent)).map(|(at, _)| at)
}

/// How many lines `text[..split]` holds (`split` is at a line start).
fn first_lines(text: &str, split: usize) -> usize {
    text.as_bytes()[..split].iter().filter(|&&b| b == b'\n').count()
}

fn shift_lines(node: &mut Node, lines: u32) {
    node.pos.line += lines;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| shift_lines(n, lines)),
        Value::Map(entries) => {
            for (key, value) in entries {
                key.pos.line += lines;
                shift_lines(value, lines);
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

    #[test]
    fn a_file_parsed_in_halves_equals_the_file_parsed_whole() {
        let text = fleet(30_000);
        assert!(text.len() >= SPLIT_MIN_BYTES);
        let halves = parse_in_halves(&text).expect("this shape splits");
        assert_eq!(halves, parse_whole(&text).expect("parses"));
    }

    #[test]
    fn files_of_other_shapes_are_parsed_whole() {
        let text = fleet(30_000);
        // A key after the sequence, an anchor, a second document: no split.
        assert!(parse_in_halves(&format!("{text}extra: 1\n")).is_none());
        assert!(parse_in_halves(&text.replace("accounts:\n  a:", "accounts:\n  a: &x")).is_none());
        assert!(parse_in_halves(&format!("{text}---\nlines: []\n")).is_none());
        // A broken item in the second half: the whole parse reports it, at its real line.
        let broken = format!("{text}  - {{name: [oops\n");
        assert!(parse_in_halves(&broken).is_none());
        let err = parse_tree("t.yaml", &broken).unwrap_err();
        assert!(err.pos.is_some_and(|p| p.line as usize >= text.lines().count()), "{err}");
    }

    #[test]
    fn reports_syntax_errors_with_a_position() {
        let err = parse_tree("t.yaml", "lines:\n  - name: [a\n").unwrap_err();
        assert!(err.pos.is_some(), "{err}");
    }
}
