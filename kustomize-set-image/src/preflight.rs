//! The preflight check before a gitops PR: would the overlay's `images:` entry change anything?
//!
//! Owns: walking what an overlay builds from (its `resources` files and the local directories
//! its `resources`, `bases` and `components` reference, recursively, each directory through its
//! `kustomization.yaml`, `kustomization.yml` or `Kustomization`), collecting container images
//! the way kustomize's LegacyFilter finds them (the `image` of every element of a `containers`
//! or `initContainers` sequence at any depth, CustomResourceDefinitions skipped), and matching
//! them with [`image_matches`].
//!
//! Like `kustomize build`, a base's own `images:` entries are applied (in list order) to the
//! images it yields before its parent sees them, and so are the overlay's entries listed before
//! the one being checked. Remote resources (URLs) are skipped: they cannot be read offline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::Image;
use super::matching::{ImageEntry, apply_entry, image_matches};
use super::read::{self, Node};

/// The names kustomize recognizes for a kustomization file, in its order.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// A container image that the overlay's entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedImage {
    /// The resource file the image is in.
    pub file: PathBuf,
    /// The image as written in that file.
    pub image: String,
    /// The image as the overlay's entry sees it (after the bases' and earlier entries' rewrites).
    pub seen_as: String,
}

/// A passed preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightReport {
    /// The overlay's kustomization file.
    pub overlay: PathBuf,
    /// The images entry name that was checked.
    pub image: String,
    /// Every container image it matches (at least one).
    pub matched: Vec<MatchedImage>,
}

/// Why the preflight failed. Every variant names the overlay and the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// No container image the overlay builds from matches the entry.
    #[error(
        "overlay {}: the images entry {image:?} matches no container image in what it builds from \
         (images seen: {})",
        overlay.display(),
        if seen.is_empty() { "none".to_owned() } else { seen.join(", ") }
    )]
    NoMatch {
        /// The overlay's kustomization file.
        overlay: PathBuf,
        /// The images entry name.
        image: String,
        /// The container images found (as the entry would see them), sorted, deduplicated.
        seen: Vec<String>,
    },
    /// A file or directory could not be read.
    #[error("overlay {}, image {image:?}: cannot read {}: {message}", overlay.display(), path.display())]
    Io {
        /// The overlay's kustomization file (or the path given).
        overlay: PathBuf,
        /// The images entry name.
        image: String,
        /// What could not be read.
        path: PathBuf,
        /// The reason.
        message: String,
    },
    /// A kustomization or resource file is not valid YAML (or not a kustomization).
    #[error("overlay {}, image {image:?}: cannot parse {}: {message}", overlay.display(), path.display())]
    Parse {
        /// The overlay's kustomization file.
        overlay: PathBuf,
        /// The images entry name.
        image: String,
        /// The file that failed.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// Preflight: the overlay's images entry for `image_name` must match at least one container image
/// (`image:` of `containers`/`initContainers` at any depth, as kustomize's LegacyFilter) in the
/// YAML the overlay builds from: its own `resources` files and the local directories its
/// `resources` reference (each directory's kustomization.yaml|kustomization.yml|Kustomization),
/// recursively. Remote resources (URLs) are skipped. Multi-document YAML files. Errors name the
/// overlay and the image.
///
/// `kustomization_path` may also be the overlay directory. When the overlay has no entry named
/// `image_name`, the check is whether an entry with that name would match.
pub fn preflight(
    kustomization_path: &Path,
    image_name: &str,
) -> Result<PreflightReport, PreflightError> {
    let mut walk = Walk {
        overlay: kustomization_path.to_path_buf(),
        image: image_name.to_owned(),
        stack: Vec::new(),
    };
    let overlay_file = if kustomization_path.is_dir() {
        walk.kustomization_in(kustomization_path)?
    } else {
        kustomization_path.to_path_buf()
    };
    walk.overlay.clone_from(&overlay_file);
    let overlay = walk.read_kustomization(&overlay_file)?;
    let dir = overlay_file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    walk.enter(&dir);
    let found = walk.resources(&dir, &overlay)?;

    // The overlay's own entries before the one checked run first (they chain).
    let position = overlay.images.iter().position(|e| e.name == image_name);
    let earlier = &overlay.images[..position.unwrap_or(overlay.images.len())];
    let mut matched = Vec::new();
    let mut seen = BTreeSet::new();
    for found in found {
        let seen_as = rewrite(&found.seen_as, earlier);
        if image_matches(&seen_as, image_name) {
            matched.push(MatchedImage {
                file: found.file,
                image: found.image,
                seen_as,
            });
        } else {
            seen.insert(seen_as);
        }
    }
    if matched.is_empty() {
        return Err(PreflightError::NoMatch {
            overlay: overlay_file,
            image: image_name.to_owned(),
            seen: seen.into_iter().collect(),
        });
    }
    Ok(PreflightReport {
        overlay: overlay_file,
        image: image_name.to_owned(),
        matched,
    })
}

/// A container image of the built overlay: as a resource file writes it, and as `kustomize
/// build` renders it (after the bases' and every one of the overlay's `images:` entries).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RenderedImage {
    /// The resource file the image is in.
    pub file: PathBuf,
    /// The image as written in that file.
    pub image: String,
    /// The image the built overlay runs: `new name:tag@digest`.
    pub rendered: String,
}

