//! The in-place edit of an `images:` block: only the lines kustomize's merge changes are touched.
//!
//! Owns: reading the layout of a block-style `images:` sequence (items, their fields, value
//! styles, comments), and planning the smallest set of text edits that turns it into the merged
//! list: a changed value is replaced where it stands (its quoting kept while that stays
//! value-preserving), a dropped field or duplicate entry loses its lines, an added field or entry
//! is written in the block's own indentation and quoting. Entry order, comments, blank lines and
//! key order are kept.
//!
//! kustomize sorts the list by name on every edit, and applies entries in list order at build
//! time, one after the other. Keeping the file's order is therefore only done when every pair of
//! entries whose order differs from kustomize's provably commutes (see [`may_interact`]);
//! otherwise, and for any layout this reader does not fully understand, [`plan`] returns `None`
//! and the caller writes the block in kustomize's form.

use std::collections::BTreeMap;
use std::ops::Range;

use super::Image;
use super::emit::{analyze, double_quoted, is_base60_float, is_break, scalar};
use super::read::{Node, is_timestamp, resolve_plain};
use super::splice::{Edit, content, indentation, is_blank_or_comment, lines};

/// The fields of an entry, in kustomize's (alphabetical) order.
const FIELDS: [&str; 5] = ["digest", "name", "newName", "newTag", "tagSuffix"];

/// How a value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

/// One `key: value` line of an entry.
#[derive(Debug, Clone)]
struct Field {
    key: &'static str,
    /// The whole line, with its line break.
    line: Range<usize>,
    /// Where the key starts.
    key_start: usize,
    /// The value token (quotes included); empty, right after the colon, when there is none.
    value: Range<usize>,
    /// The decoded value; empty for a null.
    text: String,
    style: Style,
}

/// One `- key: value` entry and the field lines under it.
#[derive(Debug, Clone)]
struct Item {
    /// Start of the own-line comments directly above the `- ` line (or that line).
    lead: usize,
    /// Start of the `- ` line.
    dash_line: usize,
    /// The column of the `-`.
    dash_col: usize,
    /// The column of the keys.
    key_col: usize,
    fields: Vec<Field>,
    /// End of the last field line (after its line break, if any).
    end: usize,
}

impl Item {
    fn get(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.key == key)
    }

    fn image(&self) -> Image {
        let value = |k: &str| self.get(k).map(|f| f.text.clone()).unwrap_or_default();
        Image {
            name: value("name"),
            new_name: value("newName"),
            new_tag: value("newTag"),
            digest: value("digest"),
            tag_suffix: value("tagSuffix"),
        }
    }
}

fn field_value<'i>(image: &'i Image, key: &str) -> &'i str {
    match key {
        "digest" => &image.digest,
        "name" => &image.name,
        "newName" => &image.new_name,
        "newTag" => &image.new_tag,
        _ => &image.tag_suffix,
    }
}

/// The planned in-place edit.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) edits: Vec<Edit>,
    /// The images list the edited text decodes to, in its order.
    pub(crate) images: Vec<Image>,
    /// Why a value had to be quoted where the file writes such values plain.
    pub(crate) notes: Vec<String>,
}

