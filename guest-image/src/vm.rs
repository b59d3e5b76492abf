//! Launching the guest under QEMU, and the host side of its vsock.
//!
//! This machine has no `/dev/vhost-vsock`, so vsock goes through QEMU's `vhost-user-vsock`
//! device served by `vhost-device-vsock` (rust-vmm): the guest's connections to host port P
//! arrive at the Unix socket `UDS_P`; the host reaches guest port P by connecting to `UDS` and
//! sending `CONNECT P\n` (answered `OK <port>\n`). Guest memory must then be a shared memfd.
//!
//! Emulated launches run the AmdSev firmware under TCG with the kernel, initrd and command line
//! handed over as fw_cfg files and the kernel-hashes page injected at its GPA, so the firmware
//! checks the very hashes the launch digest covers — only memory encryption and the secure
//! processor are emulated. Real SNP and TDX command lines are produced for hardware hosts.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ImageError;
use crate::run::require_tool;

/// What kind of launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchPlatform {
    /// TCG, AmdSev firmware, injected hashes page, emulated secure processor.
    Emulated,
    /// AMD SEV-SNP hardware (`sev-snp-guest`, `kernel-hashes=on`).
    Snp,
    /// Intel TDX hardware (`tdx-guest`).
    Tdx,
}

/// A guest launch.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Platform.
    pub platform: LaunchPlatform,
    /// Firmware (`-bios`): AmdSev for Emulated/Snp, IntelTdx for Tdx.
    pub firmware: PathBuf,
    /// bzImage.
    pub kernel: PathBuf,
    /// initrd.
    pub initrd: PathBuf,
    /// The weights disk (attached read-only as the first virtio disk), if any. It is not
    /// measured by the firmware: the command line carries its dm-verity root hash.
    pub disk: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Emulated launches: the kernel-hashes page and its GPA.
    pub hashes_page: Option<(u64, PathBuf)>,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// vCPU model (`max` under TCG; e.g. `EPYC-v4` on SNP hosts).
    pub cpu: String,
    /// vhost-user socket of vhost-device-vsock.
    pub vhost_socket: PathBuf,
    /// Directory for scratch files (the NUL-terminated command line).
    pub scratch: PathBuf,
}

/// The QEMU command line for a launch.
pub fn qemu_args(spec: &VmSpec) -> Result<Vec<OsString>, ImageError> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    let mem = format!("{}M", spec.memory_mib);
    match spec.platform {
        LaunchPlatform::Emulated => {
            push("-machine");
            push("q35,memory-backend=mem");
            push("-accel");
            push("tcg");
        }
        LaunchPlatform::Snp => {
            push("-machine");
            push("q35,confidential-guest-support=sev0,memory-backend=mem");
            push("-accel");
            push("kvm");
            push("-object");
            push("sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on");
        }
        LaunchPlatform::Tdx => {
            push("-machine");
            push("q35,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend=mem");
            push("-accel");
            push("kvm");
            push("-object");
            // SEPT_VE_DISABLE explicitly (QEMU's default): the verifier refuses a TD without it.
            push("tdx-guest,id=tdx0,sept-ve-disable=on");
        }
    }
    push("-cpu");
    match spec.platform {
        // QEMU sets the TD attributes PERFMON when the vCPU has a PMU and PKS when it has PKS;
        // the verifier's default policy refuses both (`measurement/src/tdx_policy.rs`), so a
        // TDX launch turns them off.
        LaunchPlatform::Tdx => push(&format!("{},pmu=off,-pks", spec.cpu)),
        LaunchPlatform::Emulated | LaunchPlatform::Snp => push(&spec.cpu),
    }
    push("-m");
    push(&mem);
    push("-smp");
    push(&spec.vcpus.to_string());
    push("-object");
    push(&format!("memory-backend-memfd,id=mem,size={mem},share=on"));
    push("-nographic");
    push("-no-reboot");
    push("-nodefaults");
    push("-serial");
    push("stdio");
    push("-chardev");
    push(&format!(
        "socket,id=vs0,path={}",
        spec.vhost_socket.display()
    ));
    push("-device");
    push("vhost-user-vsock-pci,chardev=vs0");
    if let Some(disk) = &spec.disk {
        push("-drive");
        push(&format!(
            "file={},format=raw,if=none,id=weights,readonly=on",
            disk.display()
        ));
        push("-device");
        push("virtio-blk-pci,drive=weights");
    }
    push("-bios");
    a.push(spec.firmware.clone().into_os_string());
    match spec.platform {
        LaunchPlatform::Emulated => {
            // fw_cfg files, not -kernel: QEMU < 9.2 patches the setup header of a -kernel
            // bzImage in memory, so its hash would no longer be the file's.
            let cmdline = spec.scratch.join("cmdline.bin");
            let mut bytes = spec.cmdline.as_bytes().to_vec();
            bytes.push(0);
            std::fs::write(&cmdline, bytes).map_err(ImageError::io("writing", &cmdline))?;
            for (name, path) in [
                ("etc/boot/kernel", &spec.kernel),
                ("etc/boot/initrd", &spec.initrd),
                ("etc/boot/cmdline", &cmdline),
            ] {
                a.push("-fw_cfg".into());
                a.push(format!("name={name},file={}", path.display()).into());
            }
            if let Some((gpa, page)) = &spec.hashes_page {
                a.push("-device".into());
                a.push(format!("loader,file={},addr={gpa:#x},force-raw=on", page.display()).into());
            }
        }
        LaunchPlatform::Snp | LaunchPlatform::Tdx => {
            a.push("-kernel".into());
            a.push(spec.kernel.clone().into_os_string());
            a.push("-initrd".into());
            a.push(spec.initrd.clone().into_os_string());
            a.push("-append".into());
            a.push(spec.cmdline.clone().into());
        }
    }
    Ok(a)
}

