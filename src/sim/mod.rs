//! The SOMA simulator: a fleet of simulated DataPower appliances, each a real HTTP(S) server on
//! its own port, answering the SOMA messages the client sends, stateful as docs/simulator.md "What the
//! simulator must reproduce" asks, with injected faults. Tests and the demo run against it
//! over real sockets. Depends on [`crate::appliance`] only for the shared XML reader and
//! constants. See docs/simulator.md.
//!
//! - [`fleet`]: the fleet file.
//! - [`device`]: one device's state and answers.
//! - [`domain`]: a domain's configuration (objects, files), its defaults and digest.
//! - [`content`]: deterministic file and export content.
//! - [`reply`]: requests as parsed and responses as devices format them; [`request`] the
//!   simulator's own XML reader, [`upload`] request bodies carrying a file (streamed).
//! - `filestore`, `status`, `import`, `restore`: temporary: and local:, status answers,
//!   do-import, secure backup/restore and checkpoints.
//! - [`http`]: the HTTP(S) server, transport faults, `/sim/*` endpoints and restarts
//!   (`outage`).

pub mod content;
pub mod device;
pub mod domain;
mod filestore;
pub mod fleet;
pub mod http;
mod import;
pub mod instant;
mod outage;
pub mod reply;
pub mod request;
mod restore;
mod state;
mod status;
pub mod upload;

pub use device::{ChangeRequest, Changed, DomainView, SimState};
pub use fleet::{DeviceSpec, Fault, FaultKind, Fleet, FleetError};

use device::Device;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Starting the simulator failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A listener could not be bound.
    #[error("device {device}: cannot listen on {addr}: {source}")]
    Bind {
        device: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS certificate could not be made.
    #[error("TLS: {0}")]
    Tls(String),
}

/// One started device.
#[derive(Debug, Clone)]
pub struct RunningDevice {
    /// Inventory name.
    pub name: String,
    /// Where it listens (for a `down` device: a port where nothing listens).
    pub addr: SocketAddr,
    /// Nothing listens: connections are refused.
    pub down: bool,
    /// HTTPS when the fleet runs with TLS.
    pub tls: bool,
    /// Credentials it accepts.
    pub user: String,
    pub password: String,
    device: Option<Arc<Device>>,
}

impl RunningDevice {
    /// The SOMA endpoint, e.g. `http://127.0.0.1:18101/service/mgmt/current`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/service/mgmt/current", self.connect_addr())
    }

    /// The address to connect to: [`RunningDevice::addr`], with loopback in place of an
    /// unspecified address (`--host 0.0.0.0`).
    pub fn connect_addr(&self) -> SocketAddr {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.addr.port())
    }

    /// The device's state, as `GET /sim/state` reports it (`None` when down).
    pub fn state(&self) -> Option<SimState> {
        self.device.as_ref().map(|d| d.state())
    }
}

/// A started fleet. Dropping it does not stop the servers; call [`RunningFleet::shutdown`].
#[derive(Debug)]
pub struct RunningFleet {
    /// In fleet-file order.
    pub devices: Vec<RunningDevice>,
    /// With TLS: the PEM of the CA that signed every device's certificate.
    pub ca_pem: Option<String>,
    shutdown: watch::Sender<bool>,
    servers: JoinSet<()>,
    /// The ports of `down` devices, bound and not listening.
    held: Vec<socket2::Socket>,
}

