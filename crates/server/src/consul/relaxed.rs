//! Decoding request bodies the way Consul does: struct keys match case-insensitively, and
//! snake_case spellings match too (`enable_tag_override` = `EnableTagOverride`), while the keys
//! of user maps (`Meta`, `Header`) stay exactly as sent.
//!
//! Consul decodes with Go's `encoding/json` (case-insensitive) plus snake_case aliases, and its
//! clients rely on it: python-consul sends `name`, `check`, `interval`. serde matches field names
//! exactly, so this module wraps a `serde_json::Value` in a deserializer that renames a struct's
//! keys to the field names serde expects before serde sees them. Only struct keys are touched,
//! because only `deserialize_struct` knows the field list. Unknown keys pass through unchanged,
//! so `deny_unknown_fields` reports them as the user wrote them.

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};

/// A JSON value whose struct keys match field names case- and underscore-insensitively.
pub struct Relaxed(pub Value);

/// Whether `key`, as a client or a file wrote it, names the struct field `field`: ASCII case
/// and underscores are ignored, so `EnableTagOverride`, `enable_tag_override` and
/// `enabletagoverride` compare equal. The config-file loader uses it too, to find keys in a
/// file the same way this decoder matched them and so put errors on the right line.
pub(crate) fn same_key(key: &str, field: &str) -> bool {
    let mut k = key.bytes().filter(|b| *b != b'_');
    let mut f = field.bytes().filter(|b| *b != b'_');
    loop {
        match (k.next(), f.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
    }
}

fn rename_keys(map: Map<String, Value>, fields: &'static [&'static str]) -> Vec<(String, Value)> {
    map.into_iter()
        .map(
            |(key, value)| match fields.iter().find(|field| same_key(&key, field)) {
                Some(field) => ((*field).to_owned(), value),
                None => (key, value),
            },
        )
        .collect()
}

struct Entries {
    entries: std::vec::IntoIter<(String, Value)>,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let value = self.value.take().unwrap_or(Value::Null);
        seed.deserialize(Relaxed(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Elements(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Elements {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|value| seed.deserialize(Relaxed(value)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

fn visit_entries<'de, V: Visitor<'de>>(
    entries: Vec<(String, Value)>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    visitor.visit_map(Entries {
        entries: entries.into_iter(),
        value: None,
    })
}

macro_rules! forward_to_value {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Relaxed {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visit_entries(map.into_iter().collect(), visitor),
            Value::Array(items) => visitor.visit_seq(Elements(items.into_iter())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visit_entries(rename_keys(map, fields), visitor),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visit_entries(map.into_iter().collect(), visitor),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Elements(items.into_iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Relaxed(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    forward_to_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }
}

/// A decode failure with the path of the field that caused it (`Check.Interval`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct DecodeError {
    /// Dotted path to the offending field; empty for the whole body.
    pub field: String,
    /// serde's description of the problem.
    pub reason: String,
}

/// Decodes `value` into `T` with relaxed key matching, reporting the failing field's path.
pub fn decode<T: de::DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(Relaxed(value)).map_err(|error| {
        let path = error.path().to_string();
        DecodeError {
            field: if path == "." { String::new() } else { path },
            reason: error.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(rename = "ScriptArgs", alias = "Args", default)]
        script_args: Vec<String>,
        #[serde(rename = "TLSSkipVerify", default)]
        tls_skip_verify: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "EnableTagOverride", default)]
        enable_tag_override: bool,
        #[serde(rename = "Meta", default)]
        meta: BTreeMap<String, String>,
        #[serde(rename = "Check")]
        check: Option<Inner>,
    }

    #[test]
    fn matches_keys_ignoring_case_and_underscores() {
        let value = serde_json::json!({
            "name": "web",
            "enable_tag_override": true,
            "META": {"Team_Name": "blue"},
            "check": {"args": ["true"], "tls_skip_verify": true}
        });
        let outer: Outer = decode(value).expect("decodes");
        assert_eq!(outer.name, "web");
        assert!(outer.enable_tag_override);
        assert_eq!(
            outer.meta.get("Team_Name").map(String::as_str),
            Some("blue")
        );
        let check = outer.check.expect("check");
        assert_eq!(check.script_args, vec!["true".to_owned()]);
        assert!(check.tls_skip_verify);
    }

    #[test]
    fn names_the_unknown_or_mistyped_field() {
        let err = decode::<Outer>(serde_json::json!({"Name": "x", "Check": {"script": "x"}}))
            .expect_err("unknown field");
        assert_eq!(err.field, "Check.script");
        assert!(err.reason.contains("script"), "{err}");
        let err = decode::<Outer>(serde_json::json!({"Name": 5})).expect_err("type");
        assert_eq!(err.field, "Name");
    }
}
