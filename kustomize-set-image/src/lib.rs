//! kustomize's `edit set image`, as a format-preserving edit of one kustomization file, and
//! kustomize's build-time image matching (used by the preflight check).
//!
//! The reference is kustomize v5 (`kustomize/commands/edit/set/setimage.go`, `kustfile`,
//! `api/internal/image`, `api/filters/imagetag`), read from kustomize's source and checked against
//! kustomize's own test cases and derived edge cases (`tests/fixtures/kustomize/`).
//!
//! Code map:
//! - [`args`]: the argument grammar and `image.Split`.
//! - `read`: reading the file like `kustfile.Read` (YAML 1.1 typing, JSON decoding rules, errors).
//! - `merge`: the `images:` merge (add/replace, `*`, sort by name).
//! - `inplace`: the minimal edit of a block-style `images:` block (only the lines that must
//!   change; the file's order, comments, indentation and quoting kept), when it is safe.
//! - `emit`: writing the `images:` block in kustomize's style (yaml.v2 quoting), otherwise.
//! - `splice`: where the block is in the text; replacing it without touching other bytes.
//! - [`matching`] and `goregex`: the build-time match (`images[].name` is a Go regexp).
//! - [`preflight`]: does the overlay's entry match a container image it builds from?
//!
//! Invariants of [`set_image`]: every byte outside the top-level `images:` block (and a
//! deprecated `imageTags:` block, which kustomize folds into `images`) is kept; the result is
//! re-read before it is returned, and must decode to exactly the merged entries (in kustomize's
//! order, or in the file's where that cannot change what kustomize builds) with every other
//! top-level field unchanged, or the edit fails and the input is left as it was; setting the
//! same value twice gives the same bytes.
//!
//! Deviations from kustomize, all in what is written, never in the resulting images semantics:
//! kustomize re-serializes the whole file (dropping comments, re-indenting, adding `apiVersion`/
//! `kind`, sorting `images:` by name); we change only the lines of the `images:` block that must
//! change (`inplace`), keeping its entry order, comments, indentation and quoting. Where the
//! block cannot be edited in place (flow style, `imageTags:`, entries whose order matters), it
//! is written in kustomize's form, its own-line comments kept under its key line and trailing
//! comments lost (kustomize moves the former above the key and loses the latter).
//! Strings with line breaks are written double-quoted, and long scalars are not folded at
//! column 80. A top-level mapping in flow style (`{...}`) is refused. The insides of structured
//! fields other than `images` (patches, generators, ...) are not type-checked, where kustomize
//! would reject unknown or mistyped nested fields.

pub mod args;
mod emit;
mod goregex;
mod inplace;
pub mod matching;
mod merge;
pub mod preflight;
mod read;
mod splice;

use std::path::Path;

pub use matching::{ImageEntry, apply_entry, image_matches};
pub use preflight::{
    MatchedImage, PreflightError, PreflightReport, RenderedImage, preflight, rendered_images,
};

use read::Node;
use splice::{Edit, Layout};

/// An edit that kustomize would refuse, with kustomize's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EditError(pub String);

/// The result of [`set_image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    /// The whole new file text.
    pub text: String,
    /// Whether `text` differs from the input.
    pub changed: bool,
    /// Why a value is written quoted where its plain form would read as another type (`1234`, a
    /// number; `yes`, a boolean), one sentence each; empty when nothing had to be quoted.
    pub notes: Vec<String>,
}

/// An `images:` entry as kustomize's `types.Image` holds it: an empty string is an unset field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Image {
    pub(crate) name: String,
    pub(crate) new_name: String,
    pub(crate) new_tag: String,
    pub(crate) digest: String,
    pub(crate) tag_suffix: String,
}

/// Applies `kustomize edit set image <args>...` to the text of a kustomization file.
///
/// Arguments are validated before the text is read, as kustomize does. Errors carry kustomize's
/// messages (`no image specified`, the invalid-format text, `invalid Kustomization: ...`).
pub fn set_image(text: &str, args: &[String]) -> Result<Edited, EditError> {
    let parsed = args::parse_args(args)?;
    apply(text, parsed)
}

