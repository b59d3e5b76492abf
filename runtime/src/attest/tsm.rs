//! Evidence through Linux configfs-tsm (`Documentation/ABI/testing/configfs-tsm-report`,
//! Linux ≥ 6.7): one interface for AMD SEV-SNP (`sev_guest`) and Intel TDX (`tdx_guest`).
//!
//! One request is one entry directory: `mkdir <root>/<unique name>`, read `provider` (refused
//! unless it is the expected platform's), write `privlevel` 0 (SNP only), write the 64-byte
//! `inblob`, read `generation`, `outblob` and (SNP) `auxblob`, read `generation` again, and
//! `rmdir` the entry — also when anything failed. The kernel bumps `generation` on every write
//! to the entry; if it moved between our two reads, another writer changed the request under us
//! and the `outblob` may bind someone else's data, so the result is refused
//! ([`AttestError::Concurrent`]).
//!
//! * `sev_guest`: `outblob` is the 1184-byte `ATTESTATION_REPORT`; `auxblob` is the host's
//!   certificate table ([`super::certtable`]), from which the VCEK (required), ASK and ARK are
//!   taken.
//! * `tdx_guest`: `outblob` is the DCAP quote (the kernel gets it from the host's quote
//!   service). Its collateral — Intel's TCB info, QE identity and CRLs from the PCS — is not
//!   available inside the guest, which has no network: the evidence carries
//!   `Endorsements::Tdx { collateral: vec![] }` and the host (the gateway) attaches the
//!   collateral it fetched before the bundle reaches a verifier, which checks it against Intel's
//!   root and so does not need to trust the host for it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cloister_protocol::evidence::MAX_EVIDENCE_LEN;
use cloister_protocol::{Endorsements, Platform};

use super::certtable::{self, MAX_TABLE_LEN};
use super::{AttestError, Attester, Evidence};

/// Where configfs-tsm reports live when configfs is mounted at its usual place.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";
/// Length of an SNP `ATTESTATION_REPORT` (AMD 56860, Table 23).
pub const SNP_REPORT_LEN: usize = 1184;
/// Largest `provider` or `generation` value read.
const MAX_ATTRIBUTE_LEN: usize = 64;
/// How many names to try if an entry of the chosen name already exists.
const MKDIR_ATTEMPTS: u32 = 8;

/// Distinguishes the entries one process creates.
static ENTRY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Points in a request where the tests play the kernel (a real configfs creates the attribute
/// files on `mkdir`, computes `outblob` on read and drops everything on `rmdir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The entry directory was just created.
    Created,
    /// `outblob` (and `auxblob`) were read; `generation` is read next.
    Read,
    /// The entry is about to be removed.
    Removing,
}

/// An attester over configfs-tsm for one expected platform ([`Platform::SevSnp`] or
/// [`Platform::Tdx`]).
#[derive(Debug, Clone)]
pub struct TsmAttester {
    root: PathBuf,
    expected: Platform,
}

impl TsmAttester {
    /// An attester at [`DEFAULT_ROOT`].
    pub fn new(expected: Platform) -> Result<Self, AttestError> {
        Self::with_root(DEFAULT_ROOT, expected)
    }

    /// An attester whose report directory is `root` (where configfs is mounted elsewhere, and
    /// in tests). Refuses [`Platform::EmulatedSevSnp`]: no kernel provider produces it.
    pub fn with_root(root: impl Into<PathBuf>, expected: Platform) -> Result<Self, AttestError> {
        match expected {
            Platform::SevSnp | Platform::Tdx => Ok(TsmAttester {
                root: root.into(),
                expected,
            }),
            Platform::EmulatedSevSnp => Err(AttestError::UnsupportedPlatform {
                platform: expected,
                attester: "configfs-tsm",
            }),
        }
    }

