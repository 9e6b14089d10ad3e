//! Where the `images:` block sits in the text, and putting a new one in its place.
//!
//! Owns: the line layout of a kustomization file: the first YAML document's end, the lines a
//! top-level key's value spans (from the key line to the line before the next top-level key,
//! less trailing comments and blank lines, which belong to what follows), and the edits that
//! replace, remove or append such blocks without touching any other byte.

use std::ops::Range;

use super::EditError;
use super::read::{Kustomization, TopKey};

/// One planned text edit: replace `range` with `text`.
#[derive(Debug, Clone)]
pub(crate) struct Edit {
    pub(crate) range: Range<usize>,
    pub(crate) text: String,
}

/// The line break the file uses: CRLF when every line break in it is one, else LF.
pub(crate) fn newline_of(text: &str) -> &'static str {
    let bytes = text.as_bytes();
    let mut breaks = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .peekable();
    if breaks.peek().is_none() {
        return "\n";
    }
    if breaks.all(|(i, _)| i > 0 && bytes[i - 1] == b'\r') {
        "\r\n"
    } else {
        "\n"
    }
}

/// Byte ranges of the lines of `text`, each including its `\n`.
pub(crate) fn lines(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = text[start..]
            .find('\n')
            .map_or(text.len(), |i| start + i + 1);
        out.push(start..end);
        start = end;
    }
    out
}

