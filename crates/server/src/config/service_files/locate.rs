//! Positions: the `Loc` tree that mirrors a parsed value with the line of every key and value,
//! and the walk that turns a decoder's field path (`Checks[1].Interval`) into a line and into
//! the path as the file spells it (`checks[1].interval`). Building the tree is the parsers'
//! job; this module only holds it and reads it.

use crate::consul::relaxed::same_key;

/// How deep the position walkers recurse. Both parsers already refuse deeper files (hcl-edit
/// at 64 levels, serde_json at 128), so this only guards against a parser changing its mind.
pub(super) const MAX_NESTING: usize = 128;

/// Where a parsed value sits in its file: its line, and the same for everything inside it.
/// It mirrors the `serde_json::Value` the parser produced, so a decoder's field path can be
/// followed through it.
#[derive(Debug, Clone, Default)]
pub(super) struct Loc {
    /// 1-based line the value starts on.
    pub(super) line: usize,
    /// What the value holds, if it holds anything with a position of its own.
    pub(super) node: Node,
}

/// The inside of a [`Loc`]: the positions of an object's keys or a list's items.
#[derive(Debug, Clone, Default)]
pub(super) enum Node {
    /// A scalar, or something the walkers did not descend into.
    #[default]
    Leaf,
    /// Keys in file order, duplicates kept (the last one is the one that counts).
    Map(Vec<Entry>),
    /// Items in order.
    List(Vec<Loc>),
}

/// One key of an object and where it and its value are.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// As written in the file.
    pub(super) key: String,
    /// Line of the key itself.
    pub(super) line: usize,
    /// Where the value is.
    pub(super) value: Loc,
}

impl Loc {
    /// A value on `line` with nothing inside it.
    pub(super) fn leaf(line: usize) -> Self {
        Loc {
            line,
            node: Node::Leaf,
        }
    }

    /// The keys of an object, in file order; none for anything else.
    pub(super) fn entries(&self) -> &[Entry] {
        match &self.node {
            Node::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The key that stands for the decoder's `field`, the last when it is written twice (the
    /// last one is the one that counts).
    pub(super) fn field(&self, field: &str) -> Option<&Entry> {
        self.entries()
            .iter()
            .rev()
            .find(|e| key_matches(&e.key, field))
    }

    /// The items of a list, or the value alone when it is not a list (HCL's lone block).
    pub(super) fn items(&self) -> &[Loc] {
        match &self.node {
            Node::List(items) => items,
            _ => std::slice::from_ref(self),
        }
    }

    /// The `i`th element, or the whole value when it is not a list (HCL's lone block).
    pub(super) fn item(&self, i: usize) -> &Loc {
        self.items().get(i).unwrap_or(self)
    }
}

/// Field names the decoders report under another spelling than the file may use.
const ALIASES: &[&[&str]] = &[&["ScriptArgs", "Args"], &["CheckID", "ID"]];

/// Whether a key as written in the file stands for the decoder's `field`.
fn key_matches(written: &str, field: &str) -> bool {
    same_key(written, field)
        || ALIASES.iter().any(|group| {
            group.iter().any(|a| same_key(field, a)) && group.iter().any(|a| same_key(written, a))
        })
}

/// One step of a decoder's field path: `Checks[1].Interval` is `Checks`, `1`, `Interval`.
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut indexes) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some((index, rest)) = indexes.split_once(']') {
            match index.parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => out.push(Segment::Key(index)),
            }
            indexes = rest.strip_prefix('[').unwrap_or(rest);
        }
    }
    out
}

/// Follows a decoder's field path through `loc`: the line of the deepest key or element found,
/// and the path spelled as in the file (`check.interval` for `Check.Interval`). Segments past
/// the point where the walk got lost are kept as the decoder spelled them.
pub(super) fn locate(loc: &Loc, path: &str) -> (usize, String) {
    let mut line = loc.line;
    let mut node = loc;
    let mut lost = false;
    let mut spelled = String::new();
    let push_key = |spelled: &mut String, key: &str| {
        if !spelled.is_empty() {
            spelled.push('.');
        }
        spelled.push_str(key);
    };
    for segment in segments(path) {
        match segment {
            Segment::Key(key) => {
                let found = if lost { None } else { node.field(key) };
                match found {
                    Some(entry) => {
                        push_key(&mut spelled, &entry.key);
                        line = entry.line;
                        node = &entry.value;
                    }
                    None => {
                        push_key(&mut spelled, key);
                        lost = true;
                    }
                }
            }
            Segment::Index(i) => {
                spelled.push_str(&format!("[{i}]"));
                match (&node.node, lost) {
                    (Node::List(items), false) => match items.get(i) {
                        Some(item) => {
                            line = item.line;
                            node = item;
                        }
                        None => lost = true,
                    },
                    // A lone HCL block where the decoder saw a one-element list.
                    (Node::Map(_), false) if i == 0 => {
                        spelled.truncate(spelled.len() - "[0]".len());
                    }
                    _ => lost = true,
                }
            }
        }
    }
    (line, spelled)
}

/// Maps byte offsets to 1-based line numbers. It reads bytes, not `str`, so that a file that
/// is not UTF-8 can still be placed.
pub(super) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    /// Indexes where each line of `bytes` starts.
    pub(super) fn new(bytes: &[u8]) -> Self {
        let newlines = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n');
        let starts = std::iter::once(0)
            .chain(newlines.map(|(i, _)| i + 1))
            .collect();
        Lines { starts }
    }

    /// The line `offset` is on; an offset past the end is on the last line.
    pub(super) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|start| *start <= offset).max(1)
    }

    /// The line a span starts on, or `fallback` for a node the parser gave no span.
    pub(super) fn of_span(&self, span: Option<std::ops::Range<usize>>, fallback: usize) -> usize {
        span.map_or(fallback, |span| self.line(span.start))
    }
}
