//! `healthcheck`: probes the running exporter's `/-/healthy` on the local listen address, so that a
//! distroless container (no shell, no curl) can have a Docker or ECS `HEALTHCHECK`.
//!
//! It speaks the way the server was configured to: plain HTTP, or TLS when `--web.config.file` has
//! a `tls_server_config`. It checks liveness, not identity: on loopback it accepts the server's
//! certificate whatever signs it. A server that asks for credentials it cannot give is alive:
//! a `401` (basic auth; the web config holds only password hashes) or a TLS alert refusing the
//! missing client certificate (`RequireAndVerifyClientCert`) both prove the process answers.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::web::WebConfig;

/// How long the whole probe may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The address to probe for a `--web.listen-address`: `:9849` and unspecified hosts
/// (`0.0.0.0`, `[::]`) mean this host's loopback.
pub fn probe_address(listen_address: &str) -> String {
    if let Some(port) = listen_address.strip_prefix(':') {
        return format!("127.0.0.1:{port}");
    }
    if let Some(port) = listen_address.strip_prefix("0.0.0.0:") {
        return format!("127.0.0.1:{port}");
    }
    if let Some(port) = listen_address.strip_prefix("[::]:") {
        return format!("[::1]:{port}");
    }
    listen_address.to_string()
}

/// Probes `GET /-/healthy` at `address`: Ok with what answered, or why it is not healthy.
pub async fn probe(address: &str, web: &WebConfig) -> Result<String, String> {
    match tokio::time::timeout(TIMEOUT, probe_inner(address, web)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{address}: no answer within {}",
            humantime::format_duration(TIMEOUT)
        )),
    }
}

async fn probe_inner(address: &str, web: &WebConfig) -> Result<String, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("{address}: cannot connect: {e}"))?;
    match &web.tls {
        None => get_healthy(stream, address, web).await,
        Some(_) => {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS client: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCertificate))
            .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            match connector.connect(name, stream).await {
                Ok(tls) => get_healthy(tls, address, web).await,
                Err(e) if refuses_missing_client_certificate(&e) => Ok(format!(
                    "{address}: TLS server alive (it requires a client certificate)"
                )),
                Err(e) => Err(format!("{address}: TLS handshake failed: {e}")),
            }
        }
    }
}

async fn get_healthy<S>(mut stream: S, address: &str, web: &WebConfig) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request =
        format!("GET /-/healthy HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let io = |e: std::io::Error| {
        if refuses_missing_client_certificate(&e) {
            Ok(format!(
                "{address}: TLS server alive (it requires a client certificate)"
            ))
        } else {
            Err(format!("{address}: {e}"))
        }
    };
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return io(e);
    }
    let mut head = Vec::new();
    let mut buffer = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
            Err(e) => return io(e),
        }
        if head.len() > 16 * 1024 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{address}: not an HTTP answer"))?;
    match status {
        200 => Ok(format!("{address}: healthy")),
        401 if web.requires_auth() => Ok(format!(
            "{address}: alive (answers 401: basic auth is configured)"
        )),
        429 if web.rate_limit.is_some() => Ok(format!(
            "{address}: alive (answers 429: rate_limit is configured)"
        )),
        other => Err(format!("{address}: /-/healthy answered {other}")),
    }
}

/// Whether the server ended the handshake because we sent no client certificate.
fn refuses_missing_client_certificate(error: &std::io::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = error
        .get_ref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(e) = next {
        if let Some(rustls::Error::AlertReceived(alert)) = e.downcast_ref::<rustls::Error>() {
            return matches!(
                alert,
                rustls::AlertDescription::CertificateRequired
                    | rustls::AlertDescription::HandshakeFailure
                    | rustls::AlertDescription::BadCertificate
            );
        }
        next = e.source();
    }
    false
}

/// Accepts any server certificate: the probe checks that the local server answers, not who it
/// is. Signatures are still checked, so the handshake is a real one.
#[derive(Debug)]
struct AnyServerCertificate;

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        assert_eq!(probe_address(":9849"), "127.0.0.1:9849");
        assert_eq!(probe_address("0.0.0.0:9849"), "127.0.0.1:9849");
        assert_eq!(probe_address("[::]:9849"), "[::1]:9849");
        assert_eq!(probe_address("10.0.0.5:9849"), "10.0.0.5:9849");
    }
}
