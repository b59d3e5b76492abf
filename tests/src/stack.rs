//! The whole way in on loopback, as separate processes built from this workspace: the runtime
//! in development mode (emulated attestation from an emulated AMD secure processor in this
//! process), `cloister-issuer`, `cloister-gateway`, `cloister-relay`, a transparency log with a
//! witness, and the `cloister` CLI. Each server's stderr goes to a file the tests read back
//! (what the operator's logs would hold).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use cloister_insecure_emulated_sp::EmulatedSnpSigner;
use cloister_insecure_emulated_sp::EmulatedSp;

/// The emulated processor's launch measurement for the development-mode runtimes.
pub const MEASUREMENT: [u8; 48] = [0x6d; 48];

/// A workspace binary next to the test executable (`cargo nextest run --workspace` and
/// `cargo test --workspace` build them all).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with --workspace (the README's test command)",
        path.display()
    );
    path
}

/// A server process: killed on drop.
#[derive(Debug)]
pub struct Service {
    child: Child,
    /// What its READY line named (`http://127.0.0.1:PORT`), or the socket path.
    pub url: String,
    /// Its stderr (logs).
    pub log: PathBuf,
}

impl Service {
    /// Spawns `cmd` (stdout piped), waits for its `READY ...` line.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Service {
        let err = std::fs::File::create(&log).expect("log file");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_default();
        let Some(rest) = line.strip_prefix("READY ") else {
            let _ = child.kill();
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("server did not start: {line:?}\n{logged}");
        };
        let url = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        Service { child, url, log }
    }

    /// `HOST:PORT` of an `http://` or `https://` URL.
    pub fn authority(&self) -> &str {
        self.url
            .strip_prefix("https://")
            .unwrap_or_else(|| self.url.trim_start_matches("http://"))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the process to stop (SIGTERM) and waits for it: a graceful stop.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok()
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its logs so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many requests a runtime answered on `route` with `status`, from its request log
    /// lines (`route="ohttp" status=200 ms=…`). A 200 on `ohttp` is a request the node opened
    /// and answered; a 503 is one it shed before opening.
    pub fn answered(&self, route: &str, status: u16) -> usize {
        let routes = [format!("route=\"{route}\""), format!("route={route} ")];
        let status = format!("status={status} ");
        self.logs()
            .lines()
            .filter(|l| routes.iter().any(|r| l.contains(r.as_str())) && l.contains(&status))
            .count()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The emulated AMD secure processors of a loopback fleet: one chip per machine, all under one
/// emulated ARK, each on its own Unix socket (threads of this process).
#[derive(Debug)]
pub struct Sp {
    /// The first chip's socket.
    pub socket: PathBuf,
    /// Every chip's socket, chip 0 first.
    pub sockets: Vec<PathBuf>,
    /// The emulated ARK, DER (the device's `--insecure-emulated` root).
    pub ark_der: PathBuf,
}

impl Sp {
    /// The socket of machine `i` (the last chip for any `i` beyond them).
    pub fn machine(&self, i: usize) -> &Path {
        &self.sockets[i.min(self.sockets.len() - 1)]
    }
}

/// Starts the emulated processor in `dir`: one chip.
pub fn emulated_sp(dir: &Path) -> Sp {
    emulated_machines(dir, 1)
}

/// Starts `chips` (at least one) emulated chips under one ARK in `dir`.
pub fn emulated_machines(dir: &Path, chips: usize) -> Sp {
    let first = EmulatedSnpSigner::from_seed(&[5u8; 32]).expect("emulated processor");
    let ark_der = dir.join("emulated-ark.der");
    std::fs::write(&ark_der, first.ark_der()).expect("write ark");
    let mut signers = Vec::new();
    for i in 1..chips.max(1) {
        signers.push(first.another_chip(i as u32).expect("emulated chip"));
    }
    signers.insert(0, first);
    let mut sockets = Vec::new();
    for (i, signer) in signers.into_iter().enumerate() {
        let socket = if i == 0 {
            dir.join("sp.sock")
        } else {
            dir.join(format!("sp-{i}.sock"))
        };
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind sp");
        let sp = EmulatedSp::new(signer, MEASUREMENT);
        std::thread::spawn(move || {
            static STOP: AtomicBool = AtomicBool::new(false);
            if let Err(e) = sp.serve(listener, &STOP) {
                eprintln!("emulated processor stopped: {e}");
            }
        });
        sockets.push(socket);
    }
    Sp {
        socket: sockets[0].clone(),
        sockets,
        ark_der,
    }
}

pub use crate::publish::{Published, dev_release, gateway_key_record, issuer_key_record, publish};

/// The gateway's issuer name (its `--issuer-name` default), as token challenges carry it.
pub const ISSUER_NAME: &str = "cloister-issuer";

/// Starts a development-mode runtime on `dir/<name>.sock` naming `manifest` in its evidence,
/// on the emulated processor's first chip.
pub fn runtime(
    dir: &Path,
    name: &str,
    sp: &Sp,
    manifest: &[u8; 32],
    cmdline: &str,
    models: Option<&Path>,
) -> Service {
    runtime_on(dir, name, &sp.socket, manifest, cmdline, models)
}

/// [`runtime`] on the chip whose emulated processor listens on `sp_socket`.
pub fn runtime_on(
    dir: &Path,
    name: &str,
    sp_socket: &Path,
    manifest: &[u8; 32],
    cmdline: &str,
    models: Option<&Path>,
) -> Service {
    let socket = dir.join(format!("{name}.sock"));
    let mut cmd = Command::new(bin("cloister-runtime"));
    cmd.arg("--unix")
        .arg(&socket)
        .arg("--emulated-sp")
        .arg(sp_socket)
        .arg("--cmdline")
        .arg(cmdline)
        .arg("--manifest-digest")
        .arg(hex::encode(manifest))
        .env("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    if let Some(m) = models {
        cmd.arg("--models").arg(m);
    }
    let mut s = Service::spawn(cmd, dir.join(format!("{name}.log")));
    s.url = format!("unix:{}", socket.display());
    s
}

/// The issuer: key, one account (its bearer token in `dir/account-token`), served.
pub fn issuer(dir: &Path, quota: u32) -> (Service, String) {
    issuer_in(dir, quota, "127.0.0.1:0", &|p| Command::new(p))
}

/// [`issuer`] listening on `listen`, its server started by `launch` (e.g. in a namespace).
pub fn issuer_in(
    dir: &Path,
    quota: u32,
    listen: &str,
    launch: &dyn Fn(&Path) -> Command,
) -> (Service, String) {
    let key = dir.join("issuer.pem");
    let db = dir.join("issuer.redb");
    let out = Command::new(bin("cloister-issuer"))
        .arg("init")
        .arg("--key")
        .arg(&key)
        .output()
        .expect("issuer init");
    assert!(out.status.success(), "issuer init: {out:?}");
    let spki = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = Command::new(bin("cloister-issuer"))
        .args(["add-account", "--name", "device-1", "--quota"])
        .arg(quota.to_string())
        .arg("--db")
        .arg(&db)
        .output()
        .expect("issuer add-account");
    assert!(out.status.success(), "add-account: {out:?}");
    cloister_transparency::write_secret(
        &dir.join("account-token"),
        String::from_utf8_lossy(&out.stdout).trim(),
    )
    .expect("token file");
    let mut cmd = launch(&bin("cloister-issuer"));
    cmd.arg("serve")
        .arg("--key")
        .arg(&key)
        .arg("--db")
        .arg(&db)
        .args(["--listen", listen]);
    (Service::spawn(cmd, dir.join("issuer.log")), spki)
}

/// The gateway in front of `nodes` (`(id, address)`), accepting `issuer_key`'s tokens, on
/// 127.0.0.1 (a free port).
pub fn gateway(
    dir: &Path,
    nodes: &[(&str, &str)],
    log_proofs: &[PathBuf],
    issuer_key: &str,
    extra: &[&str],
) -> Service {
    gateway_on("127.0.0.1:0", dir, nodes, log_proofs, issuer_key, extra)
}

/// [`gateway`] listening on `listen`.
pub fn gateway_on(
    listen: &str,
    dir: &Path,
    nodes: &[(&str, &str)],
    log_proofs: &[PathBuf],
    issuer_key: &str,
    extra: &[&str],
) -> Service {
    let mut cmd = Command::new(bin("cloister-gateway"));
    cmd.args(["--listen", listen, "--issuer-key", issuer_key])
        .arg("--spent-store")
        .arg(dir.join("spent.redb"));
    for (id, address) in nodes {
        cmd.arg("--node").arg(format!("{id}={address}"));
    }
    for p in log_proofs {
        cmd.arg("--log-proof").arg(p);
    }
    cmd.args(extra);
    Service::spawn(cmd, dir.join("gateway.log"))
}

/// The relay in front of `gateway`.
pub fn relay(dir: &Path, gateway: &Service) -> Service {
    relay_to(dir, "relay", &format!("{}/gateway", gateway.url))
}

/// A relay named `name` (its log is `NAME.log`) forwarding to `upstream`.
pub fn relay_to(dir: &Path, name: &str, upstream: &str) -> Service {
    let mut cmd = Command::new(bin("cloister-relay"));
    cmd.args(["--listen", "127.0.0.1:0", "--gateway"])
        .arg(upstream);
    Service::spawn(cmd, dir.join(format!("{name}.log")))
}

/// The manifest digest the log's release names (the development runtimes report it).
pub const LOGGED_MANIFEST: [u8; 32] = [0x4c; 32];
/// A manifest digest no release in the log names.
pub const UNLOGGED_MANIFEST: [u8; 32] = [0x55; 32];

/// A development-mode runtime to start.
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec<'a> {
    /// Its id in the directory.
    pub id: &'a str,
    /// Its `cloister.*` parameters.
    pub cmdline: &'a str,
    /// The models directory, when `cmdline` names a model.
    pub models: Option<&'a Path>,
    /// Whether its release is in the log.
    pub logged: bool,
}

/// Everything on loopback, and the device's trust configuration.
#[derive(Debug)]
pub struct Stack {
    /// Where everything lives.
    pub dir: PathBuf,
    /// The emulated processor.
    pub sp: Sp,
    /// The runtimes, in `NodeSpec` order.
    pub nodes: Vec<Service>,
    /// The issuer.
    pub issuer: Service,
    /// The gateway.
    pub gateway: Service,
    /// The relay.
    pub relay: Service,
    /// The log's verifier key file.
    pub log_key: PathBuf,
    /// The witness's verifier key.
    pub witness_key: String,
    /// The account's bearer token file.
    pub account: PathBuf,
    /// The device's state directory.
    pub state: PathBuf,
    /// How the gateway was started (for a restart).
    pub gateway_setup: GatewaySetup,
}

/// The gateway's command line, kept to start it again.
#[derive(Debug, Clone)]
pub struct GatewaySetup {
    /// `(id, address)` of every node.
    pub nodes: Vec<(String, String)>,
    /// The operator's log proof file.
    pub log_proof: PathBuf,
    /// The issuer's public key (base64url SPKI).
    pub issuer_key: String,
    /// Further flags.
    pub extra: Vec<String>,
}

impl Stack {
    /// Starts the log (one release: the development runtime with [`LOGGED_MANIFEST`]), the
    /// runtimes, the issuer (one account with `quota` tokens a day), the gateway (the runtimes
    /// plus `extra` nodes) and the relay, in `dir`. Each runtime runs on its own emulated chip
    /// (machine `i` for the `i`th spec).
    pub fn start(dir: &Path, specs: &[NodeSpec], extra: &[(&str, String)], quota: u32) -> Stack {
        Stack::start_with(dir, specs, extra, quota, &[])
    }

    /// [`Stack::start`], with more flags for the gateway.
    pub fn start_with(
        dir: &Path,
        specs: &[NodeSpec],
        extra: &[(&str, String)],
        quota: u32,
        gateway_args: &[&str],
    ) -> Stack {
        let sp = emulated_machines(dir, specs.len());
        let (issuer, spki) = issuer(dir, quota);
        let Published {
            log_dir,
            proof_file,
            witness_key,
            seed_file,
        } = publish(dir, &spki);
        let nodes: Vec<Service> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let manifest = if s.logged {
                    LOGGED_MANIFEST
                } else {
                    UNLOGGED_MANIFEST
                };
                runtime_on(dir, s.id, sp.machine(i), &manifest, s.cmdline, s.models)
            })
            .collect();
        let mut addresses: Vec<(&str, String)> = specs
            .iter()
            .zip(&nodes)
            .map(|(s, n)| (s.id, n.url.clone()))
            .collect();
        addresses.extend(extra.iter().cloned());
        let addresses: Vec<(&str, &str)> =
            addresses.iter().map(|(i, a)| (*i, a.as_str())).collect();
        // The gateway serves the log's hash tiles from the log's files (the device fetches
        // them on every request).
        let log_dir_arg = log_dir.display().to_string();
        let seed_arg = seed_file.display().to_string();
        let mut gateway_args: Vec<&str> = gateway_args.to_vec();
        gateway_args.extend(["--log-dir", log_dir_arg.as_str()]);
        gateway_args.extend(["--outer-key-seed", seed_arg.as_str()]);
        let gateway = gateway(
            dir,
            &addresses,
            std::slice::from_ref(&proof_file),
            &spki,
            &gateway_args,
        );
        let gateway_setup = GatewaySetup {
            nodes: addresses
                .iter()
                .map(|(i, a)| ((*i).to_owned(), (*a).to_owned()))
                .collect(),
            log_proof: proof_file,
            issuer_key: spki,
            extra: gateway_args.iter().map(|a| (*a).to_owned()).collect(),
        };
        let relay = relay(dir, &gateway);
        let state = dir.join("device-state");
        Stack {
            dir: dir.to_owned(),
            sp,
            nodes,
            issuer,
            gateway,
            relay,
            log_key: log_dir.with_extension("pub"),
            witness_key,
            account: dir.join("account-token"),
            state,
            gateway_setup,
        }
    }

    /// Kills the gateway (SIGKILL: nothing flushed, nothing drained) and starts it again on
    /// the same address, with the same nodes, keys and spent-token store.
    pub fn restart_gateway(&mut self) {
        self.gateway.kill();
        let g = &self.gateway_setup;
        let nodes: Vec<(&str, &str)> = g
            .nodes
            .iter()
            .map(|(i, a)| (i.as_str(), a.as_str()))
            .collect();
        let extra: Vec<&str> = g.extra.iter().map(String::as_str).collect();
        let listen = self.gateway.authority().to_owned();
        self.gateway = gateway_on(
            &listen,
            &self.dir,
            &nodes,
            std::slice::from_ref(&g.log_proof),
            &g.issuer_key,
            &extra,
        );
    }

    /// The `cloister` CLI with this device's flags, accepting a directory of one machine (most
    /// tests run one node).
    pub fn device(&self) -> Command {
        let mut cmd = self.device_defaults();
        cmd.args(["--min-machines", "1"]);
        cmd
    }

    /// The `cloister` CLI with this device's trust flags and its policy's defaults.
    pub fn device_defaults(&self) -> Command {
        self.device_at(&self.state)
    }

    /// [`Stack::device_defaults`] for another device: its own state directory.
    pub fn device_at(&self, state: &Path) -> Command {
        self.device_via(state, &self.relay.url, &self.issuer.url)
    }

    /// [`Stack::device_at`] reaching the relay and the issuer at other URLs (a TLS front, a
    /// recorder).
    pub fn device_via(&self, state: &Path, relay: &str, issuer: &str) -> Command {
        let mut cmd = Command::new(bin("cloister"));
        cmd.arg("--relay")
            .arg(relay)
            .arg("--issuer")
            .arg(issuer)
            .arg("--account-token-file")
            .arg(&self.account)
            .arg("--insecure-emulated")
            .arg(&self.sp.ark_der)
            .arg("--log-key")
            .arg(&self.log_key)
            .arg("--witness-key")
            .arg(&self.witness_key)
            .args(["--quorum", "1", "--deadline", "120"])
            .arg("--state")
            .arg(state);
        cmd
    }

    /// The client library with the same trust configuration.
    pub fn client(&self) -> cloister_client::Client {
        use cloister_client::secret::SecretString;
        use cloister_client::trust::{LogKeys, Trust};
        let root = cloister_measurement::InsecureEmulatedRoot::from_ark_der(
            &std::fs::read(&self.sp.ark_der).expect("ark"),
        )
        .expect("emulated root");
        let keys = LogKeys {
            log_key: std::fs::read_to_string(&self.log_key)
                .expect("log key")
                .trim()
                .to_owned(),
            witness_keys: vec![self.witness_key.clone()],
            quorum: cloister_client::trust::Quorum::ONE,
        };
        let trust = Trust::insecure_emulated(
            root,
            cloister_measurement::Policy::default(),
            Some(keys),
            Box::new(cloister_client::FileStore::new(&self.state)),
        )
        .expect("trust")
        .with_min_machines(std::num::NonZeroUsize::MIN);
        let token = std::fs::read_to_string(&self.account).expect("account token");
        cloister_client::Client::new(cloister_client::ClientConfig {
            relay: self.relay.url.parse().expect("relay url"),
            issuer: Some(cloister_client::IssuerAccount {
                url: self.issuer.url.parse().expect("issuer url"),
                account_token: SecretString::new(token.trim().to_owned()),
            }),
            trust,
            deadline: Duration::from_secs(120),
            tls_roots: Default::default(),
        })
        .expect("client")
    }

    /// Every server process, named: the runtimes by id, then issuer, gateway, relay.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("runtime-{i}"), n.pid()))
            .collect();
        v.push(("issuer".into(), self.issuer.pid()));
        v.push(("gateway".into(), self.gateway.pid()));
        v.push(("relay".into(), self.relay.pid()));
        v
    }

    /// Every server's logs, concatenated.
    pub fn all_logs(&self) -> String {
        let mut s = String::new();
        for svc in self
            .nodes
            .iter()
            .chain([&self.issuer, &self.gateway, &self.relay])
        {
            s.push_str(&svc.logs());
        }
        s
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS`), if it is still running.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