    /// The report directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn provider(&self) -> &'static str {
        match self.expected {
            Platform::Tdx => "tdx_guest",
            // `with_root` admits only SevSnp and Tdx.
            Platform::SevSnp | Platform::EmulatedSevSnp => "sev_guest",
        }
    }

    fn evidence_with(
        &self,
        report_data: &[u8; 64],
        kernel: &mut dyn FnMut(Stage, &Path) -> io::Result<()>,
    ) -> Result<Evidence, AttestError> {
        if !self.root.is_dir() {
            return Err(AttestError::Unavailable(format!(
                "{} is not a directory (configfs-tsm needs Linux ≥ 6.7, configfs mounted and the \
                 tsm and platform guest modules loaded)",
                self.root.display()
            )));
        }
        let dir = self.create_entry()?;
        let result = hook(kernel, Stage::Created, &dir)
            .and_then(|()| self.request(&dir, report_data, kernel));
        // Always remove the entry: configfs keeps it (and its report) until rmdir. On a real
        // configfs rmdir drops the attributes with the directory; remove_dir_all would try to
        // unlink them one by one and fail.
        let removed = hook(kernel, Stage::Removing, &dir).and_then(|()| {
            fs::remove_dir(&dir).map_err(|source| AttestError::Io {
                action: "remove configfs-tsm entry",
                path: dir.display().to_string(),
                source,
            })
        });
        if let Err(e) = removed {
            // The evidence (or the first error) matters more to the caller; a leaked entry
            // costs a little kernel memory, so it is reported, not fatal.
            tracing::warn!(error = %e, "configfs-tsm entry left behind");
        }
        result
    }

    /// Creates a fresh entry: process id and a per-process counter, so concurrent requests
    /// (from this process or another) never share one.
    fn create_entry(&self) -> Result<PathBuf, AttestError> {
        let mut last = None;
        for _ in 0..MKDIR_ATTEMPTS {
            let n = ENTRY_COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = self
                .root
                .join(format!("cloister-{}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                // Left over from an earlier process with the same pid (PID 1 restarts).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((dir, e)),
                Err(source) => {
                    return Err(AttestError::Io {
                        action: "create configfs-tsm entry",
                        path: dir.display().to_string(),
                        source,
                    });
                }
            }
        }
        let (dir, source) = last.unwrap_or_else(|| {
            (
                self.root.clone(),
                io::Error::from(io::ErrorKind::AlreadyExists),
            )
        });
        Err(AttestError::Io {
            action: "create configfs-tsm entry",
            path: dir.display().to_string(),
            source,
        })
    }

    fn request(
        &self,
        dir: &Path,
        report_data: &[u8; 64],
        kernel: &mut dyn FnMut(Stage, &Path) -> io::Result<()>,
    ) -> Result<Evidence, AttestError> {
        // Checked before anything is written: a TDX kernel has no SNP privlevel semantics, and a
        // mismatch means the image was configured for the other platform.
        let provider = read_text(&dir.join("provider"))?;
        if provider != self.provider() {
            return Err(AttestError::Provider {
                found: provider.chars().take(40).collect(),
                expected: self.provider(),
            });
        }
        if self.expected == Platform::SevSnp {
            // VMPL 0: the report must say the guest kernel's own level, which the verifier's
            // policy requires.
            write_attribute(&dir.join("privlevel"), b"0")?;
        }
        write_attribute(&dir.join("inblob"), report_data)?;
        let before = read_generation(&dir.join("generation"))?;
        let outblob = read_capped(&dir.join("outblob"), MAX_EVIDENCE_LEN)?;
        let auxblob = match self.expected {
            Platform::SevSnp => Some(read_capped(&dir.join("auxblob"), MAX_TABLE_LEN)?),
            Platform::Tdx | Platform::EmulatedSevSnp => None,
        };
        hook(kernel, Stage::Read, dir)?;
        let after = read_generation(&dir.join("generation"))?;
        if before != after {
            return Err(AttestError::Concurrent { before, after });
        }
        match auxblob {
            Some(table) => {
                if outblob.len() != SNP_REPORT_LEN {
                    return Err(AttestError::ReportLength {
                        found: outblob.len(),
                        expected: SNP_REPORT_LEN,
                    });
                }
                // Refuses a table over MAX_TABLE_LEN (read_capped kept one byte more).
                let certificates = certtable::certificates_from_table(&table)?;
                Ok(Evidence {
                    platform: Platform::SevSnp,
                    evidence: outblob,
                    endorsements: Endorsements::Snp(certificates),
                })
            }
            None => {
                if outblob.is_empty() || outblob.len() > MAX_EVIDENCE_LEN {
                    return Err(AttestError::QuoteSize {
                        found: outblob.len(),
                        max: MAX_EVIDENCE_LEN,
                    });
                }
                Ok(Evidence {
                    platform: Platform::Tdx,
                    evidence: outblob,
                    // The guest cannot reach Intel's PCS; the host attaches the collateral (see
                    // the module documentation).
                    endorsements: Endorsements::Tdx { collateral: vec![] },
                })
            }
        }
    }
}

