//! A fleet across machines for the tests: each machine a network namespace ([`crate::netns`]).
//! Redis (the registry and the spent tokens) on one, the issuer on another, each gateway on its
//! own, the relay (a third party's) on its own, host agents with development-mode guests on
//! their own (each on its own emulated chip), and devices on yet another — every byte between
//! them crosses a veth link.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::netns::{Net, SUBNET};
use crate::publish::{Published, publish};
use crate::stack::{LOGGED_MANIFEST, Service, Sp, bin, emulated_machines, issuer_in};
use crate::tls::{FleetPki, fleet_pki};

/// A registration's time to live in the tests, seconds.
pub const TTL: u64 = 3;
/// The gateways' registry interval in the tests, seconds.
pub const REGISTRY_INTERVAL: u64 = 1;
/// Guests per host unless asked otherwise.
pub const GUESTS: usize = 2;
/// The host machines' address bytes, in the order they may be added.
pub const HOSTS: [u8; 4] = [11, 12, 13, 14];

const REGISTRY: u8 = 2;
const FRONT: u8 = 3;
const RELAY: u8 = 4;
/// The gateways' machines.
const GATEWAYS: [u8; 2] = [21, 22];
const DEVICES: u8 = 50;

/// A process killed on drop (for servers without a READY line).
#[derive(Debug)]
pub struct Plain(Child);

impl Drop for Plain {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fleet. Field order is drop order: processes first, the network last.
#[derive(Debug)]
pub struct Fleet {
    /// Host agents by name (`h1`, …), with their namespace.
    pub hosts: Mutex<Vec<(String, String, Service)>>,
    /// The relay (its own machine: a third party's).
    pub relay: Service,
    /// The gateways, each on its own machine.
    pub gateways: Mutex<Vec<Service>>,
    /// The issuer.
    pub issuer: Service,
    _redis: Plain,
    /// The namespaces.
    pub net: Net,
    /// Where everything lives.
    pub dir: PathBuf,
    sp: Sp,
    pki: FleetPki,
    published: Published,
    spki: String,
    guests: usize,
    registry_ns: String,
    gateway_ns: Vec<String>,
    devices: String,
}

fn addr(last: u8) -> String {
    format!("{SUBNET}.{last}")
}

fn redis_url(db: u8) -> String {
    format!("redis://{}:6379/{db}", addr(REGISTRY))
}

/// Where gateway `i` listens.
fn gateway_addr(i: usize) -> String {
    format!("{}:8701", addr(GATEWAYS[i]))
}

impl Fleet {
    /// Starts Redis, the issuer (an account with `quota` tokens a day), `gateways` gateways
    /// (with no node: theirs come from the registry), the relay in front of them, and the
    /// host agents of the first `hosts` machines.
    pub fn start(dir: &Path, hosts: usize, gateways: usize, quota: u32) -> Fleet {
        Fleet::start_with(dir, hosts, GUESTS, gateways, quota)
    }

    /// [`Fleet::start`] with `guests` guests on each host.
    pub fn start_with(
        dir: &Path,
        hosts: usize,
        guests: usize,
        gateways: usize,
        quota: u32,
    ) -> Fleet {
        let net = Net::new();
        let registry_ns = net.machine("reg", REGISTRY);
        let front = net.machine("front", FRONT);
        let relay_ns = net.machine("relay", RELAY);
        let devices = net.machine("dev", DEVICES);
        let gateway_ns: Vec<String> = (0..gateways)
            .map(|i| net.machine(&format!("gw{}", i + 1), GATEWAYS[i]))
            .collect();
        let host_addrs: Vec<String> = HOSTS.iter().map(|h| addr(*h)).collect();
        let host_refs: Vec<&str> = host_addrs.iter().map(String::as_str).collect();
        let pki = fleet_pki(dir, &host_refs);
        // One emulated chip per host machine (chip 0 unused: the machines are 1-based).
        let sp = emulated_machines(dir, HOSTS.len() + 1);

        let redis_dir = dir.join("redis");
        std::fs::create_dir_all(&redis_dir).expect("redis dir");
        let mut cmd = net.command(&registry_ns, Path::new("redis-server"));
        cmd.args(["--port", "6379", "--bind", &addr(REGISTRY)])
            .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&redis_dir)
            .stdout(Stdio::null());
        let redis = Plain(cmd.spawn().expect("redis-server (run `cargo xtask setup`)"));
        let at = format!("{}:6379", addr(REGISTRY));
        net.wait_tcp(&registry_ns, &at, Duration::from_secs(20));

