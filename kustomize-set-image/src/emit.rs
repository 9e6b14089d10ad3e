//! Writing an `images:` block the way kustomize writes it (sigs.k8s.io/yaml on top of yaml.v2).
//!
//! Owns: the block layout (sequence not indented under its key, keys in alphabetical order,
//! empty fields omitted, `- {}` for an empty entry) and yaml.v2's choice of scalar style: plain
//! when the plain text would read back as the same string, double quotes for strings that would
//! resolve to another type (`"1234"`, `"1.0"`, `"yes"`, `"2020-01-01"`, `"1:20"`), single quotes
//! when the emitter forbids plain (`'*'`, `'{GENERATED}'`, `'a: b'`).
//!
//! Deviations, both value-preserving: a string containing a line break is written double-quoted
//! (yaml.v2 would use a `|-` block), and long scalars with spaces are not folded at column 80.

use super::Image;
use super::read::{is_timestamp, resolve_plain};

/// The text of an `images:` block: the key line and its entries, each line prefixed by `indent`
/// and ended by `newline`.
pub(crate) fn images_block(images: &[Image], indent: &str, newline: &str) -> String {
    let mut out = format!("{indent}images:{newline}");
    for image in images {
        let fields = [
            ("digest", &image.digest),
            ("name", &image.name),
            ("newName", &image.new_name),
            ("newTag", &image.new_tag),
            ("tagSuffix", &image.tag_suffix),
        ];
        let mut first = true;
        for (key, value) in fields {
            if value.is_empty() {
                continue;
            }
            let lead = if first { "- " } else { "  " };
            first = false;
            out.push_str(&format!("{indent}{lead}{key}: {}{newline}", scalar(value)));
        }
        if first {
            out.push_str(&format!("{indent}- {{}}{newline}"));
        }
    }
    out
}

/// A string value as yaml.v2 writes it in block context, as a mapping value.
pub(crate) fn scalar(s: &str) -> String {
    if s.chars().any(is_break) {
        return double_quoted(s);
    }
    // yaml.v2's encoder also quotes timestamps, which its decoder reads back as strings.
    let resolves_to_string = resolve_plain(s).is_none() && !is_timestamp(s);
    if resolves_to_string && !is_base60_float(s) {
        let analysis = analyze(s);
        if analysis.block_plain_allowed {
            return s.to_owned();
        }
        if analysis.single_quoted_allowed {
            return format!("'{}'", s.replace('\'', "''"));
        }
    }
    double_quoted(s)
}

/// yaml.v2 `isBase60Float`: `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
pub(crate) fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    i += 1;
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 2 {
            i += 1;
        }
        let group = &b[start..i];
        let ok = match group {
            [d] => d.is_ascii_digit(),
            [a, _] => (b'0'..=b'5').contains(a),
            _ => false,
        };
        if !ok {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

pub(crate) fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// yaml.v2 `is_printable` (with the emitter's unicode mode on).
fn is_printable(c: char) -> bool {
    let c = c as u32;
    c == 0x0A
        || (0x20..=0x7E).contains(&c)
        || (0xA0..=0xD7FF).contains(&c)
        || ((0xE000..=0xFFFD).contains(&c) && c != 0xFEFF)
}

pub(crate) struct Analysis {
    pub(crate) block_plain_allowed: bool,
    pub(crate) single_quoted_allowed: bool,
}

/// yaml.v2 `yaml_emitter_analyze_scalar`, reduced to what block context needs.
pub(crate) fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            block_plain_allowed: true,
            single_quoted_allowed: true,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let mut special = false;
    let (mut leading_space, mut trailing_space) = (false, false);
    let mut preceded_by_whitespace = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = chars.get(i + 1).is_none_or(|n| matches!(n, ' ' | '\t'));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == chars.len() {
                trailing_space = true;
            }
        }
        preceded_by_whitespace = matches!(c, ' ' | '\t') || is_break(c);
    }
    let plain_ok = !(leading_space || trailing_space || special || block_indicators);
    Analysis {
        block_plain_allowed: plain_ok,
        single_quoted_allowed: !special,
    }
}

/// yaml.v2 double-quoted style: `"` and `\` escaped, non-printable characters as `\xXX`,
/// `\uXXXX`, `\UXXXXXXXX` or their short escapes.
pub(crate) fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        let escape = !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\';
        if !escape {
            out.push(c);
            continue;
        }
        match c {
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{B}' => out.push_str("\\v"),
            '\u{C}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1B}' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{85}' => out.push_str("\\N"),
            '\u{A0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if (c as u32) <= 0xFF => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::scalar;

    #[test]
    fn yaml_v2_styles() {
        for (value, written) in [
            ("latest", "latest"),
            ("v1.2.3", "v1.2.3"),
            ("1.0-alpine", "1.0-alpine"),
            ("sha256:abc", "sha256:abc"),
            ("localhost:5000/x", "localhost:5000/x"),
            ("1234", "\"1234\""),
            ("3.2e2", "\"3.2e2\""),
            ("553640e6", "\"553640e6\""),
            ("1.0", "\"1.0\""),
            ("yes", "\"yes\""),
            ("NO", "\"NO\""),
            ("~", "\"~\""),
            ("0x1F", "\"0x1F\""),
            ("0o17", "\"0o17\""),
            ("1_000", "\"1_000\""),
            ("-1", "\"-1\""),
            (".inf", "\".inf\""),
            ("2020-01-01", "\"2020-01-01\""),
            ("1:20", "\"1:20\""),
            ("*", "'*'"),
            ("{GENERATED}", "'{GENERATED}'"),
            ("foo #bar", "'foo #bar'"),
            ("img:", "'img:'"),
            ("a: b", "'a: b'"),
            ("-", "'-'"),
            ("?", "'?'"),
            ("---", "'---'"),
            ("...x", "'...x'"),
            (" x", "' x'"),
            ("x ", "'x '"),
            ("'x", "'''x'"),
            ("-x", "-x"),
            ("?x", "?x"),
            (":x", ":x"),
            ("x,y", "x,y"),
            ("x#y", "x#y"),
            ("é", "é"),
            ("<<", "<<"),
            ("a\tb", "\"a\\tb\""),
            ("a\"b", "a\"b"),
            ("a\nb", "\"a\\nb\""),
            ("😀", "\"\\U0001F600\""),
        ] {
            assert_eq!(scalar(value), written, "{value:?}");
        }
    }
}
