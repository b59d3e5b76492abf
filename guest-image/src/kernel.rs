//! The guest kernel: Debian's 6.12 cloud kernel from bookworm-backports, pinned by version and
//! sha256, and the few modules the guest loads, decompressed and pinned one by one.
//!
//! The package is fetched through a private apt context (a `deb` source for bookworm-backports
//! on the machine's configured mirror), so the signed index vouches for it as well as the pin:
//! the index must list the pinned sha256 for the pinned version, and the downloaded `.deb` must
//! have it. The `vmlinuz` and every decompressed module are pinned too, so a different package
//! behind the same name, or a different decompressor, cannot change the image unnoticed.

use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::{PrivateApt, Source, configured_mirror};
use crate::digest::check_sha256;
use crate::error::ImageError;
use crate::run::{Progress, require_tool, run_logged};

/// A Debian kernel image package, pinned.
#[derive(Debug, Clone, Copy)]
pub struct KernelPackage {
    /// Binary package name.
    pub name: &'static str,
    /// Package version.
    pub version: &'static str,
    /// The Debian suite that carries it.
    pub suite: &'static str,
    /// The file `apt-get download` writes.
    pub deb_file: &'static str,
    /// sha256 of the `.deb`, as the signed package index lists it.
    pub deb_sha256: &'static str,
    /// The kernel release (`uname -r`): names `boot/vmlinuz-*` and `lib/modules/*`.
    pub release: &'static str,
}

/// Linux 6.12.95 cloud kernel for amd64 from Debian bookworm-backports.
pub const KERNEL: KernelPackage = KernelPackage {
    name: "linux-image-6.12.95+deb12-cloud-amd64",
    version: "6.12.95-1~bpo12+1",
    suite: "bookworm-backports",
    deb_file: "linux-image-6.12.95+deb12-cloud-amd64_6.12.95-1~bpo12+1_amd64.deb",
    deb_sha256: "69c92f43b23821de79576fa4d7c86e2924ae2c1b247a47cc5ed9339e220fbcb7",
    release: "6.12.95+deb12-cloud-amd64",
};

/// sha256 of `boot/vmlinuz-6.12.95+deb12-cloud-amd64` from [`KERNEL`].
pub const VMLINUZ_SHA256: &str = "fadf27c4528461030ddff1d20e6622f76e1e007f7c64796f5ad9b71e37267a6f";

/// A kernel module the guest loads, pinned by the sha256 of its decompressed `.ko` (the same
/// bytes `xz -dc` gives; lzma-rs checks each block's CRC32 as it decompresses).
#[derive(Debug, Clone, Copy)]
pub struct PinnedModule {
    /// Module file name without `.ko` (as it is spelled on disk, e.g. `sev-guest`).
    pub name: &'static str,
    /// sha256 of the decompressed `.ko`.
    pub sha256: &'static str,
}

