//! The SNP certificate table the host hands the guest with an extended report (GHCB spec
//! 2.03 §4.1.8.1, "SNP Extended Guest Request"), and its conversion to [`SnpCertificates`].
//!
//! Layout: entries of 24 bytes — a 16-byte GUID, a little-endian `u32` offset and a
//! little-endian `u32` length, both relative to the start of the table — terminated by an
//! all-zero entry; the certificates (DER) follow the entries. configfs-tsm returns this table
//! as `auxblob`; `/dev/sev-guest` returns it in the extended report's certificate buffer.
//!
//! The table comes from the host, which the guest does not trust, so the parser checks every
//! bound instead of following offsets (the `sev` crate's own parser,
//! `CertTableEntry::vec_bytes_to_cert_table`, dereferences them unchecked). A hostile table can
//! at worst make attestation fail; the verifier, not this module, decides whether the
//! certificates it yields are any good.

use cloister_protocol::SnpCertificates;
use cloister_protocol::evidence::MAX_CERT_LEN;

/// Bytes per table entry: GUID, offset, length.
pub const ENTRY_LEN: usize = 16 + 4 + 4;
/// Largest table accepted. AMD's ARK, ASK and VCEK together are about 4 KiB; Linux caps the
/// buffer at a few pages.
pub const MAX_TABLE_LEN: usize = 64 * 1024;

/// A GUID in the table's byte order: the order it is written in text (RFC 4122, as
/// `uuid::Uuid::from_bytes` and the `sev` crate read it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID that terminates the table.
    pub const ZERO: Guid = Guid([0; 16]);
    /// VCEK: 63da758d-e664-4564-adc5-f4b93be8accd.
    pub const VCEK: Guid = Guid([
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
        0xcd,
    ]);
    /// ASK: 4ab7b379-bbac-4fe4-a02f-05aef327c782.
    pub const ASK: Guid = Guid([
        0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7,
        0x82,
    ]);
    /// ARK: c0b406a4-a803-4952-9743-3fb6014cd0ae.
    pub const ARK: Guid = Guid([
        0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0,
        0xae,
    ]);
    /// VLEK: a8074bc2-a25a-483e-aae6-39c045a0b8a1.
    pub const VLEK: Guid = Guid([
        0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8,
        0xa1,
    ]);
}

impl Guid {
    /// Parses the text form (`8-4-4-4-12` hex digits, either case).
    pub fn parse(text: &str) -> Option<Guid> {
        let groups: Vec<&str> = text.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return None;
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(groups.concat(), &mut out).ok()?;
        Some(Guid(out))
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

impl std::fmt::Debug for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// What a table entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// Versioned Chip Endorsement Key certificate.
    Vcek,
    /// Versioned Loaded Endorsement Key certificate (cloud providers' alternative to the VCEK).
    Vlek,
    /// AMD SEV signing key certificate.
    Ask,
    /// AMD root key certificate.
    Ark,
    /// Anything else (e.g. a CRL); ignored.
    Other(Guid),
}

impl CertKind {
    /// The kind a GUID names.
    pub fn from_guid(guid: Guid) -> Self {
        match guid {
            Guid::VCEK => CertKind::Vcek,
            Guid::VLEK => CertKind::Vlek,
            Guid::ASK => CertKind::Ask,
            Guid::ARK => CertKind::Ark,
            other => CertKind::Other(other),
        }
    }

    /// The GUID that names this kind.
    pub fn guid(self) -> Guid {
        match self {
            CertKind::Vcek => Guid::VCEK,
            CertKind::Vlek => Guid::VLEK,
            CertKind::Ask => Guid::ASK,
            CertKind::Ark => Guid::ARK,
            CertKind::Other(g) => g,
        }
    }
}

/// One certificate from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    /// What it is.
    pub kind: CertKind,
    /// Its bytes (DER for the keys).
    pub data: Vec<u8>,
}