/// `vhost-device-vsock` serving one guest; stopped (and its sockets removed) on drop.
#[derive(Debug)]
pub struct VhostVsock {
    child: Child,
    /// vhost-user socket for QEMU.
    pub socket: PathBuf,
    /// Base path of the host-side Unix sockets.
    pub uds: PathBuf,
}

impl VhostVsock {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts vhost-device-vsock for guest CID `cid` with sockets in `dir`.
    pub fn start(dir: &Path, cid: u32) -> Result<Self, ImageError> {
        if !crate::run::on_path("vhost-device-vsock") {
            return Err(ImageError::MissingCargoTool {
                tool: "vhost-device-vsock",
                krate: "vhost-device-vsock",
            });
        }
        let socket = dir.join("vhost.sock");
        let uds = dir.join("vsock");
        let log = dir.join("vhost-device-vsock.log");
        let out = std::fs::File::create(&log).map_err(ImageError::io("creating", &log))?;
        let err = out.try_clone().map_err(ImageError::io("opening", &log))?;
        let child = Command::new("vhost-device-vsock")
            .arg("--vm")
            .arg(format!(
                "guest-cid={cid},socket={},uds-path={}",
                socket.display(),
                uds.display()
            ))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(ImageError::io("starting", "vhost-device-vsock"))?;
        let v = VhostVsock { child, socket, uds };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !v.socket.exists() {
            if Instant::now() > deadline {
                return Err(ImageError::Missing {
                    artifact: "vhost-device-vsock's socket (see its log)".to_owned(),
                    path: log,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(v)
    }

    /// Where the guest's connections to host port `port` arrive.
    pub fn host_port_path(&self, port: u32) -> PathBuf {
        let mut s = self.uds.clone().into_os_string();
        s.push(format!("_{port}"));
        PathBuf::from(s)
    }

    /// Connects to guest port `port` (the `CONNECT` handshake).
    pub fn connect(&self, port: u32, timeout: Duration) -> std::io::Result<UnixStream> {
        connect_guest(&self.uds, port, timeout)
    }
}

/// Connects through vhost-device-vsock's Unix socket `uds` to guest port `port`.
pub fn connect_guest(uds: &Path, port: u32, timeout: Duration) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(uds)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())?;
    // Read the reply byte by byte up to its newline: nothing of the stream may be consumed.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 {
        s.read_exact(&mut b)?;
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    if !line.starts_with(b"OK ") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!(
                "vsock CONNECT {port} refused: {}",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    s.set_read_timeout(None)?;
    Ok(s)
}

impl Drop for VhostVsock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.uds);
    }
}

/// Why a boot did not reach the expected line.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Nothing from the kernel within the timeout: the firmware did not start it. With an
    /// injected hashes page this is the firmware refusing the measured boot inputs.
    #[error("firmware refused the measured boot inputs: no kernel output within {0:?}")]
    FirmwareRefused(Duration),
    /// The guest printed a fatal line.
    #[error("guest failed: {0}")]
    GuestFatal(String),
    /// The guest printed nothing for this long after the kernel started (a hang).
    #[error("guest console silent for {0:?} after the kernel started; last output:\n{1}")]
    Stalled(Duration, String),
    /// The guest kernel panicked (under TCG the 6.12 kernel sometimes faults in early SMP
    /// text patching; a hardware launch should never see this).
    #[error("guest kernel panicked; last output:\n{0}")]
    KernelPanic(String),
    /// KVM could not run the guest (on these machines /dev/kvm is an emulator).
    #[error("KVM internal error: {0}")]
    KvmInternal(String),
    /// QEMU exited; the last console lines follow.
    #[error("QEMU exited ({0}) before {1:?} appeared; last output:\n{2}")]
    Exited(String, String, String),
    /// The expected line did not appear in time; the last console lines follow.
    #[error("timed out after {0:?} waiting for {1:?}; last output:\n{2}")]
    Timeout(Duration, String, String),
    /// QEMU could not be started.
    #[error(transparent)]
    Start(#[from] ImageError),
}

