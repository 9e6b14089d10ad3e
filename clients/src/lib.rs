//! The HTTPS clients every binary uses, built in one place: rustls with the *ring* crypto
//! provider, for the AWS SDK ([`aws`]) and for reqwest ([`http`]).
//!
//! Why one place: the SDK's `default-https-client` and reqwest's `rustls` feature each bring
//! aws-lc, a C library that made the zipped arm64 `api` package 145 KB larger than ring does (see
//! `docs/measurements.md`). Without those features nothing chooses a TLS provider by itself: an
//! SDK configuration without an HTTP client fails its first call, and a reqwest client built
//! without a process-wide provider panics. So every binary builds its clients here, and
//! `clippy.toml` forbids the direct constructors (`aws_config::load_from_env`,
//! `aws_config::defaults`, `reqwest::Client::new`, `reqwest::Client::builder`) everywhere else.
//!
//! The root certificates of both are the platform's, read from one bundle file ([`roots`]): not a
//! directory of a few hundred files, on the path every cold start and every task start waits for.
//! Files put in `/etc/ssl/certs` by hand, not through `update-ca-certificates`, are not in the
//! bundle and so not trusted; `SSL_CERT_FILE` or `SSL_CERT_DIR` brings back the platform's loader,
//! which reads what they name.

#[cfg(any(feature = "aws", feature = "http"))]
pub mod roots {
    //! The root certificates both clients trust: the platform's CA bundle, read as one file.

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    /// The platforms' CA bundles, in the order Go's `crypto/x509` tries them: Debian, Ubuntu and
    /// Alpine; then Fedora, RHEL and Amazon Linux 2023 (Lambda's `provided.al2023`).
    pub const BUNDLES: [&str; 2] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ];

    /// Whether `SSL_CERT_FILE` or `SSL_CERT_DIR` names the roots: then the platform's loader
    /// (`rustls-native-certs`), which honours them, is used.
    pub fn platform_chosen() -> bool {
        super::env_set("SSL_CERT_FILE") || super::env_set("SSL_CERT_DIR")
    }

    /// The certificates of the first of [`BUNDLES`] that holds one rustls accepts as a root,
    /// those only (a bundle may carry others, and comments); `None` when
    /// [`platform_chosen`] or there is no such bundle.
    pub fn bundle() -> Option<Vec<CertificateDer<'static>>> {
        if platform_chosen() {
            return None;
        }
        BUNDLES
            .iter()
            .find_map(|path| usable(&std::fs::read(path).ok()?))
    }

    /// The certificates of `pem` that rustls accepts as roots, in order; `None` if there is none.
    pub fn usable(pem: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
        let mut store = rustls::RootCertStore::empty();
        let kept: Vec<_> = CertificateDer::pem_slice_iter(pem)
            .filter_map(Result::ok)
            .filter(|der| store.add(der.clone()).is_ok())
            .collect();
        (!kept.is_empty()).then_some(kept)
    }
}

/// Whether the environment variable `name` is set and not empty.
#[cfg(any(feature = "aws", feature = "http"))]
fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

#[cfg(feature = "aws")]
pub mod aws {
    //! The AWS SDK's configuration: the default chain (environment, profile, ECS or Lambda
    //! credentials, `AWS_ENDPOINT_URL`) over one rustls + ring HTTPS client.

    use super::roots;
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    use base64::Engine;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    /// The loader with the HTTP client set; add what a test or tool needs (endpoint, region,
    /// credentials), then `.load()`.
    #[allow(clippy::disallowed_methods)] // the one allowed use
    pub fn loader() -> ConfigLoader {
        let builder = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
        let http = match TlsContext::builder()
            .with_trust_store(trust_store())
            .build()
        {
            Ok(context) => builder.tls_context(context).build_https(),
            // Not reached (the builder only fails on a server name, and none is set); the
            // default context is the platform's roots all the same.
            Err(_) => builder.build_https(),
        };
        aws_config::defaults(BehaviorVersion::latest()).http_client(http)
    }

