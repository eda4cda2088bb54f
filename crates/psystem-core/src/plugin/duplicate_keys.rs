//! Keys given twice in one YAML mapping, at any level of a manifest.
//!
//! serde_yaml_ng refuses duplicate keys only when it builds its own `Mapping`; deserialized into our structs a
//! repeated field is reported without the first occurrence, and into an `IndexMap` (the `etl:` entries, `columns:`,
//! `casts:` …) the second silently replaces the first. So the text is walked once more with serde_yaml_ng itself,
//! raising an error on the repeated key: the error's location (serde_yaml_ng's mark of that key) gives the second
//! line, and a second walk that stops at the first occurrence of the same key under the same path gives the first.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use std::cell::RefCell;
use std::fmt;

/// A key given twice: the path of its mapping (keys and sequence indexes from the top), the key, and the line
/// and column (1-based) of both occurrences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DuplicateKey {
    /// Keys (and `[i]` for sequence items) from the document's top down to the mapping holding the key.
    pub path: Vec<String>,
    /// The repeated key.
    pub key: String,
    /// Where it first appears.
    pub first: Option<(usize, usize)>,
    /// Where it appears again.
    pub second: Option<(usize, usize)>,
}

/// The first key given twice in one mapping of `text`, if any. Text that is not valid YAML gives `None` (the
/// manifest parser reports that error).
pub(crate) fn find(text: &str) -> Option<DuplicateKey> {
    let state = RefCell::new(State::default());
    let walk = Walk {
        path: Vec::new(),
        state: &state,
    };
    let err = walk
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .err()?;
    let (path, key) = state.borrow_mut().found.take()?;
    let second = err.location().map(|l| (l.line(), l.column()));
    let state = RefCell::new(State {
        target: Some((path.clone(), key.clone())),
        found: None,
    });
    let walk = Walk {
        path: Vec::new(),
        state: &state,
    };
    let first = walk
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .err()
        .filter(|_| state.borrow().found.is_some())
        .and_then(|e| e.location().map(|l| (l.line(), l.column())));
    Some(DuplicateKey {
        path,
        key,
        first,
        second,
    })
}

#[derive(Default)]
struct State {
    /// When set, stop at this key under this path (the second walk).
    target: Option<(Vec<String>, String)>,
    /// The duplicate found (first walk), or the target reached (second walk).
    found: Option<(Vec<String>, String)>,
}

/// Walks any YAML value; `path` is where it sits.
struct Walk<'a> {
    path: Vec<String>,
    state: &'a RefCell<State>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let mut path = self.path.clone();
            path.push(format!("[{i}]"));
            let item = Walk {
                path,
                state: self.state,
            };
            if seq.next_element_seed(item)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<String> = Vec::new();
        loop {
            let key = KeySeed {
                path: &self.path,
                seen: &mut seen,
                state: self.state,
            };
            let Some(key) = map.next_key_seed(key)? else {
                return Ok(());
            };
            let mut path = self.path.clone();
            path.push(key);
            map.next_value_seed(Walk {
                path,
                state: self.state,
            })?;
        }
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!env NAME`): walk what the tag is on.
        let (_tag, rest): (de::IgnoredAny, _) = data.variant()?;
        rest.newtype_variant_seed(self)
    }
}

/// Reads one key of a mapping: refuses it when `seen` has it already (first walk) or when it is the target
/// (second walk), so that serde_yaml_ng marks the error with this key's line and column.
struct KeySeed<'a, 's> {
    path: &'a [String],
    seen: &'a mut Vec<String>,
    state: &'s RefCell<State>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        // The check runs inside the visitor, so that serde_yaml_ng marks its error with the key's position.
        d.deserialize_any(self)
    }
}

impl KeySeed<'_, '_> {
    fn check<E: de::Error>(self, key: String) -> Result<String, E> {
        let mut state = self.state.borrow_mut();
        let here = (self.path.to_vec(), key.clone());
        match &state.target {
            Some(target) if *target == here => {
                state.found = Some(here);
                return Err(E::custom("the key looked for"));
            }
            Some(_) => {}
            None if self.seen.contains(&key) => {
                state.found = Some(here);
                return Err(E::custom("a key given twice"));
            }
            None => {}
        }
        self.seen.push(key.clone());
        Ok(key)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.check("~".to_string())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        self.check("~".to_string())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        // A sequence or mapping used as a key: not compared.
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok("<a sequence>".to_string())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok("<a mapping>".to_string())
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<String, A::Error> {
        let (tag, rest): (String, _) = data.variant()?;
        let inner: Option<String> = rest.newtype_variant()?;
        self.check(format!("!{tag} {}", inner.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_both_lines_of_a_repeated_etl_entry() {
        let text = "name: x\netl:\n  e:\n    indicator: A\n  f:\n    indicator: B\n  e:\n    indicator: C\n";
        let d = find(text).unwrap();
        assert_eq!(d.path, ["etl"]);
        assert_eq!(d.key, "e");
        assert_eq!(d.first.map(|l| l.0), Some(3));
        assert_eq!(d.second.map(|l| l.0), Some(7));
    }

    #[test]
    fn finds_repeats_at_every_level_and_in_flow_mappings() {
        let d =
            find("name: x\netl:\n  e:\n    transform:\n      columns: {Id: a, Value: b, Id: c}\n")
                .unwrap();
        assert_eq!(d.path, ["etl", "e", "transform", "columns"]);
        assert_eq!(d.key, "Id");
        assert_eq!(d.first.map(|l| l.0), Some(5));
        assert_eq!(d.second.map(|l| l.0), Some(5));
        assert!(d.first.unwrap().1 < d.second.unwrap().1, "{d:?}");
        let d = find("name: x\nname: y\netl: {}\n").unwrap();
        assert_eq!(
            (d.key.as_str(), d.first, d.second),
            ("name", Some((1, 1)), Some((2, 1)))
        );
        let d = find("a:\n  - {k: 1}\n  - {k: 1, k: 2}\n").unwrap();
        assert_eq!(d.path, ["a", "[1]"]);
    }

    #[test]
    fn the_same_key_in_different_mappings_is_no_repeat() {
        assert_eq!(
            find("etl:\n  e:\n    indicator: A\n    destination: {postgres: {url: !env DB}}\n  f:\n    indicator: B\n"),
            None
        );
        assert_eq!(find("a: [unclosed"), None);
    }
}
