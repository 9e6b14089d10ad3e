//! Reading a kustomization file the way `kustomize edit` does: YAML 1.1 through yaml.v2, then JSON
//! decoding into `types.Kustomization` with unknown fields rejected (`kustfile.Read`).
//!
//! Owns: the typed view of the first YAML document ([`Node`], with the byte span of every
//! single-line scalar), yaml.v2's implicit typing of plain scalars (`yes`, `1_000`, `012` are not
//! strings), the JSON decoding rules that matter for `images:` (case-insensitive keys, key order,
//! first error wins, kustomize's error texts), and where the top-level keys sit in the text.
//!
//! Parsing uses `yaml_serde` (libyaml, the same C parser yaml.v2 was ported from) with a custom
//! visitor: a plain scalar is recognized by its borrowed slice pointing into the input right after
//! a non-quote character, so YAML 1.1 typing can be applied on top of yaml_serde's YAML 1.2.

use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

use super::{EditError, Image};

const PREFIX: &str = "invalid Kustomization: ";

/// A YAML node of the first document, typed as yaml.v2 types it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str {
        value: String,
        /// The bytes of the scalar's content in the input, when it is one unescaped line.
        span: Option<Range<usize>>,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The JSON type name Go's `encoding/json` uses in its errors.
    fn json_kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::Float(_) => "number",
            Node::Str { .. } => "string",
            Node::Seq(_) => "array",
            Node::Map(_) => "object",
        }
    }

    /// The key as sigs.k8s.io/yaml turns it into a JSON object key.
    fn json_key(&self) -> Option<String> {
        match self {
            Node::Str { value, .. } => Some(value.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Float(f) if f.is_nan() => Some(".nan".into()),
            Node::Float(f) if f.is_infinite() => {
                Some(if *f > 0.0 { ".inf" } else { "-.inf" }.into())
            }
            Node::Float(f) => Some(f.to_string()),
            Node::Null | Node::Seq(_) | Node::Map(_) => None,
        }
    }
}

/// Parses the first YAML document of `text` (yaml.v2 reads no further).
///
/// A leading byte order mark is skipped, as yaml.v2's reader does (libyaml given a `&str` would
/// count it as a column); spans still index `text`.
pub(crate) fn parse_first_document(text: &str) -> Result<Node, EditError> {
    let (body, offset) = match text.strip_prefix('\u{FEFF}') {
        Some(body) => (body, text.len() - body.len()),
        None => (text, 0),
    };
    let Some(document) = yaml_serde::Deserializer::from_str(body).next() else {
        return Ok(Node::Null);
    };
    NodeSeed { text: body, offset }
        .deserialize(document)
        .map_err(|e| EditError(format!("{PREFIX}{}", yaml_error_text(&e))))
}

