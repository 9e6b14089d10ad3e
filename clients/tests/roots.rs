//! The roots a client trusts without `SSL_CERT_FILE` or `SSL_CERT_DIR`: the platform's bundle,
//! read as one file, against what the platform's loader (`rustls-native-certs`) finds reading
//! the bundle and then every file of `/etc/ssl/certs`.

use std::collections::BTreeSet;
use std::path::Path;

use orchestrator_clients::roots;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Where `update-ca-certificates` takes the certificates it puts in the bundle from.
const MANAGED: [&str; 2] = [
    "/usr/share/ca-certificates/",
    "/usr/local/share/ca-certificates/",
];

/// The roots of `ders` rustls accepts, as bytes.
fn accepted(ders: impl IntoIterator<Item = CertificateDer<'static>>) -> BTreeSet<Vec<u8>> {
    let mut store = rustls::RootCertStore::empty();
    ders.into_iter()
        .filter(|d| store.add(d.clone()).is_ok())
        .map(|d| d.to_vec())
        .collect()
}

#[test]
fn the_bundle_holds_what_the_platform_loader_finds_but_files_put_in_the_directory_by_hand() {
    let path = roots::BUNDLES
        .iter()
        .find(|p| Path::new(p).exists())
        .expect("a CA bundle: the project's setup installs Debian's ca-certificates");
    let ours = accepted(roots::usable(&std::fs::read(path).unwrap()).expect("usable roots"));
    let theirs = accepted(rustls_native_certs::load_native_certs().certs);
    // Certificates in files of the directory that `update-ca-certificates` does not manage (on
    // Debian the `ssl-cert` package's self-signed `ssl-cert-snakeoil.pem`): the platform's
    // loader trusts them, the bundle does not hold them.
    let by_hand: BTreeSet<Vec<u8>> = std::fs::read_dir("/etc/ssl/certs")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::canonicalize(e.path()).ok())
                .filter(|p| p.is_file() && !MANAGED.iter().any(|m| p.starts_with(m)))
                .filter(|p| !roots::BUNDLES.iter().any(|b| p == Path::new(b)))
                .filter_map(|p| std::fs::read(p).ok())
                .flat_map(|pem| {
                    CertificateDer::pem_slice_iter(&pem)
                        .filter_map(Result::ok)
                        .map(|d| d.to_vec())
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(ours.len() > 50, "{} roots in {path}", ours.len());
    assert!(
        ours.is_subset(&theirs),
        "{} roots of the bundle the platform's loader does not find",
        ours.difference(&theirs).count()
    );
    let only_theirs: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        only_theirs.iter().all(|d| by_hand.contains(*d)),
        "{} roots the platform's loader finds are neither in the bundle nor in a file put in \
         /etc/ssl/certs by hand",
        only_theirs
            .iter()
            .filter(|d| !by_hand.contains(**d))
            .count()
    );
}