/// The modules the guest needs, in load order: the vsock transport (host ⇄ guest HTTP), then
/// configfs and the TSM report interface, then the platform's attestation driver, then what a
/// dm-verity weights disk needs (virtio disk, device-mapper and its verity target, the SHA-256
/// SIMD implementations, EROFS).
pub const MODULES: [PinnedModule; 15] = [
    PinnedModule {
        name: "vsock",
        sha256: "bce39bf2b50cf19ea15faf1ffb5a6ee609ef1c9c4805393afb8c90dfcf796800",
    },
    PinnedModule {
        name: "vmw_vsock_virtio_transport_common",
        sha256: "960a8084bf14ca042e11fb64b4ff1cff34e6c545f0e23c43bb0c7474fb43a973",
    },
    PinnedModule {
        name: "vmw_vsock_virtio_transport",
        sha256: "0e35938d79c84340a9acb5838e4b8423c1c8ab79b0641f0f1d4d5ed59a1c392d",
    },
    PinnedModule {
        name: "configfs",
        sha256: "a46a19092ef7bb7025269fdea562046ff56775132556166e7986bf498d1a819b",
    },
    PinnedModule {
        name: "tsm",
        sha256: "003c120512f7dd1159d70ffc7dfadc490964fb055615183d71934fe01b6f6872",
    },
    PinnedModule {
        name: "sev-guest",
        sha256: "978c85b2eac0c5e05ec8e83dac428375d8f022680f15112e74823fef332d548c",
    },
    PinnedModule {
        name: "tdx-guest",
        sha256: "d7568c5abc240f1fbd1d524a97c7df8e6f245a05c9a0b182ac87da32853ab693",
    },
    PinnedModule {
        name: "virtio_blk",
        sha256: "49d13257e6d409518c7f8363fc2b9f3185719ae43b540d8ad457d23e9c4114b3",
    },
    PinnedModule {
        name: "dm-mod",
        sha256: "4ebe4667ebc1da3b6cdfc35a34f97ed5c19a01055fa08ed70d84044dcb962aea",
    },
    PinnedModule {
        name: "dm-bufio",
        sha256: "c77436b1adfa2b16226b8ae70663e62c611ff0e7c65daabdb4d0e28cc5f3094f",
    },
    PinnedModule {
        name: "reed_solomon",
        sha256: "f5d8283e5ad638c7203aa3a6508cb6cc12bcfe8fd9322c91f82d6092507b8ecf",
    },
    PinnedModule {
        name: "dm-verity",
        sha256: "6c255c8e0ff4fec00763cb6f2eb0792f5cf07b4ae3d2672b8abcbfe02ffe0e93",
    },
    PinnedModule {
        name: "sha256-ssse3",
        sha256: "40c8887cfb1232924c2656f1f1fb30493b52a937e0c8740a9724f6d2ea801b59",
    },
    PinnedModule {
        name: "libcrc32c",
        sha256: "41ea88f3e63a1eee95a4980933f76e1ba4637c268f9d1006a09d6e4090ce101e",
    },
    PinnedModule {
        name: "erofs",
        sha256: "64cce2d10872ea756039942e6096c99d9691b52587dcb8948f137587fd19e4ae",
    },
];

/// The pinned kernel, ready to boot and pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The compressed kernel image (bzImage) QEMU boots.
    pub vmlinuz: PathBuf,
    /// (module name, decompressed `.ko`), in load order ([`MODULES`]).
    pub modules: Vec<(String, PathBuf)>,
}

/// Where the kernel of the pinned version is kept under the cache root.
pub fn kernel_dir(cache: &Path) -> PathBuf {
    cache.join("kernel").join(KERNEL.version)
}

/// Where the cached files of the pinned kernel are (`dir/vmlinuz-*`, `dir/modules/*.ko`).
fn layout(dir: &Path) -> Kernel {
    let modules = dir.join("modules");
    Kernel {
        vmlinuz: dir.join(format!("vmlinuz-{}", KERNEL.release)),
        modules: MODULES
            .iter()
            .map(|m| (m.name.to_owned(), modules.join(format!("{}.ko", m.name))))
            .collect(),
    }
}

/// Fails unless every file of `kernel` has its pinned digest.
fn check_pins(kernel: &Kernel) -> Result<(), ImageError> {
    check_sha256(
        &format!("kernel {}", KERNEL.release),
        &kernel.vmlinuz,
        VMLINUZ_SHA256,
    )?;
    for ((name, path), pin) in kernel.modules.iter().zip(MODULES.iter()) {
        check_sha256(&format!("kernel module {name}"), path, pin.sha256)?;
    }
    Ok(())
}

/// The cached kernel, if present and equal to the pins.
pub fn cached(cache: &Path) -> Option<Kernel> {
    let kernel = layout(&kernel_dir(cache));
    check_pins(&kernel).is_ok().then_some(kernel)
}

/// Returns the pinned kernel and modules, fetching the package when they are not cached, and
/// fails unless every byte equals the pins.
pub fn ensure(cache: &Path) -> Result<Kernel, ImageError> {
    if let Some(k) = cached(cache) {
        return Ok(k);
    }
    let dir = kernel_dir(cache);
    std::fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(ImageError::io("creating", &lock_path))?;
    // Another process may be fetching the same version: wait for it, then look again.
    lock.lock().map_err(ImageError::io("locking", &lock_path))?;
    if let Some(k) = cached(cache) {
        return Ok(k);
    }
    require_tool("apt-get", "apt")?;
    require_tool("dpkg-deb", "dpkg")?;
    let progress = Progress::new("kernel");
    let deb = fetch_deb(cache, &dir, &progress)?;
    let kernel = unpack(&deb, &dir, &progress)?;
    check_pins(&kernel)?;
    progress.finish("kernel and modules match the pinned sha256");
    Ok(kernel)
}