impl Attester for TsmAttester {
    fn platform(&self) -> Platform {
        self.expected
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        self.evidence_with(report_data, &mut |_, _| Ok(()))
    }
}

fn hook(
    kernel: &mut dyn FnMut(Stage, &Path) -> io::Result<()>,
    stage: Stage,
    dir: &Path,
) -> Result<(), AttestError> {
    kernel(stage, dir).map_err(|source| AttestError::Io {
        action: "configfs-tsm hook",
        path: dir.display().to_string(),
        source,
    })
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AttestError {
    let path = path.display().to_string();
    move |source| AttestError::Io {
        action,
        path,
        source,
    }
}

/// Writes an attribute in one `write`. The attribute exists already (configfs creates it with
/// the entry), so it is opened without `O_CREAT` or `O_TRUNC`.
fn write_attribute(path: &Path, value: &[u8]) -> Result<(), AttestError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value))
        .map_err(io_error("write", path))
}

/// Reads at most `max + 1` bytes, so that the caller can tell "too long" from "exactly `max`"
/// without the kernel (or a hostile host behind it) making us allocate more.
fn read_capped(path: &Path, max: usize) -> Result<Vec<u8>, AttestError> {
    let mut out = Vec::new();
    File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut out))
        .map_err(io_error("read", path))?;
    Ok(out)
}

fn read_text(path: &Path) -> Result<String, AttestError> {
    let raw = read_capped(path, MAX_ATTRIBUTE_LEN)?;
    Ok(String::from_utf8_lossy(&raw).trim().to_owned())
}

