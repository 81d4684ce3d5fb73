//! JSON files: parsing with serde_json, and a scanner that re-reads the accepted text to build
//! the `Loc` tree, because serde_json keeps no positions.

use super::locate::{Entry, Lines, Loc, MAX_NESTING, Node};
use super::{ConfigErrorKind, Fault};
use serde_json::Value;

/// Parses JSON text into its value and its positions.
pub(super) fn parse(text: &str) -> Result<(Value, Loc), Fault> {
    let value: Value = serde_json::from_str(text).map_err(|error| {
        let message = error.to_string();
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message);
        Fault {
            line: (error.line() > 0).then_some(error.line()),
            kind: ConfigErrorKind::Syntax,
            reason: format!(
                "JSON syntax error at column {}: {message}; fix the syntax (files ending in \
                 .json are read as JSON, .hcl as HCL)",
                error.column()
            ),
        }
    })?;
    let lines = Lines::new(text.as_bytes());
    let mut scanner = JsonScanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        lines: &lines,
    };
    let loc = scanner.value(0);
    Ok((value, loc))
}

/// Re-reads text that serde_json has already accepted, noting where each key and value
/// starts. It trusts the text to be valid, but never panics or loops if it is not: every step
/// either consumes a byte or stops.
struct JsonScanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    lines: &'a Lines,
}

impl JsonScanner<'_> {
    /// Moves past every byte from here on that `keep_going` accepts.
    fn skip_while(&mut self, keep_going: impl Fn(&u8) -> bool) {
        while self.bytes.get(self.pos).is_some_and(&keep_going) {
            self.pos += 1;
        }
    }

    /// Moves past JSON's insignificant whitespace.
    fn skip_whitespace(&mut self) {
        self.skip_while(u8::is_ascii_whitespace);
    }

    /// Positions for the value that starts at `pos` (after any whitespace), `depth` levels in.
    fn value(&mut self, depth: usize) -> Loc {
        self.skip_whitespace();
        let line = self.lines.line(self.pos);
        if depth > MAX_NESTING {
            return Loc::leaf(line);
        }
        let node = match self.bytes.get(self.pos) {
            Some(b'{') => {
                let mut entries = Vec::new();
                self.elements(b'}', |scanner, first| {
                    if first != b'"' {
                        return false;
                    }
                    let key_line = scanner.lines.line(scanner.pos);
                    let key = scanner.string();
                    scanner.skip_whitespace();
                    if scanner.bytes.get(scanner.pos) == Some(&b':') {
                        scanner.pos += 1;
                    }
                    let value = scanner.value(depth + 1);
                    entries.push(Entry {
                        key,
                        line: key_line,
                        value,
                    });
                    true
                });
                Node::Map(entries)
            }
            Some(b'[') => {
                let mut items = Vec::new();
                self.elements(b']', |scanner, _| {
                    let before = scanner.pos;
                    items.push(scanner.value(depth + 1));
                    scanner.pos != before
                });
                Node::List(items)
            }
            Some(b'"') => {
                self.string();
                Node::Leaf
            }
            _ => {
                self.skip_while(|b| !b",]}".contains(b) && !b.is_ascii_whitespace());
                Node::Leaf
            }
        };
        Loc { line, node }
    }

    /// Steps through an object or a list whose opening bracket is at `pos`: past commas, to
    /// the `close` bracket or the end. At each other byte it calls `element`, which reads one
    /// element and says whether to go on; it stops at a byte that cannot start one, and must
    /// consume something when it says go on, so a scan of damaged text still ends.
    fn elements(&mut self, close: u8, mut element: impl FnMut(&mut Self, u8) -> bool) {
        self.pos += 1;
        loop {
            self.skip_whitespace();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(&b) if b == close => {
                    self.pos += 1;
                    break;
                }
                Some(&b) => {
                    if !element(self, b) {
                        break;
                    }
                }
                None => break,
            }
        }
    }

    /// Reads a string starting at its opening quote and returns its decoded text.
    fn string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.bytes.get(self.pos) {
            match b {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    break;
                }
                _ => self.pos += 1,
            }
        }
        let raw = self
            .text
            .get(start..self.pos.min(self.text.len()))
            .unwrap_or("");
        serde_json::from_str(raw).unwrap_or_else(|_| raw.trim_matches('"').to_owned())
    }
}
