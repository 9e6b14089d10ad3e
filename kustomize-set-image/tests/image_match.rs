//! kustomize's image matching, splitting and rewriting, driven by kustomize's own test cases
//! (`kustomize-image-match.json`: `image_test.go`, `imagetag_test.go`, `legacy_test.go`,
//! `ImageTagTransformer_test.go`, `krusty` build tests) and the derived edge cases
//! (`kustomize-image-match-derived.json`).
//!
//! A `transform` case gives the entries, the input image, where it sits (`field_path`) and which
//! filters ran (`layer`). How often each entry is applied to that one value follows kustomize's
//! pipeline (`api/internal/target/kusttarget_configplugin.go`, `api/filters/imagetag`), modelled in [`applications`]: the Filter layer or the
//! LegacyFilter layer alone apply each entry once; the plugin and a build run LegacyFilter (any
//! `containers`/`initContainers` sequence) and then Filter (the default image fieldspecs), so an
//! image both reach gets each entry twice (visible only with `tagSuffix`);
//! CustomResourceDefinitions are skipped. The value itself is computed by the library's
//! [`apply_entry`].
//!
//! Skipped, with the reason, and counted: `transform_no_image` cases assert how kustomize
//! re-serializes a resource with `containers:` null (as `containers: []`); there is no image
//! value to match or rewrite, so they are outside what this library does.

use std::path::PathBuf;

use kustomize_set_image::args::split;
use kustomize_set_image::{ImageEntry, apply_entry, image_matches};
use serde_json::Value as Json;

fn fixture(name: &str) -> Vec<Json> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/kustomize")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Json::Array(cases)) => cases,
        other => panic!("{} is not a JSON array: {other:?}", path.display()),
    }
}

fn str_field<'a>(case: &'a Json, key: &str) -> Result<&'a str, String> {
    case.get(key)
        .and_then(Json::as_str)
        .ok_or_else(|| format!("case has no string {key:?}"))
}

fn entries(v: &Json) -> Result<Vec<ImageEntry>, String> {
    let list = v.as_array().ok_or("images is not an array")?;
    list.iter()
        .map(|e| {
            let field = |k: &str| e.get(k).and_then(Json::as_str).map(str::to_owned);
            Ok(ImageEntry {
                name: field("name").ok_or("entry without name")?,
                new_name: field("newName"),
                new_tag: field("newTag"),
                digest: field("digest"),
                tag_suffix: field("tagSuffix"),
            })
        })
        .collect()
}

/// kustomize's default image fieldspecs (`builtinpluginconsts/images.go`), `[]` dropped.
const DEFAULT_FIELDSPECS: [&str; 6] = [
    "spec/containers/image",
    "spec/initContainers/image",
    "spec/volumes/image/reference",
    "spec/template/spec/containers/image",
    "spec/template/spec/initContainers/image",
    "spec/template/spec/volumes/image/reference",
];

/// How many times each entry is applied to the value (see the module docs).
fn applications(case: &Json) -> Result<usize, String> {
    let kind = case
        .get("resource_kind")
        .and_then(Json::as_str)
        .unwrap_or("");
    if kind == "CustomResourceDefinition" {
        return Ok(0);
    }
    let layer = str_field(case, "layer")?;
    let raw_path = case.get("field_path").and_then(Json::as_str).unwrap_or("");
    // "Deployment deploy1: spec/x[]/image (note)" -> "spec/x/image"
    let path = raw_path.rsplit(": ").next().unwrap_or(raw_path);
    let path = path.split(' ').next().unwrap_or(path).replace("[]", "");
    let legacy = usize::from(
        path.split('/')
            .any(|segment| segment == "containers" || segment == "initContainers"),
    );
    let no_fieldspecs = case
        .get("note")
        .and_then(Json::as_str)
        .is_some_and(|n| n.contains("No fieldSpecs configured"));
    let filter = usize::from(
        !no_fieldspecs
            && (DEFAULT_FIELDSPECS.contains(&path.as_str())
                || raw_path.contains("custom fieldspec")),
    );
    if layer.starts_with("Filter")
        || layer.starts_with("LegacyFilter")
        || layer.starts_with("single application")
    {
        Ok(1)
    } else if layer.starts_with("kustomize build on spec/containers") {
        Ok(2)
    } else if layer.starts_with("ImageTagTransformer plugin")
        || layer.starts_with("kustomize build")
    {
        Ok(legacy + filter)
    } else {
        Err(format!("unknown layer {layer:?}"))
    }
}