    /// The roots the SDK trusts. With `SSL_CERT_FILE` or `SSL_CERT_DIR` set, the platform's
    /// loader (`rustls-native-certs`), which honours them. Otherwise the first of
    /// [`roots::BUNDLES`] that holds a usable certificate: the same certificates the platform's
    /// loader finds, which on Debian also reads every file of `/etc/ssl/certs` one by one (about
    /// 2.5 ms of a 10 ms cold start here) and on Amazon Linux reads the bundle twice. No bundle:
    /// the platform's loader.
    pub fn trust_store() -> TrustStore {
        if roots::platform_chosen() {
            return TrustStore::default();
        }
        roots::BUNDLES
            .iter()
            .find_map(|path| usable_pem(&std::fs::read(path).ok()?))
            .map_or_else(TrustStore::default, |pem| {
                TrustStore::empty()
                    .with_native_roots(false)
                    .with_pem_certificate(pem)
            })
    }

    /// The certificates of `pem` that rustls accepts as roots, as PEM: `pem` itself when every
    /// certificate in it is one (the usual case), else those rebuilt as PEM; `None` if there is
    /// none. The SDK's client expects every certificate it is given to parse (it panics
    /// otherwise), so a bundle is filtered here the way the platform's loader filters it.
    pub fn usable_pem(pem: &[u8]) -> Option<Vec<u8>> {
        let kept = roots::usable(pem)?;
        if kept.len() == CertificateDer::pem_slice_iter(pem).count() {
            return Some(pem.to_vec());
        }
        let mut out = String::new();
        for der in kept {
            let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            out.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in body.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(line).unwrap_or_default());
                out.push('\n');
            }
            out.push_str("-----END CERTIFICATE-----\n");
        }
        Some(out.into_bytes())
    }

    /// What `aws_config::load_from_env()` gives, over this crate's HTTPS client. On Lambda
    /// (`AWS_LAMBDA_FUNCTION_NAME` and `AWS_ACCESS_KEY_ID` set) the credentials and the region
    /// are the ones the runtime puts in the environment, read from there directly: building the
    /// default chains (profile files, web identity, ECS, IMDS) took about 1 ms of a 10 ms cold
    /// start, for providers Lambda never uses.
    pub async fn config() -> SdkConfig {
        let mut loader = loader();
        if super::env_set("AWS_LAMBDA_FUNCTION_NAME") && super::env_set("AWS_ACCESS_KEY_ID") {
            loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
            if let Some(region) = std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()) {
                loader = loader.region(Region::new(region));
            }
        }
        loader.load().await
    }
}

#[cfg(feature = "http")]
pub mod http {
    //! reqwest clients on rustls with ring.

    use std::sync::{Once, OnceLock};

    use super::roots;

    /// `reqwest::Client::builder()`, after making ring the process's rustls provider (once; if
    /// something installed another first, reqwest uses that one), trusting [`roots::bundle`]'s
    /// certificates when there is a bundle: without them reqwest's platform verifier reads the
    /// bundle and then every file of `/etc/ssl/certs` one by one (on Debian), for each client it
    /// builds. With `SSL_CERT_FILE` or `SSL_CERT_DIR` set, or no bundle, the platform verifier.
    #[allow(clippy::disallowed_methods)] // the one allowed use
    pub fn builder() -> reqwest::ClientBuilder {
        static PROVIDER: Once = Once::new();
        PROVIDER.call_once(|| {
            // `Err` only if a provider is already installed: then that one is used.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        // Read once per process: a task builds a client for GitHub, Port and Slack each.
        static ROOTS: OnceLock<Option<Vec<reqwest::Certificate>>> = OnceLock::new();
        let roots = ROOTS.get_or_init(|| {
            let ders = roots::bundle()?;
            ders.iter()
                .map(|der| reqwest::Certificate::from_der(der.as_ref()))
                .collect::<Result<Vec<_>, _>>()
                .ok()
        });
        match roots {
            Some(certs) => reqwest::Client::builder().tls_certs_only(certs.iter().cloned()),
            None => reqwest::Client::builder(),
        }
    }

    /// A client with reqwest's defaults (what `reqwest::Client::new()` gives, without its panic
    /// when the TLS backend cannot start).
    pub fn client() -> reqwest::Result<reqwest::Client> {
        builder().build()
    }
}
