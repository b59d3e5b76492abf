//! An emulated confidential launch: the AmdSev firmware under TCG with the kernel-hashes page
//! injected, the emulated AMD secure processor told the launch digest of exactly what boots,
//! vhost-device-vsock for the guest's vsock, and the console watched.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bhttp::Message;
use cloister_insecure_emulated_sp::EmulatedSnpSigner;
use cloister_insecure_emulated_sp::EmulatedSp;
use cloister_launch::sev::{AmdLaunch, AmdSevFirmware, SevMode, vcpu_type, vmm_type};
use cloister_measurement::{
    InsecureEmulatedRoot, Policy, SystemClock, TrustAnchor, Verified, Verifier,
};
use cloister_protocol::padding;

use crate::ImageError;
use crate::guest_http::{GuestEndpoint, GuestHttpError, Reply};
use crate::image::Image;
use crate::vm::{self, BootError, LaunchPlatform, VhostVsock, Vm, VmSpec};

type Result<T, E = LaunchError> = std::result::Result<T, E>;

/// The guest's vsock context id.
pub const GUEST_CID: u32 = 3;
/// The vCPU model whose VMSA the expected digest assumes (what SNP hosts run).
pub const VCPU_TYPE: &str = "EPYC-v4";
/// The model TCG emulates (the emulated launch's digest does not depend on it; `-cpu max`
/// crashed the 6.12 kernel in 2 of 8 boots here).
pub const TCG_CPU: &str = "EPYC-Milan-v1,-cx16";

/// How to launch.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// Seed of the emulated processor (random when `None`).
    pub seed: Option<[u8; 32]>,
    /// Replace the initrd that boots (the digest and page still describe the image's own).
    pub boot_initrd: Option<PathBuf>,
    /// Recompute the digest and page for `boot_initrd` (a launch whose measurement differs).
    pub measure_boot_initrd: bool,
    /// Replace the weights disk that boots (the command line still names the image's own).
    pub boot_disk: Option<PathBuf>,
    /// How long the firmware may take to start the kernel.
    pub kernel_timeout: Duration,
    /// How long until the ready line.
    pub ready_timeout: Duration,
    /// Longest console silence once the kernel runs.
    pub stall_timeout: Duration,
}

impl LaunchOptions {
    /// Options sized for `image`: guest RAM for its model weights, and time to unpack and
    /// load them under TCG. The initramfs is unpacked into the root tmpfs, whose size limit is
    /// half the RAM the kernel counts when it mounts it — RAM minus the initrd and minus the
    /// firmware's copy of it, both freed only later: with 1 GiB + 3x the weights, Qwen's 1.1 GB
    /// did not fit ("Initramfs unpacking failed: write error"). 1 GiB + 4x leaves the limit
    /// above the weights, and room for candle's copies once the kernel has freed the initrd.
    pub fn for_image(image: &Image) -> Self {
        let d = LaunchOptions::default();
        if image.model_bytes == 0 {
            return d;
        }
        let weights_mib = image.model_bytes.div_ceil(1 << 20) as u32;
        let in_initrd = image.weights_disk.is_none();
        // On a weights disk the file system is read through the page cache (which the kernel
        // may drop), so the unpacked initramfs's copy is not there to size for.
        let copies = if in_initrd { 4 } else { 2 };
        let memory_mib = (1024 + copies * weights_mib).next_multiple_of(256);
        LaunchOptions {
            memory_mib,
            // The firmware hashes the whole initrd before the kernel prints anything: under TCG
            // a 1.2 GB initrd took longer than the default 60 s.
            kernel_timeout: if in_initrd {
                Duration::from_secs(60 + u64::from(weights_mib) / 3)
            } else {
                d.kernel_timeout
            },
            // Under TCG the first forward pass (candle repacks every Q4_K tensor then) runs
            // for minutes: a minute per 60 MiB of weights.
            ready_timeout: Duration::from_secs(240 + u64::from(weights_mib)),
            stall_timeout: Duration::from_secs(120 + u64::from(weights_mib) / 4),
            ..d
        }
    }
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            // One vCPU: under TCG the 6.12 kernel's SMP text patching (sync_core via IRET)
            // crashed in some boots with two.
            vcpus: 1,
            memory_mib: 512,
            seed: None,
            boot_initrd: None,
            measure_boot_initrd: false,
            boot_disk: None,
            kernel_timeout: Duration::from_secs(60),
            ready_timeout: Duration::from_secs(240),
            stall_timeout: vm::STALL_TIMEOUT,
        }
    }
}

