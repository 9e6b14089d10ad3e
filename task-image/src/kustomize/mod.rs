//! kustomize's `edit set image`, as a format-preserving edit of one kustomization file, and
//! kustomize's build-time image matching (used by the preflight check).
//!
//! (Being implemented; see issue 3.)

use std::path::Path;

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
}

/// Applies `kustomize edit set image <args>...` to the text of a kustomization file.
pub fn set_image(text: &str, args: &[String]) -> Result<Edited, EditError> {
    let _ = (text, args);
    Err(EditError("set-image is not implemented yet".into()))
}

/// Applies [`set_image`] to the file at `path`, writing it back only when it changed.
pub fn set_image_file(path: &Path, args: &[String]) -> Result<Edited, EditError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EditError(format!("cannot read {}: {e}", path.display())))?;
    let edited = set_image(&text, args)?;
    if edited.changed {
        std::fs::write(path, &edited.text)
            .map_err(|e| EditError(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(edited)
}