fn transform(value: &str, entries: &[ImageEntry], times: usize) -> String {
    let mut value = value.to_owned();
    for entry in entries {
        for _ in 0..times {
            if let Some(new) = apply_entry(&value, entry) {
                value = new;
            }
        }
    }
    value
}

/// Runs one case; `Ok(false)` means skipped with a documented reason.
fn run_case(case: &Json) -> Result<bool, String> {
    let kind = str_field(case, "kind")?;
    match kind {
        "is_image_matched" => {
            let value = str_field(case, "input_image")?;
            let name = str_field(case, "images_entry_name")?;
            let expected = case["expect_match"].as_bool().ok_or("no expect_match")?;
            let got = image_matches(value, name);
            if got != expected {
                return Err(format!("image_matches({value:?}, {name:?}) = {got}"));
            }
        }
        "split" => {
            let value = str_field(case, "input_image")?;
            let expected = (
                str_field(case, "expect_name")?,
                str_field(case, "expect_tag")?,
                str_field(case, "expect_digest")?,
            );
            let got = split(value);
            if got != expected {
                return Err(format!("split({value:?}) = {got:?}, expected {expected:?}"));
            }
        }
        "transform" => {
            let input = case
                .get("input_image_resolved")
                .and_then(Json::as_str)
                .map_or_else(|| str_field(case, "input_image"), Ok)?;
            let expected = str_field(case, "expect_image")?;
            let got = transform(input, &entries(&case["images"])?, applications(case)?);
            if got != expected {
                return Err(format!("{input:?} became {got:?}, expected {expected:?}"));
            }
            if let Some(changed) = case.get("expect_changed").and_then(Json::as_bool)
                && (got != input) != changed
            {
                return Err(format!("changed = {}, expected {changed}", got != input));
            }
        }
        "transform_layers" => {
            // Base first, then the overlay: each layer is a kustomize build of its own entries.
            let mut value = str_field(case, "input_image")?.to_owned();
            let layers = case["images_layers"].as_array().ok_or("no images_layers")?;
            let times = applications(case)?;
            for layer in layers {
                value = transform(&value, &entries(layer)?, times);
            }
            let expected = str_field(case, "expect_image")?;
            if value != expected {
                return Err(format!("got {value:?}, expected {expected:?}"));
            }
        }
        "transform_no_image" => return Ok(false),
        other => return Err(format!("unknown case kind {other:?}")),
    }
    Ok(true)
}

/// Runs every case of `name`. `ran` is how many cases of each kind must have run and `skipped`
/// which cases must have been skipped, both counted from the fixture by hand.
fn run_file(name: &str, expected_ran: &[(&str, usize)], expected_skipped: &[&str]) {
    let cases = fixture(name);
    let mut ran = std::collections::BTreeMap::<String, usize>::new();
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        let label = case["name"].as_str().unwrap_or("<unnamed>");
        let kind = case["kind"].as_str().unwrap_or("<no kind>").to_owned();
        match run_case(case) {
            Ok(true) => *ran.entry(kind).or_default() += 1,
            Ok(false) => skipped.push(label.to_owned()),
            Err(why) => {
                *ran.entry(kind).or_default() += 1;
                failures.push(format!("- {label}: {why}"));
            }
        }
    }
    println!(
        "{name}: ran {ran:?}, {} failed; skipped (transform_no_image, no image value): {skipped:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases of {name} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let expected_ran: std::collections::BTreeMap<String, usize> = expected_ran
        .iter()
        .map(|(k, n)| ((*k).to_owned(), *n))
        .collect();
    assert_eq!(ran, expected_ran, "{name}: the cases that ran, by kind");
    assert_eq!(skipped, expected_skipped, "{name}: the cases skipped");
}

#[test]
fn kustomize_image_match_cases() {
    run_file(
        "kustomize-image-match.json",
        &[
            ("is_image_matched", 10),
            ("split", 7),
            ("transform", 150),
            ("transform_layers", 1),
        ],
        &["emptyContainers", "TestImageTagTransformerEmptyContainers"],
    );
}

#[test]
fn kustomize_image_match_derived_cases() {
    run_file(
        "kustomize-image-match-derived.json",
        &[("is_image_matched", 1), ("transform", 21)],
        &[],
    );
}