/// Downloads the pinned `.deb` (unless present with its pinned digest) and checks it.
fn fetch_deb(cache: &Path, dir: &Path, progress: &Progress) -> Result<PathBuf, ImageError> {
    let deb = dir.join(KERNEL.deb_file);
    if check_sha256(KERNEL.name, &deb, KERNEL.deb_sha256).is_ok() {
        return Ok(deb);
    }
    progress.stage(&format!("fetching {} {}", KERNEL.name, KERNEL.version));
    let mirror = configured_mirror()?;
    let sources = [Source {
        kind: "deb",
        uri: mirror.archive,
        suites: vec![KERNEL.suite.to_owned()],
    }];
    let apt = PrivateApt::new(&cache.join("apt-kernel"), &sources, progress)?;
    // The signed index must vouch for the pinned digest, not only the pin for itself.
    let mut cmd = apt.command("apt-cache");
    cmd.arg("show")
        .arg(format!("{}={}", KERNEL.name, KERNEL.version));
    let out = cmd
        .output()
        .map_err(ImageError::io("running apt-cache for", KERNEL.name))?;
    let listed = binary_sha256(
        &String::from_utf8_lossy(&out.stdout),
        KERNEL.name,
        KERNEL.version,
    );
    match listed {
        Some(sha) if sha == KERNEL.deb_sha256 => {}
        Some(sha) => {
            return Err(ImageError::VersionNotListed {
                package: KERNEL.name.to_owned(),
                version: KERNEL.version.to_owned(),
                detail: format!(
                    "the index lists sha256 {sha}, not the pinned {}",
                    KERNEL.deb_sha256
                ),
            });
        }
        None => {
            return Err(ImageError::VersionNotListed {
                package: KERNEL.name.to_owned(),
                version: KERNEL.version.to_owned(),
                detail: format!(
                    "no SHA256 for that version in the {} index ({})",
                    KERNEL.suite,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
    }
    let mut cmd = apt.command("apt-get");
    cmd.arg("download")
        .arg(format!("{}={}", KERNEL.name, KERNEL.version))
        .current_dir(dir);
    run_logged(cmd, &dir.join("apt-download.log"), progress)?;
    check_sha256(KERNEL.name, &deb, KERNEL.deb_sha256)?;
    Ok(deb)
}

/// The `SHA256:` field of `package` `version` in `apt-cache show` output.
fn binary_sha256(text: &str, package: &str, version: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k == name).then(|| v.trim())
            })
        };
        (field("Package") == Some(package) && field("Version") == Some(version))
            .then(|| field("SHA256").map(str::to_owned))
            .flatten()
    })
}

/// Extracts the package, copies the kernel image and decompresses the modules into `dir`.
fn unpack(deb: &Path, dir: &Path, progress: &Progress) -> Result<Kernel, ImageError> {
    progress.stage("extracting the package");
    let tree = dir.join("extract");
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(ImageError::io("removing", &tree))?;
    }
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(deb).arg(&tree);
    run_logged(cmd, &dir.join("dpkg-deb.log"), progress)?;

    let kernel = layout(dir);
    let image = tree
        .join("boot")
        .join(format!("vmlinuz-{}", KERNEL.release));
    if !image.is_file() {
        return Err(ImageError::Missing {
            artifact: format!("kernel image in {}", KERNEL.deb_file),
            path: image,
        });
    }
    std::fs::copy(&image, &kernel.vmlinuz).map_err(ImageError::io("copying", &image))?;

    progress.stage("decompressing the modules");
    let names: Vec<&str> = MODULES.iter().map(|m| m.name).collect();
    let modules_root = tree
        .join("lib")
        .join("modules")
        .join(KERNEL.release)
        .join("kernel");
    let found = find_modules(&modules_root, &names)?;
    let modules_dir = dir.join("modules");
    std::fs::create_dir_all(&modules_dir).map_err(ImageError::io("creating", &modules_dir))?;
    for ((_, src), (_, dest)) in found.iter().zip(kernel.modules.iter()) {
        decompress_xz(src, dest)?;
    }
    // The extracted tree (all modules) is large and no longer needed; the .deb stays, so a
    // changed pin can be re-derived without downloading again.
    std::fs::remove_dir_all(&tree).map_err(ImageError::io("removing", &tree))?;
    Ok(kernel)
}