pub(crate) fn content(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

pub(crate) fn is_blank_or_comment(line: &str) -> bool {
    let t = content(line).trim_start_matches([' ', '\t']);
    t.is_empty() || t.starts_with('#')
}

fn is_marker(line: &str, marker: &str) -> bool {
    let c = content(line);
    c.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// The byte offset where the first YAML document ends: the start of the line with the next
/// `---` or `...` marker, or the end of the text.
pub(crate) fn first_document_end(text: &str) -> usize {
    let mut started = false;
    for line in lines(text) {
        let l = &text[line.clone()];
        if is_marker(l, "---") || is_marker(l, "...") {
            if started {
                return line.start;
            }
            started = is_marker(l, "---");
            continue;
        }
        if !started && l.starts_with('%') {
            continue;
        }
        if !is_blank_or_comment(l) {
            started = true;
        }
    }
    text.len()
}

/// The start of the line holding byte `offset` (byte-wise: `offset` need not be a char boundary).
fn line_start(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

pub(crate) fn indentation(text: &str, line_start: usize) -> &str {
    let rest = &text[line_start..];
    let n = rest.len() - rest.trim_start_matches(' ').len();
    &rest[..n]
}

/// The line start of a top-level key, if its span sits where a block mapping key can start:
/// after indentation, and optionally `? ` or an opening quote.
fn key_line(text: &str, key: &TopKey) -> Option<usize> {
    let span = key.span.as_ref()?;
    let mut start = line_start(text, span.start);
    // A byte order mark is not part of the first line's content.
    if start == 0 && text.starts_with('\u{FEFF}') {
        start = '\u{FEFF}'.len_utf8();
    }
    let prefix = text[start..span.start].trim_start_matches(' ');
    let prefix = prefix.strip_prefix('?').map_or(prefix, |p| p.trim_start());
    matches!(prefix, "" | "\"" | "'").then_some(start)
}

/// Whether the root mapping is written in flow style (`{apiVersion: ..., images: [...]}`).
fn root_is_flow(text: &str, doc_end: usize) -> bool {
    for line in lines(&text[..doc_end]) {
        let l = content(&text[line]);
        if is_blank_or_comment(l) || l.starts_with('%') || is_marker(l, "...") {
            continue;
        }
        let mut rest = l.strip_prefix("---").unwrap_or(l).trim_start();
        // Properties before the node: a tag or an anchor.
        while rest.starts_with(['!', '&']) {
            rest = rest
                .find([' ', '\t'])
                .map_or("", |i| rest[i..].trim_start());
        }
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        return rest.starts_with('{');
    }
    false
}

/// The text layout of one kustomization document.
#[derive(Debug)]
pub(crate) struct Layout {
    doc_end: usize,
    /// Line start of each top-level key (document order), `None` when it cannot be placed.
    key_lines: Vec<Option<usize>>,
}

impl Layout {
    pub(crate) fn new(text: &str, k: &Kustomization) -> Result<Layout, EditError> {
        let doc_end = first_document_end(text);
        if root_is_flow(text, doc_end) {
            return Err(EditError(
                "cannot edit images in a kustomization whose top-level mapping is in flow style \
                 ({...}); write it in block style"
                    .into(),
            ));
        }
        let key_lines = k.keys.iter().map(|key| key_line(text, key)).collect();
        Ok(Layout { doc_end, key_lines })
    }

    /// The byte range of the block of top-level key `index`: its key line through the last line
    /// of its value, trailing comment and blank lines excluded.
    pub(crate) fn block(&self, text: &str, index: usize) -> Result<Range<usize>, EditError> {
        let start = self
            .key_lines
            .get(index)
            .copied()
            .flatten()
            .ok_or_else(|| {
                EditError("cannot locate a top-level key of the kustomization in its text".into())
            })?;
        let known_next = self
            .key_lines
            .iter()
            .flatten()
            .copied()
            .filter(|&l| l > start)
            .min();
        let all_known = self.key_lines.iter().all(Option::is_some);
        let mut end = match known_next {
            Some(next) if all_known => next,
            _ => self
                .scan_next_key(text, start)
                .min(known_next.unwrap_or(usize::MAX)),
        }
        .min(self.doc_end);
        // Trailing comments and blank lines belong to what follows.
        let first_line_end = text[start..]
            .find('\n')
            .map_or(text.len(), |i| start + i + 1);
        while end > first_line_end {
            let prev = line_start(text, end - 1);
            if !is_blank_or_comment(&text[prev..end]) {
                break;
            }
            end = prev;
        }
        Ok(start..end.max(first_line_end.min(self.doc_end)))
    }

    /// The next line that starts a sibling of the key at `start`, by indentation (used only when
    /// some key could not be placed from the parser's positions).
    fn scan_next_key(&self, text: &str, start: usize) -> usize {
        let indent = indentation(text, start).len();
        for line in lines(&text[..self.doc_end]) {
            if line.start <= start {
                continue;
            }
            let l = &text[line.clone()];
            if is_blank_or_comment(l) {
                continue;
            }
            let own = indentation(text, line.start).len();
            let body = content(&l[own..]);
            let sequence_item = own == indent && (body == "-" || body.starts_with("- "));
            if own <= indent && !sequence_item && !body.starts_with([']', '}']) {
                return line.start;
            }
        }
        self.doc_end
    }

    /// Where a new top-level block goes when the file has no `images:` key: the end of the
    /// first document, with a line break added if the text ends without one.
    pub(crate) fn append_point(&self, text: &str, newline: &str) -> (usize, String) {
        let at = self.doc_end;
        let needs_break = at > 0 && !text[..at].ends_with('\n');
        (
            at,
            if needs_break {
                newline.to_owned()
            } else {
                String::new()
            },
        )
    }

    /// The indentation of the top-level keys (the first placed one), or none.
    pub(crate) fn key_indent<'t>(&self, text: &'t str, index: Option<usize>) -> &'t str {
        let line = match index {
            Some(i) => self.key_lines.get(i).copied().flatten(),
            None => self.key_lines.iter().flatten().copied().next(),
        };
        line.map_or("", |l| indentation(text, l))
    }
}

/// Applies non-overlapping edits to `text`. At one position, insertions (empty ranges) go
/// before a replacement, in the order they were planned.
pub(crate) fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for edit in edits {
        if edit.range.start < at {
            continue;
        }
        out.push_str(&text[at..edit.range.start]);
        out.push_str(&edit.text);
        at = edit.range.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_end() {
        assert_eq!(first_document_end("a: 1\n---\nb: 2\n"), 5);
        assert_eq!(first_document_end("---\na: 1\n"), 9);
        assert_eq!(first_document_end("# c\n---\na: 1\n...\n"), 13);
        assert_eq!(first_document_end(""), 0);
    }

    #[test]
    fn byte_order_mark_is_kept() {
        let text = "\u{FEFF}images:\n- name: a\nkind: Kustomization\n";
        let edited = super::super::set_image(text, &["a:1".to_owned()]).unwrap();
        assert_eq!(
            edited.text,
            "\u{FEFF}images:\n- name: a\n  newTag: \"1\"\nkind: Kustomization\n"
        );
    }

    #[test]
    fn flow_root() {
        assert!(root_is_flow("{a: 1}\n", 7));
        assert!(root_is_flow("--- &x {a: 1}\n", 14));
        assert!(!root_is_flow("# {x}\na: {b: 1}\n", 16));
    }
}