/// yaml.v2's message for a parse error, with sigs.k8s.io/yaml's prefix.
///
/// yaml.v2 reports the 1-based line for scanner errors and, by a quirk, the 0-based line of
/// parser errors, falling back to the context line, and no line at all when that is 0.
fn yaml_error_text(e: &yaml_serde::Error) -> String {
    let debug = format!("{e:?}");
    let field = |name: &str| -> Option<u64> {
        let start = debug.find(&format!("{name}: Mark {{ line: "))? + name.len() + 15;
        let digits: String = debug[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let problem = debug.find("problem: \"").and_then(|start| {
        let rest = &debug[start + 10..];
        rest.find("\", ")
            .or_else(|| rest.find("\" }"))
            .map(|end| rest[..end].to_owned())
    });
    let message = match problem {
        Some(problem) => {
            let scanner = debug.contains("kind: SCANNER");
            // yaml_serde prints 1-based lines; a missing mark means line 0 (0-based).
            let problem_line = field("problem_mark").map_or(0, |l| l.saturating_sub(1));
            let context_line = field("context_mark").map_or(0, |l| l.saturating_sub(1));
            let line = if problem_line != 0 {
                problem_line + u64::from(scanner)
            } else {
                context_line
            };
            if line == 0 {
                format!("yaml: {problem}")
            } else {
                format!("yaml: line {line}: {problem}")
            }
        }
        None => format!("yaml: {e}"),
    };
    format!("error converting YAML to JSON: {message}")
}

#[derive(Clone, Copy)]
struct NodeSeed<'t> {
    /// The text being parsed.
    text: &'t str,
    /// Where `text` starts in the caller's text (after a byte order mark).
    offset: usize,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        self.deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        // Beyond u64, yaml.v2 reads a float; either way JSON calls it a number.
        Ok(Node::Float(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str {
            value: v.to_owned(),
            span: None,
        })
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Node, E> {
        let base = self.text.as_ptr() as usize;
        let start = (v.as_ptr() as usize).wrapping_sub(base);
        let span = start..start + v.len();
        let inside = (v.as_ptr() as usize) >= base
            && span.end <= self.text.len()
            && self.text.get(span.clone()) == Some(v);
        if !inside {
            return self.visit_str(v);
        }
        let before = self.text[..span.start].chars().next_back();
        let quoted = matches!(before, Some('"' | '\''));
        if !quoted
            && !tagged_before(self.text, span.start)
            && let Some(node) = resolve_plain(v)
        {
            return Ok(node);
        }
        Ok(Node::Str {
            value: v.to_owned(),
            span: Some(span.start + self.offset..span.end + self.offset),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(node) = seq.next_element_seed(self)? {
            out.push(node);
        }
        Ok(Node::Seq(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key_seed(self)? {
            let value = map.next_value_seed(self)?;
            out.push((key, value));
        }
        Ok(Node::Map(out))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        // A value with a local tag (`!foo x`): yaml.v2 keeps the value, untyped by the tag.
        use de::VariantAccess;
        let (_tag, variant): (String, _) = data.variant()?;
        variant.newtype_variant_seed(self)
    }
}

/// Whether a `!tag` precedes the scalar starting at `start` (possibly with an `&anchor`).
fn tagged_before(text: &str, start: usize) -> bool {
    let mut end = start;
    for _ in 0..2 {
        let head = text[..end].trim_end_matches([' ', '\t', '\r', '\n']);
        let token_start = head.rfind([' ', '\t', '\r', '\n']).map_or(0, |i| i + 1);
        let token = &head[token_start..];
        if token.starts_with('!') {
            return true;
        }
        if !token.starts_with('&') {
            return false;
        }
        end = token_start;
    }
    false
}

/// yaml.v2's `resolve` for an untagged plain scalar that yaml_serde left as a string: the YAML
/// 1.1 forms (`yes`, `on`, `y`, `1_000`, `012`, `0B1`, `0X1F`, ...). `None` means a string.
/// Timestamps stay strings, as yaml.v2 does when decoding into `interface{}`.
pub(crate) fn resolve_plain(s: &str) -> Option<Node> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Some(Node::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Some(Node::Bool(false));
        }
        "" | "~" | "null" | "Null" | "NULL" => return Some(Node::Null),
        ".nan" | ".NaN" | ".NAN" => return Some(Node::Float(f64::NAN)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(Node::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(Node::Float(f64::NEG_INFINITY)),
        _ => {}
    }
    let first = s.chars().next()?;
    match first {
        '.' => go_parse_float(s).map(Node::Float),
        '0'..='9' | '+' | '-' => {
            if is_timestamp(s) {
                return None;
            }
            let plain = s.replace('_', "");
            if let Some(i) = go_parse_int(&plain) {
                return Some(Node::Int(i));
            }
            if is_yaml_style_float(&plain)
                && let Some(f) = go_parse_float(&plain)
            {
                return Some(Node::Float(f));
            }
            let binary = |digits: &str, negative: bool| {
                if digits.is_empty() || !digits.bytes().all(|b| b == b'0' || b == b'1') {
                    return None;
                }
                let v = u64::from_str_radix(digits, 2).ok()?;
                Some(Node::Int(if negative {
                    -i128::from(v)
                } else {
                    i128::from(v)
                }))
            };
            if let Some(rest) = plain.strip_prefix("0b") {
                return binary(rest, false);
            }
            if let Some(rest) = plain.strip_prefix("-0b") {
                return binary(rest, true);
            }
            None
        }
        _ => None,
    }
}

/// Go `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint(s, 0, 64)` (underscores already
/// removed): sign, `0b`/`0o`/`0x` prefixes (any case), a leading `0` for octal.
fn go_parse_int(s: &str) -> Option<i128> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let bytes = unsigned.as_bytes();
    let (radix, digits) = match bytes {
        [] => return None,
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'b') => (2, &unsigned[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'o') => (8, &unsigned[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'x') => (16, &unsigned[2..]),
        [b'0', ..] => (8, &unsigned[1..]),
        _ => (10, unsigned),
    };
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let value: u64 = if digits.is_empty() {
        0
    } else {
        u64::from_str_radix(digits, radix).ok()?
    };
    if negative {
        // ParseInt only: the magnitude must fit an i64.
        if value > 1u64 << 63 {
            return None;
        }
        Some(-i128::from(value))
    } else {
        Some(i128::from(value))
    }
}

/// yaml.v2's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go `strconv.ParseFloat(s, 64)` for the decimal forms yaml.v2 hands it; out of range is an
/// error (so `1e400` stays a string).
fn go_parse_float(s: &str) -> Option<f64> {
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !ok {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// yaml.v2's `parseTimestamp`: `YYYY-M-D`, `YYYY-M-DTh:m:s[.frac](Z|±hh:mm)` (also `t`), or
/// `YYYY-M-D h:m:s[.frac]`.
pub(crate) fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let mut i = 5;
    let num = |i: &mut usize, max: usize| -> bool {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - start < max {
            *i += 1;
        }
        *i > start
    };
    // Month and day: one or two digits.
    if !num(&mut i, 2) || b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    if !num(&mut i, 2) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let with_zone = match b[i] {
        b'T' | b't' => true,
        b' ' => false,
        _ => return false,
    };
    i += 1;
    for (n, sep) in [(2, Some(b':')), (2, Some(b':')), (2, None)] {
        if !num(&mut i, n) {
            return false;
        }
        if let Some(sep) = sep {
            if b.get(i) != Some(&sep) {
                return false;
            }
            i += 1;
        }
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !num(&mut i, 9) {
            return false;
        }
    }
    if !with_zone {
        return i == b.len();
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i += 1;
            if !num(&mut i, 2) || b.get(i) != Some(&b':') {
                return false;
            }
            i += 1;
            num(&mut i, 2) && i == b.len()
        }
        _ => false,
    }
}

/// The JSON field names of `types.Kustomization` (kustomize v5.5+).
const KUSTOMIZATION_FIELDS: [&str; 35] = [
    "apiVersion",
    "kind",
    "metadata",
    "openapi",
    "namePrefix",
    "nameSuffix",
    "namespace",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "patchesStrategicMerge",
    "patchesJson6902",
    "patches",
    "images",
    "imageTags",
    "replacements",
    "replicas",
    "vars",
    "sortOptions",
    "resources",
    "components",
    "crds",
    "bases",
    "configMapGenerator",
    "secretGenerator",
    "helmGlobals",
    "helmCharts",
    "helmChartInflationGenerator",
    "generatorOptions",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "inventory",
    "buildMetadata",
];

const IMAGE_FIELDS: [&str; 5] = ["digest", "name", "newName", "newTag", "tagSuffix"];

/// Go `encoding/json`'s case-insensitive key match (ASCII folding plus the two non-ASCII
/// letters that fold to ASCII: KELVIN SIGN and LONG S).
fn json_fold_eq(key: &str, field: &str) -> bool {
    let fold = |c: char| match c {
        '\u{212A}' => 'k',
        '\u{17F}' => 's',
        c => c.to_ascii_lowercase(),
    };
    key.chars().map(fold).eq(field.chars().map(fold))
}

/// Finds the struct field a JSON key decodes into: an exact match first, then a folded one.
fn field_for<'f>(key: &str, fields: &[&'f str]) -> Option<&'f str> {
    fields
        .iter()
        .find(|f| **f == key)
        .or_else(|| fields.iter().find(|f| json_fold_eq(key, f)))
        .copied()
}

/// A top-level key of the kustomization and where it is in the text.
#[derive(Debug, Clone)]
pub(crate) struct TopKey {
    /// The JSON field it decodes into, if any.
    pub(crate) field: Option<&'static str>,
    /// The byte span of the key scalar, when known.
    pub(crate) span: Option<Range<usize>>,
}

/// What `set image` needs from the kustomization.
#[derive(Debug, Clone)]
pub(crate) struct Kustomization {
    /// `images` followed by `imageTags` (kustomize's `FixKustomization`).
    pub(crate) images: Vec<Image>,
    /// Every top-level key, in document order.
    pub(crate) keys: Vec<TopKey>,
    /// The index in `keys` of the `images` key whose value counts (last in JSON key order).
    pub(crate) images_key: Option<usize>,
    /// Whether the root mapping is empty or null (no keys).
    pub(crate) empty: bool,
}

/// Decodes the first document like `kustfile.Read` (yaml.v2 → JSON → `types.Kustomization`
/// with `DisallowUnknownFields`), returning the first error in Go's order.
///
/// Validation covers the top-level field names, the string-typed top-level fields, and the
/// `images`/`imageTags` entries in full. The insides of the other structured fields (patches,
/// generators, replacements, ...) are not type-checked.
pub(crate) fn decode(root: &Node) -> Result<Kustomization, EditError> {
    let entries = match root {
        Node::Null => {
            return Ok(Kustomization {
                images: Vec::new(),
                keys: Vec::new(),
                images_key: None,
                empty: true,
            });
        }
        Node::Map(entries) => entries,
        other => {
            return Err(EditError(format!(
                "{PREFIX}json: cannot unmarshal {} into Go value of type types.Kustomization",
                other.json_kind()
            )));
        }
    };
    check_finite(root)?;

    let mut keys = Vec::with_capacity(entries.len());
    // (JSON key, index of its last occurrence in document order)
    let mut json_keys: Vec<(String, usize)> = Vec::new();
    for (index, (key, _)) in entries.iter().enumerate() {
        let Some(name) = key.json_key() else {
            return Err(EditError(format!(
                "{PREFIX}unsupported map key of type {}",
                key.json_kind()
            )));
        };
        let span = match key {
            Node::Str { span, .. } => span.clone(),
            _ => None,
        };
        keys.push(TopKey {
            field: field_for(&name, &KUSTOMIZATION_FIELDS),
            span,
        });
        match json_keys.iter_mut().find(|(k, _)| *k == name) {
            Some(existing) => existing.1 = index,
            None => json_keys.push((name, index)),
        }
    }
    json_keys.sort();

    let mut first_error: Option<String> = None;
    let mut save = |e: String| {
        if first_error.is_none() {
            first_error = Some(e);
        }
    };
    let mut images: Option<(Vec<Image>, usize)> = None;
    let mut image_tags: Vec<Image> = Vec::new();
    for (name, index) in &json_keys {
        let value = &entries[*index].1;
        let Some(field) = keys[*index].field else {
            save(format!("json: unknown field \"{name}\""));
            continue;
        };
        match field {
            "images" | "imageTags" => {
                let list = decode_images(value, field, &mut save);
                if field == "images" {
                    images = Some((list, *index));
                } else {
                    image_tags = list;
                }
            }
            "apiVersion" | "kind" | "namePrefix" | "nameSuffix" | "namespace" => {
                expect_string(value, "Kustomization", field, &mut save);
            }
            "resources" | "components" | "crds" | "bases" | "configurations" | "generators"
            | "transformers" | "validators" | "buildMetadata" => match value {
                Node::Null => {}
                Node::Seq(items) => {
                    for item in items {
                        expect_string(item, "Kustomization", field, &mut save);
                    }
                }
                other => save(type_error(other, "Kustomization", field, "[]string")),
            },
            "commonLabels" | "commonAnnotations" | "openapi" => match value {
                Node::Null => {}
                Node::Map(pairs) => {
                    for (_, v) in pairs {
                        expect_string(v, "Kustomization", field, &mut save);
                    }
                }
                other => save(type_error(
                    other,
                    "Kustomization",
                    field,
                    "map[string]string",
                )),
            },
            _ => {}
        }
    }
    if let Some(e) = first_error {
        return Err(EditError(format!("{PREFIX}{e}")));
    }
    let (mut list, images_key) = match images {
        Some((list, index)) => (list, Some(index)),
        None => (Vec::new(), None),
    };
    list.extend(image_tags);
    Ok(Kustomization {
        images: list,
        keys,
        images_key,
        empty: entries.is_empty(),
    })
}

fn type_error(node: &Node, owner: &str, field: &str, go_type: &str) -> String {
    format!(
        "json: cannot unmarshal {} into Go struct field {owner}.{field} of type {go_type}",
        node.json_kind()
    )
}

fn expect_string(node: &Node, owner: &str, field: &str, save: &mut impl FnMut(String)) {
    if !matches!(node, Node::Null | Node::Str { .. }) {
        save(type_error(node, owner, field, "string"));
    }
}

fn decode_images(node: &Node, field: &str, save: &mut impl FnMut(String)) -> Vec<Image> {
    let items = match node {
        Node::Null => return Vec::new(),
        Node::Seq(items) => items,
        other => {
            save(type_error(other, "Kustomization", field, "[]types.Image"));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut image = Image::default();
        match item {
            Node::Null => {}
            Node::Map(pairs) => {
                let mut sorted: Vec<(String, &Node)> = Vec::new();
                for (k, v) in pairs {
                    let Some(key) = k.json_key() else {
                        save(format!("unsupported map key of type {}", k.json_kind()));
                        continue;
                    };
                    match sorted.iter_mut().find(|(existing, _)| *existing == key) {
                        Some(slot) => slot.1 = v,
                        None => sorted.push((key, v)),
                    }
                }
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                for (key, value) in sorted {
                    let Some(name) = field_for(&key, &IMAGE_FIELDS) else {
                        save(format!("json: unknown field \"{key}\""));
                        continue;
                    };
                    let text = match value {
                        Node::Null => continue,
                        Node::Str { value, .. } => value.clone(),
                        other => {
                            save(type_error(
                                other,
                                "Image",
                                &format!("{field}.{name}"),
                                "string",
                            ));
                            continue;
                        }
                    };
                    match name {
                        "digest" => image.digest = text,
                        "name" => image.name = text,
                        "newName" => image.new_name = text,
                        "newTag" => image.new_tag = text,
                        _ => image.tag_suffix = text,
                    }
                }
            }
            other => save(type_error(other, "Kustomization", field, "types.Image")),
        }
        out.push(image);
    }
    out
}

/// `json.Marshal` fails on infinities and NaN (yaml `.inf`, `.nan`); sigs.k8s.io/yaml reports it.
fn check_finite(node: &Node) -> Result<(), EditError> {
    let fail = |f: f64| {
        let v = if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        };
        Err(EditError(format!(
            "{PREFIX}error marshaling into JSON: json: unsupported value: {v}"
        )))
    };
    match node {
        Node::Float(f) if !f.is_finite() => fail(*f),
        Node::Seq(items) => items.iter().try_for_each(check_finite),
        Node::Map(pairs) => {
            let mut sorted: Vec<(Option<String>, &Node)> =
                pairs.iter().map(|(k, v)| (k.json_key(), v)).collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            sorted.into_iter().try_for_each(|(_, v)| check_finite(v))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        parse_first_document(text).unwrap()
    }

    #[test]
    fn yaml_1_1_typing_of_plain_scalars() {
        for (s, kind) in [
            ("yes", "bool"),
            ("off", "bool"),
            ("y", "bool"),
            ("1_000", "number"),
            ("012", "number"),
            ("08", "number"),
            ("0X1F", "number"),
            ("0B11", "number"),
            ("1e3", "number"),
            (".5", "number"),
            ("~", "null"),
            ("2020-01-01", "string"),
            ("1:20", "string"),
            ("1e400", "string"),
            ("v1.2", "string"),
            ("0x", "string"),
            ("_1", "string"),
            ("<<", "string"),
        ] {
            let node = parse(&format!("k: {s}\n"));
            let Node::Map(pairs) = node else { panic!() };
            assert_eq!(pairs[0].1.json_kind(), kind, "{s}");
            let quoted = parse(&format!("k: '{s}'\n"));
            let Node::Map(pairs) = quoted else { panic!() };
            assert_eq!(pairs[0].1.json_kind(), "string", "'{s}'");
        }
        let Node::Map(pairs) = parse("k: !!str yes\nj: &a !!str no\n") else {
            panic!()
        };
        assert_eq!(pairs[0].1.json_kind(), "string");
        assert_eq!(pairs[1].1.json_kind(), "string");
    }

    #[test]
    fn syntax_errors_use_yaml_v2_lines() {
        let e = parse_first_document("a: b: c\n").unwrap_err();
        assert_eq!(
            e.0,
            "invalid Kustomization: error converting YAML to JSON: yaml: mapping values are not allowed in this context"
        );
        let e = parse_first_document("x: 1\na: b: c\n").unwrap_err();
        assert_eq!(
            e.0,
            "invalid Kustomization: error converting YAML to JSON: yaml: line 2: mapping values are not allowed in this context"
        );
        let e = parse_first_document("a: [\n").unwrap_err();
        assert_eq!(
            e.0,
            "invalid Kustomization: error converting YAML to JSON: yaml: line 1: did not find expected node content"
        );
    }

    #[test]
    fn decode_errors_in_go_order() {
        let d = |t: &str| decode(&parse(t)).map(|k| k.images).map_err(|e| e.0);
        assert_eq!(
            d("zzz: 1\nimages:\n- newTag: 1\n").unwrap_err(),
            "invalid Kustomization: json: cannot unmarshal number into Go struct field Image.images.newTag of type string"
        );
        assert_eq!(
            d("foo: 1\nimages:\n- newTag: 1\n").unwrap_err(),
            "invalid Kustomization: json: unknown field \"foo\""
        );
        assert_eq!(
            d("images: x\n").unwrap_err(),
            "invalid Kustomization: json: cannot unmarshal string into Go struct field Kustomization.images of type []types.Image"
        );
        assert_eq!(
            d("- a\n").unwrap_err(),
            "invalid Kustomization: json: cannot unmarshal array into Go value of type types.Kustomization"
        );
        assert_eq!(
            d("images:\n- newTag: .inf\n").unwrap_err(),
            "invalid Kustomization: error marshaling into JSON: json: unsupported value: +Inf"
        );
        let images = d("IMAGES:\n- NAME: a\n  NewTag: '1'\nimageTags:\n- name: b\n").unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(
            (images[0].name.as_str(), images[0].new_tag.as_str()),
            ("a", "1")
        );
        assert_eq!(images[1].name, "b");
    }
}