/// Plans the in-place edit of the `images:` block at `block` (its key line through its last
/// content line) so that it decodes to the entries of `merged` (kustomize's sorted result of
/// merging the arguments into `existing`, the entries the file holds). `None` when the block is
/// not in a layout this module edits in place, or when keeping the file's order could change
/// what kustomize builds.
pub(crate) fn plan(
    text: &str,
    block: Range<usize>,
    existing: &[Image],
    merged: &[Image],
    newline: &str,
) -> Option<Plan> {
    let (seq_col, items) = parse_block(text, block.clone())?;
    if items.len() != existing.len() || items.iter().zip(existing).any(|(i, e)| i.image() != *e) {
        return None;
    }
    let merged_by_name: BTreeMap<&str, &Image> =
        merged.iter().map(|i| (i.name.as_str(), i)).collect();

    // The entries kept (first occurrence of each name), the duplicates dropped.
    let mut kept: Vec<&Item> = Vec::new();
    let mut dropped: Vec<&Item> = Vec::new();
    for item in &items {
        let name = item.get("name").map_or("", |f| f.text.as_str());
        if kept
            .iter()
            .any(|k| k.get("name").map_or("", |f| f.text.as_str()) == name)
        {
            dropped.push(item);
        } else {
            kept.push(item);
        }
    }
    let name_of = |item: &Item| item.get("name").map_or("", |f| f.text.as_str()).to_owned();
    let kept_names: Vec<String> = kept.iter().map(|i| name_of(i)).collect();
    let added: Vec<&Image> = merged
        .iter()
        .filter(|m| !kept_names.contains(&m.name))
        .collect();
    if kept.len() + added.len() != merged.len() {
        return None;
    }
    let sorted = kept_names.windows(2).all(|w| w[0] < w[1]);
    // Where each added entry goes: before the kept entry at that index, or at the end.
    let slot = |name: &str| -> usize {
        if sorted {
            kept_names
                .iter()
                .position(|k| k.as_str() > name)
                .unwrap_or(kept.len())
        } else {
            kept.len()
        }
    };

    // The final order, and the commutation check against kustomize's sorted order.
    let mut order: Vec<&Image> = Vec::with_capacity(merged.len());
    for (index, name) in kept_names.iter().enumerate() {
        order.extend(added.iter().copied().filter(|a| slot(&a.name) == index));
        order.push(merged_by_name.get(name.as_str())?);
    }
    order.extend(
        added
            .iter()
            .copied()
            .filter(|a| slot(&a.name) == kept.len()),
    );
    for (i, a) in order.iter().enumerate() {
        for b in &order[i + 1..] {
            if a.name > b.name && may_interact(a, b) {
                return None;
            }
        }
    }

    let styles = BlockStyle::of(&items);
    let mut edits = Vec::new();
    let mut notes = Vec::new();
    let entry_text = |image: &Image, notes: &mut Vec<String>| -> String {
        let mut out = String::new();
        let mut first = true;
        for key in styles.key_order() {
            let value = field_value(image, key);
            if value.is_empty() {
                continue;
            }
            let lead = if first {
                format!("{}-{}", " ".repeat(seq_col), " ".repeat(styles.gap))
            } else {
                " ".repeat(seq_col + 1 + styles.gap)
            };
            first = false;
            let token = written(key, value, styles.style(key), notes);
            out.push_str(&format!("{lead}{key}: {token}{newline}"));
        }
        out
    };

    for (index, item) in kept.iter().enumerate() {
        let before: String = added
            .iter()
            .filter(|a| slot(&a.name) == index)
            .map(|a| entry_text(a, &mut notes))
            .collect();
        if !before.is_empty() {
            edits.push(Edit {
                range: item.lead..item.lead,
                text: before,
            });
        }
        let target = merged_by_name.get(name_of(item).as_str())?;
        edit_item(text, item, target, &styles, newline, &mut edits, &mut notes)?;
    }
    let after: String = added
        .iter()
        .filter(|a| slot(&a.name) == kept.len())
        .map(|a| entry_text(a, &mut notes))
        .collect();
    if !after.is_empty() {
        let at = block.end;
        let text = if text[..at].ends_with('\n') {
            after
        } else {
            // The block ends the file without a line break: keep it that way.
            let body = after.strip_suffix(newline).unwrap_or(&after);
            format!("{newline}{body}")
        };
        edits.push(Edit {
            range: at..at,
            text,
        });
    }
    for item in dropped {
        edits.push(Edit {
            range: removal(text, item.dash_line..item.end),
            text: String::new(),
        });
    }
    Some(Plan {
        edits,
        images: order.into_iter().cloned().collect(),
        notes,
    })
}