/// The launch digest of an image's exact boot inputs, and its kernel-hashes page.
pub fn expected(
    image: &Image,
    initrd: &std::path::Path,
    vcpus: u32,
) -> Result<([u8; 48], u64, [u8; 4096])> {
    let (fw, boot) = AmdSevFirmware::load_with_boot(
        &image.firmware.amdsev,
        &image.kernel,
        Some(initrd),
        Some(&image.cmdline),
    )?;
    let digest = fw.snp_launch_digest(&AmdLaunch {
        mode: SevMode::Snp,
        vcpus,
        vcpu_type: vcpu_type(VCPU_TYPE)?,
        vmm: vmm_type("QEMU")?,
        guest_features: 0x1,
        boot: Some(boot),
    })?;
    let (gpa, page) = fw.hashes_page(&boot)?;
    Ok((digest, gpa, page))
}

/// Where the console of a failed boot is saved: beside the image's initrd.
fn console_log_path(image: &Image) -> PathBuf {
    image
        .initrd
        .parent()
        .map_or_else(|| PathBuf::from("console.log"), |d| d.join("console.log"))
}

/// A running emulated guest; everything is stopped on drop.
pub struct RunningGuest {
    // Field order is drop order: QEMU first, then vhost-device-vsock, then the processor.
    vm: Vm,
    vhost: VhostVsock,
    sp_stop: Arc<AtomicBool>,
    sp_thread: Option<std::thread::JoinHandle<()>>,
    /// The emulated root the evidence chains to.
    pub root: InsecureEmulatedRoot,
    /// The launch digest the processor reports.
    pub measurement: [u8; 48],
    /// The guest's HTTP endpoint.
    pub endpoint: GuestEndpoint,
    /// The ready line.
    pub ready_line: String,
    /// Time from QEMU start to the ready line.
    pub boot_time: Duration,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for RunningGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningGuest")
            .field("measurement", &hex::encode(self.measurement))
            .field("boot_time", &self.boot_time)
            .finish_non_exhaustive()
    }
}

