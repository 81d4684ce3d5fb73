//! How a service spelled its checks, so decoder paths can be mapped back onto the file.
//!
//! HCL gives `check { } check { }` as a list under `check`, and a lone `checks { }` block as
//! an object; the decoder wants one object in `Check` and a list in `Checks`. Both are
//! accepted by moving them into shape, and error paths are mapped back to what was written.

use crate::consul::relaxed::same_key;
use serde_json::{Map, Value};

/// What [`ChecksShape::normalize`] changed in a service block, so
/// [`ChecksShape::remap`] can undo it in error paths.
#[derive(Debug, Default)]
pub(super) struct ChecksShape {
    /// `check` held a list, now moved to `Checks`.
    pub(super) check_moved: bool,
    /// `check` holds one object.
    pub(super) single_check: bool,
}

impl ChecksShape {
    /// Moves a service block's checks into the shape the decoder wants, and remembers how.
    pub(super) fn normalize(map: &mut Map<String, Value>) -> Self {
        let mut shape = ChecksShape::default();
        let check_key = map.keys().find(|k| same_key(k, "Check")).cloned();
        let checks_key = map.keys().find(|k| same_key(k, "Checks")).cloned();
        if let Some(key) = &checks_key
            && let Some(value) = map.get_mut(key)
            && value.is_object()
        {
            let single = value.take();
            *value = Value::Array(vec![single]);
        }
        if let Some(key) = check_key {
            match map.get(&key) {
                Some(Value::Array(_)) if checks_key.is_none() => {
                    if let Some(list) = map.remove(&key) {
                        map.insert("Checks".to_owned(), list);
                        shape.check_moved = true;
                    }
                }
                Some(Value::Object(_)) => shape.single_check = true,
                _ => {}
            }
        }
        shape
    }

    /// Maps a decoder path onto the file's keys. `chained` paths number `check` and `checks`
    /// together (`Checks[0]` is `check` when both are present), as `into_registration` does;
    /// decode paths index `checks` alone.
    pub(super) fn remap(&self, field: &str, chained: bool) -> String {
        let Some(rest) = field.strip_prefix("Checks[") else {
            return field.to_owned();
        };
        let Some((index, rest)) = rest.split_once(']') else {
            return field.to_owned();
        };
        let Ok(index) = index.parse::<usize>() else {
            return field.to_owned();
        };
        if self.check_moved {
            format!("Check[{index}]{rest}")
        } else if chained && self.single_check {
            match index.checked_sub(1) {
                None => format!("Check{rest}"),
                Some(i) => format!("Checks[{i}]{rest}"),
            }
        } else {
            field.to_owned()
        }
    }
}
