//! The weights disk: a read-only virtio disk holding an EROFS image and, after it, its
//! dm-verity hash tree. The tree's root hash comes from the measured kernel command line, so
//! the kernel checks every block the summariser reads against the launch measurement; a block
//! changed on the host reads as an I/O error, never as different weights.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloister_dm::{DmError, Target};
use cloister_protocol::VerityWeights;
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};

/// The first virtio disk, where the host attaches the weights disk.
pub const DISK: &str = "/dev/vda";
/// The mapped device's name.
pub const MAPPED_NAME: &str = "cloister-weights";
/// How long `virtio_blk` may take to bring up the disk after it is loaded.
const DISK_WAIT: Duration = Duration::from_secs(10);

/// Why the weights disk could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WeightsDiskError {
    /// No disk appeared.
    #[error(
        "cloister.weights=verity but {DISK} did not appear within {0:?} (no weights disk attached?)"
    )]
    NoDisk(Duration),
    /// The disk is smaller than the data and its hash tree.
    #[error("{DISK} holds {have} bytes, less than the {need} bytes of data the command line names")]
    TooSmall {
        /// Bytes on the disk.
        have: u64,
        /// Bytes of data named.
        need: u64,
    },
    /// The verity device could not be created.
    #[error("setting up dm-verity over {DISK}: {0}")]
    Mapper(#[from] DmError),
    /// The verified file system could not be mounted.
    #[error("mounting the verified weights ({node}) on {target}: {errno}")]
    Mount {
        /// The mapped device node.
        node: String,
        /// Mount point.
        target: String,
        /// Error.
        errno: Errno,
    },
}

fn wait_for_disk(limit: Duration) -> Result<(), WeightsDiskError> {
    let started = Instant::now();
    while !Path::new(DISK).exists() {
        if started.elapsed() > limit {
            return Err(WeightsDiskError::NoDisk(limit));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Size of the disk in bytes (sysfs counts 512-byte sectors).
fn disk_bytes() -> Option<u64> {
    let sectors = std::fs::read_to_string("/sys/class/block/vda/size").ok()?;
    sectors.trim().parse::<u64>().ok().map(|s| s * 512)
}

/// Opens the weights disk through dm-verity with `verity`'s root hash and mounts its EROFS
/// file system read-only on `target`. Returns the mapped device node.
pub fn mount_verity(verity: &VerityWeights, target: &Path) -> Result<PathBuf, WeightsDiskError> {
    wait_for_disk(DISK_WAIT)?;
    if let Some(have) = disk_bytes()
        && have < verity.data_bytes()
    {
        return Err(WeightsDiskError::TooSmall {
            have,
            need: verity.data_bytes(),
        });
    }
    let table = Target::parse(&verity.table(DISK))?;
    let (_, node) = cloister_dm::create_readonly(MAPPED_NAME, &table)?;
    let _ = std::fs::create_dir_all(target);
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(&node), target, Some("erofs"), flags, None::<&str>).map_err(|errno| {
        WeightsDiskError::Mount {
            node: node.display().to_string(),
            target: target.display().to_string(),
            errno,
        }
    })?;
    Ok(node)
}
