//! Device-mapper control for the guest's PID 1: creates one read-only mapped device from one
//! target line (here, the dm-verity target over the weights disk), through the kernel's
//! `/dev/mapper/control` ioctls (`include/uapi/linux/dm-ioctl.h`, interface version 4).
//!
//! The guest has no `dmsetup` and its kernel has device-mapper as a module, so the kernel's
//! `dm-mod.create=` boot parameter (built-in only) is not available. The `devicemapper` crate
//! wraps libdevmapper through bindgen and cannot link into the static musl init; the interface
//! used here is three ioctls over one fixed 312-byte header, encoded in safe code below and
//! handed to the kernel in [`ioctl`] (the crate's only `unsafe`).

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

/// The control node (devtmpfs creates it when `dm-mod` loads).
pub const CONTROL: &str = "/dev/mapper/control";

/// `sizeof(struct dm_ioctl)`.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const SPEC: usize = 40;
/// `DM_NAME_LEN`, `DM_UUID_LEN`, `DM_MAX_TYPE_NAME`.
const NAME_LEN: usize = 128;
const UUID_LEN: usize = 129;
const TYPE_LEN: usize = 16;
/// Field offsets in `struct dm_ioctl`.
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_FLAGS: usize = 28;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;
const OFF_UUID: usize = OFF_NAME + NAME_LEN;
// `data[7]` follows the uuid: the header ends 7 bytes after it.
const _: () = assert!(OFF_UUID + UUID_LEN + 7 == HEADER);
/// `DM_VERSION_MAJOR` and the oldest minor this code relies on.
const VERSION: [u32; 3] = [4, 0, 0];
/// `DM_IOCTL`, the ioctl type byte.
const DM_IOCTL: u8 = 0xfd;
/// `DM_READONLY_FLAG`.
const READONLY: u32 = 1;
/// Output buffer for commands that answer with data.
const REPLY: usize = 16 * 1024;

/// The commands used (`enum { DM_VERSION_CMD = 0, … }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    DevCreate = 3,
    DevRemove = 4,
    DevSuspend = 6,
    TableLoad = 9,
}

/// Why a mapped device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    /// The name is empty, too long, or not plain ASCII without `/`.
    #[error("device-mapper name {0:?} is not 1-127 plain ASCII characters without '/'")]
    Name(String),
    /// The target type or parameters cannot be carried (type over 15 bytes, a NUL inside).
    #[error("device-mapper target {0:?} cannot be encoded")]
    Target(String),
    /// `/dev/mapper/control` is missing or cannot be opened (is `dm-mod` loaded?).
    #[error("opening {CONTROL}: {0}")]
    Control(std::io::Error),
    /// The kernel refused a command.
    #[error("device-mapper {command} for {name}: {errno}")]
    Refused {
        /// The command.
        command: &'static str,
        /// The device's name.
        name: String,
        /// The kernel's answer.
        errno: Errno,
    },
    /// The created device's node did not appear.
    #[error("{0} did not appear")]
    NoNode(String),
}

/// One target: `length` sectors from `start`, of type `kind` with `params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// First sector.
    pub start: u64,
    /// Sectors.
    pub length: u64,
    /// Target type (`verity`, `linear`, …).
    pub kind: String,
    /// Target parameters, as `dmsetup table` prints them after the type.
    pub params: String,
}

impl Target {
    /// Parses a `dmsetup` table line: `START LENGTH TYPE PARAMS…`.
    pub fn parse(line: &str) -> Result<Target, DmError> {
        let bad = || DmError::Target(line.chars().take(80).collect());
        let mut words = line.trim().splitn(4, ' ');
        let start = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let length = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let kind = words.next().filter(|w| !w.is_empty()).ok_or_else(bad)?;
        let params = words.next().unwrap_or("");
        Ok(Target {
            start,
            length,
            kind: kind.to_owned(),
            params: params.to_owned(),
        })
    }
}

/// A device's major and minor numbers, as `struct dm_ioctl`'s `dev` carries them
/// (`huge_encode_dev`: minor bits 0-7 and 20-31, major bits 8-19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNumber {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
}

impl DevNumber {
    fn decode(dev: u64) -> DevNumber {
        DevNumber {
            major: ((dev & 0xfff00) >> 8) as u32,
            minor: ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32,
        }
    }

    /// The node devtmpfs gives a mapped device (`/dev/dm-MINOR`).
    pub fn node(&self) -> PathBuf {
        PathBuf::from(format!("/dev/dm-{}", self.minor))
    }
}