/// Why a certificate table was refused. One variant per reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertTableError {
    /// The host supplied no table at all.
    #[error("the host supplied no SNP certificate table (the VCEK is required)")]
    Absent,
    /// The table is larger than any real host's.
    #[error("certificate table is {found} bytes or more, at most {max} are accepted")]
    TooLarge {
        /// Bytes found (at least).
        found: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// The table ends before its all-zero terminating entry.
    #[error("certificate table of {len} bytes has no terminating all-zero entry")]
    Unterminated {
        /// Table length.
        len: usize,
    },
    /// An entry's certificate lies (partly) outside the table.
    #[error(
        "certificate table entry {index} ({guid}) points at bytes {offset}..{offset}+{length}, \
         outside the {len}-byte table"
    )]
    OutOfBounds {
        /// Entry index.
        index: usize,
        /// Entry GUID.
        guid: Guid,
        /// Offset given.
        offset: u32,
        /// Length given.
        length: u32,
        /// Table length.
        len: usize,
    },
    /// An entry's certificate overlaps the entries themselves.
    #[error(
        "certificate table entry {index} ({guid}) starts at {offset}, inside the {entries_end}-byte \
         entry list"
    )]
    OverlapsEntries {
        /// Entry index.
        index: usize,
        /// Entry GUID.
        guid: Guid,
        /// Offset given.
        offset: u32,
        /// Where the entry list (with its terminator) ends.
        entries_end: usize,
    },
    /// A certificate is empty.
    #[error("certificate table entry for {kind:?} is empty")]
    EmptyCertificate {
        /// Which certificate.
        kind: CertKind,
    },
    /// A certificate is larger than the evidence bundle accepts.
    #[error("{kind:?} certificate is {found} bytes, at most {max} are accepted")]
    CertificateTooLarge {
        /// Which certificate.
        kind: CertKind,
        /// Size found.
        found: usize,
        /// Size allowed.
        max: usize,
    },
    /// The same certificate appears twice: which one the report is signed with is ambiguous.
    #[error("certificate table holds more than one {kind:?}")]
    Duplicate {
        /// Which certificate.
        kind: CertKind,
    },
    /// The table holds a VLEK and no VCEK: reports signed with a VLEK are not supported (the
    /// verifier chains VCEKs to the pinned AMD roots).
    #[error("the host supplied a VLEK and no VCEK; VLEK-signed reports are not supported")]
    VlekNotSupported,
    /// The table holds no VCEK.
    #[error("certificate table holds no VCEK (entries: {found})")]
    MissingVcek {
        /// The GUIDs that were present.
        found: String,
    },
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

/// Parses a certificate table, checking every bound.
pub fn parse(table: &[u8]) -> Result<Vec<CertEntry>, CertTableError> {
    if table.is_empty() {
        return Err(CertTableError::Absent);
    }
    if table.len() > MAX_TABLE_LEN {
        return Err(CertTableError::TooLarge {
            found: table.len(),
            max: MAX_TABLE_LEN,
        });
    }
    let mut headers = Vec::new();
    let mut chunks = table.chunks_exact(ENTRY_LEN);
    loop {
        let Some(raw) = chunks.next() else {
            return Err(CertTableError::Unterminated { len: table.len() });
        };
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&raw[..16]);
        let (offset, length) = (le32(&raw[16..20]), le32(&raw[20..24]));
        if Guid(guid) == Guid::ZERO {
            break;
        }
        headers.push((Guid(guid), offset, length));
    }
    let entries_end = (headers.len() + 1) * ENTRY_LEN;
    headers
        .into_iter()
        .enumerate()
        .map(|(index, (guid, offset, length))| {
            let out_of_bounds = || CertTableError::OutOfBounds {
                index,
                guid,
                offset,
                length,
                len: table.len(),
            };
            let start = usize::try_from(offset).map_err(|_| out_of_bounds())?;
            let end = usize::try_from(length)
                .ok()
                .and_then(|l| start.checked_add(l))
                .ok_or_else(out_of_bounds)?;
            let data = table.get(start..end).ok_or_else(out_of_bounds)?;
            if start < entries_end {
                return Err(CertTableError::OverlapsEntries {
                    index,
                    guid,
                    offset,
                    entries_end,
                });
            }
            Ok(CertEntry {
                kind: CertKind::from_guid(guid),
                data: data.to_vec(),
            })
        })
        .collect()
}