/// Finds `<name>.ko.xz` for every name under `root`, by file name; returns them in the order of
/// `names`. A name found nowhere, or in more than one place, is refused.
fn find_modules(root: &Path, names: &[&str]) -> Result<Vec<(String, PathBuf)>, ImageError> {
    let mut all = Vec::new();
    collect_files(root, &mut all)?;
    names
        .iter()
        .map(|name| {
            let file = format!("{name}.ko.xz");
            let mut hits: Vec<&PathBuf> = all
                .iter()
                .filter(|p| p.file_name().is_some_and(|f| f == file.as_str()))
                .collect();
            hits.sort();
            match hits[..] {
                [one] => Ok(((*name).to_owned(), one.clone())),
                [] => Err(ImageError::ModuleNotFound {
                    module: (*name).to_owned(),
                    root: root.to_owned(),
                }),
                _ => Err(ImageError::ModuleAmbiguous {
                    module: (*name).to_owned(),
                    paths: hits.into_iter().cloned().collect(),
                }),
            }
        })
        .collect()
}

/// Every regular file under `dir`, without following symbolic links.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImageError> {
    let entries = std::fs::read_dir(dir).map_err(ImageError::io("listing", dir))?;
    for entry in entries {
        let entry = entry.map_err(ImageError::io("listing", dir))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(ImageError::io("inspecting", &path))?;
        if kind.is_dir() {
            collect_files(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Decompresses an xz file (the kernel's `.ko.xz`) to `dest`, through a temporary file so a
/// failed run leaves no partial module behind.
fn decompress_xz(src: &Path, dest: &Path) -> Result<(), ImageError> {
    let input = std::fs::File::open(src).map_err(ImageError::io("opening", src))?;
    let part = dest.with_extension("ko.part");
    let output = std::fs::File::create(&part).map_err(ImageError::io("creating", &part))?;
    let mut reader = BufReader::new(input);
    let mut writer = BufWriter::new(output);
    let decoded = lzma_rs::xz_decompress(&mut reader, &mut writer);
    if let Err(e) = decoded {
        drop(writer);
        let _ = std::fs::remove_file(&part);
        return Err(ImageError::Decompress {
            path: src.to_owned(),
            detail: e.to_string(),
        });
    }
    writer.flush().map_err(ImageError::io("writing", &part))?;
    std::fs::rename(&part, dest).map_err(ImageError::io("renaming", &part))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut &data[..], &mut out).expect("compress");
        out
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    #[test]
    fn finds_modules_by_file_name_in_the_given_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        write(&root.join("net/vmw_vsock/vsock.ko.xz"), &xz(b"vsock"));
        write(
            &root.join("drivers/virt/coco/sev-guest/sev-guest.ko.xz"),
            b"x",
        );
        write(&root.join("fs/configfs/configfs.ko.xz"), b"x");
        // Similar names must not match.
        write(&root.join("net/vmw_vsock/vsock_diag.ko.xz"), b"x");
        write(&root.join("net/vmw_vsock/vsock.ko"), b"x");

        let found = find_modules(root, &["sev-guest", "vsock", "configfs"]).expect("found");
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["sev-guest", "vsock", "configfs"]);
        assert!(found[1].1.ends_with("net/vmw_vsock/vsock.ko.xz"));
        assert!(found[0].1.ends_with("coco/sev-guest/sev-guest.ko.xz"));
    }

    #[test]
    fn refuses_missing_and_ambiguous_modules() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        write(&root.join("a/tsm.ko.xz"), b"x");
        write(&root.join("b/tsm.ko.xz"), b"x");
        assert!(matches!(
            find_modules(root, &["tdx-guest"]),
            Err(ImageError::ModuleNotFound { module, .. }) if module == "tdx-guest"
        ));
        assert!(matches!(
            find_modules(root, &["tsm"]),
            Err(ImageError::ModuleAmbiguous { module, paths }) if module == "tsm" && paths.len() == 2
        ));
    }

    #[test]
    fn decompresses_modules_and_refuses_corrupt_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let module: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let src = tmp.path().join("tsm.ko.xz");
        write(&src, &xz(&module));
        let dest = tmp.path().join("tsm.ko");
        decompress_xz(&src, &dest).expect("decompress");
        assert_eq!(std::fs::read(&dest).expect("read"), module);

        // (The test encoder writes no block check, so corruption is shown by truncation and
        // a damaged header; the kernel's modules carry CRC32 checks, which lzma-rs verifies.)
        let whole = xz(&module);
        let truncated = whole[..whole.len() / 2].to_vec();
        let mut bad_magic = whole.clone();
        bad_magic[1] ^= 0xff;
        for (i, bytes) in [truncated, bad_magic].into_iter().enumerate() {
            let bad = tmp.path().join(format!("bad{i}.ko.xz"));
            write(&bad, &bytes);
            let out = tmp.path().join(format!("bad{i}.ko"));
            assert!(matches!(
                decompress_xz(&bad, &out),
                Err(ImageError::Decompress { .. })
            ));
            assert!(!out.exists(), "no partial module is left as the result");
            assert!(!out.with_extension("ko.part").exists());
        }
    }

    /// `printf 'cloister\n' | xz --check=crc32`: the check the kernel's modules carry.
    const XZ_CRC32: &str = "fd377a585a0000016922de360200210116000000742fe5a3010008636c6f6973\
                            7465720a00000000d02849bf00011d09936136a69042990d010000000001595a";

    #[test]
    fn verifies_the_crc32_block_check() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let good = hex::decode(XZ_CRC32).expect("hex");
        let src = tmp.path().join("good.ko.xz");
        write(&src, &good);
        let dest = tmp.path().join("good.ko");
        decompress_xz(&src, &dest).expect("decompress");
        assert_eq!(std::fs::read(&dest).expect("read"), b"cloister\n");

        // One bit of the stored (uncompressed-chunk) payload: only the CRC32 can notice.
        let mut bad = good.clone();
        let at = good
            .windows(8)
            .position(|w| w == b"cloister")
            .expect("payload");
        bad[at] ^= 0x01;
        let src = tmp.path().join("bad.ko.xz");
        write(&src, &bad);
        assert!(matches!(
            decompress_xz(&src, &tmp.path().join("bad.ko")),
            Err(ImageError::Decompress { .. })
        ));
    }

    #[test]
    fn reads_the_indexed_sha256_of_the_pinned_version_only() {
        let text = "Package: linux-image-x\nVersion: 1.0\nSHA256: aaaa\nSize: 1\n\n\
                    Package: linux-image-x\nVersion: 2.0\nFilename: pool/x.deb\nSHA256: bbbb\n";
        assert_eq!(
            binary_sha256(text, "linux-image-x", "2.0").as_deref(),
            Some("bbbb")
        );
        assert_eq!(
            binary_sha256(text, "linux-image-x", "1.0").as_deref(),
            Some("aaaa")
        );
        assert_eq!(binary_sha256(text, "linux-image-x", "3.0"), None);
        assert_eq!(binary_sha256(text, "linux-image-y", "1.0"), None);
    }

    #[test]
    fn an_empty_cache_is_not_the_pinned_kernel() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(cached(tmp.path()), None);
        let k = layout(&kernel_dir(tmp.path()));
        assert_eq!(k.modules.len(), MODULES.len());
        assert!(
            k.vmlinuz
                .ends_with("kernel/6.12.95-1~bpo12+1/vmlinuz-6.12.95+deb12-cloud-amd64")
        );
    }
}
