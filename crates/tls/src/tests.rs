//! Handshakes over in-memory pipes between the server and client sides of this crate, with
//! certificates from a throwaway CA.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Trust, Verify, describe};
use crate::server::{HostnameCertificate, ServerTls};
use crate::testca::{Issued, TestCa};

struct Outcome {
    /// What the server said after the handshake, or the client's error.
    result: Result<String, String>,
    server_cert: Option<Vec<u8>>,
    http2: bool,
    client_certs: usize,
}

/// One handshake: the client asks for `sni`, offers `alpn`, maybe presents `client_cert`.
async fn handshake(
    server: &Arc<ServerTls>,
    trust: &Trust,
    verify: Verify,
    sni: &str,
    alpn: &[&[u8]],
    client_cert: Option<&Issued>,
) -> Outcome {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let srv = server.clone();
    let served = tokio::spawn(async move {
        let mut accepted = srv.accept(b).await.ok()?;
        accepted.stream.write_all(b"hello").await.ok()?;
        accepted.stream.flush().await.ok()?;
        let certs = accepted.client_certificates.as_ref().map_or(0, |c| c.len());
        Some((accepted.http2, certs))
    });
    let identity = client_cert.map(|c| {
        crate::client::ClientIdentity::from_pem(
            &std::fs::read(&c.cert).unwrap(),
            &std::fs::read(&c.key).unwrap(),
            "client",
        )
        .unwrap()
    });
    let config = trust
        .client_config_with(alpn, verify, identity.as_ref())
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let result = match connector.connect(name, a).await {
        Ok(mut stream) => {
            let server_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            let mut got = vec![0u8; 5];
            let read = stream.read_exact(&mut got).await;
            let (http2, client_certs) = served.await.unwrap().unwrap_or((false, 0));
            return Outcome {
                result: read
                    .map(|_| String::from_utf8_lossy(&got).into_owned())
                    .map_err(|e| e.to_string()),
                server_cert,
                http2,
                client_certs,
            };
        }
        Err(e) => Err(e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map_or_else(|| e.to_string(), describe)),
    };
    served.abort();
    Outcome {
        result,
        server_cert: None,
        http2: false,
        client_certs: 0,
    }
}

fn der(issued: &Issued) -> Vec<u8> {
    crate::pem::certificates(&std::fs::read(&issued.cert).unwrap(), "x").unwrap()[0]
        .as_ref()
        .to_vec()
}

fn hostname(issued: &Issued, name: &str, client: bool) -> HostnameCertificate {
    HostnameCertificate {
        hostname: name.to_owned(),
        key: crate::pem::certified_key_from_files(&issued.cert, &issued.key).unwrap(),
        negotiate_client_certificate: client,
        http2: true,
    }
}

#[tokio::test]
async fn serves_the_default_certificate_with_alpn() {
    let ca = TestCa::new("default");
    let leaf = ca.leaf("localhost", &["localhost", "127.0.0.1"]);
    let server = ServerTls::from_files(&leaf.cert, &leaf.key, true).unwrap();
    let trust = Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap();
    let h2 = handshake(
        &server,
        &trust,
        Verify::default(),
        "localhost",
        &[b"h2", b"http/1.1"],
        None,
    )
    .await;
    assert_eq!(h2.result.as_deref(), Ok("hello"));
    assert!(h2.http2);
    assert_eq!(h2.server_cert.unwrap(), der(&leaf));
    let h1 = handshake(
        &server,
        &trust,
        Verify::default(),
        "127.0.0.1",
        &[b"http/1.1"],
        None,
    )
    .await;
    assert_eq!(h1.result.as_deref(), Ok("hello"));
    assert!(!h1.http2);
    // No ALPN at all is HTTP/1.1 too.
    let none = handshake(&server, &trust, Verify::default(), "localhost", &[], None).await;
    assert!(!none.http2 && none.result.is_ok());
    // A client that offers only HTTP/1.0 is served, not refused.
    let h10 = handshake(
        &server,
        &trust,
        Verify::default(),
        "localhost",
        &[b"http/1.0"],
        None,
    )
    .await;
    assert!(!h10.http2 && h10.result.is_ok(), "{:?}", h10.result);
}

#[tokio::test]
async fn sni_picks_among_hostnames() {
    let ca = TestCa::new("sni");
    let default = ca.leaf("default", &["localhost"]);
    let a = ca.leaf("a", &["a.example.test"]);
    let b = ca.leaf("b", &["b.example.test"]);
    let w = ca.leaf("w", &["*.wild.test"]);
    let server = ServerTls::from_files(&default.cert, &default.key, true).unwrap();
    server
        .set_hostnames(vec![
            hostname(&a, "a.example.test", false),
            hostname(&b, "B.Example.Test", false),
            hostname(&w, "*.wild.test", false),
        ])
        .unwrap();
    let trust = Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap();
    for (sni, want) in [
        ("a.example.test", &a),
        ("b.example.test", &b),
        ("x.wild.test", &w),
        ("localhost", &default),
    ] {
        let o = handshake(&server, &trust, Verify::default(), sni, &[], None).await;
        assert_eq!(o.result.as_deref(), Ok("hello"), "{sni}");
        assert_eq!(o.server_cert.unwrap(), der(want), "{sni}");
    }
    // A wildcard covers one label only: the default answers, and its name does not match.
    let deep = handshake(
        &server,
        &trust,
        Verify::default(),
        "x.y.wild.test",
        &[],
        None,
    )
    .await;
    let err = deep.result.unwrap_err();
    assert!(err.contains("does not name the host"), "{err}");
    assert_eq!(
        server
            .certificate_for(Some("A.EXAMPLE.TEST"))
            .unwrap()
            .as_ref(),
        der(&a).as_slice()
    );
}