/// Why a launch, or an exchange with the launched guest, failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The boot did not reach the ready line.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The expected launch digest or kernel-hashes page could not be computed.
    #[error("expected measurement: {0}")]
    Measure(#[from] cloister_launch::sev::LaunchError),
    /// vhost-device-vsock, or another tool of this crate, failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A scratch file or socket could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The OS random source failed (the processor's seed).
    #[error("random seed: {0}")]
    Random(String),
    /// The emulated processor could not be made.
    #[error("emulated secure processor: {0}")]
    EmulatedSp(String),
    /// An exchange with the guest failed.
    #[error(transparent)]
    Guest(#[from] GuestHttpError),
    /// The guest answered with an error status.
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        /// Which exchange.
        what: &'static str,
        /// The status.
        status: u16,
        /// The answer's text.
        body: String,
    },
    /// An OHTTP layer failed.
    #[error("OHTTP: {0}")]
    Ohttp(#[from] ohttp::Error),
    /// A Binary HTTP message failed (or its padding).
    #[error("Binary HTTP: {0}")]
    Bhttp(#[from] cloister_protocol::padding::PaddingError),
    /// The firmware booted a kernel whose inputs do not match its hashes page.
    #[error("the firmware booted a kernel whose inputs do not match the hashes page")]
    FirmwareAccepted,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> LaunchError {
    move |source| LaunchError::Io { what, source }
}

impl RunningGuest {
    /// Launches `image` and waits for the runtime's ready line.
    pub fn start(image: &Image, opts: &LaunchOptions) -> Result<Self, LaunchError> {
        let dir = tempfile::tempdir().map_err(io("creating a scratch directory"))?;
        let boot_initrd = opts
            .boot_initrd
            .clone()
            .unwrap_or_else(|| image.initrd.clone());
        let measured_initrd = if opts.measure_boot_initrd {
            &boot_initrd
        } else {
            &image.initrd
        };
        let (measurement, gpa, page) = expected(image, measured_initrd, opts.vcpus)?;
        let page_path = dir.path().join("hashes-page.bin");
        std::fs::write(&page_path, page).map_err(io("writing the hashes page"))?;

        let mut vhost = VhostVsock::start(dir.path(), GUEST_CID)?;
        let seed = match opts.seed {
            Some(s) => s,
            None => {
                let mut s = [0u8; 32];
                getrandom::fill(&mut s).map_err(|e| LaunchError::Random(e.to_string()))?;
                s
            }
        };
        let signer = EmulatedSnpSigner::from_seed(&seed)
            .map_err(|e| LaunchError::EmulatedSp(e.to_string()))?;
        let root = signer
            .insecure_root()
            .map_err(|e| LaunchError::EmulatedSp(e.to_string()))?;
        let sp = EmulatedSp::new(signer, measurement);
        let sp_path = vhost.host_port_path(image.config.emulated_sp_port);
        let listener = std::os::unix::net::UnixListener::bind(&sp_path)
            .map_err(io("binding the processor's socket"))?;
        let sp_stop = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&sp_stop);
        let sp_thread = std::thread::spawn(move || {
            if let Err(e) = sp.serve(listener, &stop) {
                eprintln!("emulated secure processor stopped: {e}");
            }
        });

        let spec = VmSpec {
            platform: LaunchPlatform::Emulated,
            firmware: image.firmware.amdsev.clone(),
            kernel: image.kernel.clone(),
            initrd: boot_initrd,
            disk: opts
                .boot_disk
                .clone()
                .or_else(|| image.weights_disk.as_ref().map(|d| d.path.clone())),
            cmdline: image.cmdline.clone(),
            hashes_page: Some((gpa, page_path)),
            memory_mib: opts.memory_mib,
            vcpus: opts.vcpus,
            cpu: TCG_CPU.to_owned(),
            vhost_socket: vhost.socket.clone(),
            scratch: dir.path().to_owned(),
        };
        // TCG occasionally crashes the kernel during boot (an emulation fault, not the image):
        // retry such a boot, saying so; any other failure is final.
        let mut attempt = 1;
        let (vm, ready_line) = loop {
            let mut vm = Vm::start(&spec)?;
            match vm.wait_for(
                vm::READY_MARK,
                opts.kernel_timeout,
                opts.ready_timeout,
                opts.stall_timeout,
            ) {
                Ok(line) => break (vm, line),
                Err(e) => {
                    // The whole console of a failed boot, for diagnosis (the guest never
                    // prints request content).
                    let log = console_log_path(image);
                    if std::fs::write(&log, vm.transcript().join("\n")).is_ok() {
                        eprintln!("[launch] boot failed: console saved to {}", log.display());
                    }
                    match e {
                        BootError::KernelPanic(tail) | BootError::Stalled(_, tail)
                            if attempt < 3 =>
                        {
                            let last = tail.lines().last().unwrap_or_default().to_owned();
                            eprintln!(
                                "[launch] the guest kernel crashed or hung under TCG ({last}); retrying"
                            );
                            attempt += 1;
                            // vhost-device-vsock ends with its QEMU: a fresh one for the retry
                            // (the old one stopped first: they share the socket paths).
                            vm.kill();
                            drop(vhost);
                            vhost = VhostVsock::start(dir.path(), GUEST_CID)?;
                        }
                        e => return Err(e.into()),
                    }
                }
            }
        };
        let boot_time = vm.uptime();
        let endpoint = GuestEndpoint {
            uds: vhost.uds.clone(),
            port: image.config.port,
            timeout: image.config.deadline + Duration::from_secs(30),
        };
        Ok(RunningGuest {
            vm,
            vhost,
            sp_stop,
            sp_thread: Some(sp_thread),
            root,
            measurement,
            endpoint,
            ready_line,
            boot_time,
            _dir: dir,
        })
    }

    /// QEMU's process id (fault tests stop and kill it).
    pub fn vm_pid(&self) -> u32 {
        self.vm.pid()
    }

    /// vhost-device-vsock's process id (fault tests kill it).
    pub fn vhost_pid(&self) -> u32 {
        self.vhost.pid()
    }

    /// Everything the console showed.
    pub fn console(&self) -> Vec<String> {
        self.vm.transcript()
    }

    /// Fetches the evidence bundle (JSON) with an optional nonce.
    pub fn evidence(&self, nonce: &[u8]) -> Result<Vec<u8>> {
        let path = cloister_protocol::node::evidence_path(nonce);
        let r = self.endpoint.request("GET", &path, None, Vec::new())?;
        if r.status != 200 {
            return Err(LaunchError::Status {
                what: "evidence",
                status: r.status,
                body: String::from_utf8_lossy(&r.body).into_owned(),
            });
        }
        Ok(r.body)
    }

    /// A verifier under the emulated root accepting `measurements`.
    pub fn verifier(&self, measurements: &[[u8; 48]]) -> Verifier<SystemClock> {
        let mut policy = Policy::default();
        for m in measurements {
            policy = policy.with_snp_measurement(*m);
        }
        Verifier::new(
            TrustAnchor::InsecureEmulated(self.root.clone()),
            policy,
            SystemClock,
        )
    }

    /// Sends one request through inner OHTTP to the attested key; returns the inner status and
    /// body.
    pub fn call(
        &self,
        verified: &Verified,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let mut m = Message::request(
            method.as_bytes().to_vec(),
            b"https".to_vec(),
            b"cloister-guest".to_vec(),
            path.as_bytes().to_vec(),
        );
        m.put_header("content-type", cloister_protocol::media::JSON);
        m.write_content(body);
        let plain = padding::write_padded(&m, padding::Layer::Inner)?;
        let client = ohttp::ClientRequest::from_encoded_config(&verified.key_config)?;
        let (enc, ctx) = client.encapsulate(&plain)?;
        let Reply { status, body, .. } = self.endpoint.request(
            "POST",
            cloister_protocol::node::OHTTP_PATH,
            Some(cloister_protocol::access::OHTTP_REQ_MEDIA),
            enc,
        )?;
        if status != 200 {
            return Err(LaunchError::Status {
                what: "ohttp",
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let plain = ctx.decapsulate(&body)?;
        let m = padding::read_padded(&plain)?;
        let inner = m.control().status().map_or(0, |s| s.code());
        Ok((inner, m.content().to_vec()))
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        self.vm.kill();
        self.sp_stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.sp_thread.take() {
            let _ = t.join();
        }
    }
}

/// Boots `image` with its initrd replaced and expects the firmware to refuse it: the launch
/// must not reach the kernel.
pub fn expect_firmware_refusal(image: &Image, opts: &LaunchOptions) -> Result<BootError> {
    match RunningGuest::start(image, opts) {
        Ok(_) => Err(LaunchError::FirmwareAccepted),
        Err(LaunchError::Boot(e)) => Ok(e),
        Err(e) => Err(e),
    }
}
