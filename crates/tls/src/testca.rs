//! A throwaway certificate authority for tests, made with the `openssl` command (Debian's
//! `openssl` package): a CA, server certificates for given names, and client certificates.
//! Only built for tests (`test-util`): it panics on failure, as test helpers do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA in a temporary directory.
#[derive(Debug, Clone)]
pub struct TestCa {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what a client trusts.
    pub cert: PathBuf,
}

/// A certificate issued by a [`TestCa`], with its key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (apt-get install openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new CA named after `tag`.
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("gh-ca-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let subject = format!("/CN=Gatehouse Test CA {tag}");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Self {
            cert: dir.join("ca.pem"),
            dir,
        }
    }

    /// A server certificate for `names` (DNS names, or IP addresses such as 127.0.0.1).
    pub fn leaf(&self, file: &str, names: &[&str]) -> Issued {
        let sans: Vec<String> = names
            .iter()
            .map(|n| {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    format!("IP:{n}")
                } else {
                    format!("DNS:{n}")
                }
            })
            .collect();
        let ext = format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
            sans.join(",")
        );
        self.issue(file, names.first().copied().unwrap_or(file), &ext, 30)
    }

    /// A client certificate with subject CN `name`.
    pub fn client(&self, file: &str, name: &str) -> Issued {
        let ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n";
        self.issue(file, name, ext, 30)
    }

    fn issue(&self, file: &str, cn: &str, ext: &str, days: u32) -> Issued {
        let key = format!("{file}.key");
        let csr = format!("{file}.csr");
        let cert = format!("{file}.pem");
        let extfile = format!("{file}.ext");
        std::fs::write(self.dir.join(&extfile), ext).unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={cn}/O=Gatehouse Tests"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                &days.to_string(),
                "-extfile",
                &extfile,
            ],
        );
        Issued {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }
}
