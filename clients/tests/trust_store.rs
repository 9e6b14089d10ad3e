//! The SDK's roots: a bundle is filtered to what rustls accepts, and what comes out is PEM the
//! SDK's client parses whole (it panics on a certificate it cannot parse).

use orchestrator_clients::aws::usable_pem;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// ISRG Root X1 (Let's Encrypt's root), from Debian's `ca-certificates`: public data.
const ROOT: &str = include_str!("fixtures/isrg-root-x1.pem");

fn ders(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM the SDK's client can parse")
}

#[test]
fn a_bundle_keeps_its_roots_and_drops_what_rustls_refuses() {
    // A certificate rustls cannot read as a root (its DER is truncated), a private key and
    // text between the sections, as real bundles carry comments.
    let original = ders(ROOT.as_bytes()).remove(0);
    let truncated = base64_pem(&original.as_ref()[..200]);
    let bundle = format!(
        "# a comment\n{ROOT}\n{truncated}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{ROOT}"
    );
    let kept = usable_pem(bundle.as_bytes()).expect("two usable roots");
    let kept = ders(&kept);
    assert_eq!(kept.len(), 2, "the root twice, nothing else");
    assert!(kept.iter().all(|d| d.as_ref() == original.as_ref()));
    let mut store = rustls::RootCertStore::empty();
    for der in kept {
        store
            .add(der)
            .expect("every kept certificate is a root rustls accepts");
    }
}

#[test]
fn a_bundle_of_roots_only_is_passed_on_as_it_is() {
    let bundle = format!("# a comment\n{ROOT}{ROOT}");
    assert_eq!(usable_pem(bundle.as_bytes()), Some(bundle.into_bytes()));
}

#[test]
fn nothing_usable_is_none() {
    assert_eq!(usable_pem(b""), None);
    assert_eq!(usable_pem(b"not a bundle"), None);
    let original = ders(ROOT.as_bytes()).remove(0);
    assert_eq!(
        usable_pem(base64_pem(&original.as_ref()[..200]).as_bytes()),
        None
    );
}

fn base64_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
}