#[tokio::test]
async fn without_a_default_unknown_names_are_refused() {
    let ca = TestCa::new("nodefault");
    let a = ca.leaf("a", &["a.example.test"]);
    let server = ServerTls::without_default(true).unwrap();
    server
        .set_hostnames(vec![hostname(&a, "a.example.test", false)])
        .unwrap();
    let trust = Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap();
    let other = handshake(&server, &trust, Verify::default(), "other.test", &[], None).await;
    assert!(other.result.is_err());
    let ok = handshake(
        &server,
        &trust,
        Verify::default(),
        "a.example.test",
        &[],
        None,
    )
    .await;
    assert!(ok.result.is_ok());
}

#[tokio::test]
async fn reload_swaps_the_certificate_and_keeps_the_old_one_on_errors() {
    let ca = TestCa::new("reload");
    let first = ca.leaf("first", &["localhost"]);
    let second = ca.leaf("second", &["localhost"]);
    let dir = ca.dir.join("live");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let server = ServerTls::from_files(&cert, &key, true).unwrap();
    assert!(!server.reload().unwrap(), "nothing changed yet");
    std::fs::copy(&second.cert, &cert).unwrap();
    // Half-written: the new certificate with the old key is refused, the old pair stays.
    let err = server.reload().unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
    assert_eq!(
        server.certificate_for(None).unwrap().as_ref(),
        der(&first).as_slice()
    );
    std::fs::copy(&second.key, &key).unwrap();
    assert!(server.reload().unwrap());
    assert_eq!(
        server.certificate_for(None).unwrap().as_ref(),
        der(&second).as_slice()
    );
    let trust = Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap();
    let o = handshake(&server, &trust, Verify::default(), "localhost", &[], None).await;
    assert_eq!(o.server_cert.unwrap(), der(&second));
}

#[tokio::test]
async fn client_certificates_are_asked_for_only_where_configured() {
    let ca = TestCa::new("mtls");
    let plain = ca.leaf("plain", &["plain.test"]);
    let mtls = ca.leaf("mtls", &["mtls.test"]);
    let client = ca.client("client", "caller-1");
    let server = ServerTls::without_default(true).unwrap();
    server
        .set_hostnames(vec![
            hostname(&plain, "plain.test", false),
            hostname(&mtls, "mtls.test", true),
        ])
        .unwrap();
    let trust = Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap();
    let asked = handshake(
        &server,
        &trust,
        Verify::default(),
        "mtls.test",
        &[],
        Some(&client),
    )
    .await;
    assert_eq!(asked.result.as_deref(), Ok("hello"));
    assert_eq!(asked.client_certs, 1);
    let not_asked = handshake(
        &server,
        &trust,
        Verify::default(),
        "plain.test",
        &[],
        Some(&client),
    )
    .await;
    assert_eq!(not_asked.result.as_deref(), Ok("hello"));
    assert_eq!(not_asked.client_certs, 0);
    // Optional: a client without one still gets through; policies decide.
    let none = handshake(&server, &trust, Verify::default(), "mtls.test", &[], None).await;
    assert_eq!(none.result.as_deref(), Ok("hello"));
    assert_eq!(none.client_certs, 0);
}

#[tokio::test]
async fn clients_refuse_untrusted_and_misnamed_certificates_unless_relaxed() {
    let ca = TestCa::new("client");
    let other = TestCa::new("client-other");
    let leaf = ca.leaf("leaf", &["right.test"]);
    let server = ServerTls::from_files(&leaf.cert, &leaf.key, false).unwrap();
    let trusted = Trust::only(&std::fs::read(&ca.cert).unwrap(), "ca").unwrap();
    let untrusted = Trust::only(&std::fs::read(&other.cert).unwrap(), "other").unwrap();

    let e = handshake(
        &server,
        &untrusted,
        Verify::default(),
        "right.test",
        &[],
        None,
    )
    .await;
    assert!(e.result.unwrap_err().contains("issuer is not trusted"));
    let e = handshake(
        &server,
        &trusted,
        Verify::default(),
        "wrong.test",
        &[],
        None,
    )
    .await;
    assert!(e.result.unwrap_err().contains("does not name"));

    let no_name = Verify {
        chain: true,
        name: false,
    };
    assert!(
        handshake(&server, &trusted, no_name, "wrong.test", &[], None)
            .await
            .result
            .is_ok()
    );
    // Relaxing the name does not relax the chain.
    assert!(
        handshake(&server, &untrusted, no_name, "wrong.test", &[], None)
            .await
            .result
            .is_err()
    );
    let no_chain = Verify {
        chain: false,
        name: true,
    };
    assert!(
        handshake(&server, &untrusted, no_chain, "right.test", &[], None)
            .await
            .result
            .is_ok()
    );
    assert!(
        handshake(&server, &untrusted, no_chain, "wrong.test", &[], None)
            .await
            .result
            .is_err()
    );
    let neither = Verify {
        chain: false,
        name: false,
    };
    assert!(
        handshake(&server, &untrusted, neither, "wrong.test", &[], None)
            .await
            .result
            .is_ok()
    );

    // Extending a trust keeps what it had.
    let both = untrusted
        .with_pem(&std::fs::read(&ca.cert).unwrap(), "ca")
        .unwrap();
    assert_eq!(both.len(), 2);
    assert!(
        handshake(&server, &both, Verify::default(), "right.test", &[], None)
            .await
            .result
            .is_ok()
    );
}