impl RunningFleet {
    /// The device named `name`.
    pub fn device(&self, name: &str) -> Option<&RunningDevice> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// Stops accepting, drops open connections, and waits for the servers to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.held.clear();
        while self.servers.join_next().await.is_some() {}
    }

    /// An inventory block (plan language) for the started fleet. Passwords come from the
    /// environment: `DPPLAN_SIM_PASSWORD`, or `DPPLAN_SIM_PASSWORD_<DEVICE>` for a device whose
    /// password differs from the first device's; `ca_file` is where the CA was written (TLS).
    pub fn inventory(&self, ca_file: Option<&std::path::Path>) -> String {
        let base_password = self
            .devices
            .first()
            .map(|d| d.password.as_str())
            .unwrap_or("");
        let base_user = self
            .devices
            .first()
            .map(|d| d.user.as_str())
            .unwrap_or("admin");
        let mut out = String::from("# Written by `dpplan sim`: the simulated fleet.\n");
        out.push_str(&format!("# export DPPLAN_SIM_PASSWORD={base_password:?}\n"));
        for d in &self.devices {
            if d.password != base_password {
                out.push_str(&format!(
                    "# export {}={:?}\n",
                    password_var(&d.name),
                    d.password
                ));
            }
        }
        out.push_str("inventory {\n  defaults {\n");
        out.push_str(&format!("    user     = {}\n", quote(base_user)));
        out.push_str("    password = env(\"DPPLAN_SIM_PASSWORD\")\n");
        match (self.ca_pem.is_some(), ca_file) {
            (true, Some(ca)) => out.push_str(&format!(
                "    tls_ca   = {}\n",
                quote(&ca.display().to_string())
            )),
            (true, None) => out.push_str("    insecure = true\n"),
            (false, _) => out.push_str("    tls      = false\n"),
        }
        out.push_str("  }\n");
        for d in &self.devices {
            let mut attrs = format!(
                "host = {}  port = {}",
                quote(&d.connect_addr().ip().to_string()),
                d.addr.port()
            );
            if d.user != base_user {
                attrs.push_str(&format!("  user = {}", quote(&d.user)));
            }
            if d.password != base_password {
                attrs.push_str(&format!(
                    "  password = env({})",
                    quote(&password_var(&d.name))
                ));
            }
            out.push_str(&format!("  device {} {{ {attrs} }}\n", quote(&d.name)));
        }
        out.push_str("}\n");
        out
    }
}

fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn password_var(device: &str) -> String {
    let suffix: String = device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("DPPLAN_SIM_PASSWORD_{suffix}")
}

/// Starts every device of `fleet` on `host`: one listener each, on its port (0: any free
/// port), HTTPS with a freshly generated CA and certificate when `tls`. A `down` device gets a
/// port where nothing listens. Must run inside a tokio runtime.
pub async fn serve(fleet: &Fleet, host: IpAddr, tls: bool) -> Result<RunningFleet, SimError> {
    let (acceptor, ca_pem) = if tls {
        let (acceptor, ca) = tls_material(host)?;
        (Some(acceptor), Some(ca))
    } else {
        (None, None)
    };
    let (shutdown, watcher) = watch::channel(false);
    let mut servers = JoinSet::new();
    let mut devices = Vec::new();
    let mut listeners = Vec::new();
    // Bind everything first: a failure leaves nothing running. A `down` device's port is
    // bound without listening and held while the fleet lives: connections to it are refused,
    // and no other listener (another fleet, a test's own server) can take it meanwhile.
    let mut held = Vec::new();
    for spec in &fleet.devices {
        let addr = SocketAddr::new(host, spec.port);
        let bind_error = |source| SimError::Bind {
            device: spec.name.clone(),
            addr,
            source,
        };
        if spec.down {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )
            .map_err(bind_error)?;
            socket.bind(&addr.into()).map_err(bind_error)?;
            let bound = socket
                .local_addr()
                .map_err(bind_error)?
                .as_socket()
                .unwrap_or(addr);
            held.push(socket);
            listeners.push((spec, None, bound));
            continue;
        }
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        listeners.push((spec, Some(listener), bound));
    }
    for (spec, listener, bound) in listeners {
        let device = match listener {
            None => None,
            Some(listener) => {
                let device = Arc::new(Device::new(spec.clone()));
                servers.spawn(http::serve_device(
                    listener,
                    Arc::clone(&device),
                    acceptor.clone(),
                    watcher.clone(),
                ));
                Some(device)
            }
        };
        devices.push(RunningDevice {
            name: spec.name.clone(),
            addr: bound,
            down: spec.down,
            tls,
            user: spec.user.clone(),
            password: spec.password.clone(),
            device,
        });
    }
    Ok(RunningFleet {
        devices,
        ca_pem,
        shutdown,
        servers,
        held,
    })
}

/// A CA and a server certificate it signs (for `host`, `localhost` and `127.0.0.1`).
fn tls_material(host: IpAddr) -> Result<(tokio_rustls::TlsAcceptor, String), SimError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let tls = |e: &dyn std::fmt::Display| SimError::Tls(e.to_string());

    let ca_key = KeyPair::generate().map_err(|e| tls(&e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls(&e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dpplan simulator CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| tls(&e))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        host.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    names.dedup();
    let leaf_key = KeyPair::generate().map_err(|e| tls(&e))?;
    let mut leaf_params = CertificateParams::new(names).map_err(|e| tls(&e))?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "dpplan simulated appliance");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| tls(&e))?;

    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| tls(&e))?;
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_cert.pem(),
    ))
}