/// The container images the overlay at `kustomization_path` (a file or its directory) builds
/// to, in the order `kustomize build` emits their resources' files (the walk [`preflight`] does),
/// with every `images:` entry applied as `kustomize build` applies them: each base's own, then the
/// overlay's, in list order. Remote resources are skipped. Errors name the overlay; the image
/// field of an error is empty.
pub fn rendered_images(kustomization_path: &Path) -> Result<Vec<RenderedImage>, PreflightError> {
    let mut walk = Walk {
        overlay: kustomization_path.to_path_buf(),
        image: String::new(),
        stack: Vec::new(),
    };
    let overlay_file = if kustomization_path.is_dir() {
        walk.kustomization_in(kustomization_path)?
    } else {
        kustomization_path.to_path_buf()
    };
    walk.overlay.clone_from(&overlay_file);
    let overlay = walk.read_kustomization(&overlay_file)?;
    let dir = overlay_file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    walk.enter(&dir);
    let found = walk.resources(&dir, &overlay)?;
    Ok(found
        .into_iter()
        .map(|f| RenderedImage {
            rendered: rewrite(&f.seen_as, &overlay.images),
            file: f.file,
            image: f.image,
        })
        .collect())
}

/// Applies entries in list order (each one an image tag transformer), chaining.
fn rewrite(value: &str, entries: &[Image]) -> String {
    let mut value = value.to_owned();
    for entry in entries {
        let entry = ImageEntry {
            name: entry.name.clone(),
            new_name: Some(entry.new_name.clone()),
            new_tag: Some(entry.new_tag.clone()),
            digest: Some(entry.digest.clone()),
            tag_suffix: Some(entry.tag_suffix.clone()),
        };
        if let Some(new) = apply_entry(&value, &entry) {
            value = new;
        }
    }
    value
}

/// What a kustomization contributes to the walk.
struct Kust {
    images: Vec<Image>,
    resources: Vec<String>,
}

struct Found {
    file: PathBuf,
    image: String,
    seen_as: String,
}

struct Walk {
    overlay: PathBuf,
    image: String,
    /// Canonical directories being walked (cycle guard).
    stack: Vec<PathBuf>,
}