/// The edits that turn one kept entry into `target`.
fn edit_item(
    text: &str,
    item: &Item,
    target: &Image,
    styles: &BlockStyle,
    newline: &str,
    edits: &mut Vec<Edit>,
    notes: &mut Vec<String>,
) -> Option<()> {
    let mut appended = String::new();
    for key in styles.key_order() {
        let new = field_value(target, key);
        match item.get(key) {
            Some(field) if field.text == new => {}
            Some(field) if !new.is_empty() => {
                let token = written(key, new, field.style, notes);
                let token = if field.value.is_empty() {
                    format!(" {token}")
                } else {
                    token
                };
                edits.push(Edit {
                    range: field.value.clone(),
                    text: token,
                });
            }
            Some(field) => {
                // kustomize drops the field.
                if field.line.start == item.dash_line {
                    // The `- ` line: the next field moves up onto it, so it must follow directly.
                    let next = item
                        .fields
                        .iter()
                        .find(|f| f.line.start == field.line.end)?;
                    let next_new = field_value(target, next.key);
                    if next_new.is_empty() {
                        return None;
                    }
                    edits.push(Edit {
                        range: field.key_start..next.key_start,
                        text: String::new(),
                    });
                } else {
                    edits.push(Edit {
                        range: removal(text, field.line.clone()),
                        text: String::new(),
                    });
                }
            }
            None if new.is_empty() => {}
            None => {
                let token = written(key, new, styles.style(key), notes);
                appended.push_str(&format!(
                    "{}{key}: {token}{newline}",
                    " ".repeat(item.key_col)
                ));
            }
        }
    }
    if !appended.is_empty() {
        let at = item.end;
        let insert = if text[..at].ends_with('\n') {
            appended
        } else {
            let body = appended.strip_suffix(newline).unwrap_or(&appended);
            format!("{newline}{body}")
        };
        edits.push(Edit {
            range: at..at,
            text: insert,
        });
    }
    Some(())
}

/// The bytes to delete to remove the whole lines `lines`: with their line break, or, when they
/// end the text without one, with the line break before them.
fn removal(text: &str, lines: Range<usize>) -> Range<usize> {
    if lines.end < text.len() || text.ends_with('\n') || lines.start == 0 {
        return lines;
    }
    let before = &text[..lines.start];
    let cut = if before.ends_with("\r\n") { 2 } else { 1 };
    lines.start - cut..lines.end
}

/// The writing habits of a block: how far keys sit after `- `, how each field's values are
/// quoted, and the key order of its entries.
struct BlockStyle {
    gap: usize,
    styles: BTreeMap<&'static str, Style>,
    order: Vec<&'static str>,
}

impl BlockStyle {
    fn of(items: &[Item]) -> BlockStyle {
        let gap = items
            .first()
            .map_or(1, |i| i.key_col.saturating_sub(i.dash_col + 1).max(1));
        let mut styles = BTreeMap::new();
        let mut order: Vec<&'static str> = Vec::new();
        for item in items {
            for field in &item.fields {
                // A null says nothing about how values are quoted.
                if !field.value.is_empty() && !field.text.is_empty() {
                    styles.entry(field.key).or_insert(field.style);
                }
                if !order.contains(&field.key) {
                    // Keys unseen so far go after the last key seen before them in this entry.
                    let after = item
                        .fields
                        .iter()
                        .take_while(|f| f.key != field.key)
                        .filter_map(|f| order.iter().position(|k| *k == f.key))
                        .max();
                    let at = after.map_or(0, |p| p + 1);
                    order.insert(at.min(order.len()), field.key);
                }
            }
        }
        for key in ["name", "newName", "newTag", "digest", "tagSuffix"] {
            if !order.contains(&key) {
                order.push(key);
            }
        }
        BlockStyle { gap, styles, order }
    }

    fn style(&self, key: &str) -> Style {
        self.styles.get(key).copied().unwrap_or(Style::Plain)
    }

    fn key_order(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.order.iter().copied()
    }
}

/// A value as written in `style`, falling back to kustomize's own choice where the style would
/// change what YAML reads. Records why in `notes` when a plain-style value had to be quoted.
fn written(key: &str, value: &str, style: Style, notes: &mut Vec<String>) -> String {
    match style {
        Style::Double => double_quoted(value),
        Style::Single if analyze(value).single_quoted_allowed && !value.contains(is_break) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        Style::Single => double_quoted(value),
        Style::Plain => {
            let token = scalar(value);
            if token != value
                && let Some(why) = quote_reason(value)
            {
                notes.push(format!("{key} {token} is quoted: {why}"));
            }
            token
        }
    }
}