fn check_name(name: &str) -> Result<(), DmError> {
    let ok = !name.is_empty()
        && name.len() < NAME_LEN
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if ok {
        Ok(())
    } else {
        Err(DmError::Name(name.chars().take(NAME_LEN).collect()))
    }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// The header of a command on device `name`, followed by `payload` (already 8-byte aligned),
/// in a buffer of at least `size` bytes.
fn encode(name: &str, flags: u32, targets: u32, payload: &[u8], size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; size.max(HEADER + payload.len())];
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut buf, 4 * i, *v);
    }
    let len = buf.len() as u32;
    put_u32(&mut buf, OFF_DATA_SIZE, len);
    put_u32(&mut buf, OFF_DATA_START, HEADER as u32);
    put_u32(&mut buf, OFF_TARGET_COUNT, targets);
    put_u32(&mut buf, OFF_FLAGS, flags);
    buf[OFF_NAME..OFF_NAME + name.len()].copy_from_slice(name.as_bytes());
    buf[HEADER..HEADER + payload.len()].copy_from_slice(payload);
    buf
}

/// `struct dm_target_spec` and its NUL-terminated parameters, padded to 8 bytes.
fn target_spec(t: &Target) -> Result<Vec<u8>, DmError> {
    let bad = || DmError::Target(format!("{} {}", t.kind, t.params));
    if t.kind.is_empty() || t.kind.len() >= TYPE_LEN || t.kind.contains('\0') {
        return Err(bad());
    }
    if t.params.contains('\0') {
        return Err(bad());
    }
    let len = (SPEC + t.params.len() + 1).next_multiple_of(8);
    let mut spec = vec![0u8; len];
    spec[0..8].copy_from_slice(&t.start.to_ne_bytes());
    spec[8..16].copy_from_slice(&t.length.to_ne_bytes());
    // status (s32) stays 0; next = offset of the following spec from this one.
    put_u32(&mut spec, 20, len as u32);
    spec[24..24 + t.kind.len()].copy_from_slice(t.kind.as_bytes());
    spec[SPEC..SPEC + t.params.len()].copy_from_slice(t.params.as_bytes());
    Ok(spec)
}

/// Issues `command` with `buf` (a complete `struct dm_ioctl` plus data) and returns the
/// kernel's answer in place.
#[allow(unsafe_code)]
fn ioctl(control: &File, command: Command, buf: &mut [u8]) -> Result<(), Errno> {
    // The kernel reads and writes `data_size` bytes through the pointer; keep them in an
    // 8-byte-aligned buffer of exactly that size (the header's u64 field is read in place).
    let mut words: Vec<u64> = buf
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(w)
        })
        .collect();
    let request = nix::request_code_readwrite!(DM_IOCTL, command as u8, HEADER);
    // SAFETY: `words` is a live, aligned, writable allocation of at least `data_size` bytes
    // (the header's `data_size` is `buf.len()`, and `words` holds `buf.len()` rounded up to
    // 8); the kernel accesses no more than `data_size` bytes through it, and the fd is open
    // for the call's duration.
    let ret = unsafe {
        nix::libc::ioctl(
            control.as_raw_fd(),
            request as _,
            words.as_mut_ptr().cast::<u8>(),
        )
    };
    Errno::result(ret)?;
    for (c, w) in buf.chunks_mut(8).zip(&words) {
        c.copy_from_slice(&w.to_ne_bytes()[..c.len()]);
    }
    Ok(())
}

fn command(
    control: &File,
    name: &str,
    what: Command,
    label: &'static str,
    buf: &mut [u8],
) -> Result<(), DmError> {
    ioctl(control, what, buf).map_err(|errno| DmError::Refused {
        command: label,
        name: name.to_owned(),
        errno,
    })
}

/// Creates the read-only device `name` mapping `target`, activates it, and waits for its node.
/// On failure after the device was created, it is removed again.
pub fn create_readonly(name: &str, target: &Target) -> Result<(DevNumber, PathBuf), DmError> {
    create_readonly_through(Path::new(CONTROL), name, target)
}

/// [`create_readonly`] through the control node at `control`.
fn create_readonly_through(
    control: &Path,
    name: &str,
    target: &Target,
) -> Result<(DevNumber, PathBuf), DmError> {
    check_name(name)?;
    let spec = target_spec(target)?;
    let control = File::options()
        .read(true)
        .write(true)
        .open(control)
        .map_err(DmError::Control)?;
    let mut create = encode(name, 0, 0, &[], REPLY);
    command(&control, name, Command::DevCreate, "create", &mut create)?;
    let mut dev = [0u8; 8];
    dev.copy_from_slice(&create[OFF_DEV..OFF_DEV + 8]);
    let number = DevNumber::decode(u64::from_ne_bytes(dev));
    let activated = (|| {
        let mut load = encode(name, READONLY, 1, &spec, 0);
        command(&control, name, Command::TableLoad, "table load", &mut load)?;
        // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table goes live.
        let mut resume = encode(name, 0, 0, &[], REPLY);
        command(&control, name, Command::DevSuspend, "resume", &mut resume)?;
        wait_for_node(&number.node(), Duration::from_secs(5))
    })();
    if let Err(e) = activated {
        let mut remove = encode(name, 0, 0, &[], REPLY);
        let _ = ioctl(&control, Command::DevRemove, &mut remove);
        return Err(e);
    }
    Ok((number, number.node()))
}

