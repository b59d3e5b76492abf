//! Machines for the fleet tests: Linux network namespaces joined by veth links to one bridge
//! (itself in a namespace of its own), so that every address is inside namespaces the test
//! made and nothing touches the machine's own network. Each test gets its own bridge, so tests
//! may use the same addresses side by side. Needs root and iproute2; everything is removed on
//! drop (the processes in each namespace killed, then the namespaces deleted, which deletes
//! their links).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The test network's prefix (a /24 inside the test's own bridge).
pub const SUBNET: &str = "10.213.0";

/// A test network.
#[derive(Debug)]
pub struct Net {
    tag: String,
    switch: String,
    spaces: Mutex<Vec<String>>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 is not installed: run `cargo xtask setup`");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// A bridge in a fresh namespace.
    pub fn new() -> Net {
        let mut b = [0u8; 3];
        getrandom::fill(&mut b).expect("random");
        let tag = hex::encode(b);
        let switch = format!("cl{tag}-sw");
        ip(&["netns", "add", &switch]);
        let net = Net {
            tag,
            switch,
            spaces: Mutex::new(Vec::new()),
        };
        ip(&["-n", &net.switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net.switch, "link", "set", "br0", "up"]);
        net
    }

    /// A machine named `name` at `SUBNET.last` (its namespace's name is returned).
    pub fn machine(&self, name: &str, last: u8) -> String {
        let ns = format!("cl{}-{name}", self.tag);
        ip(&["netns", "add", &ns]);
        self.spaces.lock().expect("lock").push(ns.clone());
        // Interface names are at most 15 bytes: `c` + tag (6) + `h`/`s` + the address byte.
        let (inside, outside) = (
            format!("c{}h{last}", self.tag),
            format!("c{}s{last}", self.tag),
        );
        ip(&[
            "link",
            "add",
            &inside,
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &outside,
            "netns",
            &self.switch,
        ]);
        ip(&["-n", &self.switch, "link", "set", &outside, "master", "br0"]);
        ip(&["-n", &self.switch, "link", "set", &outside, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{SUBNET}.{last}/24"),
            "dev",
            &inside,
        ]);
        ip(&["-n", &ns, "link", "set", &inside, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// `program` to run inside `ns`.
    pub fn command(&self, ns: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Kills every process in `ns` at once (SIGKILL): the machine dies.
    pub fn kill_all(&self, ns: &str) {
        let out = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .expect("ip netns pids");
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }

    /// Waits until something accepts TCP connections at `addr` (`IP:PORT`), from inside `ns`.
    pub fn wait_tcp(&self, ns: &str, addr: &str, limit: Duration) {
        let (host, port) = addr.rsplit_once(':').expect("IP:PORT");
        let deadline = Instant::now() + limit;
        loop {
            let ok = Command::new("ip")
                .args(["netns", "exec", ns, "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{host}/{port}"))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens at {addr} in {ns}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let mut all = std::mem::take(&mut *self.spaces.lock().unwrap_or_else(|p| p.into_inner()));
        all.push(self.switch.clone());
        for ns in &all {
            self.kill_all(ns);
        }
        for ns in &all {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