/// Why `value`, written plain, would not read back as the same string; `None` if it would.
pub(crate) fn quote_reason(value: &str) -> Option<String> {
    if scalar(value) == value {
        return None;
    }
    let reads_as = match resolve_plain(value) {
        Some(Node::Bool(_)) => "a boolean",
        Some(Node::Null) => "null",
        Some(Node::Int(_) | Node::Float(_)) => "a number",
        Some(_) => "another type",
        None if is_timestamp(value) => "a timestamp",
        None if is_base60_float(value) => "a number (YAML 1.1 sexagesimal)",
        None => return Some("unquoted, it is not a valid YAML plain scalar".to_owned()),
    };
    Some(format!(
        "unquoted, YAML would read {value} as {reads_as}, and kustomize needs a string"
    ))
}

/// Reads the block: its key line, then `- ` entries of `key: value` lines, with comments and
/// blank lines anywhere. Returns the sequence's indentation column and the entries; `None` for
/// anything else (flow style, multi-line or escaped scalars, anchors, tags, tabs, odd keys).
fn parse_block(text: &str, block: Range<usize>) -> Option<(usize, Vec<Item>)> {
    // Rows of the block (it starts at a line start, or after a byte order mark).
    let mut rows = lines(&text[block.clone()])
        .into_iter()
        .map(|l| l.start + block.start..l.end + block.start);
    let key_line = rows.next()?;
    let key = content(&text[key_line.clone()]);
    let key_indent = indentation(text, key_line.start).len();
    let rest = key[key_indent..]
        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .strip_prefix(':')?;
    let after_key = rest.trim_start_matches(' ');
    if !(after_key.is_empty() || (after_key.starts_with('#') && after_key.len() < rest.len())) {
        return None;
    }

    let mut seq_col: Option<usize> = None;
    let mut items: Vec<Item> = Vec::new();
    // Start of the run of comment lines seen since the last content line.
    let mut comments_from: Option<usize> = None;
    for row in rows {
        let line = &text[row.clone()];
        if content(line).contains('\t') && !is_blank_or_comment(line) {
            return None;
        }
        if is_blank_or_comment(line) {
            let blank = content(line).trim_start_matches([' ', '\t']).is_empty();
            if blank {
                comments_from = None;
            } else if comments_from.is_none() {
                comments_from = Some(row.start);
            }
            continue;
        }
        let indent = indentation(text, row.start).len();
        let body = content(&line[indent..]);
        let dash = body == "-" || body.starts_with("- ");
        if dash && seq_col.is_none_or(|c| c == indent) && indent >= key_indent {
            seq_col = Some(indent);
            let after_dash = &body[1..];
            let gap = after_dash.len() - after_dash.trim_start_matches(' ').len();
            if gap == 0 {
                return None;
            }
            let key_col = indent + 1 + gap;
            let field = parse_field(text, row.clone(), key_col)?;
            items.push(Item {
                lead: comments_from.unwrap_or(row.start),
                dash_line: row.start,
                dash_col: indent,
                key_col,
                end: row.end,
                fields: vec![field],
            });
        } else {
            let item = items.last_mut()?;
            if indent != item.key_col {
                return None;
            }
            let field = parse_field(text, row.clone(), item.key_col)?;
            if item.get(field.key).is_some() {
                return None;
            }
            item.end = row.end;
            item.fields.push(field);
        }
        comments_from = None;
    }
    Some((seq_col?, items))
}

