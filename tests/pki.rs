//! Test certificates (rcgen): a CA, the server and client certificates it issues, and lapin
//! connections over TLS that present them.

use std::path::PathBuf;
use std::time::Duration;

use lapin::tcp::OwnedTLSConfig;
use lapin::{Connection, ConnectionProperties};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A CA, and server certificates it issues for 127.0.0.1 and localhost, as PEM files.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "pulsar-gateway test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
            ca_key,
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a certificate for `names` into `<stem>.pem` and `<stem>.key`.
    pub fn issue(&self, stem: &str, names: &[&str]) {
        self.issue_for(stem, names, None);
    }

    /// A client certificate whose subject common name is `common_name`.
    pub fn issue_client(&self, stem: &str, common_name: &str) {
        self.issue_for(stem, &[], Some(common_name));
    }

    fn issue_for(&self, stem: &str, names: &[&str], common_name: Option<&str>) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(self.path(&format!("{stem}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{stem}.key")), key.serialize_pem()).unwrap();
    }
}

/// An AMQP connection over TLS to `uri` (lapin), trusting `ca_pem` and presenting the client
/// certificate `<stem>.pem`/`<stem>.key` of `pki` when given.
pub async fn amqps(
    uri: &str,
    ca_pem: Option<String>,
    client: Option<(&Pki, &str)>,
) -> lapin::Result<Connection> {
    let identity = client.map(|(pki, stem)| lapin::tcp::OwnedIdentity::PKCS8 {
        pem: std::fs::read(pki.path(&format!("{stem}.pem"))).unwrap(),
        key: std::fs::read(pki.path(&format!("{stem}.key"))).unwrap(),
    });
    let tls = OwnedTLSConfig {
        identity,
        cert_chain: ca_pem,
    };
    tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect_with_config(
            uri,
            ConnectionProperties::default(),
            tls,
            lapin::runtime::default_runtime()?,
        ),
    )
    .await
    .expect("an answer within 10 s")
}
