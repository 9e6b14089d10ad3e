//! How one fuzz input (a byte string) is cut into the arguments of the function under test.
//!
//! One convention for every target, shared by the fuzz targets and the replay test
//! (`functions/tests/fuzz_replay.rs` includes this file): parts are separated by NUL bytes, and
//! text is decoded lossily, so every byte string is a valid input. JSON fixtures contain no NUL, so
//! a fixture file is a valid seed as it is (one part).

/// The NUL-separated parts of `data` (at least one, possibly empty).
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == 0).collect()
}

/// `data` up to the first NUL, and everything after it (empty when there is no NUL).
pub fn split_first(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Lossy UTF-8 text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `set_image` input: the kustomization text, then each argument, NUL-separated.
pub fn set_image_input(data: &[u8]) -> (String, Vec<String>) {
    let mut it = parts(data).into_iter();
    let yaml = text(it.next().unwrap_or_default());
    (yaml, it.map(text).collect())
}

/// Signature-header input: the header value, the secret, then the body (which may contain NULs).
pub fn signature_input(data: &[u8]) -> (String, &[u8], &[u8]) {
    let (header, rest) = split_first(data);
    let (secret, body) = split_first(rest);
    (text(header), secret, body)
}