impl Walk {
    fn io(&self, path: &Path, message: impl ToString) -> PreflightError {
        PreflightError::Io {
            overlay: self.overlay.clone(),
            image: self.image.clone(),
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    fn parse_error(&self, path: &Path, message: impl ToString) -> PreflightError {
        PreflightError::Parse {
            overlay: self.overlay.clone(),
            image: self.image.clone(),
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    fn enter(&mut self, dir: &Path) -> bool {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if self.stack.contains(&canonical) {
            return false;
        }
        self.stack.push(canonical);
        true
    }

    fn kustomization_in(&self, dir: &Path) -> Result<PathBuf, PreflightError> {
        KUSTOMIZATION_FILES
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                self.io(
                    dir,
                    "no kustomization.yaml, kustomization.yml or Kustomization in this directory",
                )
            })
    }

    fn read_kustomization(&self, path: &Path) -> Result<Kust, PreflightError> {
        let text = std::fs::read_to_string(path).map_err(|e| self.io(path, e))?;
        let root = read::parse_first_document(&text).map_err(|e| self.parse_error(path, e.0))?;
        let decoded = read::decode(&root).map_err(|e| self.parse_error(path, e.0))?;
        let mut resources = Vec::new();
        if let Node::Map(pairs) = &root {
            for (key, value) in pairs {
                let Node::Str { value: key, .. } = key else {
                    continue;
                };
                let listed = ["resources", "bases", "components"]
                    .iter()
                    .any(|f| key.eq_ignore_ascii_case(f));
                if let (true, Node::Seq(items)) = (listed, value) {
                    resources.extend(items.iter().filter_map(|i| match i {
                        Node::Str { value, .. } => Some(value.clone()),
                        _ => None,
                    }));
                }
            }
        }
        Ok(Kust {
            images: decoded.images,
            resources,
        })
    }

    /// The images a kustomization's resources yield, each already seen through the bases'
    /// own `images:` entries (not through this kustomization's entries).
    fn resources(&mut self, dir: &Path, kust: &Kust) -> Result<Vec<Found>, PreflightError> {
        let mut out = Vec::new();
        for resource in &kust.resources {
            let path = dir.join(resource);
            if path.is_dir() {
                if !self.enter(&path) {
                    continue;
                }
                let file = self.kustomization_in(&path)?;
                let base = self.read_kustomization(&file)?;
                let found = self.resources(&path, &base)?;
                self.stack.pop();
                out.extend(found.into_iter().map(|f| Found {
                    seen_as: rewrite(&f.seen_as, &base.images),
                    ..f
                }));
            } else if path.is_file() {
                out.extend(self.resource_file(&path)?);
            } else if is_remote(resource) {
                continue;
            } else {
                return Err(self.io(&path, "no such file or directory"));
            }
        }
        Ok(out)
    }

    fn resource_file(&self, path: &Path) -> Result<Vec<Found>, PreflightError> {
        let text = std::fs::read_to_string(path).map_err(|e| self.io(path, e))?;
        let mut images = Vec::new();
        for document in yaml_serde::Deserializer::from_str(&text) {
            let value = yaml_serde::Value::deserialize_from(document)
                .map_err(|e| self.parse_error(path, e))?;
            let is_crd = value.get("kind").and_then(yaml_serde::Value::as_str)
                == Some("CustomResourceDefinition");
            if !is_crd {
                container_images(&value, &mut images);
            }
        }
        Ok(images
            .into_iter()
            .map(|image| Found {
                file: path.to_path_buf(),
                seen_as: image.clone(),
                image,
            })
            .collect())
    }
}

trait DeserializeFrom: Sized {
    fn deserialize_from(d: yaml_serde::Deserializer<'_>) -> Result<Self, yaml_serde::Error>;
}

impl DeserializeFrom for yaml_serde::Value {
    fn deserialize_from(d: yaml_serde::Deserializer<'_>) -> Result<Self, yaml_serde::Error> {
        serde::Deserialize::deserialize(d)
    }
}

/// kustomize's LegacyFilter walk: every `containers` / `initContainers` sequence at any depth.
fn container_images(value: &yaml_serde::Value, out: &mut Vec<String>) {
    use yaml_serde::Value;
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                let is_containers = matches!(key.as_str(), Some("containers" | "initContainers"));
                if let (true, Value::Sequence(items)) = (is_containers, child) {
                    for item in items {
                        match item.get("image") {
                            Some(Value::String(s)) => out.push(s.clone()),
                            Some(Value::Number(n)) => out.push(n.to_string()),
                            Some(Value::Bool(b)) => out.push(b.to_string()),
                            _ => {}
                        }
                    }
                }
                container_images(child, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| container_images(i, out)),
        Value::Tagged(tagged) => container_images(&tagged.value, out),
        _ => {}
    }
}

/// Whether a resource entry is a remote target kustomize would fetch (git or HTTP).
fn is_remote(resource: &str) -> bool {
    resource.contains("://")
        || resource.starts_with("git@")
        || resource.starts_with("github.com/")
        || resource.starts_with("gitlab.com/")
        || resource.starts_with("bitbucket.org/")
        || resource.contains("?ref=")
        || resource.contains(".git//")
}