/// Applies [`set_image`] to the file at `path`, writing it back only when it changed. The file
/// is untouched on any error.
pub fn set_image_file(path: &Path, args: &[String]) -> Result<Edited, EditError> {
    let parsed = args::parse_args(args)?;
    if path.is_dir() {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        return Err(EditError(format!("{name} should be a file")));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| EditError(format!("cannot read {}: {e}", path.display())))?;
    let edited = apply(&text, parsed)?;
    if edited.changed {
        std::fs::write(path, &edited.text)
            .map_err(|e| EditError(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(edited)
}

fn apply(text: &str, parsed: Vec<Image>) -> Result<Edited, EditError> {
    let root = read::parse_first_document(text)?;
    let kustomization = read::decode(&root)?;
    let images = merge::merge(&kustomization.images, parsed);

    let layout = Layout::new(text, &kustomization)?;
    let newline = splice::newline_of(text);
    if let Some(edited) = in_place(text, &root, &kustomization, &layout, &images, newline)? {
        return Ok(edited);
    }
    let mut edits = Vec::new();
    let mut tag_blocks = Vec::new();
    for (index, key) in kustomization.keys.iter().enumerate() {
        if key.field == Some("imageTags") {
            tag_blocks.push((index, layout.block(text, index)?));
        }
    }
    // The block to replace: `images:`, else the first `imageTags:` (kustomize folds it into
    // `images`), else none and the block is appended.
    let target = match kustomization.images_key {
        Some(index) => Some((index, layout.block(text, index)?)),
        None => tag_blocks.first().cloned(),
    };
    match target {
        Some((index, range)) => {
            let indent = layout.key_indent(text, Some(index));
            // Own-line comments inside the block stay in it, right under its key line (kustomize
            // moves them above the key; inside, they stay with what they describe).
            let comments: String = splice::lines(&text[..range.end])
                .into_iter()
                .filter(|l| l.start > range.start && splice::is_blank_or_comment(&text[l.clone()]))
                .map(|l| &text[l])
                .filter(|l| !splice::content(l).trim().is_empty())
                .collect();
            let mut block = emit::images_block(&images, indent, newline);
            if range.end == text.len() && !text.ends_with('\n') {
                block.truncate(block.len() - newline.len());
            }
            let key_line = block.find('\n').map_or(block.len(), |i| i + 1);
            block.insert_str(key_line, &comments);
            edits.push(Edit { range, text: block });
        }
        None => {
            let indent = if kustomization.empty {
                ""
            } else {
                layout.key_indent(text, None)
            };
            let (at, prefix) = layout.append_point(text, newline);
            let block = emit::images_block(&images, indent, newline);
            edits.push(Edit {
                range: at..at,
                text: format!("{prefix}{block}"),
            });
        }
    }
    for (_, range) in tag_blocks {
        if !edits.iter().any(|e| e.range == range) {
            edits.push(Edit {
                range,
                text: String::new(),
            });
        }
    }
    let new_text = splice::apply(text, edits);
    verify(&root, &new_text, &images)?;
    Ok(Edited {
        changed: new_text != text,
        text: new_text,
        notes: canonical_notes(&kustomization.images, &images),
    })
}

/// The minimal edit: only the lines of the `images:` block that must change. `None` when the
/// file has no block-style `images:` to edit in place (no key, flow style, a deprecated
/// `imageTags:` to fold in, an unusual layout), when keeping the file's entry order could change
/// what kustomize builds, or when the result would not read back as intended: the caller then
/// writes the block in kustomize's form.
fn in_place(
    text: &str,
    root: &Node,
    kustomization: &read::Kustomization,
    layout: &Layout,
    images: &[Image],
    newline: &str,
) -> Result<Option<Edited>, EditError> {
    let Some(index) = kustomization.images_key else {
        return Ok(None);
    };
    if kustomization
        .keys
        .iter()
        .any(|k| k.field == Some("imageTags"))
    {
        return Ok(None);
    }
    let block = layout.block(text, index)?;
    let Some(plan) = inplace::plan(text, block, &kustomization.images, images, newline) else {
        return Ok(None);
    };
    let new_text = splice::apply(text, plan.edits);
    if verify(root, &new_text, &plan.images).is_err() {
        return Ok(None);
    }
    Ok(Some(Edited {
        changed: new_text != text,
        text: new_text,
        notes: plan.notes,
    }))
}

/// The quoting notes of a block written in kustomize's form: one for each value that changed
/// and is quoted because its plain form would read as another type.
fn canonical_notes(existing: &[Image], images: &[Image]) -> Vec<String> {
    let mut notes = Vec::new();
    for image in images {
        let old = existing.iter().find(|e| e.name == image.name);
        let fields = [
            ("name", &image.name, old.map(|o| &o.name)),
            ("newName", &image.new_name, old.map(|o| &o.new_name)),
            ("newTag", &image.new_tag, old.map(|o| &o.new_tag)),
            ("digest", &image.digest, old.map(|o| &o.digest)),
        ];
        for (key, new, old) in fields {
            if new.is_empty() || old == Some(new) {
                continue;
            }
            if let Some(why) = inplace::quote_reason(new) {
                notes.push(format!("{key} {} is quoted: {why}", emit::scalar(new)));
            }
        }
    }
    notes
}

/// Re-reads the new text: it must decode to exactly `images`, with every other top-level field
/// as it was. Guards against layouts the line-based splice cannot handle.
fn verify(old_root: &Node, new_text: &str, images: &[Image]) -> Result<(), EditError> {
    let fail = |why: &str| {
        Err(EditError(format!(
            "internal error: the edited kustomization would not read back as intended ({why}); \
             the file was left unchanged"
        )))
    };
    let new_root = match read::parse_first_document(new_text) {
        Ok(root) => root,
        Err(e) => return fail(&e.0),
    };
    let decoded = match read::decode(&new_root) {
        Ok(k) => k,
        Err(e) => return fail(&e.0),
    };
    if decoded.images != images {
        return fail("images differ");
    }
    if !same_except_images(old_root, &new_root) {
        return fail("other fields changed");
    }
    Ok(())
}

fn is_images_key(key: &Node) -> bool {
    matches!(key, Node::Str { value, .. }
        if value.eq_ignore_ascii_case("images") || value.eq_ignore_ascii_case("imagetags"))
}

fn same_except_images(a: &Node, b: &Node) -> bool {
    let others = |n: &Node| -> Vec<(Node, Node)> {
        match n {
            Node::Map(pairs) => pairs
                .iter()
                .filter(|(k, _)| !is_images_key(k))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    };
    let (a, b) = (others(a), others(b));
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
}

/// Structural equality that ignores text positions.
fn same(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Str { value: x, .. }, Node::Str { value: y, .. }) => x == y,
        (Node::Float(x), Node::Float(y)) => x.to_bits() == y.to_bits(),
        (Node::Seq(x), Node::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Node::Map(x), Node::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        _ => a == b,
    }
}