fn read_generation(path: &Path) -> Result<u64, AttestError> {
    let text = read_text(path)?;
    text.parse().map_err(|_| {
        AttestError::Request(format!(
            "{} holds {text:?}, not a generation number",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::certtable::{CertEntry, CertKind, CertTableError};

    const RD: [u8; 64] = [0x42; 64];

    /// What the fake kernel serves from an entry.
    #[derive(Clone)]
    struct Fake {
        provider: &'static str,
        outblob: Vec<u8>,
        auxblob: Vec<u8>,
        /// Generation written at `Stage::Read` (a concurrent writer), if any.
        moved_to: Option<u64>,
    }

    fn chain() -> Vec<CertEntry> {
        vec![
            CertEntry {
                kind: CertKind::Vcek,
                data: b"vcek-der".to_vec(),
            },
            CertEntry {
                kind: CertKind::Ask,
                data: b"ask-der".to_vec(),
            },
            CertEntry {
                kind: CertKind::Ark,
                data: b"ark-der".to_vec(),
            },
        ]
    }

    fn snp() -> Fake {
        Fake {
            provider: "sev_guest\n",
            outblob: vec![0xa5; SNP_REPORT_LEN],
            auxblob: certtable::encode(&chain()),
            moved_to: None,
        }
    }

    fn tdx() -> Fake {
        Fake {
            provider: "tdx_guest\n",
            outblob: vec![0x04; 5006],
            auxblob: Vec::new(),
            moved_to: None,
        }
    }

    struct Run {
        result: Result<Evidence, AttestError>,
        /// The entries seen at `Stage::Created`.
        created: Vec<PathBuf>,
        /// What was written to inblob and privlevel, read back at `Stage::Read`.
        inblob: Option<Vec<u8>>,
        privlevel: Option<Vec<u8>>,
        /// Whatever is left in the root afterwards.
        left: Vec<PathBuf>,
    }

    fn listing(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .expect("lists")
            .map(|e| e.expect("entry").path())
            .collect();
        v.sort();
        v
    }

    fn run_in(root: &Path, expected: Platform, fake: &Fake) -> Run {
        let attester = TsmAttester::with_root(root, expected).expect("attester");
        let mut created = Vec::new();
        let (mut inblob, mut privlevel) = (None, None);
        let result = attester.evidence_with(&RD, &mut |stage, dir| {
            match stage {
                Stage::Created => {
                    created.push(dir.to_path_buf());
                    // What configfs creates on mkdir (empty writable attributes included).
                    fs::write(dir.join("provider"), fake.provider)?;
                    fs::write(dir.join("generation"), "1\n")?;
                    fs::write(dir.join("outblob"), &fake.outblob)?;
                    fs::write(dir.join("auxblob"), &fake.auxblob)?;
                    fs::write(dir.join("inblob"), b"")?;
                    fs::write(dir.join("privlevel"), b"")?;
                }
                Stage::Read => {
                    inblob = fs::read(dir.join("inblob")).ok();
                    privlevel = fs::read(dir.join("privlevel"))
                        .ok()
                        .filter(|p| !p.is_empty());
                    if let Some(g) = fake.moved_to {
                        fs::write(dir.join("generation"), format!("{g}\n"))?;
                    }
                }
                // The kernel drops the attributes with the directory.
                Stage::Removing => {
                    for entry in fs::read_dir(dir)? {
                        fs::remove_file(entry?.path())?;
                    }
                }
            }
            Ok(())
        });
        Run {
            result,
            created,
            inblob,
            privlevel,
            left: listing(root),
        }
    }

    fn run(expected: Platform, fake: &Fake) -> Run {
        let root = tempfile::tempdir().expect("temp dir");
        run_in(root.path(), expected, fake)
    }

    #[test]
    fn snp_happy_path() {
        let r = run(Platform::SevSnp, &snp());
        let ev = r.result.expect("evidence");
        assert_eq!(ev.platform, Platform::SevSnp);
        assert_eq!(ev.evidence, vec![0xa5; SNP_REPORT_LEN]);
        assert_eq!(
            ev.endorsements,
            Endorsements::Snp(cloister_protocol::SnpCertificates {
                vcek: b"vcek-der".to_vec(),
                ask: Some(b"ask-der".to_vec()),
                ark: Some(b"ark-der".to_vec()),
                crl: None,
            })
        );
        assert_eq!(r.inblob.as_deref(), Some(&RD[..]));
        assert_eq!(r.privlevel.as_deref(), Some(&b"0"[..]));
        assert_eq!(r.created.len(), 1);
        assert!(r.left.is_empty(), "entry removed: {:?}", r.left);
    }

    #[test]
    fn tdx_happy_path_has_no_collateral_and_no_privlevel() {
        let r = run(Platform::Tdx, &tdx());
        let ev = r.result.expect("evidence");
        assert_eq!(ev.platform, Platform::Tdx);
        assert_eq!(ev.evidence, vec![0x04; 5006]);
        assert_eq!(ev.endorsements, Endorsements::Tdx { collateral: vec![] });
        assert_eq!(r.inblob.as_deref(), Some(&RD[..]));
        assert_eq!(r.privlevel, None);
        assert!(r.left.is_empty(), "{:?}", r.left);
    }

    #[test]
    fn entries_are_uniquely_named() {
        let root = tempfile::tempdir().expect("temp dir");
        let a = run_in(root.path(), Platform::SevSnp, &snp());
        let b = run_in(root.path(), Platform::SevSnp, &snp());
        assert_ne!(a.created, b.created);
        for p in a.created.iter().chain(&b.created) {
            assert_eq!(p.parent(), Some(root.path()));
            let name = p.file_name().and_then(|n| n.to_str()).expect("name");
            assert!(name.starts_with(&format!("cloister-{}-", std::process::id())));
        }
    }

    #[test]
    fn a_stale_entry_of_the_same_name_is_skipped() {
        let root = tempfile::tempdir().expect("temp dir");
        let next = ENTRY_COUNTER.load(Ordering::SeqCst);
        // Occupy the next few names (other tests may take some concurrently: that is fine too).
        let stale: Vec<_> = (next..next + 3)
            .map(|n| {
                root.path()
                    .join(format!("cloister-{}-{n}", std::process::id()))
            })
            .collect();
        for s in &stale {
            fs::create_dir(s).expect("mkdir");
        }
        let r = run_in(root.path(), Platform::SevSnp, &snp());
        r.result.expect("evidence");
        assert!(!stale.contains(&r.created[0]));
        assert_eq!(r.left, stale);
    }

    #[test]
    fn generation_moved_is_refused_and_cleaned_up() {
        let fake = Fake {
            moved_to: Some(2),
            ..snp()
        };
        let r = run(Platform::SevSnp, &fake);
        assert!(
            matches!(
                r.result,
                Err(AttestError::Concurrent {
                    before: 1,
                    after: 2
                })
            ),
            "{:?}",
            r.result
        );
        assert!(r.left.is_empty(), "{:?}", r.left);
    }

    #[test]
    fn provider_mismatch_is_refused_before_writing() {
        let r = run(Platform::SevSnp, &tdx());
        match &r.result {
            Err(AttestError::Provider { found, expected }) => {
                assert_eq!(found, "tdx_guest");
                assert_eq!(*expected, "sev_guest");
            }
            other => panic!("{other:?}"),
        }
        // Refused before the request was written, and the entry is gone.
        assert_eq!(r.inblob, None);
        assert!(r.left.is_empty(), "{:?}", r.left);
        let r = run(Platform::Tdx, &snp());
        assert!(matches!(
            r.result,
            Err(AttestError::Provider {
                expected: "tdx_guest",
                ..
            })
        ));
    }

    #[test]
    fn missing_tree_is_unavailable() {
        let root = tempfile::tempdir().expect("temp dir");
        let attester =
            TsmAttester::with_root(root.path().join("absent"), Platform::SevSnp).expect("ok");
        assert!(matches!(
            attester.evidence(&RD),
            Err(AttestError::Unavailable(_))
        ));
    }

    #[test]
    fn emulated_platform_is_not_a_tsm_provider() {
        assert!(matches!(
            TsmAttester::new(Platform::EmulatedSevSnp),
            Err(AttestError::UnsupportedPlatform {
                platform: Platform::EmulatedSevSnp,
                ..
            })
        ));
        let a = TsmAttester::new(Platform::Tdx).expect("ok");
        assert_eq!(a.root(), Path::new(DEFAULT_ROOT));
        assert_eq!(a.platform(), Platform::Tdx);
    }

    #[test]
    fn short_or_long_snp_report_is_refused() {
        for len in [0, 1183, 1185] {
            let fake = Fake {
                outblob: vec![0; len],
                ..snp()
            };
            let r = run(Platform::SevSnp, &fake);
            assert!(
                matches!(
                    r.result,
                    Err(AttestError::ReportLength { found, expected: SNP_REPORT_LEN }) if found == len
                ),
                "{len}: {:?}",
                r.result
            );
            assert!(r.left.is_empty());
        }
    }

    #[test]
    fn empty_or_oversize_tdx_quote_is_refused() {
        // An oversize quote is reported as "at least one byte too many": no more is read.
        for (len, found) in [(0, 0), (MAX_EVIDENCE_LEN + 10, MAX_EVIDENCE_LEN + 1)] {
            let fake = Fake {
                outblob: vec![0; len],
                ..tdx()
            };
            let r = run(Platform::Tdx, &fake);
            assert!(
                matches!(r.result, Err(AttestError::QuoteSize { found: f, .. }) if f == found),
                "{:?}",
                r.result
            );
        }
    }

    #[test]
    fn cert_table_problems_are_refused_by_name() {
        let mut out_of_bounds = certtable::encode(&chain());
        out_of_bounds.truncate(out_of_bounds.len() - 3);
        type Expect = fn(&CertTableError) -> bool;
        let cases: Vec<(Vec<u8>, Expect)> = vec![
            (Vec::new(), |e| matches!(e, CertTableError::Absent)),
            (vec![0x11; 30], |e| {
                matches!(e, CertTableError::Unterminated { .. })
            }),
            (out_of_bounds, |e| {
                matches!(e, CertTableError::OutOfBounds { .. })
            }),
            (
                certtable::encode(&[CertEntry {
                    kind: CertKind::Vlek,
                    data: b"vlek".to_vec(),
                }]),
                |e| matches!(e, CertTableError::VlekNotSupported),
            ),
            (vec![0; MAX_TABLE_LEN + 1], |e| {
                matches!(e, CertTableError::TooLarge { .. })
            }),
        ];
        for (auxblob, expected) in cases {
            let fake = Fake { auxblob, ..snp() };
            let r = run(Platform::SevSnp, &fake);
            match &r.result {
                Err(AttestError::CertTable(e)) => assert!(expected(e), "{e:?}"),
                other => panic!("{other:?}"),
            }
            assert!(r.left.is_empty(), "{:?}", r.left);
        }
    }

    #[test]
    fn unreadable_generation_is_a_request_error() {
        let root = tempfile::tempdir().expect("temp dir");
        let attester = TsmAttester::with_root(root.path(), Platform::Tdx).expect("ok");
        let fake = tdx();
        let result = attester.evidence_with(&RD, &mut |stage, dir| {
            match stage {
                Stage::Created => {
                    fs::write(dir.join("provider"), fake.provider)?;
                    fs::write(dir.join("generation"), "lots\n")?;
                    fs::write(dir.join("outblob"), &fake.outblob)?;
                    fs::write(dir.join("inblob"), b"")?;
                }
                Stage::Removing => {
                    for entry in fs::read_dir(dir)? {
                        fs::remove_file(entry?.path())?;
                    }
                }
                Stage::Read => {}
            }
            Ok(())
        });
        assert!(matches!(result, Err(AttestError::Request(_))), "{result:?}");
        assert!(listing(root.path()).is_empty());
    }

    #[test]
    fn missing_attribute_is_an_io_error_and_the_entry_still_goes() {
        // A kernel without the attribute (e.g. an older tsm without auxblob).
        let root = tempfile::tempdir().expect("temp dir");
        let attester = TsmAttester::with_root(root.path(), Platform::SevSnp).expect("ok");
        let fake = snp();
        let result = attester.evidence_with(&RD, &mut |stage, dir| {
            match stage {
                Stage::Created => {
                    fs::write(dir.join("provider"), fake.provider)?;
                    fs::write(dir.join("generation"), "7\n")?;
                    fs::write(dir.join("outblob"), &fake.outblob)?;
                    fs::write(dir.join("inblob"), b"")?;
                    fs::write(dir.join("privlevel"), b"")?;
                }
                Stage::Removing => {
                    for entry in fs::read_dir(dir)? {
                        fs::remove_file(entry?.path())?;
                    }
                }
                Stage::Read => {}
            }
            Ok(())
        });
        match result {
            Err(AttestError::Io { action, path, .. }) => {
                assert_eq!(action, "read");
                assert!(path.ends_with("auxblob"), "{path}");
            }
            other => panic!("{other:?}"),
        }
        assert!(listing(root.path()).is_empty());
    }
}