        let in_front = |p: &Path| net.command(&front, p);
        let (issuer, spki) = issuer_in(dir, quota, &format!("{}:0", addr(FRONT)), &in_front);
        let published = publish(dir, &spki);
        let mut relay = net.command(&relay_ns, &bin("cloister-relay"));
        relay.args(["--listen", &format!("{}:0", addr(RELAY))]);
        for i in 0..gateways {
            relay
                .arg("--gateway")
                .arg(format!("http://{}/gateway", gateway_addr(i)));
        }
        let fleet = Fleet {
            hosts: Mutex::new(Vec::new()),
            relay: Service::spawn(relay, dir.join("relay.log")),
            gateways: Mutex::new(Vec::new()),
            issuer,
            _redis: redis,
            net,
            dir: dir.to_owned(),
            sp,
            pki,
            published,
            spki,
            guests,
            registry_ns,
            gateway_ns,
            devices,
        };
        for i in 0..gateways {
            let g = fleet.start_gateway(i);
            fleet.gateways.lock().expect("lock").push(g);
        }
        for i in 0..hosts {
            fleet.add_host(i);
        }
        fleet
    }

    /// Gateway `i` on its machine: its nodes from the registry, its spent tokens in Redis,
    /// the outer key every gateway of the fleet shares.
    fn start_gateway(&self, i: usize) -> Service {
        let (pki, p) = (&self.pki, &self.published);
        let mut cmd = self
            .net
            .command(&self.gateway_ns[i], &bin("cloister-gateway"));
        cmd.args(["--listen", &gateway_addr(i), "--issuer-key", &self.spki])
            .arg("--registry")
            .arg(redis_url(0))
            .args(["--registry-interval", &REGISTRY_INTERVAL.to_string()])
            .arg("--spent-store")
            .arg(redis_url(1))
            .arg("--host-tls-cert")
            .arg(&pki.gateway.0)
            .arg("--host-tls-key")
            .arg(&pki.gateway.1)
            .arg("--host-ca")
            .arg(&pki.ca)
            .arg("--log-proof")
            .arg(&p.proof_file)
            .arg("--log-dir")
            .arg(&p.log_dir)
            .arg("--outer-key-seed")
            .arg(&p.seed_file);
        Service::spawn(cmd, self.dir.join(format!("gateway-{i}.log")))
    }

