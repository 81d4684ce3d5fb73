//! A guard in front of hcl-edit's parser, which backtracks for minutes on some malformed
//! expressions with a couple of dozen unclosed brackets between operators (found by fuzzing,
//! docs/FUZZING.md; hcl-rs' issue #82 is the same kind of problem in its older parser). Service
//! and settings files never nest that deep, so text that does is refused before parsing, with the
//! line where it went too deep.
//!
//! Brackets are counted everywhere, strings and comments included: counting is meant to be cheap
//! and certain, not to parse HCL, and no sensible file holds a dozen unclosed brackets in a string.

/// The deepest `(`, `[` and `{` nesting accepted in an HCL file. A service file needs about five
/// (`service { checks = [ { header = { X = [...] } } ] }`).
pub const MAX_HCL_NESTING: usize = 12;

/// The 1-based line of the first bracket that opens a level past [`MAX_HCL_NESTING`], if any.
pub(crate) fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    for byte in text.bytes() {
        match byte {
            b'\n' => line += 1,
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HCL_NESTING {
                    return Some(line);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Why text that [`too_deep`] refused cannot be read.
pub(crate) fn too_deep_reason() -> String {
    format!(
        "brackets nested more than {MAX_HCL_NESTING} deep (or left unclosed); close them, or \
         split the expression"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_open_brackets_and_names_the_line() {
        let ok = "service {\n  checks = [{ header = { X = [\"a\"] } }]\n}\n";
        assert_eq!(too_deep(ok), None);
        let balanced = "a = [[[[[[[[]]]]]]]]\n".repeat(50);
        assert_eq!(too_deep(&balanced), None);
        let unclosed = format!("s = 1\n{}", "-1/a[".repeat(MAX_HCL_NESTING + 1));
        assert_eq!(too_deep(&unclosed), Some(2));
    }
}