fn wait_for_node(node: &std::path::Path, limit: Duration) -> Result<(), DmError> {
    let started = Instant::now();
    while !node.exists() {
        if started.elapsed() > limit {
            return Err(DmError::NoNode(node.display().to_string()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(buf: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
    }

    #[test]
    fn the_header_has_the_kernels_layout() {
        let buf = encode("cloister-weights", READONLY, 1, &[7; 16], 0);
        assert_eq!(buf.len(), HEADER + 16);
        assert_eq!(
            [u32_at(&buf, 0), u32_at(&buf, 4), u32_at(&buf, 8)],
            [4, 0, 0]
        );
        assert_eq!(u32_at(&buf, OFF_DATA_SIZE), (HEADER + 16) as u32);
        assert_eq!(u32_at(&buf, OFF_DATA_START), 312);
        assert_eq!(u32_at(&buf, OFF_TARGET_COUNT), 1);
        assert_eq!(u32_at(&buf, OFF_FLAGS), READONLY);
        assert_eq!(&buf[48..64], b"cloister-weights");
        assert!(
            buf[64..HEADER].iter().all(|&b| b == 0),
            "name NUL-padded, empty uuid"
        );
        assert_eq!(&buf[HEADER..], &[7; 16]);
        // A command that answers gets room for the answer, and says so in data_size.
        let big = encode("x", 0, 0, &[], REPLY);
        assert_eq!(big.len(), REPLY);
        assert_eq!(u32_at(&big, OFF_DATA_SIZE), REPLY as u32);
    }

    #[test]
    fn the_target_spec_carries_type_and_parameters() {
        let t = Target::parse("0 208 verity 1 /dev/vda /dev/vda 4096 4096 26 26 sha256 ab cd")
            .expect("parses");
        assert_eq!((t.start, t.length, t.kind.as_str()), (0, 208, "verity"));
        let spec = target_spec(&t).expect("encodes");
        assert_eq!(spec.len() % 8, 0);
        assert_eq!(u64::from_ne_bytes(spec[0..8].try_into().expect("8")), 0);
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().expect("8")), 208);
        assert_eq!(u32_at(&spec, 20) as usize, spec.len());
        assert_eq!(&spec[24..31], b"verity\0");
        let params = &spec[SPEC..];
        let end = params.iter().position(|&b| b == 0).expect("NUL-terminated");
        assert_eq!(
            &params[..end],
            b"1 /dev/vda /dev/vda 4096 4096 26 26 sha256 ab cd"
        );
    }

    #[test]
    fn refuses_what_cannot_be_encoded() {
        for line in ["", "0", "0 8", "x 8 linear", "0 -8 linear a"] {
            assert!(
                matches!(Target::parse(line), Err(DmError::Target(_))),
                "{line:?}"
            );
        }
        let long = Target::parse("0 8 averyveryverylongtype p").expect("parses");
        assert!(matches!(target_spec(&long), Err(DmError::Target(_))));
        let nul = Target::parse("0 8 linear a\0b").expect("parses");
        assert!(matches!(target_spec(&nul), Err(DmError::Target(_))));
        for name in ["", "a/b", "tab\there", &"n".repeat(128)] {
            assert!(
                matches!(check_name(name), Err(DmError::Name(_))),
                "{name:?}"
            );
        }
        check_name("cloister-weights").expect("a plain name");
    }

    #[test]
    fn decodes_device_numbers_as_the_kernel_encodes_them() {
        // huge_encode_dev(MKDEV(254, 0)) and (253, 300).
        assert_eq!(
            DevNumber::decode(0xfe00),
            DevNumber {
                major: 254,
                minor: 0
            }
        );
        assert_eq!(
            DevNumber::decode(0x10_fd2c),
            DevNumber {
                major: 253,
                minor: 300
            }
        );
        assert_eq!(DevNumber::decode(0xfe00).node(), PathBuf::from("/dev/dm-0"));
    }

    #[test]
    fn without_device_mapper_the_error_names_the_control_node() {
        // A control node that is not there (a kernel without device-mapper), whatever the host.
        let dir = std::env::temp_dir().join("cloister-dm-test-no-such-dir");
        let t = Target::parse("0 8 zero").expect("parses");
        match create_readonly_through(&dir.join("control"), "cloister-test", &t) {
            Err(DmError::Control(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
            other => panic!("expected a control-node error, got {other:?}"),
        }
    }
}
