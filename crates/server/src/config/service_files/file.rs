//! One service file, from disk to a parsed value: the format its extension names, its bytes as
//! UTF-8 text, and the parser for that format. What the value means is not decided here; the
//! loader decodes it.

use super::locate::{Lines, Loc};
use super::{ConfigError, ConfigErrorKind, Fault};
use serde_json::Value;
use std::path::Path;

/// The two file formats, chosen by extension as Consul does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `*.hcl`, any case.
    Hcl,
    /// `*.json`, any case.
    Json,
}

impl Format {
    /// The format `path`'s extension names; `None` for a file that is not a service file.
    pub(super) fn of(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?;
        if extension.eq_ignore_ascii_case("hcl") {
            Some(Format::Hcl)
        } else if extension.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else {
            None
        }
    }
}

/// Reads and parses one `.hcl` or `.json` file into its value and the positions of
/// everything in it.
pub(super) fn parse_file(path: &Path) -> Result<(Value, Loc), ConfigError> {
    let format = format_of(path)?;
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::unreadable(path, format!("cannot read it: {e}; fix its permissions"))
    })?;
    parse_in_format(path, format, bytes)
}

/// Parses the contents of a `.hcl` or `.json` file that was read from `path` (or, for
/// [`super::load_bytes`], is said to be), the extension picking the parser.
pub(super) fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<(Value, Loc), ConfigError> {
    parse_in_format(path, format_of(path)?, bytes)
}

/// The format `path` names, or the error for a file that is not a service file.
fn format_of(path: &Path) -> Result<Format, ConfigError> {
    Format::of(path).ok_or_else(|| {
        ConfigError::unreadable(
            path,
            "not a service definition file; name it *.hcl or *.json".to_owned(),
        )
    })
}

/// `bytes` as UTF-8 text, parsed as `format`.
fn parse_in_format(
    path: &Path,
    format: Format,
    bytes: Vec<u8>,
) -> Result<(Value, Loc), ConfigError> {
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        Fault::at(
            Lines::new(e.as_bytes()).line(valid),
            ConfigErrorKind::Read,
            format!("not valid UTF-8 (at byte offset {valid}); save the file as UTF-8 text"),
        )
        .in_file(path)
    })?;
    // Editors on some systems start UTF-8 files with a byte-order mark; neither parser
    // accepts one, and it carries no meaning.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let parsed = match format {
        Format::Hcl => super::hcl::parse(text),
        Format::Json => super::json::parse(text),
    };
    parsed.map_err(|fault| fault.in_file(path))
}
