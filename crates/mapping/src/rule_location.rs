//! Where in a rule's text a part of the rule lies: the line and column of
//! the node a [`RuleError`](crate::RuleError) path names
//! (`match.all[1].any[0].regex`), at any depth, in block or flow YAML or
//! in JSON.
//!
//! `serde_yaml` keeps no positions in a parsed value, but it stamps an
//! error raised while deserializing a node with that node's position. So
//! the text is deserialized once more with a seed that follows the path,
//! skipping every other key and item, and fails on purpose at the node:
//! the failure's position is the answer. Matching key names in the text
//! instead would find the first `regex:` after `all:`, which belongs to
//! another item as often as not, and no key at all inside a flow mapping
//! (`- { field: x, regex: "(" }`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A 1-based line and column in a rule's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLocation {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

/// One step of a rule path: a key, or an index in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The location of the node at `path` (a [`RuleError`](crate::RuleError)
/// path without the `rule.` prefix; empty for the whole rule) in `text`.
/// A path naming a part the rule lacks (`match.all[0].field`, missing) is
/// located at its nearest ancestor that the text has. `None` when the text
/// does not parse or the path is not a rule path.
pub fn locate_rule_path(text: &str, path: &str) -> Option<TextLocation> {
    let steps = parse_path(path)?;
    let value: Value = serde_yaml::from_str(text).ok()?;
    let present = present_steps(&value, &steps);

    let seed = Find {
        steps: &steps[..present],
    };
    // Reaching the node is the only way this fails once the text parsed.
    let error = seed
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .err()?;
    if !error.to_string().contains(FOUND) {
        return None;
    }
    let location = error.location()?;
    Some(TextLocation {
        line: location.line(),
        column: location.column(),
    })
}

/// `match.all[1].regex` as steps; `None` for an unbalanced bracket or a
/// bracket that holds no index.
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (key, mut rest) = match segment.find('[') {
            Some(at) => segment.split_at(at),
            None => (segment, ""),
        };
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let (index, after) = inner.split_once(']')?;
            steps.push(Step::Index(index.parse().ok()?));
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(steps)
}

/// How many of `steps`, from the first, lead to a node of `value`.
fn present_steps(value: &Value, steps: &[Step]) -> usize {
    let mut node = value;
    for (taken, step) in steps.iter().enumerate() {
        let next = match (step, node) {
            (Step::Key(key), Value::Object(map)) => map.get(key),
            (Step::Index(i), Value::Array(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(child) => node = child,
            None => return taken,
        }
    }
    steps.len()
}

/// What the deliberate failure at the node says, to tell it from any other.
const FOUND: &str = "the rule node being located";

/// Follows `steps` and fails at the node they lead to.
struct Find<'a> {
    steps: &'a [Step],
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = ();

    // With no step left, every `visit_*` keeps serde's default: an
    // "invalid type" error naming this, stamped with the node's position.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.steps.first() {
            None => f.write_str(FOUND),
            Some(Step::Key(_)) => f.write_str("a mapping"),
            Some(Step::Index(_)) => f.write_str("a list"),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(wanted), rest)) = self.steps.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        while let Some(key) = map.next_key_seed(KeyText)? {
            if key.as_deref() == Some(wanted.as_str()) {
                return map.next_value_seed(Find { steps: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(wanted), rest)) = self.steps.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Find { steps: rest })?;
        Ok(())
    }
}

/// A mapping key as text (`1` for a number key); `None` for a key that is
/// no scalar.
struct KeyText;

impl<'de> DeserializeSeed<'de> for KeyText {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyText {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, path: &str) -> Option<(usize, usize)> {
        locate_rule_path(text, path).map(|l| (l.line, l.column))
    }

    const NESTED: &str = "\
id: r
match:
  all:
    - field: process.cmd_line
      regex: ok
    - any:
        - { field: process.cmd_line, regex: \"(\" }
        - not: {field: x, endswith: y}
techniques: [T1059]
";

    #[test]
    fn nested_nodes_are_found_by_their_path_not_their_key_name() {
        // The second item's regex, not the first `regex:` after `all:`.
        assert_eq!(at(NESTED, "match.all[1].any[0].regex"), Some((7, 45)));
        assert_eq!(
            at(NESTED, "match.all[1].any[1].not.endswith"),
            Some((8, 37))
        );
        assert_eq!(at(NESTED, "match.all[0].regex"), Some((5, 14)));
        assert_eq!(at(NESTED, "match.all[1]"), Some((6, 7)));
        assert_eq!(at(NESTED, "techniques[0]"), Some((9, 14)));
    }

    #[test]
    fn a_missing_part_is_located_at_its_nearest_ancestor() {
        assert_eq!(
            at(NESTED, "match.all[1].any[1].not.field_x"),
            at(NESTED, "match.all[1].any[1].not")
        );
        assert_eq!(at(NESTED, "match.all[7].field"), at(NESTED, "match.all"));
        assert_eq!(at(NESTED, ""), Some((1, 1)));
    }

    #[test]
    fn json_text_is_located_too() {
        let text = "{\n  \"id\": \"r\",\n  \"match\": {\"all\": [\n    {\"field\": \"a\", \"exists\": true},\n    {\"field\": \"b\", \"regex\": \"(\"}\n  ]}\n}\n";
        assert_eq!(at(text, "match.all[1].regex"), Some((5, 29)));
    }

    #[test]
    fn paths_that_are_no_rule_path_locate_nothing() {
        assert_eq!(at(NESTED, "match.all[x]"), None);
        assert_eq!(at(NESTED, "match.all[1"), None);
        assert_eq!(at("a: [unclosed\n", "a"), None);
    }
}