/// One `key: value` at column `key_col` of the line `row`.
fn parse_field(text: &str, row: Range<usize>, key_col: usize) -> Option<Field> {
    let line = content(&text[row.clone()]);
    let body = line.get(key_col..)?;
    let key_len = body.len()
        - body
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .len();
    let key = FIELDS.iter().copied().find(|k| *k == &body[..key_len])?;
    let after = body[key_len..].strip_prefix(':')?;
    let colon_end = row.start + key_col + key_len + 1;
    let spaces = after.len() - after.trim_start_matches(' ').len();
    let token = &after[spaces..];
    let token_start = colon_end + spaces;
    if token.is_empty() || (token.starts_with('#') && spaces > 0) {
        return Some(Field {
            key,
            key_start: row.start + key_col,
            line: row,
            value: colon_end..colon_end,
            text: String::new(),
            style: Style::Plain,
        });
    }
    if spaces == 0 {
        return None;
    }
    let (len, value, style) = match token.as_bytes()[0] {
        b'\'' => {
            let mut value = String::new();
            let mut chars = token[1..].char_indices().peekable();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        chars.next();
                        value.push('\'');
                        continue;
                    }
                    close = Some(i + 2);
                    break;
                }
                value.push(c);
            }
            (close?, value, Style::Single)
        }
        b'"' => {
            let end = token[1..].find(['"', '\\'])?;
            if token.as_bytes()[1 + end] != b'"' {
                return None;
            }
            (end + 2, token[1..=end].to_owned(), Style::Double)
        }
        b'[' | b']' | b'{' | b'}' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`'
        | b',' => return None,
        _ => {
            let indicator = token.strip_prefix(['-', '?', ':']);
            if indicator.is_some_and(|rest| rest.is_empty() || rest.starts_with(' ')) {
                return None;
            }
            let end = token.find(" #").unwrap_or(token.len());
            let value = token[..end].trim_end_matches(' ');
            let text = match resolve_plain(value) {
                Some(Node::Null) => String::new(),
                Some(_) => return None,
                None => value.to_owned(),
            };
            (value.len(), text, Style::Plain)
        }
    };
    let rest = token[len..].trim_start_matches(' ');
    if !(rest.is_empty() || (rest.starts_with('#') && rest.len() < token.len() - len)) {
        return None;
    }
    Some(Field {
        key,
        line: row.clone(),
        key_start: row.start + key_col,
        value: token_start..token_start + len,
        text: value,
        style,
    })
}

/// A name pattern reduced to single characters: `None` is the regexp `.`, `Some(c)` a literal.
/// `None` overall when the pattern uses any other regexp syntax.
fn simple_pattern(name: &str) -> Option<Vec<Option<char>>> {
    name.chars()
        .map(|c| match c {
            '.' => Some(None),
            c if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | ':' | '@') => {
                Some(Some(c))
            }
            _ => None,
        })
        .collect()
}

/// Whether some image string can be matched by both: `a` and `b` followed by kustomize's
/// optional `:tag` and `@digest` suffix. Exact for simple patterns.
fn overlap(a: &[Option<char>], b: &[Option<char>]) -> bool {
    let common = a.len().min(b.len());
    let compatible = a
        .iter()
        .zip(b)
        .all(|(x, y)| x.is_none() || y.is_none() || x == y);
    if !compatible {
        return false;
    }
    let longer = if a.len() > b.len() { a } else { b };
    // The shorter pattern's match ends where its suffix starts, with `:` or `@`.
    longer
        .get(common)
        .is_none_or(|c| matches!(c, None | Some(':' | '@')))
}

/// Whether applying `a` then `b` could build something else than `b` then `a`: some image both
/// names match, or one entry's `newName` is matched by the other's name. Conservative: any name
/// using regexp syntax beyond `.` may interact with everything.
pub(crate) fn may_interact(a: &Image, b: &Image) -> bool {
    let (Some(pa), Some(pb)) = (simple_pattern(&a.name), simple_pattern(&b.name)) else {
        return true;
    };
    if overlap(&pa, &pb) {
        return true;
    }
    let literal = |s: &str| -> Vec<Option<char>> { s.chars().map(Some).collect() };
    (!a.new_name.is_empty() && overlap(&literal(&a.new_name), &pb))
        || (!b.new_name.is_empty() && overlap(&literal(&b.new_name), &pa))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, new_name: &str) -> Image {
        Image {
            name: name.into(),
            new_name: new_name.into(),
            ..Image::default()
        }
    }

    #[test]
    fn interaction() {
        assert!(!may_interact(&image("a", ""), &image("b", "")));
        assert!(!may_interact(&image("app", ""), &image("app-x", "")));
        assert!(may_interact(&image("app", ""), &image("app.v1", "")));
        assert!(may_interact(&image("app", ""), &image("ap.", "")));
        assert!(may_interact(&image("a", "b"), &image("b", "")));
        assert!(may_interact(&image("a", "b:5000/x"), &image("b", "")));
        assert!(!may_interact(&image("a", "bx"), &image("b", "")));
        assert!(may_interact(&image("a.*", ""), &image("zzz", "")));
        assert!(!may_interact(
            &image("registry.acme.io/acme/shop-api", ""),
            &image("envoyproxy/envoy", "")
        ));
    }

    /// xorshift64: the same names on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        /// One to four characters that matter to a name pattern.
        fn word(&mut self) -> String {
            const ALPHABET: [char; 7] = ['a', 'b', '.', ':', '/', '-', '@'];
            (0..1 + self.below(4))
                .map(|_| ALPHABET[self.below(ALPHABET.len())])
                .collect()
        }
    }

    /// Soundness of [`may_interact`] against kustomize's own rewrite ([`apply_entry`]): whenever
    /// it says two entries do not interact, applying them in either order gives the same image,
    /// for images built from both entries' names and new names and from random strings.
    #[test]
    fn entries_said_not_to_interact_commute() {
        use crate::matching::{ImageEntry, apply_entry, image_matches};
        // Each match compiles a regexp: remember them.
        let mut matches = std::collections::HashMap::new();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let (mut checked, mut independent) = (0, 0);
        for _ in 0..100 {
            let mut entry = || {
                let name = rng.word();
                let new_name = if rng.below(2) == 0 {
                    rng.word()
                } else {
                    String::new()
                };
                let tag = ["", "v2", "9"][rng.below(3)].to_owned();
                let digest = ["", "sha256:ff"][rng.below(2)].to_owned();
                (
                    image(&name, &new_name),
                    ImageEntry {
                        name,
                        new_name: Some(new_name),
                        new_tag: Some(tag),
                        digest: Some(digest),
                        tag_suffix: None,
                    },
                )
            };
            let (a, ea) = entry();
            let (b, eb) = entry();
            if a.name == b.name || may_interact(&a, &b) {
                continue;
            }
            independent += 1;
            let mut pool: Vec<String> = Vec::new();
            for base in [&a.name, &b.name, &a.new_name, &b.new_name, &rng.word()] {
                for suffix in ["", ":1", ":1@sha256:aa", "a"] {
                    pool.push(format!("{base}{suffix}"));
                }
            }
            for value in pool {
                let mut step = |v: String, e: &ImageEntry| {
                    let hit = *matches
                        .entry((v.clone(), e.name.clone()))
                        .or_insert_with(|| image_matches(&v, &e.name));
                    if hit {
                        apply_entry(&v, e).unwrap_or(v)
                    } else {
                        v
                    }
                };
                let once = step(value.clone(), &ea);
                let ab = step(once, &eb);
                let once = step(value.clone(), &eb);
                let ba = step(once, &ea);
                assert_eq!(ab, ba, "{value:?} with {a:?} and {b:?}");
                checked += 1;
            }
        }
        assert!(independent > 15 && checked > 300, "{independent} {checked}");
    }

    #[test]
    fn byte_order_mark_block_is_edited_in_place() {
        let text = "\u{FEFF}images:\n  - name: a # x\n";
        let edited = super::super::set_image(text, &["a:1".to_owned()]).unwrap();
        assert_eq!(
            edited.text,
            "\u{FEFF}images:\n  - name: a # x\n    newTag: \"1\"\n"
        );
    }

    #[test]
    fn reasons() {
        assert_eq!(quote_reason("v1.2"), None);
        assert!(quote_reason("1234").unwrap().contains("as a number"));
        assert!(quote_reason("yes").unwrap().contains("as a boolean"));
        assert!(quote_reason("2024-01-01").unwrap().contains("timestamp"));
    }
}