/// A running QEMU; killed on drop. The console (serial) transcript is kept.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    lines: mpsc::Receiver<String>,
    transcript: Arc<Mutex<Vec<String>>>,
    started: Instant,
    kernel_seen: bool,
}

/// Console markers.
pub const READY_MARK: &str = "cloister: READY";
/// Fatal marker.
pub const FATAL_MARK: &str = "cloister: FATAL";
/// Longest console silence tolerated once the kernel runs, by default (the runtime prints READY
/// within seconds of the kernel's last boot message; an image with model weights unpacks and
/// loads for longer, and its launcher passes a longer one).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

impl Vm {
    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts QEMU.
    pub fn start(spec: &VmSpec) -> Result<Vm, BootError> {
        require_tool("qemu-system-x86_64", "qemu-system-x86")?;
        let args = qemu_args(spec)?;
        let mut child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BootError::Start(ImageError::io("starting", "qemu-system-x86_64")(e)))?;
        let (tx, rx) = mpsc::channel();
        let transcript = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (tx, transcript) = (tx.clone(), Arc::clone(&transcript));
            std::thread::spawn(move || {
                for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                    let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                    if let Ok(mut t) = transcript.lock() {
                        t.push(line.clone());
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Vm {
            child,
            lines: rx,
            transcript,
            started: Instant::now(),
            kernel_seen: false,
        })
    }

    /// Waits for a console line containing `mark`; `kernel_timeout` bounds the wait for the
    /// first kernel line (firmware refusal), `timeout` the whole wait, and the console may not
    /// stay silent for longer than `stall` once the kernel runs.
    pub fn wait_for(
        &mut self,
        mark: &str,
        kernel_timeout: Duration,
        timeout: Duration,
        stall: Duration,
    ) -> Result<String, BootError> {
        let deadline = Instant::now() + timeout;
        let mut last_output = Instant::now();
        loop {
            let now = Instant::now();
            if self.kernel_seen && now.duration_since(last_output) > stall {
                return Err(BootError::Stalled(stall, self.tail(15)));
            }
            if !self.kernel_seen && now.duration_since(self.started) > kernel_timeout {
                return Err(BootError::FirmwareRefused(kernel_timeout));
            }
            if now > deadline {
                return Err(BootError::Timeout(timeout, mark.to_owned(), self.tail(15)));
            }
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    last_output = Instant::now();
                    if line.contains("Linux version")
                        || line.contains("EFI stub")
                        || line.contains("cloister:")
                    {
                        self.kernel_seen = true;
                    }
                    if line.contains(mark) {
                        return Ok(line);
                    }
                    if line.contains("Kernel panic") {
                        std::thread::sleep(Duration::from_millis(200));
                        return Err(BootError::KernelPanic(self.tail(30)));
                    }
                    if line.contains(FATAL_MARK) {
                        return Err(BootError::GuestFatal(line));
                    }
                    if line.contains("KVM internal error") {
                        return Err(BootError::KvmInternal(line));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self
                        .child
                        .try_wait()
                        .ok()
                        .flatten()
                        .map_or("running".to_owned(), |s| s.to_string());
                    return Err(BootError::Exited(status, mark.to_owned(), self.tail(15)));
                }
            }
        }
    }

    /// Everything QEMU and the guest printed so far.
    pub fn transcript(&self) -> Vec<String> {
        self.transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// The last `n` console lines, joined.
    pub fn tail(&self, n: usize) -> String {
        let t = self.transcript();
        t[t.len().saturating_sub(n)..].join("\n")
    }

    /// Time since QEMU started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Kills QEMU.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod launch_tests {
    use super::*;

    #[test]
    fn a_tdx_launch_asks_for_the_attributes_the_verifier_accepts() {
        let spec = VmSpec {
            platform: LaunchPlatform::Tdx,
            firmware: "OVMF.inteltdx.fd".into(),
            kernel: "vmlinuz".into(),
            initrd: "initrd".into(),
            disk: None,
            cmdline: "console=ttyS0 cloister.attest=tdx".into(),
            hashes_page: None,
            memory_mib: 2048,
            vcpus: 2,
            cpu: "host".into(),
            vhost_socket: "vhost.sock".into(),
            scratch: std::env::temp_dir(),
        };
        let args: Vec<String> = qemu_args(&spec)
            .expect("arguments")
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&"tdx-guest,id=tdx0,sept-ve-disable=on".to_owned()),
            "{args:?}"
        );
        let cpu = args.iter().position(|a| a == "-cpu").expect("-cpu");
        assert_eq!(args[cpu + 1], "host,pmu=off,-pks");
    }
}
