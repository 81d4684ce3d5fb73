//! HCL files: parsing with hcl-edit (which keeps spans) and converting to JSON with hcl-rs,
//! and the walk over hcl-edit's spans that builds the `Loc` tree. Labelled `service "web" { }`
//! blocks are refused here, while the labels are still labels; after hcl-rs they are only
//! nested keys.

use super::loader::DefinitionKind;
use super::locate::{Entry, Lines, Loc, MAX_NESTING, Node};
use super::{ConfigErrorKind, Fault};
use ::hcl::edit::Span;
use ::hcl::edit::expr::{Expression, ObjectKey};
use ::hcl::edit::structure::{Body, Structure};
use serde_json::Value;
use std::collections::HashMap;

/// Parses HCL text into the JSON value hcl-rs makes of it, and its positions.
pub(super) fn parse(text: &str) -> Result<(Value, Loc), Fault> {
    if let Some(line) = crate::config::nesting::too_deep(text) {
        return Err(Fault::at(
            line,
            ConfigErrorKind::Syntax,
            crate::config::nesting::too_deep_reason(),
        ));
    }
    let body = ::hcl::edit::parser::parse_body(text).map_err(|error| {
        let location = error.location();
        Fault::at(
            location.line(),
            ConfigErrorKind::Syntax,
            format!(
                "HCL syntax error at column {}: {}; fix the syntax (files ending in .hcl are \
                 read as HCL, .json as JSON)",
                location.column(),
                error.message()
            ),
        )
    })?;
    let lines = Lines::new(text.as_bytes());
    for structure in body.iter() {
        if let Structure::Block(block) = structure
            && !block.labels.is_empty()
            && DefinitionKind::of_key(block.ident.as_str()).is_some()
        {
            let ident = block.ident.as_str();
            return Err(Fault::at(
                lines.of_span(block.ident.span(), 1),
                ConfigErrorKind::Shape,
                format!(
                    "`{ident}` blocks take no label; put the name inside the block: \
                     {ident} {{ name = \"{}\" ... }}",
                    block.labels.first().map(|l| l.as_str()).unwrap_or_default()
                ),
            ));
        }
    }
    let loc = body_loc(&body, 1, &lines);
    // hcl-rs reports a value it cannot convert (an object key that is a number) without a
    // position, so the body is kept to look for the line; found by fuzzing (docs/FUZZING.md).
    let value: Value = ::hcl::from_body(::hcl::Body::from(body.clone())).map_err(|error| {
        Fault::at(
            unconvertible_line(&body, 1, &lines),
            ConfigErrorKind::Syntax,
            format!("cannot read the HCL: {error}; use plain values, not expressions"),
        )
    })?;
    Ok((value, loc))
}

/// The line of the innermost attribute or block that hcl-rs cannot convert on its own, or
/// `line` (the enclosing block's) when none of `body`'s parts fails alone.
fn unconvertible_line(body: &Body, line: usize, lines: &Lines) -> usize {
    let fails = |structure: &&Structure| {
        let alone = ::hcl::Body(vec![::hcl::Structure::from((*structure).clone())]);
        ::hcl::from_body::<Value>(alone).is_err()
    };
    match body.iter().find(fails) {
        Some(Structure::Attribute(attribute)) => lines.of_span(attribute.key.span(), line),
        Some(Structure::Block(block)) => {
            unconvertible_line(&block.body, lines.of_span(block.ident.span(), line), lines)
        }
        None => line,
    }
}

/// Positions for an HCL body, grouped as hcl-rs groups it into JSON: attributes by key, and
/// repeated blocks with one identifier into a list (a lone block stays an object).
fn body_loc(body: &Body, line: usize, lines: &Lines) -> Loc {
    let mut entries: Vec<Entry> = Vec::new();
    let mut blocks: HashMap<String, usize> = HashMap::new();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attribute) => {
                let key_line = lines.of_span(attribute.key.span(), line);
                entries.push(Entry {
                    key: attribute.key.as_str().to_owned(),
                    line: key_line,
                    value: expr_loc(&attribute.value, key_line, lines, 0),
                });
            }
            Structure::Block(block) => {
                let key = block.ident.as_str().to_owned();
                let key_line = lines.of_span(block.ident.span(), line);
                let mut value = body_loc(&block.body, key_line, lines);
                for label in block.labels.iter().rev() {
                    value = Loc {
                        line: key_line,
                        node: Node::Map(vec![Entry {
                            key: label.as_str().to_owned(),
                            line: key_line,
                            value,
                        }]),
                    };
                }
                match blocks.get(&key).and_then(|i| entries.get_mut(*i)) {
                    Some(entry) => {
                        let first = std::mem::take(&mut entry.value);
                        entry.value = match first.node {
                            Node::List(mut items) if block.labels.is_empty() => {
                                items.push(value);
                                Loc {
                                    line: first.line,
                                    node: Node::List(items),
                                }
                            }
                            node => Loc {
                                line: first.line,
                                node: Node::List(vec![
                                    Loc {
                                        line: first.line,
                                        node,
                                    },
                                    value,
                                ]),
                            },
                        };
                    }
                    None => {
                        blocks.insert(key.clone(), entries.len());
                        entries.push(Entry {
                            key,
                            line: key_line,
                            value,
                        });
                    }
                }
            }
        }
    }
    Loc {
        line,
        node: Node::Map(entries),
    }
}

/// Positions for an attribute's value, descending into arrays and objects.
fn expr_loc(expr: &Expression, fallback: usize, lines: &Lines, depth: usize) -> Loc {
    let line = lines.of_span(expr.span(), fallback);
    if depth > MAX_NESTING {
        return Loc::leaf(line);
    }
    let node = match expr {
        Expression::Array(array) => Node::List(
            array
                .iter()
                .map(|item| expr_loc(item, line, lines, depth + 1))
                .collect(),
        ),
        Expression::Object(object) => Node::Map(
            object
                .iter()
                .map(|(key, value)| {
                    let key_line = lines.of_span(key.span(), line);
                    let key = match key {
                        ObjectKey::Ident(ident) => ident.as_str().to_owned(),
                        ObjectKey::Expression(expr) => expr.as_str().unwrap_or_default().to_owned(),
                    };
                    Entry {
                        key,
                        line: key_line,
                        value: expr_loc(value.expr(), key_line, lines, depth + 1),
                    }
                })
                .collect(),
        ),
        _ => Node::Leaf,
    };
    Loc { line, node }
}