    /// Stops gateway `i` gracefully (SIGTERM: it finishes what it has) and starts it again at
    /// the same address.
    pub fn restart_gateway(&self, i: usize) {
        let status = self.gateways.lock().expect("lock")[i].terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "gateway {i} stopped: {status:?}"
        );
        let fresh = self.start_gateway(i);
        self.gateways.lock().expect("lock")[i] = fresh;
    }

    /// Cuts gateway `i` off from Redis (a blackhole route to it on its machine), or restores it.
    pub fn cut_from_redis(&self, i: usize, cut: bool) {
        let verb = if cut { "add" } else { "del" };
        let out = Command::new("ip")
            .args(["-n", &self.gateway_ns[i], "route", verb, "blackhole"])
            .arg(format!("{}/32", addr(REGISTRY)))
            .output()
            .expect("ip route");
        assert!(out.status.success(), "{out:?}");
    }

    /// Gateway `i`'s logs.
    pub fn gateway_logs(&self, i: usize) -> String {
        self.gateways.lock().expect("lock")[i].logs()
    }

    /// A relay of its own in front of gateway `i` alone (to reach that one gateway).
    pub fn relay_to(&self, i: usize) -> Service {
        let ns = self.net.machine(&format!("r{i}"), RELAY + 100 + i as u8);
        let mut relay = self.net.command(&ns, &bin("cloister-relay"));
        relay
            .args(["--listen", &format!("{}:0", addr(RELAY + 100 + i as u8))])
            .arg("--gateway")
            .arg(format!("http://{}/gateway", gateway_addr(i)));
        Service::spawn(relay, self.dir.join(format!("relay-{i}.log")))
    }

    /// Starts the host agent of machine `i` (`h{i+1}` at `HOSTS[i]`), its guests on chip `i+1`;
    /// returns its name.
    pub fn add_host(&self, i: usize) -> String {
        let name = format!("h{}", i + 1);
        let ns = self.net.machine(&name, HOSTS[i]);
        let state = self.dir.join(&name);
        std::fs::create_dir_all(&state).expect("host state dir");
        let (cert, key) = &self.pki.hosts[i];
        let mut cmd = self.net.command(&ns, &bin("cloister-host"));
        cmd.args([
            "serve",
            "--platform",
            "insecure-development",
            "--name",
            &name,
        ])
        .args([
            "--guests",
            &self.guests.to_string(),
            "--advertise",
            &addr(HOSTS[i]),
        ])
        .args(["--listen-ip", &addr(HOSTS[i]), "--first-port", "7100"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--gateway-ca")
        .arg(&self.pki.ca)
        .arg("--registry")
        .arg(redis_url(0))
        .args(["--ttl", &TTL.to_string(), "--drain-grace", "2"])
        .arg("--state-dir")
        .arg(&state)
        .arg("--runtime")
        .arg(bin("cloister-runtime"))
        .arg("--runtime-arg=--emulated-sp")
        .arg(format!(
            "--runtime-arg={}",
            self.sp.machine(i + 1).display()
        ))
        .arg("--runtime-arg=--manifest-digest")
        .arg(format!("--runtime-arg={}", hex::encode(LOGGED_MANIFEST)))
        .arg("--runtime-arg=--cmdline")
        .arg("--runtime-arg=cloister.attest=emulated")
        .args(["--ready-timeout", "120"])
        .env("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
        let svc = Service::spawn(cmd, self.dir.join(format!("{name}.log")));
        self.hosts
            .lock()
            .expect("lock")
            .push((name.clone(), ns, svc));
        name
    }

    /// Kills every process of host `name` at once: the machine dies.
    pub fn kill_host(&self, name: &str) {
        let hosts = self.hosts.lock().expect("lock");
        let (_, ns, _) = hosts
            .iter()
            .find(|(n, _, _)| n == name)
            .expect("a host of the fleet");
        self.net.kill_all(ns);
    }

    /// Drains host `name` (SIGTERM) and waits for its agent to exit; whether it exited cleanly.
    pub fn drain_host(&self, name: &str) -> bool {
        let mut hosts = self.hosts.lock().expect("lock");
        let (_, _, svc) = hosts
            .iter_mut()
            .find(|(n, _, _)| n == name)
            .expect("a host of the fleet");
        svc.terminate().is_some_and(|s| s.success())
    }

    /// The `cloister` CLI on the devices' machine, with its own state in `state`.
    pub fn device(&self, state: &Path) -> Command {
        self.device_via(&self.relay, state)
    }

    /// [`Fleet::device`] through `relay`.
    pub fn device_via(&self, relay: &Service, state: &Path) -> Command {
        let p = &self.published;
        let mut cmd = self.net.command(&self.devices, &bin("cloister"));
        cmd.arg("--relay")
            .arg(&relay.url)
            .arg("--issuer")
            .arg(&self.issuer.url)
            .arg("--account-token-file")
            .arg(self.dir.join("account-token"))
            .arg("--insecure-emulated")
            .arg(&self.sp.ark_der)
            .arg("--log-key")
            .arg(p.log_dir.with_extension("pub"))
            .arg("--witness-key")
            .arg(&p.witness_key)
            .args(["--quorum", "1", "--deadline", "60"])
            .arg("--state")
            .arg(state);
        cmd
    }

    /// The ids of the nodes the device lists and verifies (sorted), or the CLI's error.
    pub fn listed(&self, state: &Path) -> Result<Vec<String>, String> {
        let mut c = self.device(state);
        c.args(["nodes", "--json"]);
        let out: Output = c.output().expect("run cloister");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let mut ids: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["passed"] == true)
            .filter_map(|n| n["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// How many of `ids` have a live record in the registry (asked of Redis itself).
    pub fn registered(&self, ids: &[&str]) -> usize {
        let out = self
            .net
            .command(&self.registry_ns, Path::new("redis-cli"))
            .args(["-h", &addr(REGISTRY), "-n", "0", "EXISTS"])
            .args(ids.iter().map(|id| format!("cloister:node:{id}")))
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("EXISTS answers a number")
    }

    /// Tokens the gateway has recorded as spent (the keys of the spent store's database).
    pub fn spent_tokens(&self) -> usize {
        let out = self
            .net
            .command(&self.registry_ns, Path::new("redis-cli"))
            .args(["-h", &addr(REGISTRY), "-n", "1", "DBSIZE"])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("DBSIZE answers a number")
    }
}