/// Builds a table from entries (what a host does); the certificates follow the entries in
/// order. For tests and for tools that stand in for a host.
pub fn encode(entries: &[CertEntry]) -> Vec<u8> {
    let header_len = (entries.len() + 1) * ENTRY_LEN;
    let mut header = Vec::with_capacity(header_len);
    let mut body = Vec::new();
    for e in entries {
        let offset = header_len + body.len();
        header.extend_from_slice(&e.kind.guid().0);
        // Tables are a few KiB; saturate rather than wrap for absurd inputs.
        header.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
        header.extend_from_slice(
            &u32::try_from(e.data.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        body.extend_from_slice(&e.data);
    }
    header.extend_from_slice(&[0u8; ENTRY_LEN]);
    header.extend_from_slice(&body);
    header
}

/// Picks VCEK, ASK and ARK out of parsed entries. The VCEK is required; a VLEK without a VCEK
/// is refused by name; duplicates are refused; other entries are ignored.
pub fn certificates(entries: Vec<CertEntry>) -> Result<SnpCertificates, CertTableError> {
    let (mut vcek, mut ask, mut ark, mut vlek) = (None, None, None, false);
    let found: Vec<String> = entries.iter().map(|e| e.kind.guid().to_string()).collect();
    for e in entries {
        let slot = match e.kind {
            CertKind::Vcek => &mut vcek,
            CertKind::Ask => &mut ask,
            CertKind::Ark => &mut ark,
            CertKind::Vlek => {
                vlek = true;
                continue;
            }
            CertKind::Other(_) => continue,
        };
        if e.data.is_empty() {
            return Err(CertTableError::EmptyCertificate { kind: e.kind });
        }
        if e.data.len() > MAX_CERT_LEN {
            return Err(CertTableError::CertificateTooLarge {
                kind: e.kind,
                found: e.data.len(),
                max: MAX_CERT_LEN,
            });
        }
        if slot.replace(e.data).is_some() {
            return Err(CertTableError::Duplicate { kind: e.kind });
        }
    }
    match vcek {
        Some(vcek) => Ok(SnpCertificates {
            vcek,
            ask,
            ark,
            crl: None,
        }),
        None if vlek => Err(CertTableError::VlekNotSupported),
        None => Err(CertTableError::MissingVcek {
            found: if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(", ")
            },
        }),
    }
}

/// Parses a table and picks its certificates.
pub fn certificates_from_table(table: &[u8]) -> Result<SnpCertificates, CertTableError> {
    certificates(parse(table)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: CertKind, data: &[u8]) -> CertEntry {
        CertEntry {
            kind,
            data: data.to_vec(),
        }
    }

    fn full() -> Vec<CertEntry> {
        vec![
            entry(CertKind::Ark, b"ark-der"),
            entry(CertKind::Ask, b"ask-der"),
            entry(CertKind::Vcek, b"vcek-der"),
        ]
    }

    #[test]
    fn guids_print_as_amd_writes_them() {
        assert_eq!(
            Guid::VCEK.to_string(),
            "63da758d-e664-4564-adc5-f4b93be8accd"
        );
        assert_eq!(
            Guid::ASK.to_string(),
            "4ab7b379-bbac-4fe4-a02f-05aef327c782"
        );
        assert_eq!(
            Guid::ARK.to_string(),
            "c0b406a4-a803-4952-9743-3fb6014cd0ae"
        );
        assert_eq!(
            Guid::VLEK.to_string(),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
    }

    #[test]
    fn guids_match_the_sev_crate() {
        use sev::firmware::host::CertType;
        for (ours, theirs) in [
            (Guid::VCEK, CertType::VCEK),
            (Guid::ASK, CertType::ASK),
            (Guid::ARK, CertType::ARK),
            (Guid::VLEK, CertType::VLEK),
        ] {
            assert_eq!(ours.to_string(), theirs.to_string());
        }
    }

    #[test]
    fn guid_text_round_trips() {
        for g in [Guid::VCEK, Guid::ASK, Guid::ARK, Guid::VLEK, Guid::ZERO] {
            assert_eq!(Guid::parse(&g.to_string()), Some(g));
            assert_eq!(Guid::parse(&g.to_string().to_uppercase()), Some(g));
        }
        assert_eq!(Guid::parse("63da758de6644564adc5f4b93be8accd"), None);
        assert_eq!(Guid::parse("63da758d-e664-4564-adc5-f4b93be8accx"), None);
        assert_eq!(Guid::parse("63da758d-e664-4564-adc5f4-b93be8accd"), None);
        assert_eq!(Guid::parse(""), None);
    }

    #[test]
    fn round_trip() {
        let table = encode(&full());
        assert_eq!(table.len(), 4 * ENTRY_LEN + 7 + 7 + 8);
        assert_eq!(parse(&table), Ok(full()));
        assert_eq!(
            certificates_from_table(&table),
            Ok(SnpCertificates {
                vcek: b"vcek-der".to_vec(),
                ask: Some(b"ask-der".to_vec()),
                ark: Some(b"ark-der".to_vec()),
                crl: None,
            })
        );
    }

    #[test]
    fn vcek_alone_is_enough_and_others_are_ignored() {
        let crl = Guid([0x92; 16]);
        let table = encode(&[
            entry(CertKind::Other(crl), b"crl"),
            entry(CertKind::Vcek, b"vcek-der"),
        ]);
        assert_eq!(
            certificates_from_table(&table),
            Ok(SnpCertificates {
                vcek: b"vcek-der".to_vec(),
                ask: None,
                ark: None,
                crl: None,
            })
        );
    }

    #[test]
    fn trailing_bytes_after_the_certificates_are_tolerated() {
        // Hosts hand over whole pages; the kernel passes the page-sized buffer through.
        let mut table = encode(&full());
        table.resize(4096, 0);
        assert_eq!(parse(&table), Ok(full()));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(&[]), Err(CertTableError::Absent));
        // Entries but no terminator.
        let table = encode(&full());
        assert_eq!(
            parse(&table[..3 * ENTRY_LEN]),
            Err(CertTableError::Unterminated { len: 3 * ENTRY_LEN })
        );
        // A partial entry is no terminator either.
        assert_eq!(
            parse(&[0u8; ENTRY_LEN - 1]),
            Err(CertTableError::Unterminated { len: ENTRY_LEN - 1 })
        );
        // Certificate cut off at the end of the table.
        assert!(matches!(
            parse(&table[..table.len() - 1]),
            Err(CertTableError::OutOfBounds { index: 2, .. })
        ));
        // Offset + length overflows u32 arithmetic on purpose.
        let mut huge = table.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&huge),
            Err(CertTableError::OutOfBounds {
                index: 0,
                guid: Guid::ARK,
                ..
            })
        ));
        // A certificate that points into the entry list.
        let mut overlap = table.clone();
        overlap[16..20].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            parse(&overlap),
            Err(CertTableError::OverlapsEntries { index: 0, .. })
        ));
        // An empty VCEK.
        assert_eq!(
            certificates(vec![entry(CertKind::Vcek, b"")]),
            Err(CertTableError::EmptyCertificate {
                kind: CertKind::Vcek
            })
        );
        // An oversize ASK.
        assert!(matches!(
            certificates(vec![
                entry(CertKind::Vcek, b"v"),
                entry(CertKind::Ask, &vec![1; MAX_CERT_LEN + 1])
            ]),
            Err(CertTableError::CertificateTooLarge {
                kind: CertKind::Ask,
                ..
            })
        ));
        // Two VCEKs.
        assert_eq!(
            certificates(vec![
                entry(CertKind::Vcek, b"a"),
                entry(CertKind::Vcek, b"b")
            ]),
            Err(CertTableError::Duplicate {
                kind: CertKind::Vcek
            })
        );
        // VLEK only.
        assert_eq!(
            certificates_from_table(&encode(&[
                entry(CertKind::Vlek, b"vlek"),
                entry(CertKind::Ask, b"ask")
            ])),
            Err(CertTableError::VlekNotSupported)
        );
        // No VCEK: the message lists what was there.
        let err =
            certificates_from_table(&encode(&[entry(CertKind::Ark, b"ark")])).expect_err("no vcek");
        assert_eq!(
            err,
            CertTableError::MissingVcek {
                found: Guid::ARK.to_string()
            }
        );
        // Larger than any host's.
        assert_eq!(
            parse(&vec![0u8; MAX_TABLE_LEN + 1]),
            Err(CertTableError::TooLarge {
                found: MAX_TABLE_LEN + 1,
                max: MAX_TABLE_LEN
            })
        );
        // An empty (terminator-only) table.
        assert_eq!(
            certificates_from_table(&[0u8; ENTRY_LEN]),
            Err(CertTableError::MissingVcek {
                found: "none".into()
            })
        );
    }
}
